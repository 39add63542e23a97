#include "http/request_head.h"

#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <vector>

#include "codec/header_filter.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string BodyTooLargeReason(std::size_t body_limit) {
  return "request body exceeds the limit of " + std::to_string(body_limit) + " bytes";
}

HeadCheck CheckHeadRead(const beast::error_code& ec, std::size_t body_limit) {
  if (!ec) return HeadCheck::Accept();
  if (ec == http::error::header_limit) {
    return HeadCheck::Reject(431, 11, "request header fields too large");
  }
  // A Content-Length above the body limit is refused before any of the body is read.
  if (ec == http::error::body_limit)
    return HeadCheck::Reject(413, 11, BodyTooLargeReason(body_limit));
  if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == asio::error::eof ||
      ec == asio::error::connection_reset) {
    return HeadCheck::Close();
  }
  return HeadCheck::Reject(400, 11, "malformed request: " + ec.message());
}

HeadCheck CheckRequestHead(const http::request_header<>& head, bool chunked, bool body_pending) {
  const unsigned version = head.version();
  if (version != 10 && version != 11)
    return HeadCheck::Reject(505, 11, "HTTP version not supported");
  if (version == 11 && head.find(http::field::host) == head.end()) {
    return HeadCheck::Reject(400, version, "HTTP/1.1 request without Host");
  }
  // RFC 9112 3.2: more than one Host is a 400 (apps route on it; a cache or balancer in front
  // may have picked the other one).
  if (head.count(http::field::host) > 1) {
    return HeadCheck::Reject(400, version, "more than one Host header");
  }
  // RFC 9112 6.3: a Transfer-Encoding whose last coding is not chunked leaves the body length
  // unknown, and the server must answer 400 and close. Beast reads such a request as having
  // no body, so without this check the body would be taken for the next request (request
  // smuggling) and an empty-bodied request would be committed in its place.
  if (head.find(http::field::transfer_encoding) != head.end() && !chunked) {
    return HeadCheck::Reject(400, version, "unsupported Transfer-Encoding");
  }
  auto expect = head.find(http::field::expect);
  if (expect != head.end()) {
    if (!beast::iequals(expect->value(), "100-continue")) {
      return HeadCheck::Reject(417, version, "unsupported Expect");
    }
    return HeadCheck::Accept(/*send_continue=*/body_pending);
  }
  return HeadCheck::Accept();
}

HeadCheck CheckBodyRead(const beast::error_code& ec, unsigned version, std::size_t body_limit,
                        std::size_t head_fields, std::size_t message_fields) {
  if (!ec && message_fields > head_fields) {
    return HeadCheck::Reject(400, version,
                             "trailer fields after a chunked body are not supported (they would "
                             "bypass the checks the request's header fields get)");
  }
  if (!ec) return HeadCheck::Accept();
  if (ec == http::error::body_limit) {
    return HeadCheck::Reject(413, version, BodyTooLargeReason(body_limit));
  }
  if (ec == beast::error::timeout) return HeadCheck::Close();
  return HeadCheck::Reject(400, version, "malformed request body: " + ec.message());
}

HttpRequest ToReplicatedRequest(http::request<http::string_body>&& msg,
                                std::string_view index_header) {
  HttpRequest request;
  request.method = std::string(msg.method_string());
  request.target = std::string(msg.target());
  request.version = msg.version();
  std::vector<HttpHeader> all;
  for (const auto& f : msg) all.push_back({std::string(f.name_string()), std::string(f.value())});
  request.headers = EndToEndHeaders(all, index_header);
  request.body = std::move(msg.body());
  return request;
}

namespace {

// Feeds what is left of `bytes` to `parser` until it is done (or, for the head only, until the
// head is), then reports the end of the stream if it still needs more: what the session's reads
// see when the client sent `bytes` and closed.
beast::error_code Feed(http::request_parser<http::string_body>& parser, std::string_view& bytes,
                       bool head_only) {
  beast::error_code ec;
  for (;;) {
    if (parser.is_done() || (head_only && parser.is_header_done())) return ec;
    const std::size_t used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
    bytes.remove_prefix(used);
    if (ec == http::error::need_more || (!ec && used == 0)) {
      if (!bytes.empty() && used > 0) continue;
      ec = {};
      parser.put_eof(ec);
      // put_eof leaves a message that ends at the close (no framing) done without an error.
      if (!ec && !parser.is_done() && !(head_only && parser.is_header_done())) {
        ec = http::error::partial_message;
      }
      return ec;
    }
    if (ec) return ec;
  }
}

}  // namespace

RequestVerdict CheckCompleteRequest(std::string_view bytes, std::size_t header_limit,
                                    std::size_t body_limit, std::string_view index_header) {
  RequestVerdict verdict;
  if (bytes.empty()) return verdict;  // the session reads nothing and closes
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(header_limit));
  parser.body_limit(body_limit);
  beast::error_code ec = Feed(parser, bytes, /*head_only=*/true);
  verdict.check = CheckHeadRead(ec, body_limit);
  if (verdict.check.ok()) {
    verdict.check = CheckRequestHead(parser.get(), parser.chunked(), !parser.is_done());
  }
  if (!verdict.check.ok()) return verdict;
  const unsigned version = parser.get().version();
  const std::size_t head_fields = FieldCount(parser.get());
  if (!parser.is_done()) {
    parser.eager(true);
    ec = Feed(parser, bytes, /*head_only=*/false);
    verdict.check = CheckBodyRead(ec, version, body_limit, head_fields, FieldCount(parser.get()));
    if (!verdict.check.ok()) return verdict;
  }
  verdict.request = ToReplicatedRequest(parser.release(), index_header);
  return verdict;
}

}  // namespace k8shmir
