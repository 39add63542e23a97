// The client-facing server in process, on a fake replica: what reaches the replica, the answers
// to requests the checks refuse, keep-alive, Expect, the connection limit, and shutdown (Stop
// closes idle connections, lets a request in flight finish, and leaves nothing holding the
// replica once the io_context's handlers ended).
#include "http/front_server.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "common/logging.h"
#include "fakes/fake_replica.h"
#include "support/http_client.h"
#include "support/util.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;
using testing::FakeReplica;
using testing::Http;
using testing::HttpConnection;
using testing::RawClient;
using testing::RawExchange;
using testing::RawHeader;
using testing::RawStatus;
using testing::WaitFor;

const std::string kGet = "GET /integer HTTP/1.1\r\nHost: a\r\n\r\n";

class FrontServerTest : public ::testing::Test {
 protected:
  FrontServerTest() : work_(boost::asio::make_work_guard(ioc_)) {
    replica_ = std::make_shared<FakeReplica>(ioc_.get_executor());
    options_.address = "127.0.0.1";
    options_.port = 0;
    options_.body_limit = 64;
    options_.header_limit = 1024;
    options_.idle_timeout = 30s;  // longer than any wait below: only Stop may close idle ones
    options_.read_timeout = 2s;
  }

  void Start() {
    server_ = std::make_unique<FrontServer>(ioc_, options_, replica_);
    ASSERT_TRUE(server_->Listen());
    port_ = server_->port();
    server_->Start();
    thread_ = std::thread([this] {
      ioc_.run();
      io_done_ = true;
    });
  }

  // Lets the io_context's thread end by itself, which it does once no handler is queued and no
  // operation is pending (at most `timeout`; then it is stopped). False when it had to be stopped:
  // something was still suspended.
  bool DrainIo(std::chrono::milliseconds timeout) {
    work_.reset();
    const bool drained = WaitFor([&] { return io_done_.load(); }, timeout);
    StopIo();
    return drained;
  }

