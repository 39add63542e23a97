// The front server's request checks, branch by branch, on raw bytes through Beast's parser (as a
// session reads them) and on the read errors a session can see.
#include "http/request_head.h"

#include <gtest/gtest.h>

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <string>

namespace k8shmir {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Action = HeadCheck::Action;

constexpr std::size_t kHeaderLimit = 1024;
constexpr std::size_t kBodyLimit = 64;

RequestVerdict Check(const std::string& raw) {
  return CheckCompleteRequest(raw, kHeaderLimit, kBodyLimit, "Log-Index");
}

// The status and the reason's beginning of a refused request.
void ExpectRejected(const std::string& raw, unsigned status, unsigned version,
                    const std::string& reason_prefix) {
  RequestVerdict v = Check(raw);
  ASSERT_EQ(v.check.action(), Action::kReject) << raw;
  EXPECT_EQ(v.check.status(), status) << raw;
  EXPECT_EQ(v.check.version(), version) << raw;
  EXPECT_EQ(v.check.reason().substr(0, reason_prefix.size()), reason_prefix)
      << raw << " -> " << v.check.reason();
  EXPECT_FALSE(v.request.has_value());
}

TEST(RequestHeadTest, AValidRequestIsAcceptedAsItIsReplicated) {
  RequestVerdict v = Check(
      "POST /journal?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: "
      "5\r\n\r\nhello");
  ASSERT_TRUE(v.check.ok()) << v.check.reason();
  ASSERT_TRUE(v.request.has_value());
  EXPECT_EQ(v.request->method, "POST");
  EXPECT_EQ(v.request->target, "/journal?x=1");
  EXPECT_EQ(v.request->version, 11u);
  EXPECT_EQ(v.request->body, "hello");
  ASSERT_EQ(v.request->headers.size(), 2u);
  EXPECT_EQ(v.request->headers[0].name, "Host");
  EXPECT_EQ(v.request->headers[1].name, "Content-Type");
}

TEST(RequestHeadTest, Http10NeedsNoHost) {
  RequestVerdict v = Check("GET / HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(v.check.ok()) << v.check.reason();
  EXPECT_EQ(v.request->version, 10u);
}

TEST(RequestHeadTest, Http11WithoutHostIs400) {
  ExpectRejected("GET / HTTP/1.1\r\n\r\n", 400, 11, "HTTP/1.1 request without Host");
}

TEST(RequestHeadTest, TwoHostsAre400) {
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 11,
                 "more than one Host header");
  ExpectRejected("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400, 10,
                 "more than one Host header");
}

TEST(RequestHeadTest, OtherVersionsAre505) {
  // Beast's parser already refuses any version but 1.0 and 1.1 (a malformed request)...
  ExpectRejected("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400, 11, "malformed request: ");
  ExpectRejected("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 400, 11, "malformed request: ");
  // ...and the head check would answer 505 to one it let through.
  http::request_header<> head;
  head.version(20);
  head.set(http::field::host, "a");
  HeadCheck check = CheckRequestHead(head, /*chunked=*/false, /*body_pending=*/false);
  EXPECT_EQ(check.action(), Action::kReject);
  EXPECT_EQ(check.status(), 505u);
  EXPECT_EQ(check.version(), 11u);
  EXPECT_EQ(check.reason(), "HTTP version not supported");
}

TEST(RequestHeadTest, MalformedHeadsAre400) {
  ExpectRejected("GET /\r\n\r\n", 400, 11, "malformed request: ");
  ExpectRejected("NOT A REQUEST\r\n\r\n", 400, 11, "malformed request: ");
  ExpectRejected("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, 11, "malformed request: ");
  ExpectRejected("GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400, 11, "malformed request: ");
  // A head cut short by the client's close.
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\n", 400, 11, "malformed request: ");
}

TEST(RequestHeadTest, NothingSentIsAClose) { EXPECT_EQ(Check("").check.action(), Action::kClose); }

TEST(RequestHeadTest, LimitsAre431And413) {
  ExpectRejected(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2 * kHeaderLimit, 'x') + "\r\n\r\n", 431,
      11, "request header fields too large");
  // A Content-Length beyond the limit is refused from the head, before the body.
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n", 413, 11,
                 "request body exceeds the limit of 64 bytes");
  // A chunked body only shows its size while it is read: refused then, in the client's version.
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n" +
                     std::string(65, 'x') + "\r\n0\r\n\r\n",
                 413, 11, "request body exceeds the limit of 64 bytes");
}

TEST(RequestHeadTest, FramingThatCouldSmuggleIsRefused) {
  // The body length would be unknown: Beast would read no body, and the body would be taken for
  // the next request.
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nGET /x HTTP/1.1\r\n",
                 400, 11, "unsupported Transfer-Encoding");
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, 11,
                 "unsupported Transfer-Encoding");
  ExpectRejected("POST / HTTP/1.0\r\nTransfer-Encoding: identity\r\n\r\n", 400, 10,
                 "unsupported Transfer-Encoding");
  // Content-Length and Transfer-Encoding together, or two different lengths: the parser refuses.
  ExpectRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n",
      400, 11, "malformed request: ");
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                 400, 11, "malformed request: ");
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, 11,
                 "malformed request: ");
}

