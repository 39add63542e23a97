// Fault suite, the app side (issue 3, scenarios 1, 2 and 8): an app SIGKILLed and restarted late
// or faster than a heartbeat, and an app that stops answering (SIGSTOP) and comes back, all under a
// load of unique non-commutative operations. Every scenario ends with CheckHistory: identical
// journals, each equal to replaying it, every acknowledged request exactly once, nothing refused
// applied, nothing applied twice, no ordering violation seen by any app.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/fault_load.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

// 1. The app of replica 2 is SIGKILLed and restarted (empty) 3 s later, while clients load the
// other replicas. Its proxy leaves serving, refuses requests quickly meanwhile, and replays the
// whole log into the new app (through a small entry queue, so the watch is paused and resumed
// many times); the other replicas are not disturbed.
TEST(AppFault, AppKilledAndRestartedAfterThreeSecondsWhileOthersServe) {
  ReplicatedClusterOptions options = FaultOptions("app-late");
  // A small entry queue: the replay pauses and resumes the watch many times.
  options.extra_proxy_args.insert(options.extra_proxy_args.end(), {"--max-queued-entries", "32"});
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 0, 1, 1});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  cluster.KillApp(2);
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return !Ready(cluster, 2); }, 20s))
      << "proxy 2 still ready without its app: " << cluster.Status(2).dump();
  const HttpResult refused = SendRecorded(cluster, history, 2);
  EXPECT_EQ(refused.status, 503u) << refused.Describe();
  EXPECT_EQ(refused.Header("K8shmir-Outcome"), "not-committed") << refused.Describe();
  std::this_thread::sleep_until(killed + 3s);
  EXPECT_TRUE(load.WaitProgress(1, 30s)) << "the other replicas stopped serving";

  cluster.StartApp(2);
  ASSERT_TRUE(cluster.WaitServing(2, 60s)) << cluster.Status(2).dump();
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  load.Stop();

  ExpectAllOk(history, {0, 1});
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
  EXPECT_GE(StatusCounter(cluster, 2, "recoveries"), 1);
  EXPECT_GT(StatusCounter(cluster, 2, "entries_replayed"), 0) << "the new app was not replayed";
}

// 2. The app of replica 1 is SIGKILLed and started again at once, five times, faster than one
// heartbeat (1 s here), under load on every replica. Only the validation of new connections can
// notice: the new app must never receive an entry before it was replayed up to it.
void RestartAppFasterThanAHeartbeatUnderLoad(ReplicatedClusterOptions options,
                                             bool apps_declare_pipelining) {
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Kills land at different points of the forwarding cycle.
    std::this_thread::sleep_for(std::chrono::milliseconds(37 * round));
    const auto start = std::chrono::steady_clock::now();
    cluster.KillApp(1);
    cluster.StartApp(1);  // returns once the new app answers
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    std::cout << "[fault] app 1 killed and answering again after " << took.count() << " ms"
              << std::endl;
    if (round % 2 == 1) {
      // Again while the proxy replays the log into the new app (if it has not finished yet).
      cluster.KillApp(1);
      cluster.StartApp(1);
    }
    ASSERT_TRUE(cluster.WaitServing(1, 60s)) << cluster.Status(1).dump();
    ASSERT_TRUE(load.WaitProgress(10, 60s));
  }
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
  EXPECT_GE(StatusCounter(cluster, 1, "recoveries"), kRounds) << cluster.Status(1).dump();
  EXPECT_GT(StatusCounter(cluster, 1, "entries_replayed"), 0);
  // The mode each proxy used is the one its app declared.
  for (int i = 0; i < cluster.size(); ++i) {
    const json status = cluster.Status(i);
    EXPECT_EQ(status.value("app_pipelining", !apps_declare_pipelining), apps_declare_pipelining)
        << status.dump();
    EXPECT_EQ(status.value("app_pipeline_depth", 0), apps_declare_pipelining ? 16 : 1)
        << status.dump();
  }
}

TEST(AppFault, AppRestartedFasterThanAHeartbeatUnderLoadOnAllReplicas) {
  RestartAppFasterThanAHeartbeatUnderLoad(FaultOptions("app-fast", /*heartbeat_ms=*/"1000"),
                                          /*apps_declare_pipelining=*/true);
}

