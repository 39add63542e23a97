// The front server's checks of a client request, as pure functions of what Beast's parser read:
// which requests are refused (with which status and reason, the connection closed after the
// answer), which connections are just closed, and what of an accepted request is replicated.
// Kept apart from the session's I/O so that every branch is unit-tested and fuzzed
// (test/http/request_head_test.cc, fuzz/request_head_fuzz.cc).
#pragma once

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include "k8shmir/http_message.h"

namespace k8shmir {

// The verdict of one check. kAccept: go on (with `send_continue`, answer 100 Continue before
// reading the body). kReject: answer `status` with `reason` in HTTP/`version` (10 or 11), then
// close. kClose: close without an answer (the client went away, or stayed silent too long).
class [[nodiscard]] HeadCheck {
 public:
  enum class Action { kAccept, kReject, kClose };

  static HeadCheck Accept(bool send_continue = false) {
    HeadCheck c(Action::kAccept);
    c.send_continue_ = send_continue;
    return c;
  }
  static HeadCheck Reject(unsigned status, unsigned version, std::string reason) {
    HeadCheck c(Action::kReject);
    c.status_ = status;
    c.version_ = version;
    c.reason_ = std::move(reason);
    return c;
  }
  static HeadCheck Close() { return HeadCheck(Action::kClose); }

  Action action() const { return action_; }
  bool ok() const { return action_ == Action::kAccept; }
  explicit operator bool() const { return ok(); }
  bool send_continue() const { return send_continue_; }
  unsigned status() const { return status_; }
  unsigned version() const { return version_; }
  const std::string& reason() const { return reason_; }

 private:
  explicit HeadCheck(Action action) : action_(action) {}
  Action action_;
  bool send_continue_ = false;
  unsigned status_ = 0;
  unsigned version_ = 11;
  std::string reason_;
};

// The reason of a 413.
std::string BodyTooLargeReason(std::size_t body_limit);

// After reading the head: `ec` is what async_read_header (or the parser's put) reported. Limits
// give 431 and 413, a malformed head 400 (all in HTTP/1.1: the version is not known), a timeout
// or a vanished client kClose.
HeadCheck CheckHeadRead(const boost::beast::error_code& ec, std::size_t body_limit);

// The parsed head of a request: version (505 unless 1.0 or 1.1), Host (required once in 1.1,
// never twice), framing (a Transfer-Encoding whose last coding is not chunked is refused: request
// smuggling), Expect (only 100-continue). `chunked` and `body_pending` are the parser's chunked()
// and !is_done(); 100 Continue is sent only while the body is still to come.
HeadCheck CheckRequestHead(const boost::beast::http::request_header<>& head, bool chunked,
                           bool body_pending);

// The number of fields of a request (with a chunked body, after the body: trailers included).
inline std::size_t FieldCount(
    const boost::beast::http::request<boost::beast::http::string_body>& msg) {
  return static_cast<std::size_t>(std::distance(msg.begin(), msg.end()));
}

// After reading the body: 413 beyond the limit, kClose on timeout, 400 when malformed. With
// `message_fields` > `head_fields` the chunked body ended in trailer fields, which Beast adds to
// the message's fields: a 400, since they would reach the app (and every replica) without the
// checks the head's fields get (a second Host, a Log-Index, framing headers).
HeadCheck CheckBodyRead(const boost::beast::error_code& ec, unsigned version,
                        std::size_t body_limit, std::size_t head_fields = 0,
                        std::size_t message_fields = 0);

// The request as it is replicated: method, target, version, the end-to-end headers only
// (EndToEndHeaders: hop-by-hop ones, `index_header` and K8shmir-* dropped) and the body, moved.
HttpRequest ToReplicatedRequest(boost::beast::http::request<boost::beast::http::string_body>&& msg,
                                std::string_view index_header);

// What the front server decides for a client that sent exactly `bytes` and then closed: the same
// parser limits and checks in the same order as a session, for the unit tests and the fuzzer.
// `request` is set when the verdict is kAccept.
struct RequestVerdict {
  HeadCheck check = HeadCheck::Close();
  std::optional<HttpRequest> request;
};
RequestVerdict CheckCompleteRequest(std::string_view bytes, std::size_t header_limit,
                                    std::size_t body_limit, std::string_view index_header);

}  // namespace k8shmir
