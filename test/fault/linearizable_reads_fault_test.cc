// Reads that skip the log, checked for linearizability: concurrent clients on the three proxies
// mix logged writes (SET of unique values) with reads of the register on a read route
// (GET /integer), every operation recorded with its invoke and return times, and the history is
// checked by the WGL checker (support/linearizability.h), with no fault and under each fault of
// the issue: a proxy SIGKILLed, the etcd leader SIGKILLed, an app SIGSTOPped, one proxy cut off
// from etcd. The logged writes pass the fault suite's CheckHistory as well.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/fault_load.h"
#include "support/linearizability.h"
#include "support/register_load.h"
#include "support/replicated_cluster.h"
#include "support/tcp_relay.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kInitial = 1;

ReplicatedClusterOptions ReadOptions(const std::string& group) {
  ReplicatedClusterOptions o = FaultOptions(group);
  o.extra_proxy_args.insert(o.extra_proxy_args.end(),
                            {"--read-routes", "GET /integer, GET /journal/digest local"});
  return o;
}

// The register starts at kInitial on every replica (a logged SET, part of the history).
void SetInitial(ReplicatedCluster& cluster, History& history) {
  OpRecord r;
  r.client = history.NewClient();
  r.op = CounterOp::Set(kInitial);
  HttpConnection conn(cluster.ProxyPort(0));
  r.sent = std::chrono::steady_clock::now();
  r.res = SendOp(conn, r.op, 20s);
  r.answered = std::chrono::steady_clock::now();
  ASSERT_TRUE(r.res.Ok()) << r.res.Describe();
  const int64_t index = ResponseLogIndex(r.res);
  history.Add(std::move(r));
  ASSERT_TRUE(cluster.WaitAppsApplied(index));
}

// The whole history is linearizable, reads were served through every proxy without the log, and
// the logged writes pass CheckHistory.
void CheckAll(ReplicatedCluster& cluster, History& history, RegisterLoad& load) {
  load.Stop();
  const std::vector<RegisterOp> ops = load.Ops();
  const LinearizabilityResult result = CheckRegisterLinearizable(ops, kInitial);
  EXPECT_TRUE(result.linearizable) << result.explanation << " (" << ops.size() << " operations)";
  std::cout << "linearizability: " << ops.size() << " operations, " << load.ServedReads()
            << " reads served, " << load.RefusedReads() << " refused, " << result.states_explored
            << " search steps\n";
  EXPECT_EQ(load.UnroutedReads(), 0) << "reads answered without K8shmir-Read: linearizable";
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_GT(load.ServedReads(i), 0) << "no read served through proxy " << i;
  }
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

TEST(LinearizableReadsFault, NoFault) {
  ReplicatedCluster cluster(ReadOptions("lin-none"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  ASSERT_NO_FATAL_FAILURE(SetInitial(cluster, history));
  RegisterLoad load(cluster, history, {0, 1, 2}, {});
  ASSERT_TRUE(load.WaitProgress(250, 120s));
  EXPECT_EQ(load.RefusedReads(), 0);
  CheckAll(cluster, history, load);
  // The reads made no log entries: the log holds the writes (CheckHistory counted them), and
  // each proxy counted its reads as served by barriers.
  for (int i = 0; i < cluster.size(); ++i) {
    const json s = cluster.Status(i);
    ASSERT_TRUE(s.is_object());
    EXPECT_EQ(s["reads"]["linearizable"]["served"].get<int64_t>(), load.ServedReads(i)) << i;
    EXPECT_GE(s["reads"]["barrier_reads"].get<int64_t>(), load.ServedReads(i)) << i;
    EXPECT_GT(s["reads"]["barriers"].get<int64_t>(), 0) << i;
  }
}

TEST(LinearizableReadsFault, ProxyKilledAndRestarted) {
  ReplicatedCluster cluster(ReadOptions("lin-proxy"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  ASSERT_NO_FATAL_FAILURE(SetInitial(cluster, history));
  RegisterLoad load(cluster, history, {0, 1, 2}, {});
  ASSERT_TRUE(load.WaitProgress(30, 60s));
  cluster.KillProxy(1);
  std::this_thread::sleep_for(1s);
  cluster.StartProxy(1);
  ASSERT_TRUE(cluster.WaitServing(1, 60s));
  ASSERT_TRUE(load.WaitProgress(30, 60s));
  CheckAll(cluster, history, load);
}

TEST(LinearizableReadsFault, EtcdLeaderKilled) {
  ReplicatedCluster cluster(ReadOptions("lin-leader"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  ASSERT_NO_FATAL_FAILURE(SetInitial(cluster, history));
  RegisterLoad load(cluster, history, {0, 1, 2}, {});
  ASSERT_TRUE(load.WaitProgress(30, 60s));
  const int leader = cluster.Etcd().LeaderIndex();
  ASSERT_GE(leader, 0);
  cluster.Etcd().KillMember(leader);
  ASSERT_GE(cluster.Etcd().LeaderIndex(30s), 0) << "no new leader";
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  cluster.Etcd().RestartMember(leader, 60s);
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  CheckAll(cluster, history, load);
}

TEST(LinearizableReadsFault, AppStopped) {
  ReplicatedCluster cluster(ReadOptions("lin-app"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  ASSERT_NO_FATAL_FAILURE(SetInitial(cluster, history));
  RegisterLoad load(cluster, history, {0, 1, 2}, {});
  ASSERT_TRUE(load.WaitProgress(30, 60s));
  {
    StoppedProcess stopped(cluster.AppPid(2));
    ASSERT_TRUE(stopped.stopped());
    std::this_thread::sleep_for(4s);  // past the app timeout (2 s): replica 2 is not ready
    ASSERT_TRUE(stopped.Resume());
  }
  ASSERT_TRUE(cluster.WaitServing(2, 60s));
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  CheckAll(cluster, history, load);
}

TEST(LinearizableReadsFault, ProxyCutOffFromEtcd) {
  ReplicatedCluster cluster(ReadOptions("lin-cut"));
  // Proxy 2 reaches every etcd member through a relay the test can cut.
  std::vector<std::unique_ptr<TcpRelay>> relays;
  std::vector<std::string> endpoints;
  for (int m = 0; m < 3; ++m) {
    relays.push_back(std::make_unique<TcpRelay>(cluster.Etcd().ClientPort(m)));
    endpoints.push_back("127.0.0.1:" + std::to_string(relays.back()->port()));
  }
  cluster.SetProxyEtcdEndpoints(2, endpoints);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  ASSERT_NO_FATAL_FAILURE(SetInitial(cluster, history));
  RegisterLoad load(cluster, history, {0, 1, 2}, {});
  ASSERT_TRUE(load.WaitProgress(30, 60s));
  const int64_t refused_before = load.RefusedReads(2);
  for (auto& relay : relays) relay->Cut();
  // Writes go on through proxies 0 and 1 while proxy 2 hears nothing from etcd: its reads must
  // be refused within the request deadline, never answered from its stale state.
  std::this_thread::sleep_for(8s);
  EXPECT_GT(load.RefusedReads(2), refused_before) << "no read through the cut proxy was refused";
  for (auto& relay : relays) relay->Restore();
  ASSERT_TRUE(cluster.WaitServing(2, 60s));
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  CheckAll(cluster, history, load);
}

}  // namespace
}  // namespace k8shmir::testing
