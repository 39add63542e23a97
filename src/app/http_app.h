// The App interface over HTTP/1.1 to the local app process (127.0.0.1:3000 by default).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "k8shmir/app.h"

namespace k8shmir {

struct HttpAppOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 3000;
  std::string last_index_path = "/last-index";
  std::string index_header = "Log-Index";
  std::chrono::milliseconds timeout{5000};
  std::size_t response_limit = 16 * 1024 * 1024;
  // A kept-alive forwarding connection idle for longer is replaced (and re-validated) before use,
  // so we rarely race an app closing its idle connections (Node closes them after 5 s).
  std::chrono::milliseconds max_idle{2000};
};

// What an app's last-index answer says: {"index": N, "pipelining": true|false}. "pipelining"
// absent means false.
struct LastIndexAnswer : AppIndex {
  // The index was null or missing and counts as 0: the caller warns.
  bool lenient = false;
};

// Parses a last-index answer: "index" N >= 0 (null or missing count as 0, flagged lenient),
// optional boolean "pipelining". Anything else is kProtocol.
Result<LastIndexAnswer> ParseLastIndex(unsigned status, const std::string& body);

// The bytes Forward sends: `request` with `index_header: index` (any header of that name
// replaced), `Connection: keep-alive` for HTTP/1.0 and a Content-Length where a body is meaningful,
// byte for byte what Beast writes for that message (a TRACE with a body, which Beast refuses to
// frame, gets its Content-Length too). Exposed for tests.
std::string SerializeForwardRequest(const HttpRequest& request, int64_t index,
                                    std::string_view index_header);

class HttpApp : public App {
 public:
  HttpApp(boost::asio::any_io_executor executor, HttpAppOptions options);
  ~HttpApp() override;

  void LastIndex(IndexCallback done) override;
  void Forward(const HttpRequest& request, int64_t index, int64_t expected_applied,
               ForwardCallback done) override;
  void Reset() override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace k8shmir