// 2b. The same with apps that do not declare "pipelining": true, so every proxy forwards one
// entry at a time (2 above pipelines: the counter app declares it, and a kill lands with several
// entries written to the old app and unanswered). None may be lost, repeated or reordered.
TEST(AppFault, AppRestartedFasterThanAHeartbeatUnderLoadOneEntryAtATime) {
  ReplicatedClusterOptions options = FaultOptions("app-fast-seq", /*heartbeat_ms=*/"1000");
  options.extra_app_args.push_back("--no-pipelining");
  RestartAppFasterThanAHeartbeatUnderLoad(options, /*apps_declare_pipelining=*/false);
}

// 8. The app of replica 1 stops answering (SIGSTOP for 5 s, five times its app timeout: the
// kernel still accepts its connections and takes what is written to them) under load on every
// replica. The apps apply an entry again if it comes again (--no-stale-check), as an app without
// the contract's stale-index check would. Past the app timeout the replica is not ready, so its
// clients go elsewhere; the proxy does not give up on the entries it wrote (the app would still
// read and apply them, and then again when resent), so when the app comes back (SIGCONT) it
// answers them, the replica serves again, and no app applied any index twice. Past the app hang
// timeout (3 s) its proxy's /app-healthz, the app container's liveness probe in the chart, fails
// (only that proxy's), and passes again once the app answers.
TEST(AppFault, StoppedAppMakesItsReplicaNotReadyAndNothingIsAppliedTwice) {
  ReplicatedClusterOptions options = FaultOptions("app-hung", "200", /*app_timeout_ms=*/"1000");
  options.extra_proxy_args.insert(options.extra_proxy_args.end(),
                                  {"--app-hang-timeout-ms", "3000"});
  options.extra_app_args.push_back("--no-stale-check");
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  Load load(cluster, history, {0, 1, 2, 0, 1, 2});
  ASSERT_TRUE(load.WaitProgress(20, 60s));

  const pid_t app = cluster.AppPid(1);
  ASSERT_GT(app, 0);
  StoppedProcess hung(app);
  ASSERT_TRUE(hung.stopped());
  const auto stopped_at = std::chrono::steady_clock::now();
  json status;
  const bool left_serving = WaitFor(
      [&] {
        status = cluster.Status(1);
        return status.is_object() && status.value("state", "") != "serving";
      },
      30s);
  ASSERT_TRUE(left_serving) << "proxy 1 still serving with a stopped app: " << status.dump();
  // Entries in flight: app-not-answering; a heartbeat caught by the stop: recovering (nothing
  // was in flight then).
  EXPECT_TRUE(status.value("state", "") == "app-not-answering" ||
              status.value("state", "") == "recovering")
      << status.dump();
  EXPECT_FALSE(Ready(cluster, 1));
  // The other replicas keep serving while one app is stopped.
  EXPECT_TRUE(load.WaitProgress(10, 30s, {0, 2}));
  auto app_healthz = [&](int i) {
    return Http(cluster.AdminPort(i), "GET", "/app-healthz", "", {}, 2s);
  };
  HttpResult hung_healthz;
  EXPECT_TRUE(WaitFor(
      [&] {
        hung_healthz = app_healthz(1);
        return hung_healthz.status == 503;
      },
      30s))
      << hung_healthz.Describe();
  EXPECT_GE(std::chrono::steady_clock::now() - stopped_at, 3s);
  EXPECT_NE(hung_healthz.body.find("app hang timeout 3000 ms"), std::string::npos)
      << hung_healthz.body;
  EXPECT_EQ(app_healthz(0).status, 200u);
  EXPECT_EQ(app_healthz(2).status, 200u);
  std::this_thread::sleep_until(stopped_at + 5s);
  ASSERT_TRUE(hung.Resume());

  ASSERT_TRUE(cluster.WaitServing(1, 60s)) << cluster.Status(1).dump();
  EXPECT_EQ(app_healthz(1).status, 200u) << app_healthz(1).Describe();
  ASSERT_TRUE(load.WaitProgress(20, 60s));
  load.Stop();

  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_EQ(cluster.Digest(i).value("duplicates", int64_t{-1}), 0)
        << "app " << i << " applied an index twice: " << cluster.Digest(i).dump();
  }
  EXPECT_GE(StatusCounter(cluster, 1, "app_stalls") + StatusCounter(cluster, 1, "recoveries"), 1)
      << cluster.Status(1).dump();
}

}  // namespace
}  // namespace k8shmir::testing
