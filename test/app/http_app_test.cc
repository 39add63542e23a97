#include "app/http_app.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

TEST(ParseLastIndexTest, AcceptsTheContract) {
  bool lenient = true;
  auto r = ParseLastIndex(200, R"({"index": 42})", &lenient);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_FALSE(lenient);
}

TEST(ParseLastIndexTest, NullOrMissingIsZeroButFlagged) {
  bool lenient = false;
  auto null_index = ParseLastIndex(200, R"({"index": null})", &lenient);
  ASSERT_TRUE(null_index);
  EXPECT_EQ(*null_index, 0);
  EXPECT_TRUE(lenient);
  lenient = false;
  auto missing = ParseLastIndex(200, R"({})", &lenient);
  ASSERT_TRUE(missing);
  EXPECT_EQ(*missing, 0);
  EXPECT_TRUE(lenient);
}

TEST(ParseLastIndexTest, RejectsGarbage) {
  bool lenient = false;
  for (const char* body :
       {"garbage", "[1]", R"({"index": -1})", R"({"index": "7"})", R"({"index": 1.5})", ""}) {
    auto r = ParseLastIndex(200, body, &lenient);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << body;
  }
  EXPECT_FALSE(ParseLastIndex(500, R"({"index": 1})", &lenient));
}

}  // namespace
}  // namespace k8shmir

// ---- HttpApp against a real socket ------------------------------------------------------------

#include <sys/socket.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <future>
#include <mutex>
#include <thread>

namespace k8shmir {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// A minimal app on a loopback port: answers /last-index with its index, records every other
// request and takes its Log-Index. One connection at a time, like the proxy uses it.
class RecordingApp {
 public:
  RecordingApp() : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~RecordingApp() {
    // close() from another thread does not wake a blocking accept(); shutdown() does (Linux).
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    beast::error_code ec;
    acceptor_.close(ec);
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  std::mutex mu;
  int64_t index = 0;
  int connections = 0;
  std::vector<http::request<http::string_body>> requests;

 private:
  void Serve() {
    for (;;) {
      beast::error_code ec;
      asio::ip::tcp::socket sock(ioc_);
      acceptor_.accept(sock, ec);
      if (ec) return;
      {
        std::lock_guard lock(mu);
        ++connections;
      }
      beast::flat_buffer buf;
      for (;;) {
        http::request<http::string_body> req;
        http::read(sock, buf, req, ec);
        if (ec) break;
        http::response<http::string_body> res{http::status::ok, 11};
        {
          std::lock_guard lock(mu);
          if (req.target() == "/last-index") {
            res.body() = "{\"index\": " + std::to_string(index) + "}";
          } else {
            index = std::stoll(std::string(req["Log-Index"]));
            res.body() = "applied " + req.body();
            requests.push_back(req);
          }
        }
        res.prepare_payload();
        http::write(sock, res, ec);
        if (ec) break;
      }
    }
  }
  asio::io_context ioc_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

class HttpAppTest : public ::testing::Test {
 protected:
  HttpAppTest() {
    HttpAppOptions o;
    o.port = app_.port();
    o.timeout = std::chrono::milliseconds(2000);
    client_ = std::make_unique<HttpApp>(ioc_.get_executor(), o);
  }
  ForwardResult Forward(const HttpRequest& req, int64_t index, int64_t expected) {
    std::optional<ForwardResult> result;
    client_->Forward(req, index, expected, [&](ForwardResult r) { result = std::move(r); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!result && std::chrono::steady_clock::now() < deadline) {
      ioc_.restart();  // run_for leaves the context stopped whenever it ran out of work
      ioc_.run_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(result.has_value());
    return result ? std::move(*result) : ForwardResult(Error{ErrorCode::kUnknown, "no result"});
  }

  RecordingApp app_;
  asio::io_context ioc_;
  std::unique_ptr<HttpApp> client_;
};

TEST_F(HttpAppTest, ForwardsOnAValidatedConnectionWithTheIndexHeaderAndHostPreserved) {
  HttpRequest req{"POST", "/journal?x=1", 11, {{"Host", "orders.svc:8080"}, {"X-A", "1"}}, "b1"};
  auto r = Forward(req, 7, 0);
  ASSERT_TRUE(std::holds_alternative<HttpResponse>(r));
  EXPECT_EQ(std::get<HttpResponse>(r).body, "applied b1");
  auto r2 = Forward({"PUT", "/x", 11, {{"Host", "h"}}, "b2"}, 9, 7);
  ASSERT_TRUE(std::holds_alternative<HttpResponse>(r2));
  std::lock_guard lock(app_.mu);
  ASSERT_EQ(app_.requests.size(), 2u);
  const auto& first = app_.requests[0];
  EXPECT_EQ(first.method(), http::verb::post);
  EXPECT_EQ(first.target(), "/journal?x=1");
  EXPECT_EQ(first["Host"], "orders.svc:8080");
  EXPECT_EQ(first["X-A"], "1");
  EXPECT_EQ(first["Log-Index"], "7");
  EXPECT_EQ(app_.requests[1]["Log-Index"], "9");
  EXPECT_EQ(app_.connections, 1);  // validated once, then kept alive
}

TEST_F(HttpAppTest, MismatchedAppIndexSendsNothing) {
  {
    std::lock_guard lock(app_.mu);
    app_.index = 5;
  }
  auto r = Forward({"POST", "/journal", 11, {}, "x"}, 7, 3);
  ASSERT_TRUE(std::holds_alternative<AppIndexMismatch>(r));
  EXPECT_EQ(std::get<AppIndexMismatch>(r).app_index, 5);
  std::lock_guard lock(app_.mu);
  EXPECT_TRUE(app_.requests.empty());
}

TEST_F(HttpAppTest, ResetRevalidatesOnANewConnection) {
  ASSERT_TRUE(std::holds_alternative<HttpResponse>(Forward({"POST", "/a", 11, {}, "1"}, 1, 0)));
  client_->Reset();
  {
    std::lock_guard lock(app_.mu);
    app_.index = 0;  // as if the app restarted
  }
  auto r = Forward({"POST", "/a", 11, {}, "2"}, 2, 1);
  ASSERT_TRUE(std::holds_alternative<AppIndexMismatch>(r));
  EXPECT_EQ(std::get<AppIndexMismatch>(r).app_index, 0);
}

TEST_F(HttpAppTest, UnreachableAppIsAnErrorNotAMismatch) {
  HttpAppOptions o;
  {
    asio::io_context tmp;
    asio::ip::tcp::acceptor a(tmp, {asio::ip::make_address("127.0.0.1"), 0});
    o.port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  o.timeout = std::chrono::milliseconds(500);
  client_ = std::make_unique<HttpApp>(ioc_.get_executor(), o);
  auto r = Forward({"POST", "/a", 11, {}, "1"}, 1, 0);
  ASSERT_TRUE(std::holds_alternative<Error>(r));
}

}  // namespace
}  // namespace k8shmir
