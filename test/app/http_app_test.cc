#include "app/http_app.h"
#include "app/app_snapshot.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

TEST(ParseLastIndexTest, AcceptsTheContract) {
  auto r = ParseLastIndex(200, R"({"index": 42})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->index, 42);
  EXPECT_FALSE(r->pipelining);
}

TEST(ParseLastIndexTest, PipeliningIsDeclaredOnlyByTrue) {
  auto yes = ParseLastIndex(200, R"({"index": 7, "pipelining": true})");
  ASSERT_TRUE(yes);
  EXPECT_EQ(yes->index, 7);
  EXPECT_TRUE(yes->pipelining);
  auto no = ParseLastIndex(200, R"({"pipelining": false, "index": 7})");
  ASSERT_TRUE(no);
  EXPECT_FALSE(no->pipelining);
  // A typo must not silently decide how entries reach the app.
  for (const char* body :
       {R"({"index": 7, "pipelining": "true"})", R"({"index": 7, "pipelining": 1})",
        R"({"index": 7, "pipelining": null})"}) {
    auto r = ParseLastIndex(200, body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << body;
    EXPECT_NE(r.error().message.find("\"pipelining\" must be true or false"), std::string::npos)
        << r.error().message;
  }
}

// Only a number is an index: null (what the thesis's Express app answers after a request that
// came without the header) or a missing index would otherwise read as "empty app, replay
// everything" onto its live state.
TEST(ParseLastIndexTest, SnapshotsAreDeclaredOnlyByTrue) {
  EXPECT_TRUE(ParseLastIndex(200, R"({"index": 3, "snapshots": true})")->snapshots);
  EXPECT_FALSE(ParseLastIndex(200, R"({"index": 3, "snapshots": false})")->snapshots);
  EXPECT_FALSE(ParseLastIndex(200, R"({"index": 3})")->snapshots);
  auto typo = ParseLastIndex(200, R"({"index": 3, "snapshots": "yes"})");
  ASSERT_FALSE(typo.ok());
  EXPECT_EQ(typo.error().code, ErrorCode::kProtocol);
}

TEST(ParseSnapshotAnswerTest, NeedsA200AndAnIntegerIndex) {
  const std::string seven = "7";
  auto ok = ParseSnapshotAnswer(200, &seven, "state");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->index, 7);
  EXPECT_EQ(ok->data, "state");
  const std::string zero = "0";
  EXPECT_EQ(ParseSnapshotAnswer(200, &zero, "")->index, 0);
  for (const std::string bad : {"", "-1", "7x", " 7", "null"}) {
    auto r = ParseSnapshotAnswer(200, &bad, "state");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << bad;
  }
  EXPECT_FALSE(ParseSnapshotAnswer(200, nullptr, "state").ok());
  auto not_found = ParseSnapshotAnswer(404, &seven, "no such endpoint");
  ASSERT_FALSE(not_found.ok());
  EXPECT_NE(not_found.error().message.find("HTTP 404"), std::string::npos);
}

TEST(ParseLastIndexTest, NullOrMissingIndexIsAContractViolationNotZero) {
  for (const char* body : {R"({"index": null})", R"({})", R"({"index": null, "pipelining": true})",
                           R"({"pipelining": true})"}) {
    auto r = ParseLastIndex(200, body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << body;
    EXPECT_NE(r.error().message.find("index"), std::string::npos) << r.error().message;
  }
}

TEST(ParseLastIndexTest, RejectsGarbage) {
  for (const char* body :
       {"garbage", "[1]", R"({"index": -1})", R"({"index": "7"})", R"({"index": 1.5})", ""}) {
    auto r = ParseLastIndex(200, body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << body;
  }
  EXPECT_FALSE(ParseLastIndex(500, R"({"index": 1})"));
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

// A minimal app on a loopback port: answers /last-index with its index (and "pipelining": true
// if it declares it), records every other request and takes its Log-Index. One connection at a
// time, like the proxy uses it.
class RecordingApp {
 public:
  RecordingApp() : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~RecordingApp() {
    // close() from another thread does not wake a blocking accept(); shutdown() does (Linux).
    // The acceptor is closed only once the serving thread, which uses it, has ended.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    beast::error_code ec;
    acceptor_.close(ec);
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  std::mutex mu;
  int64_t index = 0;
  int connections = 0;
  std::vector<http::request<http::string_body>> requests;
  // Answer forwards only once this many have arrived (a client that does not pipeline waits in
  // vain), then all at once.
  std::size_t answer_in_groups_of = 1;
  // Close the connection after answering this many forwards on it (0 = never).
  int close_after_forwards = 0;
  // Answer everything with "Connection: close" and close, HTTP/1.0 style.
  bool close_every_response = false;
  bool declare_pipelining = false;
  // GET /snapshot answers this body with Log-Index: `snapshot_header` (the current index when
  // unset; no header when empty); PUT /snapshot stores its body here and sets the index.
  std::string snapshot_body = "the whole state";
  std::optional<std::string> snapshot_header;
  std::string stored_snapshot;
  // Set when a forward was answered while bytes of a later request had already arrived: the
  // client wrote ahead of the answers.
  bool saw_request_ahead = false;

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
      std::vector<http::response<http::string_body>> held;
      int answered = 0;
      for (;;) {
        http::request<http::string_body> req;
        http::read(sock, buf, req, ec);
        if (ec) break;
        http::response<http::string_body> res{http::status::ok, 11};
        std::size_t group = 1;
        int close_after = 0;
        bool forward = false;
        {
          std::lock_guard lock(mu);
          if (req.target() == "/last-index") {
            res.body() = "{\"index\": " + std::to_string(index) +
                         (declare_pipelining ? ", \"pipelining\": true}" : "}");
          } else if (req.target() == "/snapshot" && req.method() == http::verb::get) {
            res.body() = snapshot_body;
            const std::string header = snapshot_header.value_or(std::to_string(index));
            if (!header.empty()) res.set("Log-Index", header);
          } else if (req.target() == "/snapshot" && req.method() == http::verb::put) {
            stored_snapshot = req.body();
            index = std::stoll(std::string(req["Log-Index"]));
            res.body() = "{\"index\": " + std::to_string(index) + "}";
          } else if (req.find("Log-Index") == req.end()) {
            // A read (App::Read): changes nothing.
            res.body() = "read " + std::string(req.target());
            requests.push_back(req);
            close_after = close_after_forwards;
            forward = true;
          } else {
            index = std::stoll(std::string(req["Log-Index"]));
            res.body() = "applied " + req.body();
            requests.push_back(req);
            group = answer_in_groups_of;
            close_after = close_after_forwards;
            forward = true;
          }
        }
        bool close_now = false;
        {
          std::lock_guard lock(mu);
          close_now = close_every_response;
        }
        if (close_now) res.keep_alive(false);
        res.prepare_payload();
        if (forward) {
          beast::error_code ignored;
          if (buf.size() > 0 || sock.available(ignored) > 0) {
            std::lock_guard lock(mu);
            saw_request_ahead = true;
          }
        }
        held.push_back(std::move(res));
        if (held.size() < group) continue;
        for (auto& r : held) {
          http::write(sock, r, ec);
          if (ec) break;
        }
        held.clear();
        if (ec) break;
        if (forward) ++answered;
        if (close_now || (close_after > 0 && answered >= close_after)) break;
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

  ReadResult Read(const HttpRequest& req, int64_t min_index) {
    std::optional<ReadResult> result;
    client_->Read(req, min_index, [&](ReadResult r) { result = std::move(r); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!result && std::chrono::steady_clock::now() < deadline) {
      ioc_.restart();
      ioc_.run_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(result.has_value());
    return result ? std::move(*result) : ReadResult(Error{ErrorCode::kUnknown, "no result"});
  }

  RecordingApp app_;
  asio::io_context ioc_;
  std::unique_ptr<HttpApp> client_;
};

TEST_F(HttpAppTest, AReadGoesWithoutTheIndexHeaderOnAValidatedKeptAliveConnection) {
  {
    std::lock_guard lock(app_.mu);
    app_.index = 5;
  }
  // Whatever index header the request carries, the app never sees one on a read.
  HttpRequest req{"GET", "/integer?x=1", 11, {{"Host", "svc"}, {"Log-Index", "99"}}, ""};
  auto r = Read(req, 5);
  ASSERT_TRUE(std::holds_alternative<AppReadAnswer>(r));
  EXPECT_EQ(std::get<AppReadAnswer>(r).response.status, 200u);
  EXPECT_EQ(std::get<AppReadAnswer>(r).response.body, "read /integer?x=1");
  EXPECT_EQ(std::get<AppReadAnswer>(r).validated_index, 5);
  auto again = Read({"GET", "/journal", 11, {}, ""}, 5);
  ASSERT_TRUE(std::holds_alternative<AppReadAnswer>(again));
  std::lock_guard lock(app_.mu);
  ASSERT_EQ(app_.requests.size(), 2u);
  EXPECT_EQ(app_.requests[0].find("Log-Index"), app_.requests[0].end());
  EXPECT_EQ(app_.requests[0]["Host"], "svc");
  EXPECT_EQ(app_.index, 5);        // a read moves nothing
  EXPECT_EQ(app_.connections, 1);  // validated once, then kept alive
}

TEST_F(HttpAppTest, ANewReadConnectionToAnAppBelowTheMinimumSendsNothing) {
  {
    std::lock_guard lock(app_.mu);
    app_.index = 3;
  }
  auto r = Read({"GET", "/integer", 11, {}, ""}, 5);
  ASSERT_TRUE(std::holds_alternative<AppIndexMismatch>(r));
  EXPECT_EQ(std::get<AppIndexMismatch>(r).app_index, 3);
  std::lock_guard lock(app_.mu);
  EXPECT_TRUE(app_.requests.empty());
}

TEST_F(HttpAppTest, AReadOnAConnectionTheAppClosedIsSentAgainOnANewValidatedOne) {
  {
    std::lock_guard lock(app_.mu);
    app_.close_after_forwards = 1;  // every connection is closed after one answer
  }
  ASSERT_TRUE(std::holds_alternative<AppReadAnswer>(Read({"GET", "/a", 11, {}, ""}, 0)));
  auto r = Read({"GET", "/b", 11, {}, ""}, 0);
  ASSERT_TRUE(std::holds_alternative<AppReadAnswer>(r));
  EXPECT_EQ(std::get<AppReadAnswer>(r).response.body, "read /b");
  std::lock_guard lock(app_.mu);
  EXPECT_EQ(app_.connections, 2);
}

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

// Issues forwards of `bodies` at consecutive indices 1.. without waiting, and returns their
// results in completion order as (index, result).
std::vector<std::pair<int64_t, ForwardResult>> ForwardPipelined(
    HttpApp& client, asio::io_context& ioc, const std::vector<std::string>& bodies) {
  std::vector<std::pair<int64_t, ForwardResult>> results;
  for (std::size_t k = 0; k < bodies.size(); ++k) {
    const auto index = static_cast<int64_t>(k + 1);
    client.Forward(
        {"POST", "/journal", 11, {}, bodies[k]}, index, index - 1,
        [&results, index](ForwardResult r) { results.emplace_back(index, std::move(r)); });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (results.size() < bodies.size() && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(5));
  }
  return results;
}

// Every forward of ForwardPipelined completed, in index order, with the app's "applied bK".
void ExpectAppliedInOrder(const std::vector<std::pair<int64_t, ForwardResult>>& results,
                          std::size_t count) {
  ASSERT_EQ(results.size(), count);
  for (std::size_t k = 0; k < count; ++k) {
    EXPECT_EQ(results[k].first, static_cast<int64_t>(k + 1));
    ASSERT_TRUE(std::holds_alternative<HttpResponse>(results[k].second)) << k;
    EXPECT_EQ(std::get<HttpResponse>(results[k].second).body, "applied b" + std::to_string(k + 1));
  }
}

TEST_F(HttpAppTest, PipelinedForwardsAreAllWrittenBeforeTheFirstAnswerAndCompleteInOrder) {
  {
    std::lock_guard lock(app_.mu);
    app_.declare_pipelining = true;
    app_.answer_in_groups_of = 3;  // nothing is answered before the third request arrived
  }
  auto results = ForwardPipelined(*client_, ioc_, {"b1", "b2", "b3"});
  ASSERT_NO_FATAL_FAILURE(ExpectAppliedInOrder(results, 3));
  std::lock_guard lock(app_.mu);
  ASSERT_EQ(app_.requests.size(), 3u);
  EXPECT_EQ(app_.requests[2]["Log-Index"], "3");
  EXPECT_EQ(app_.connections, 1);
}

TEST_F(HttpAppTest, AnAppThatDoesNotDeclarePipeliningGetsOneForwardAtATime) {
  // The same burst of forwards; the app answers each as it comes, and must never find the next
  // request already waiting when it answers.
  auto results = ForwardPipelined(*client_, ioc_, {"b1", "b2", "b3", "b4"});
  ASSERT_NO_FATAL_FAILURE(ExpectAppliedInOrder(results, 4));
  std::lock_guard lock(app_.mu);
  ASSERT_EQ(app_.requests.size(), 4u);
  EXPECT_EQ(app_.requests[3]["Log-Index"], "4");
  EXPECT_FALSE(app_.saw_request_ahead);
  EXPECT_EQ(app_.connections, 1);
}

TEST_F(HttpAppTest, AnAppThatDeclaresPipeliningGetsTheBurstAhead) {
  // The control for the test above: the same check does see a client that writes ahead.
  {
    std::lock_guard lock(app_.mu);
    app_.declare_pipelining = true;
  }
  auto results = ForwardPipelined(*client_, ioc_, {"b1", "b2", "b3", "b4"});
  ASSERT_EQ(results.size(), 4u);
  std::lock_guard lock(app_.mu);
  ASSERT_EQ(app_.requests.size(), 4u);
  EXPECT_TRUE(app_.saw_request_ahead);
}

TEST_F(HttpAppTest, AConnectionClosedUnderPipelinedForwardsFailsTheRestInOrder) {
  {
    std::lock_guard lock(app_.mu);
    app_.declare_pipelining = true;
    app_.close_after_forwards = 1;
  }
  auto results = ForwardPipelined(*client_, ioc_, {"b1", "b2", "b3"});
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].first, 1);
  ASSERT_TRUE(std::holds_alternative<HttpResponse>(results[0].second));
  for (int k = 1; k < 3; ++k) {
    EXPECT_EQ(results[k].first, k + 1);
    ASSERT_TRUE(std::holds_alternative<Error>(results[k].second)) << k;
    EXPECT_EQ(std::get<Error>(results[k].second).code, ErrorCode::kUnknown);
  }
}

TEST_F(HttpAppTest, AForwardOutOfSequenceOnTheConnectionIsNotSent) {
  ASSERT_TRUE(std::holds_alternative<HttpResponse>(Forward({"POST", "/a", 11, {}, "1"}, 1, 0)));
  // Expects index 3 applied, but the connection's last entry was index 1: never written.
  auto r = Forward({"POST", "/a", 11, {}, "5"}, 5, 3);
  ASSERT_TRUE(std::holds_alternative<Error>(r));
  EXPECT_NE(std::get<Error>(r).message.find("connection is at 1"), std::string::npos)
      << std::get<Error>(r).message;
  std::lock_guard lock(app_.mu);
  EXPECT_EQ(app_.requests.size(), 1u);
}

TEST_F(HttpAppTest, AnAppClosingEveryConnectionGetsNoEntryAndIsToldWhy) {
  {
    std::lock_guard lock(app_.mu);
    app_.close_every_response = true;
  }
  auto r = Forward({"POST", "/a", 11, {}, "1"}, 1, 0);
  ASSERT_TRUE(std::holds_alternative<Error>(r));
  EXPECT_EQ(std::get<Error>(r).code, ErrorCode::kUnavailable);
  EXPECT_EQ(std::get<Error>(r).message,
            "the app closed the connection after answering /last-index: entries are sent on the "
            "connection that was validated, so the app must keep HTTP/1.1 connections alive");
  std::lock_guard lock(app_.mu);
  EXPECT_TRUE(app_.requests.empty());
}

template <class T>
T RunUntilResult(asio::io_context& ioc, std::optional<T>& result) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!result && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(result.has_value());
  return result ? std::move(*result) : T(Error{ErrorCode::kUnknown, "no result"});
}

// An answer over --response-limit is an error (the entry's outcome is then unknown), not read.
TEST_F(HttpAppTest, AnAnswerOverTheResponseLimitIsAnError) {
  HttpAppOptions o;
  o.port = app_.port();
  o.timeout = std::chrono::milliseconds(2000);
  o.response_limit = 8;
  client_ = std::make_unique<HttpApp>(ioc_.get_executor(), o);
  HttpRequest req{"POST", "/x", 11, {{"Host", "a"}}, "a body longer than the limit"};
  auto result = Forward(req, 1, 0);
  ASSERT_TRUE(std::holds_alternative<Error>(result));
  EXPECT_NE(std::get<Error>(result).message.find("body limit"), std::string::npos)
      << std::get<Error>(result).message;
}

TEST_F(HttpAppTest, GetSnapshotReturnsTheStateAndTheIndexItReflects) {
  {
    std::lock_guard lock(app_.mu);
    app_.index = 512;
  }
  std::optional<Result<AppSnapshot>> result;
  client_->GetSnapshot(1024, [&](Result<AppSnapshot> r) { result = std::move(r); });
  auto snapshot = RunUntilResult(ioc_, result);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
  EXPECT_EQ(snapshot->index, 512);
  EXPECT_EQ(snapshot->data, "the whole state");
}

// Beast 1.74's http::async_read of a whole message read this one past its body limit (the
// header's body_limit error was lost): ReadResponse reads the header first.
TEST_F(HttpAppTest, ASnapshotOverTheLimitOrWithoutAnIndexIsRefused) {
  std::optional<Result<AppSnapshot>> big;
  client_->GetSnapshot(8, [&](Result<AppSnapshot> r) { big = std::move(r); });
  auto too_big = RunUntilResult(ioc_, big);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code, ErrorCode::kInvalid) << too_big.error().message;
  {
    std::lock_guard lock(app_.mu);
    app_.snapshot_header = "";
  }
  std::optional<Result<AppSnapshot>> headless;
  client_->GetSnapshot(1024, [&](Result<AppSnapshot> r) { headless = std::move(r); });
  auto no_index = RunUntilResult(ioc_, headless);
  ASSERT_FALSE(no_index.ok());
  EXPECT_EQ(no_index.error().code, ErrorCode::kProtocol) << no_index.error().message;
}

TEST_F(HttpAppTest, PutSnapshotSendsTheStateWithItsIndex) {
  std::optional<Status> result;
  client_->PutSnapshot(AppSnapshot{1024, std::string(100000, 's')},
                       [&](Status s) { result = std::move(s); });
  auto stored = RunUntilResult(ioc_, result);
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  std::lock_guard lock(app_.mu);
  EXPECT_EQ(app_.index, 1024);
  EXPECT_EQ(app_.stored_snapshot, std::string(100000, 's'));
}

TEST_F(HttpAppTest, SnapshotsOfAnUnreachableAppAreUnavailable) {
  HttpAppOptions o;
  o.port = 1;  // nothing listens there
  o.timeout = std::chrono::milliseconds(500);
  HttpApp nobody(ioc_.get_executor(), o);
  std::optional<Result<AppSnapshot>> get;
  nobody.GetSnapshot(1024, [&](Result<AppSnapshot> r) { get = std::move(r); });
  auto got = RunUntilResult(ioc_, get);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, ErrorCode::kUnavailable);
  std::optional<Status> put;
  nobody.PutSnapshot(AppSnapshot{1, "x"}, [&](Status s) { put = std::move(s); });
  auto stored = RunUntilResult(ioc_, put);
  ASSERT_FALSE(stored.ok());
  EXPECT_EQ(stored.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace k8shmir