TEST(RequestHeadTest, ChunkedBodiesAreReassembled) {
  RequestVerdict v = Check(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n"
      "\r\n");
  ASSERT_TRUE(v.check.ok()) << v.check.reason();
  EXPECT_EQ(v.request->body, "abcde");
  for (const auto& h : v.request->headers) EXPECT_NE(h.name, "Transfer-Encoding");
}

// Trailer fields after a chunked body land among the message's fields, after the head was
// checked: a second Host (found by the fuzzer), a Log-Index or framing headers would reach the app
// and every replica unchecked. They are refused.
TEST(RequestHeadTest, TrailerFieldsAfterAChunkedBodyAre400) {
  const std::string chunked =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
  for (const char* trailer : {"Host: b\r\n", "Log-Index: 5\r\n", "X-Checksum: 1\r\n"}) {
    ExpectRejected(chunked + trailer + "\r\n", 400, 11, "trailer fields after a chunked body");
  }
  // Beast itself refuses framing fields there.
  ExpectRejected(chunked + "Content-Length: 3\r\n\r\n", 400, 11, "malformed request body: ");
  // The fuzzer's input: an obs-fold-like trailer value hiding a second Host.
  ExpectRejected(chunked + "Tr`iler: \t\t\xce\xce\tPOST /x HTTP/1.1\r\nHost: \xf7\xf6\r\n\r\n", 400,
                 11, "trailer fields after a chunked body");
  // Without trailers a chunked body is accepted.
  EXPECT_TRUE(Check(chunked + "\r\n").check.ok());
}

TEST(RequestHeadTest, ABodyCutShortIs400) {
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", 400, 11,
                 "malformed request body: ");
  ExpectRejected("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, 10,
                 "malformed request body: ");
}

TEST(RequestHeadTest, ExpectIsOnly100Continue) {
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx", 417, 11,
                 "unsupported Expect");
  http::request_parser<http::string_body> parser;
  beast::error_code ec;
  const std::string head =
      "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
  parser.put(asio::buffer(head), ec);
  ASSERT_FALSE(ec) << ec.message();
  HeadCheck pending = CheckRequestHead(parser.get(), parser.chunked(), /*body_pending=*/true);
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending.send_continue());
  // No body to come (Content-Length: 0): nothing to continue.
  HeadCheck done = CheckRequestHead(parser.get(), parser.chunked(), /*body_pending=*/false);
  ASSERT_TRUE(done.ok());
  EXPECT_FALSE(done.send_continue());
}

TEST(RequestHeadTest, TheIndexHeaderAndHopByHopHeadersAreNotReplicated) {
  RequestVerdict v = Check(
      "POST / HTTP/1.1\r\nHost: a\r\nLog-Index: 999\r\nlog-index: 5\r\nK8shmir-Outcome: x\r\n"
      "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
      "Upgrade: h2c\r\nProxy-Authorization: p\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(v.check.ok()) << v.check.reason();
  ASSERT_EQ(v.request->headers.size(), 2u);
  EXPECT_EQ(v.request->headers[0].name, "Host");
  EXPECT_EQ(v.request->headers[1].name, "X-End");
  EXPECT_EQ(v.request->headers[1].value, "2");
}

TEST(RequestHeadTest, ReadErrorsOfAVanishedOrSilentClientCloseWithoutAnswer) {
  for (beast::error_code ec :
       {beast::error_code(beast::error::timeout), beast::error_code(http::error::end_of_stream),
        beast::error_code(asio::error::eof), beast::error_code(asio::error::connection_reset)}) {
    EXPECT_EQ(CheckHeadRead(ec, kBodyLimit).action(), Action::kClose) << ec.message();
  }
  EXPECT_TRUE(CheckHeadRead({}, kBodyLimit).ok());
  EXPECT_EQ(CheckBodyRead(beast::error::timeout, 10, kBodyLimit).action(), Action::kClose);
  HeadCheck body = CheckBodyRead(http::error::body_limit, 10, kBodyLimit);
  EXPECT_EQ(body.status(), 413u);
  EXPECT_EQ(body.version(), 10u);
  EXPECT_TRUE(CheckBodyRead({}, 11, kBodyLimit).ok());
}

}  // namespace
}  // namespace k8shmir
