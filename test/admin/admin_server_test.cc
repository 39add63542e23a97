// The admin server in process, on a replica over the in-memory log and fake app: /healthz follows
// the replica loop's liveness; and on a fake replica: every path, method and answer. (A failing
// accept: test/common/accept_loop_test.cc.)
#include "admin/admin_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "admin/admin_fixture.h"
#include "fakes/fake_app.h"
#include "fakes/fake_log.h"
#include "fakes/fake_replica.h"
#include "replica/replica.h"
#include "support/http_client.h"
#include "support/util.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;
using testing::FakeApp;
using testing::FakeLog;
using testing::Http;
using testing::WaitFor;

class AdminServerTest : public ::testing::Test {
 protected:
  AdminServerTest()
      : replica_work_(boost::asio::make_work_guard(replica_ioc_)),
        admin_work_(boost::asio::make_work_guard(admin_ioc_)),
        log_(replica_ioc_.get_executor()),
        app_(replica_ioc_.get_executor()) {}

  void Start(std::chrono::milliseconds liveness) {
    ReplicaOptions options;
    options.heartbeat_interval = 20ms;
    replica_ = std::make_shared<Replica>(replica_ioc_.get_executor(), log_, app_, options);
    admin_ = std::make_unique<AdminServer>(admin_ioc_, "127.0.0.1", 0, replica_, liveness);
    ASSERT_TRUE(admin_->Listen());
    replica_->Start();
    admin_->Start();
    // The replica (and the fakes, which are single-threaded) on one thread, the admin server on
    // another: the replica's may be held while the admin answers.
    threads_.emplace_back([this] { replica_ioc_.run(); });
    threads_.emplace_back([this] { admin_ioc_.run(); });
  }

  ~AdminServerTest() override {
    if (admin_) admin_->Stop();
    if (replica_) replica_->Stop();
    std::this_thread::sleep_for(50ms);
    replica_work_.reset();
    admin_work_.reset();
    replica_ioc_.stop();
    admin_ioc_.stop();
    for (auto& t : threads_) t.join();
  }

  boost::asio::io_context replica_ioc_;
  boost::asio::io_context admin_ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> replica_work_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> admin_work_;
  FakeLog log_;
  FakeApp app_;
  std::shared_ptr<Replica> replica_;
  std::unique_ptr<AdminServer> admin_;
  std::vector<std::thread> threads_;
};

// A wedged replica loop fails liveness (so Kubernetes restarts the proxy), and recovers it.
TEST_F(AdminServerTest, HealthzFailsWhileTheReplicaLoopIsWedged) {
  Start(/*liveness=*/150ms);
  ASSERT_TRUE(WaitFor([&] { return Http(admin_->port(), "GET", "/healthz").status == 200; }, 5s));
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  // Runs on the replica's strand and holds it.
  replica_->GetStatus([released](ReplicaStatus) { released.wait(); });
  testing::HttpResult wedged;
  ASSERT_TRUE(WaitFor(
      [&] {
        wedged = Http(admin_->port(), "GET", "/healthz");
        return wedged.status == 503;
      },
      5s));
  EXPECT_NE(wedged.body.find("has not run for"), std::string::npos) << wedged.body;
  release.set_value();
  EXPECT_TRUE(WaitFor([&] { return Http(admin_->port(), "GET", "/healthz").status == 200; }, 5s));
}

using testing::AdminServerFakeReplicaTest;

TEST_F(AdminServerFakeReplicaTest, HealthzFollowsTheLastTick) {
  replica_->since_last_tick = 5s;
  Start();
  auto r = Http(admin_->port(), "GET", "/healthz");
  EXPECT_EQ(r.status, 503u) << r.Describe();
  EXPECT_NE(r.body.find("has not run for 5000 ms (liveness timeout 1000 ms)"), std::string::npos)
      << r.body;
}

TEST_F(AdminServerFakeReplicaTest, ReadyzFollowsTheState) {
  replica_->status.state = ReplicaState::kServing;
  replica_->status.state_reason = "caught up";
  Start();
  auto ready = Http(admin_->port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 200u) << ready.Describe();
  EXPECT_EQ(ready.body, "serving: caught up\n");
  EXPECT_EQ(Http(admin_->port(), "GET", "/healthz").status, 200u);
}