  // Stops the io_context's thread; what it still holds is destroyed with it.
  void StopIo() {
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  ~FrontServerTest() override {
    if (server_) server_->Stop();
    StopIo();
  }

  // Declared first, destroyed last, like main's io_context.
  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::shared_ptr<FakeReplica> replica_;
  FrontServerOptions options_;
  std::unique_ptr<FrontServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> io_done_{false};
};

TEST_F(FrontServerTest, ReplicatesTheEndToEndRequestAndAnswersWithTheReplicasReply) {
  Start();
  auto r = Http(port_, "POST", "/journal", "abc",
                {{"Log-Index", "999"}, {"K8shmir-Outcome", "forged"}, {"X-App", "1"}});
  ASSERT_EQ(r.status, 200u) << r.Describe();
  EXPECT_EQ(r.body, "ok POST /journal");
  EXPECT_EQ(r.Header("K8shmir-Outcome"), "committed");
  EXPECT_EQ(r.Header("K8shmir-Log-Index"), "256");
  auto submitted = replica_->Submitted();
  ASSERT_EQ(submitted.size(), 1u);
  EXPECT_EQ(submitted[0].body, "abc");
  bool has_app_header = false;
  for (const auto& h : submitted[0].headers) {
    EXPECT_NE(h.name, "Log-Index");
    EXPECT_NE(h.name, "K8shmir-Outcome");
    EXPECT_NE(h.name, "Connection");
    has_app_header = has_app_header || h.name == "X-App";
  }
  EXPECT_TRUE(has_app_header);
}

TEST_F(FrontServerTest, AReadServedWithoutTheLogCarriesK8shmirReadAndNoOutcome) {
  replica_->answer = [](const HttpRequest& r) {
    ClientReply reply;
    reply.response.status = 200;
    reply.response.body = "read " + r.target;
    reply.outcome = Outcome::kNone;
    reply.read = r.target == "/local" ? ReadConsistency::kLocal : ReadConsistency::kLinearizable;
    reply.index = 512;
    return reply;
  };
  Start();
  auto r = Http(port_, "GET", "/integer", "", {{"Log-Index", "7"}});
  ASSERT_EQ(r.status, 200u) << r.Describe();
  EXPECT_EQ(r.body, "read /integer");
  EXPECT_EQ(r.Header("K8shmir-Read"), "linearizable");
  EXPECT_EQ(r.Header("K8shmir-Log-Index"), "512");
  EXPECT_FALSE(r.HasHeader("K8shmir-Outcome"));
  auto local = Http(port_, "GET", "/local");
  EXPECT_EQ(local.Header("K8shmir-Read"), "local");
  // A client cannot choose the index the app sees, on a read route as anywhere.
  auto submitted = replica_->Submitted();
  ASSERT_EQ(submitted.size(), 2u);
  for (const auto& h : submitted[0].headers) EXPECT_NE(h.name, "Log-Index");
}

TEST_F(FrontServerTest, RefusedRequestsGetTheProxysAnswerAndReachNothing) {
  Start();
  struct Case {
    std::string raw;
    unsigned status;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxyz", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx", 417},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n", 413},
      {"GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2048, 'x') + "\r\n\r\n", 431},
      {"BAD\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
  };
  for (const auto& c : cases) {
    const std::string raw = RawExchange(port_, c.raw, 5s);
    EXPECT_EQ(RawStatus(raw), c.status) << c.raw << "\n-> " << raw;
    EXPECT_EQ(RawHeader(raw, "K8shmir-Outcome"), "not-committed") << raw;
    EXPECT_EQ(RawHeader(raw, "Connection"), "close") << raw;
  }
  EXPECT_TRUE(replica_->Submitted().empty());
  // Each is counted with the replica's rejections, by its reason and status.
  std::vector<std::pair<Rejection, unsigned>> expected;
  for (const auto& c : cases) {
    expected.emplace_back(c.status == 413 ? Rejection::kTooLarge : Rejection::kBadRequest,
                          c.status);
  }
  EXPECT_EQ(replica_->Rejected(), expected);
}

// The access log: one line per answered request, its fields as keys of the JSON line.
TEST_F(FrontServerTest, TheAccessLogHasOneLinePerRequestWithItsFields) {
  std::stringstream lines;
  SetUpLogging("info", "json", {}, std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
  options_.access_log = true;
  Start();
  ASSERT_EQ(Http(port_, "POST", "/journal?x=1", "hi").status, 200u);
  spdlog::default_logger()->flush();
  SetUpLogging("info", "text");
  std::string line;
  bool found = false;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || j["msg"] != "access") continue;
    EXPECT_FALSE(found) << "two access lines for one request";
    found = true;
    EXPECT_EQ(j["method"], "POST");
    EXPECT_EQ(j["target"], "/journal?x=1");
    EXPECT_EQ(j["status"], 200);
    EXPECT_EQ(j["outcome"], "committed");
    EXPECT_EQ(j["index"], 256);
    EXPECT_TRUE(j["duration_us"].is_number_integer());
  }
  EXPECT_TRUE(found) << lines.str();
}

TEST_F(FrontServerTest, KeepAliveAndPipelinedRequestsShareAConnection) {
  Start();
  HttpConnection connection(port_);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(connection.Request("GET", "/integer").status, 200u);
  EXPECT_EQ(connection.connections_opened(), 1);
  const std::string raw =
      RawExchange(port_, kGet + "GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 5s);
  EXPECT_NE(raw.find("ok GET /integer"), std::string::npos) << raw;
  EXPECT_LT(raw.find("ok GET /integer"), raw.find("ok GET /two")) << raw;
}

TEST_F(FrontServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(
      "POST /journal HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"));
  EXPECT_NE(client.Read("100 Continue", 5s).find("HTTP/1.1 100 Continue"), std::string::npos);
  ASSERT_TRUE(client.Send("hi"));
  EXPECT_NE(client.Read("ok POST", 5s).find("ok POST /journal"), std::string::npos);
  ASSERT_EQ(replica_->Submitted().size(), 1u);
  EXPECT_EQ(replica_->Submitted()[0].body, "hi");
}

TEST_F(FrontServerTest, BeyondTheConnectionLimitIs503) {
  options_.max_connections = 1;
  Start();
  RawClient first(port_);
  ASSERT_TRUE(first.connected());
  ASSERT_TRUE(first.Send(kGet));
  ASSERT_NE(first.Read("ok GET", 5s).find("200 OK"), std::string::npos);
  const std::string raw = RawExchange(port_, kGet, 5s);
  EXPECT_EQ(RawStatus(raw), 503u) << raw;
  EXPECT_EQ(replica_->Rejected(),
            (std::vector<std::pair<Rejection, unsigned>>{{Rejection::kTooManyConnections, 503}}));
}

// Before Stop closed idle sessions, an idle keep-alive connection stayed open (its session
// suspended) until the idle timeout, 30 s here.
TEST_F(FrontServerTest, StopClosesIdleKeepAliveConnections) {
  Start();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(kGet));
  ASSERT_NE(client.Read("ok GET", 5s).find("200 OK"), std::string::npos);
  server_->Stop();
  EXPECT_TRUE(client.ClosedWithin(2s));
  // And nothing is accepted any more.
  EXPECT_TRUE(WaitFor([&] { return RawExchange(port_, kGet, 1s).empty(); }, 5s));
}

TEST_F(FrontServerTest, StopLetsARequestInFlightFinishThenCloses) {
  Start();
  replica_->Hold();
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(kGet));
  ASSERT_TRUE(WaitFor([&] { return replica_->Waiting() == 1; }, 5s));
  server_->Stop();
  std::this_thread::sleep_for(100ms);
  replica_->Release();
  const std::string raw = client.Read("ok GET", 5s);
  EXPECT_EQ(RawStatus(raw), 200u) << raw;
  EXPECT_EQ(RawHeader(raw, "Connection"), "close") << raw;
  EXPECT_TRUE(client.ClosedWithin(2s));
}

// main's teardown: once Stop() closed the sessions and the io thread ended, nothing in the
// io_context holds the replica, so it goes before what it borrowed (the log, the app). Before
// Stop closed idle sessions, the idle session's frame kept the replica until the io_context was
// destroyed, after what it borrowed: ASan reports the replica's destructor writing freed memory.
TEST_F(FrontServerTest, AfterStopNothingButItsOwnersHoldTheReplica) {
  Start();
  auto* borrowed = new int(0);
  replica_->Borrow(borrowed);
  RawClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(kGet));
  ASSERT_NE(client.Read("ok GET", 5s).find("200 OK"), std::string::npos);
  server_->Stop();
  client.ClosedWithin(2s);
  EXPECT_TRUE(DrainIo(5s)) << "the io_context still had work after Stop (a suspended session)";
  std::weak_ptr<FakeReplica> watch = replica_;
  server_.reset();
  replica_.reset();
  EXPECT_TRUE(watch.expired()) << "a suspended session still holds the replica";
  delete borrowed;  // as main destroys the log and the app after the replica
}

}  // namespace
}  // namespace k8shmir
