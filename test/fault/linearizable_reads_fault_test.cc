// Reads that skip the log, checked for linearizability: concurrent clients on the three proxies
// mix logged writes (SET of unique values) with reads of the register on a read route
// (GET /integer), every operation recorded with its invoke and return times, and the history is
// checked by the WGL checker (support/linearizability.h), with no fault and under each fault of
// the issue: a proxy SIGKILLed, the etcd leader SIGKILLed, an app SIGSTOPped, one proxy cut off
// from etcd. The logged writes pass the fault suite's CheckHistory as well.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
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

// A group with read routes, the register at kInitial, and the load running on every proxy.
class LinearizableReadsFault : public ::testing::Test {
 protected:
  // `before_start` may change the cluster before its processes start.
  void Start(const std::string& group,
             const std::function<void(ReplicatedCluster&)>& before_start = {}) {
    cluster_ = std::make_unique<ReplicatedCluster>(ReadOptions(group));
    if (before_start) before_start(*cluster_);
    ASSERT_NO_FATAL_FAILURE(StartAndWait(*cluster_));
    ASSERT_NO_FATAL_FAILURE(SetInitial(*cluster_, history_));
    load_ = std::make_unique<RegisterLoad>(*cluster_, history_, std::vector<int>{0, 1, 2},
                                           RegisterLoad::Options{});
    ASSERT_TRUE(load_->WaitProgress(30, 60s));
  }
  void Check() { CheckAll(*cluster_, history_, *load_); }

  std::unique_ptr<ReplicatedCluster> cluster_;
  History history_;
  std::unique_ptr<RegisterLoad> load_;  // last: stopped first
};

TEST_F(LinearizableReadsFault, NoFault) {
  ASSERT_NO_FATAL_FAILURE(Start("lin-none"));
  ASSERT_TRUE(load_->WaitProgress(250, 120s));
  EXPECT_EQ(load_->RefusedReads(), 0);
  Check();
  // The reads made no log entries (CheckHistory counted the log's entries against the journal),
  // and each proxy counted its reads as served after round trips: barriers, or appends whose
  // transaction read the committed head.
  for (int i = 0; i < cluster_->size(); ++i) {
    const json s = cluster_->Status(i);
    ASSERT_TRUE(s.is_object());
    EXPECT_EQ(s["reads"]["linearizable"]["served"].get<int64_t>(), load_->ServedReads(i)) << i;
    EXPECT_GE(
        s["reads"]["barrier_reads"].get<int64_t>() + s["reads"]["append_reads"].get<int64_t>(),
        load_->ServedReads(i))
        << i;
    EXPECT_GT(s["reads"]["barriers"].get<int64_t>(), 0) << i;
  }
}

TEST_F(LinearizableReadsFault, ProxyKilledAndRestarted) {
  ASSERT_NO_FATAL_FAILURE(Start("lin-proxy"));
  cluster_->KillProxy(1);
  std::this_thread::sleep_for(1s);
  cluster_->StartProxy(1);
  ASSERT_TRUE(cluster_->WaitServing(1, 60s));
  ASSERT_TRUE(load_->WaitProgress(30, 60s));
  Check();
}

TEST_F(LinearizableReadsFault, EtcdLeaderKilled) {
  ASSERT_NO_FATAL_FAILURE(Start("lin-leader"));
  const int leader = cluster_->Etcd().LeaderIndex();
  ASSERT_GE(leader, 0);
  cluster_->Etcd().KillMember(leader);
  ASSERT_GE(cluster_->Etcd().LeaderIndex(30s), 0) << "no new leader";
  ASSERT_TRUE(load_->WaitProgress(20, 60s));
  cluster_->Etcd().RestartMember(leader, 60s);
  ASSERT_TRUE(load_->WaitProgress(20, 60s));
  Check();
}

TEST_F(LinearizableReadsFault, AppStopped) {
  ASSERT_NO_FATAL_FAILURE(Start("lin-app"));
  {
    StoppedProcess stopped(cluster_->AppPid(2));
    ASSERT_TRUE(stopped.stopped());
    std::this_thread::sleep_for(4s);  // past the app timeout (2 s): replica 2 is not ready
    ASSERT_TRUE(stopped.Resume());
  }
  ASSERT_TRUE(cluster_->WaitServing(2, 60s));
  ASSERT_TRUE(load_->WaitProgress(20, 60s));
  Check();
}

TEST_F(LinearizableReadsFault, ProxyCutOffFromEtcd) {
  // Proxy 2 reaches every etcd member through a relay the test can cut.
  std::vector<std::unique_ptr<TcpRelay>> relays;
  ASSERT_NO_FATAL_FAILURE(Start("lin-cut", [&](ReplicatedCluster& cluster) {
    std::vector<std::string> endpoints;
    for (int m = 0; m < 3; ++m) {
      relays.push_back(std::make_unique<TcpRelay>(cluster.Etcd().ClientPort(m)));
      endpoints.push_back("127.0.0.1:" + std::to_string(relays.back()->port()));
    }
    cluster.SetProxyEtcdEndpoints(2, endpoints);
  }));
  const int64_t refused_before = load_->RefusedReads(2);
  for (auto& relay : relays) relay->Cut();
  // Writes go on through proxies 0 and 1 while proxy 2 hears nothing from etcd: its reads must
  // be refused within the request deadline (5 s), never answered from its stale state.
  std::this_thread::sleep_for(8s);
  EXPECT_GT(load_->RefusedReads(2), refused_before) << "no read through the cut proxy was refused";
  EXPECT_LE(load_->SlowestRefusalMs(2), 6000) << "a refusal came after the request deadline";
  for (auto& relay : relays) relay->Restore();
  ASSERT_TRUE(cluster_->WaitServing(2, 60s));
  ASSERT_TRUE(load_->WaitProgress(20, 60s));
  Check();
  load_.reset();  // before the relays it talks through go
}

}  // namespace
}  // namespace k8shmir::testing
