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
  std::string snapshot_path = "/snapshot";
  std::string index_header = "Log-Index";
  // Bounds connecting and each last-index exchange. A forward written on a validated connection
  // is not abandoned at it: the replica reports the app as not answering and the connection
  // waits (TCP keepalive still detects a dead peer), because an entry the app may yet read and
  // apply must not be sent again on another connection.
  std::chrono::milliseconds timeout{5000};
  std::size_t response_limit = 16 * 1024 * 1024;
  // A kept-alive forwarding connection idle for longer is replaced (and re-validated) before use,
  // so we rarely race an app closing its idle connections (Node closes them after 5 s).
  std::chrono::milliseconds max_idle{2000};
  // Reads that skip the log (Read) run on at most this many connections at once, kept alive
  // between reads; more wait.
  std::size_t max_read_connections = 32;
};

// Parses a last-index answer, {"index": N, "pipelining": true|false, "snapshots": true|false}:
// "index" an integer N >= 0, optional booleans "pipelining" and "snapshots" (absent: false).
// Anything else is kProtocol, a contract violation: only a number is an index. An app that answers
// {"index": null} (the thesis's Express example does after any request without the index header)
// must not be taken for an empty app, or the whole log would be replayed onto its live state.
Result<AppIndex> ParseLastIndex(unsigned status, const std::string& body);

// The bytes Forward sends: `request` with `index_header: index` (any header of that name
// replaced), `Connection: keep-alive` for HTTP/1.0 and a Content-Length where a body is meaningful,
// byte for byte what Beast writes for that message (a TRACE with a body, which Beast refuses to
// frame, gets its Content-Length too). Exposed for tests.
std::string SerializeForwardRequest(const HttpRequest& request, int64_t index,
                                    std::string_view index_header);

// The bytes Read sends: `request` without any `index_header` (a read is not an entry), framed
// like SerializeForwardRequest's. Exposed for tests.
std::string SerializeReadRequest(const HttpRequest& request, std::string_view index_header);

class AppReader;

class HttpApp : public App {
 public:
  HttpApp(boost::asio::any_io_executor executor, HttpAppOptions options);
  ~HttpApp() override;

  void LastIndex(IndexCallback done) override;
  void Forward(const HttpRequest& request, int64_t index, int64_t expected_applied,
               ForwardCallback done) override;
  void Read(const HttpRequest& request, int64_t min_index, ReadCallback done) override;
  void Reset() override;
  void GetSnapshot(std::size_t max_bytes, SnapshotCallback done) override;
  void PutSnapshot(const AppSnapshot& snapshot, StatusCallback done) override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  std::shared_ptr<AppReader> reader_;
};

}  // namespace k8shmir
