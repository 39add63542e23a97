// Fault suite, the proxy side (issue 3, scenarios 3 and 4): a proxy SIGKILLed and restarted while
// clients load the other replicas, and under load on every replica; an app and its proxy killed
// together. A SIGKILLed proxy loses nothing acknowledged: its clients' requests were either
// answered (and then applied exactly once everywhere) or left without an answer (at most once).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "support/fault_load.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

// 3a. Proxy 2 SIGKILLed while clients load replicas 0 and 1, restarted 1 s later: it catches its
// app up from the app's own index and serves again; the others are not disturbed.
TEST(ProxyFault, ProxyKilledAndRestartedWhileOthersServe) {
  ReplicatedCluster cluster(FaultOptions("proxy-others"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 0, 1, 1});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  cluster.KillProxy(2);
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(load.WaitProgress(5, 30s)) << "the other replicas stopped serving";
  cluster.StartProxy(2);
  ASSERT_TRUE(cluster.WaitServing(2, 60s)) << cluster.Status(2).dump();
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  load.Stop();

  ExpectAllOk(history, {0, 1});
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// 3b. Proxy 1 SIGKILLed under load on every replica (its clients lose their connections mid-
// request), restarted 0.5 s later, then twice more at once.
TEST(ProxyFault, ProxyKilledAndRestartedUnderLoadOnAllReplicas) {
  ReplicatedCluster cluster(FaultOptions("proxy-all"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    cluster.KillProxy(1);
    std::this_thread::sleep_for(round == 0 ? 500ms : 50ms);
    cluster.StartProxy(1);
    if (round == 1) {
      // Again while it catches up (if it has not finished yet).
      std::this_thread::sleep_for(100ms);
      cluster.KillProxy(1);
      cluster.StartProxy(1);
    }
    ASSERT_TRUE(cluster.WaitServing(1, 60s)) << cluster.Status(1).dump();
    ASSERT_TRUE(load.WaitProgress(15, 60s));
  }
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// 4. App and proxy of replica 1 SIGKILLed together under load on every replica, both restarted
// (after 0.5 s, then at once): the new proxy finds an empty app and replays the whole log into it.
TEST(ProxyFault, AppAndProxyKilledTogetherUnderLoadOnAllReplicas) {
  ReplicatedClusterOptions options = FaultOptions("app-and-proxy");
  // A small entry queue: the replay pauses and resumes the watch many times.
  options.extra_proxy_args.insert(options.extra_proxy_args.end(), {"--max-queued-entries", "16"});
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    cluster.KillProxy(1);
    cluster.KillApp(1);
    std::this_thread::sleep_for(round == 0 ? 500ms : 0ms);
    cluster.StartApp(1);
    cluster.StartProxy(1);
    ASSERT_TRUE(cluster.WaitServing(1, 60s)) << cluster.Status(1).dump();
    ASSERT_TRUE(load.WaitProgress(20, 60s));
  }
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
  const json status = cluster.Status(1);
  EXPECT_GT(status.value("entries_replayed", int64_t{0}), 0) << status.dump();
}

// A hung proxy (SIGSTOP for 6 s) under load on every replica: its clients wait, its watch and
// its calls to etcd stall; when it resumes, every timer fires at once. Whatever it then answers
// must hold against the history, and it serves again.
TEST(ProxyFault, ProxyHungThenResumedUnderLoadOnAllReplicas) {
  ReplicatedCluster cluster(FaultOptions("proxy-hung"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  const pid_t pid = cluster.ProxyPid(1);
  ASSERT_GT(pid, 0);
  StoppedProcess hung(pid);
  ASSERT_TRUE(hung.stopped());
  EXPECT_TRUE(load.WaitProgress(10, 30s, {0, 2})) << "the other replicas stopped serving";
  std::this_thread::sleep_for(6s);
  ASSERT_TRUE(hung.Resume());
  ASSERT_TRUE(cluster.WaitServing(1, 60s)) << cluster.Status(1).dump();
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// SIGTERM under load: the proxy stops accepting, lets its in-flight requests finish, exits 0, and
// nothing it acknowledged is lost; started again, it serves.
TEST(ProxyFault, ProxyTerminatedUnderLoadDrainsAndExitsZero) {
  ReplicatedClusterOptions o = FaultOptions("proxy-term");
  o.extra_proxy_args.insert(o.extra_proxy_args.end(), {"--shutdown-timeout-ms", "5000"});
  ReplicatedCluster cluster(o);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  // Generous bound: the drain itself is bounded by --shutdown-timeout-ms.
  const auto terminated = std::chrono::steady_clock::now();
  EXPECT_TRUE(cluster.TerminateProxy(1, 30s)) << "the proxy did not exit after SIGTERM";
  EXPECT_EQ(cluster.ProxyExit(1), "exited 0");
  EXPECT_TRUE(load.WaitProgress(5, 30s, {0, 2}));
  cluster.StartProxy(1);
  ASSERT_TRUE(cluster.WaitServing(1, 60s)) << cluster.Status(1).dump();
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  load.Stop();

  // Requests the proxy was serving when it got SIGTERM were answered: none lost its connection.
  for (const OpRecord& r : history.Records()) {
    if (r.target != 1 || r.sent >= terminated || r.answered < terminated) continue;
    EXPECT_NE(r.res.status, 0u) << "in flight at SIGTERM, then dropped: " << r.op.Describe() << ": "
                                << r.res.Describe();
  }
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

// SIGTERM first turns the proxy not ready while it keeps serving for --drain-delay-ms (the
// Service's endpoints catch up meanwhile), then it stops accepting, drains and exits 0; a second
// signal cuts the delay short.
TEST(ProxyFault, SigtermTurnsNotReadyAndKeepsServingForTheDrainDelay) {
  ReplicatedClusterOptions o = FaultOptions("proxy-drain");
  o.extra_proxy_args.insert(o.extra_proxy_args.end(), {"--drain-delay-ms", "3000"});
  ReplicatedCluster cluster(o);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  ASSERT_TRUE(SendRecorded(cluster, history, 0).Ok());

  const auto terminated = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(cluster.ProxyPid(0), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return !Ready(cluster, 0); }, 2s, 10ms)) << "still ready after SIGTERM";
  const HttpResult readyz = Http(cluster.AdminPort(0), "GET", "/readyz", "", {}, 2s);
  EXPECT_EQ(readyz.status, 503u);
  EXPECT_NE(readyz.body.find("draining"), std::string::npos) << readyz.body;
  // Not ready, yet serving: a request sent now is replicated and answered.
  const HttpResult during = SendRecorded(cluster, history, 0);
  EXPECT_TRUE(during.Ok()) << during.Describe();
  EXPECT_LT(std::chrono::steady_clock::now() - terminated, 3s) << "the check outlasted the delay";
  // Then it stops by itself, after the delay.
  ASSERT_TRUE(WaitFor([&] { return !cluster.ProxyRunning(0); }, 20s, 20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - terminated, 3s);
  EXPECT_EQ(cluster.ProxyExit(0), "exited 0");

  // A second signal cuts the delay short.
  cluster.StartProxy(0);
  ASSERT_TRUE(cluster.WaitServing(0, 60s));
  const auto again = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(cluster.ProxyPid(0), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return !Ready(cluster, 0); }, 2s, 10ms));
  ASSERT_EQ(::kill(cluster.ProxyPid(0), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return !cluster.ProxyRunning(0); }, 20s, 20ms));
  EXPECT_LT(std::chrono::steady_clock::now() - again, 3s);
  EXPECT_EQ(cluster.ProxyExit(0), "exited 0");
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history, CheckOptions{{1, 2}}));
}

}  // namespace
}  // namespace k8shmir::testing
