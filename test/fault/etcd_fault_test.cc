// Fault suite, the log side (issue 3, scenarios 5, 6 and 7): the etcd leader SIGKILLed under load;
// etcd's quorum lost for 5 s under load; the log compacted past the index of a stopped replica
// (caught up by reading the live entries).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "log/batch_format.h"
#include "support/etcd_cluster.h"
#include "support/fault_load.h"
#include "support/http_client.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// 5. The etcd leader is SIGKILLed under load on every replica: a new leader is elected and the
// service continues; the old leader rejoins. Twice.
TEST(EtcdFault, LeaderKilledUnderLoadAndServiceContinues) {
  ReplicatedCluster cluster(FaultOptions("etcd-leader"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int leader = cluster.Etcd().LeaderIndex();
    ASSERT_GE(leader, 0) << "no etcd leader";
    cluster.Etcd().KillMember(leader);
    const int new_leader = cluster.Etcd().LeaderIndex(30s);
    EXPECT_GE(new_leader, 0) << "no new leader elected";
    EXPECT_NE(new_leader, leader);
    ASSERT_TRUE(load.WaitProgress(20, 60s)) << "the service did not continue without the leader";

    cluster.Etcd().RestartMember(leader, 60s);
    ASSERT_TRUE(load.WaitProgress(10, 60s));
  }
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// The member id a running member reports as its leader in its maintenance status ("" when it
// has none or does not answer within `timeout`).
std::string ReportedLeader(EtcdCluster& etcd, int i, std::chrono::milliseconds timeout) {
  const HttpResult r =
      Http(etcd.ClientPort(i), "POST", "/v3/maintenance/status", "{}", {}, timeout);
  const json j = r.Json();
  if (r.status != 200 || !j.is_object()) return "";
  const std::string leader = j.value("leader", "");
  return leader == "0" ? "" : leader;
}

std::string MemberId(EtcdCluster& etcd, int i) {
  const HttpResult r = Http(etcd.ClientPort(i), "POST", "/v3/maintenance/status", "{}", {}, 2s);
  const json j = r.Json();
  if (r.status != 200 || !j.is_object() || !j.contains("header")) return "";
  return j["header"].value("member_id", "");
}

// The longest time without a 2xx answer among the requests sent to `target`, over the answers
// given in [from, to] (the gap that ends at the first answer after `from` counts in full).
Clock::duration LongestGap(const std::vector<OpRecord>& records, int target, Clock::time_point from,
                           Clock::time_point to) {
  std::vector<Clock::time_point> answered;
  for (const OpRecord& r : records) {
    if (r.target == target && r.res.Ok()) answered.push_back(r.answered);
  }
  std::sort(answered.begin(), answered.end());
  Clock::duration longest{0};
  for (size_t i = 1; i < answered.size(); ++i) {
    if (answered[i] < from || answered[i - 1] > to) continue;
    longest = std::max(longest, answered[i] - answered[i - 1]);
  }
  return longest;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// 5a. Issue 10: the etcd leader SIGKILLed under load, with the proxies' default --etcd-timeout-ms
// (3 s). etcd elects a new leader within about a second; the proxies must follow it as soon as it
// exists, not when their calls to the old leader (or forwarded through a follower to it) time out.
// Every proxy's clients see a stall (the longest time without a 2xx answer) shorter than etcd's
// own election time (SIGKILL until a survivor reports a new leader) plus 1.2 s, which is well
// below the 3 s of the etcd timeout that used to bound it; none is told 504 unknown (an append
// in flight is retried, idempotently, on the new leader); nothing is lost. Three rounds.
TEST(EtcdFault, LeaderKilledUnderLoadStallsOnlyAsLongAsTheElection) {
  ReplicatedClusterOptions options;
  options.group = "etcd-failover";
  options.request_timeout = 10000ms;  // the proxy's default, like --etcd-timeout-ms below
  options.extra_proxy_args = {"--heartbeat-interval-ms", "200", "--etcd-timeout-ms", "3000"};
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  EtcdCluster& etcd = cluster.Etcd();
  std::vector<std::string> ids;
  for (int i = 0; i < etcd.size(); ++i) ids.push_back(MemberId(etcd, i));
  for (const auto& id : ids) ASSERT_FALSE(id.empty()) << "a member did not tell its id";

  struct Round {
    Clock::time_point killed, elected, resumed;
  };
  std::vector<Round> rounds;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int leader = etcd.LeaderIndex();
    ASSERT_GE(leader, 0) << "no etcd leader";
    ASSERT_TRUE(load.WaitProgress(10, 30s));
    Round r;
    r.killed = Clock::now();
    etcd.KillMember(leader);
    // etcd's own election time: until a survivor reports a leader other than the killed one.
    bool elected = false;
    while (!elected && Clock::now() - r.killed < 30s) {
      for (int i = 0; i < etcd.size() && !elected; ++i) {
        if (i == leader) continue;
        const std::string l = ReportedLeader(etcd, i, 200ms);
        elected = !l.empty() && l != ids[static_cast<size_t>(leader)];
      }
      if (!elected) std::this_thread::sleep_for(5ms);
    }
    r.elected = Clock::now();
    ASSERT_TRUE(elected) << "no new leader within 30 s";
    ASSERT_TRUE(load.WaitProgress(20, 60s)) << "the service did not continue without the leader";
    r.resumed = Clock::now();
    rounds.push_back(r);
    etcd.RestartMember(leader, 60s);
    ASSERT_TRUE(cluster.WaitAllServing(60s));
  }
  ASSERT_TRUE(load.WaitProgress(10, 60s));
  load.Stop();

  const std::vector<OpRecord> records = history.Records();
  for (size_t n = 0; n < rounds.size(); ++n) {
    const Round& r = rounds[n];
    const double election = Seconds(r.elected - r.killed);
    for (int target = 0; target < cluster.size(); ++target) {
      const double stall = Seconds(LongestGap(records, target, r.killed, r.resumed));
      std::cout << "round " << n << ": election " << election << " s, proxy " << target << " stall "
                << stall << " s\n";
      EXPECT_LT(stall, election + 1.2)
          << "round " << n << ", proxy " << target << ": clients stalled " << stall
          << " s after a leader SIGKILL; etcd elected a new leader in " << election << " s";
    }
  }
  for (const OpRecord& r : records) {
    EXPECT_FALSE(r.res.status == 504 && r.res.Header("K8shmir-Outcome") == "unknown")
        << "client " << r.client << " (proxy " << r.target << ") op " << r.seq << ": "
        << r.res.Describe();
  }
  std::cout << history.Summary() << "\n";

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// 5b. An etcd member hangs (SIGSTOP) for 10 s under load on every replica: its connections stay
// open but nothing answers on them. It is member 0, made the first endpoint of every proxy
// (--etcd-endpoint-order as-listed), so their calls to it time out and go to the other members,
// and their watches on it are found dead and restarted elsewhere; nothing is lost or applied
// twice when it comes back.
TEST(EtcdFault, MemberHungUnderLoadAndServiceContinues) {
  ReplicatedClusterOptions options = FaultOptions("etcd-hung");
  options.extra_proxy_args.insert(options.extra_proxy_args.end(),
                                  {"--etcd-endpoint-order", "as-listed"});
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  const pid_t pid = cluster.Etcd().MemberPid(0);
  ASSERT_GT(pid, 0);
  StoppedProcess hung(pid);
  ASSERT_TRUE(hung.stopped());
  // Longer than the proxies' watch liveness timeout (5 s): their watches must move.
  std::this_thread::sleep_for(10s);
  // Every proxy's calls moved off the hung member, and say so.
  for (int i = 0; i < cluster.size(); ++i) {
    const json etcd = cluster.Status(i).value("etcd", json::object());
    EXPECT_GE(etcd.value("failovers", int64_t{0}), 1) << "proxy " << i << ": " << etcd.dump();
    EXPECT_NE(etcd.value("endpoint", ""), cluster.Etcd().Endpoint(0)) << "proxy " << i;
  }
  ASSERT_TRUE(hung.Resume());
  ASSERT_TRUE(cluster.Etcd().WaitHealthy(60s));
  ASSERT_TRUE(cluster.WaitAllServing(60s));
  ASSERT_TRUE(load.WaitProgress(20, 60s)) << "the service did not resume on every replica";
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// 6. Two of the three etcd members are SIGKILLed under load: no quorum for 5 s. Clients are
// refused (503) or told the outcome is unknown (504), nothing commits, nobody diverges; when the
// members return the service resumes on every replica.
TEST(EtcdFault, QuorumLostForFiveSecondsThenServiceResumes) {
  ReplicatedCluster cluster(FaultOptions("etcd-quorum"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  const int leader = cluster.Etcd().LeaderIndex();
  ASSERT_GE(leader, 0);
  const int other = (leader + 1) % cluster.Etcd().size();
  cluster.Etcd().KillMember(leader);
  cluster.Etcd().KillMember(other);
  const auto lost = Clock::now();
  std::this_thread::sleep_until(lost + 5s);
  const auto restoring = Clock::now();
  cluster.Etcd().StartMember(leader);
  cluster.Etcd().StartMember(other);
  ASSERT_TRUE(cluster.Etcd().WaitHealthy(60s)) << "etcd did not recover";
  ASSERT_TRUE(cluster.WaitAllServing(60s));
  ASSERT_TRUE(load.WaitProgress(20, 60s)) << "the service did not resume on every replica";
  load.Stop();

  // Requests sent and answered while there was no quorum could not commit: never 2xx, and the
  // clients did see refusals.
  int refused = 0;
  for (const OpRecord& r : history.Records()) {
    if (r.sent < lost || r.answered > restoring) continue;
    EXPECT_FALSE(r.res.Ok()) << "committed without a quorum: " << r.op.Describe() << ": "
                             << r.res.Describe();
    if (r.res.status == 503 || r.res.status == 504) ++refused;
  }
  EXPECT_GT(refused, 0) << "no client was refused during the outage";

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// 7. Replica 2 is stopped, the others go on, and the log is compacted past replica 2's index.
// Compaction drops old versions of keys, never live ones, and log keys are written once: when it
// starts again it catches up by reading the live entries (its watch's start is gone) and serves,
// with exactly the others' history; the same when its app restarts empty (the whole log is read).
// Under load throughout; no state transfer anywhere.
TEST(EtcdFault, CompactedHistoryUnderAStoppedReplicaIsReadFromTheLiveEntries) {
  ReplicatedCluster cluster(FaultOptions("etcd-compact", "200", "2000", FaultRetention::kOff));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  {
    Load load(cluster, history, {0, 1, 2});
    ASSERT_TRUE(load.WaitProgress(15, 60s));
  }
  cluster.KillProxy(2);
  // A forward written just before the kill may still reach the app: wait until it is settled.
  int64_t stopped_index = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        const int64_t before = cluster.AppLastIndex(2);
        std::this_thread::sleep_for(300ms);
        stopped_index = cluster.AppLastIndex(2);
        return before == stopped_index;
      },
      10s));
  ASSERT_GT(stopped_index, 0);
  {
    Load load(cluster, history, {0, 1});
    ASSERT_TRUE(load.WaitProgress(20, 60s));
  }
  // Quiesce, so that the compaction does not also cut the history of the live replicas' watches
  // (that would be a different scenario), then compact at the current revision.
  const int64_t revision = cluster.Etcd().Revision();
  ASSERT_GT(revision, RevisionOfIndex(stopped_index));
  ASSERT_TRUE(WaitFor(
      [&] {
        return RevisionOfIndex(cluster.AppLastIndex(0)) >= revision &&
               RevisionOfIndex(cluster.AppLastIndex(1)) >= revision;
      },
      30s));
  cluster.Etcd().Compact(revision);

  Load load(cluster, history, {0, 0, 1, 1});
  auto expect_caught_up_by_range = [&](const std::string& when, uint64_t catch_ups) {
    SCOPED_TRACE(when);
    cluster.StartProxy(2);
    json status;
    ASSERT_TRUE(WaitFor(
        [&] {
          status = cluster.Status(2);
          return status.is_object() && status.value("state", "") == "serving";
        },
        30s))
        << "proxy 2 status: " << status.dump();
    EXPECT_EQ(status.value("range_catch_ups", uint64_t{0}), catch_ups) << status.dump();
    EXPECT_EQ(Http(cluster.AdminPort(2), "GET", "/readyz", "", {}, 5s).status, 200u);
    // It serves: its own requests commit and apply everywhere.
    const HttpResult served = SendRecorded(cluster, history, 2);
    EXPECT_EQ(served.status, 200u) << served.Describe();
    EXPECT_TRUE(load.WaitProgress(10, 30s));
  };

  ASSERT_NO_FATAL_FAILURE(expect_caught_up_by_range("proxy restarted, app kept its state", 1));
  EXPECT_GT(cluster.AppLastIndex(2), stopped_index);

  cluster.KillProxy(2);
  cluster.KillApp(2);
  cluster.StartApp(2);
  ASSERT_EQ(cluster.AppLastIndex(2), 0);
  ASSERT_NO_FATAL_FAILURE(expect_caught_up_by_range("app and proxy restarted, app empty", 1));
  load.Stop();

  // Every replica, replica 2 included, holds exactly the same history.
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

}  // namespace
}  // namespace k8shmir::testing