TEST_F(AdminServerFakeReplicaTest, NotReadyIs503WithTheReason) {
  replica_->status.state = ReplicaState::kCatchingUp;
  replica_->status.state_reason = "behind";
  Start();
  auto r = Http(admin_->port(), "GET", "/readyz?verbose=1");
  EXPECT_EQ(r.status, 503u) << r.Describe();
  EXPECT_EQ(r.body, std::string(ReplicaStateName(ReplicaState::kCatchingUp)) + ": behind\n");
}

TEST_F(AdminServerFakeReplicaTest, StatusIsJsonAndMetricsArePrometheusText) {
  replica_->status.applied_index = 512;
  Start();
  auto status = Http(admin_->port(), "GET", "/status");
  ASSERT_EQ(status.status, 200u) << status.Describe();
  EXPECT_EQ(status.Header("Content-Type"), "application/json");
  EXPECT_EQ(status.Json()["applied_index"], 512);
  EXPECT_EQ(status.Json()["replica_id"], "r1");
  auto metrics = Http(admin_->port(), "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200u) << metrics.Describe();
  EXPECT_EQ(metrics.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(metrics.body.find("k8shmir_applied_index{group=\"g\",replica=\"r1\"} 512\n"),
            std::string::npos);
  // The process's own series follow the replica's.
  EXPECT_NE(metrics.body.find("\nprocess_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(metrics.body.find("\nk8shmir_build_info{version=\""), std::string::npos);
}

// The app container's liveness probe: fails only once the app answered nothing for the hang
// timeout, whatever the replica's readiness.
TEST_F(AdminServerFakeReplicaTest, AppHealthzFailsOnlyForAHungApp) {
  replica_->status.state = ReplicaState::kAppNotAnswering;
  replica_->status.state_reason = "waiting for index 7";
  replica_->status.app_hang_timeout_ms = 30000;
  replica_->status.app_unanswered_seconds = 29.5;
  Start();
  auto alive = Http(admin_->port(), "GET", "/app-healthz");
  EXPECT_EQ(alive.status, 200u) << alive.Describe();
  EXPECT_EQ(alive.body, "ok\n");
  replica_->UpdateStatus([](ReplicaStatus& s) { s.app_unanswered_seconds = 31.25; });
  auto hung = Http(admin_->port(), "GET", "/app-healthz");
  EXPECT_EQ(hung.status, 503u) << hung.Describe();
  EXPECT_EQ(hung.body,
            "the app has answered nothing for 31250 ms (app hang timeout 30000 ms); replica "
            "app-not-answering: waiting for index 7\n");
  replica_->UpdateStatus([](ReplicaStatus& s) { s.app_hang_timeout_ms = 0; });  // 0: never
  EXPECT_EQ(Http(admin_->port(), "GET", "/app-healthz").status, 200u);
}

// A probe's keep-alive connection, idle after its answer: Stop closes it, and then nothing but
// its owners holds the replica (main destroys the replica before what it borrowed). Before Stop
// closed idle admin sessions, the connection stayed open for its 30 s read timeout and the
// suspended session kept the replica.
TEST_F(AdminServerFakeReplicaTest, StopClosesIdleKeepAliveConnections) {
  replica_->status.state = ReplicaState::kServing;
  replica_->status.state_reason = "caught up";
  Start();
  testing::RawClient client(admin_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n"));
  ASSERT_NE(client.Read("caught up", 5s).find("200 OK"), std::string::npos);
  admin_->Stop();
  EXPECT_TRUE(client.ClosedWithin(2s));
  work_.reset();
  thread_.join();  // returns once nothing is left to run: no session is suspended
  std::weak_ptr<testing::FakeReplica> watch = replica_;
  admin_.reset();
  replica_.reset();
  EXPECT_TRUE(watch.expired()) << "a suspended admin session still holds the replica";
}

TEST_F(AdminServerFakeReplicaTest, OnlyGetAndHeadOnKnownPaths) {
  Start();
  EXPECT_EQ(Http(admin_->port(), "POST", "/status", "x").status, 405u);
  EXPECT_EQ(Http(admin_->port(), "PUT", "/healthz", "x").status, 405u);
  auto unknown = Http(admin_->port(), "GET", "/nope");
  EXPECT_EQ(unknown.status, 404u);
  EXPECT_NE(unknown.body.find("/healthz /readyz /app-healthz /status /metrics"), std::string::npos);
  auto head = Http(admin_->port(), "HEAD", "/status");
  EXPECT_EQ(head.status, 200u) << head.Describe();
  EXPECT_TRUE(head.body.empty());
}

}  // namespace
}  // namespace k8shmir
