// A blocking HTTP/1.1 client for tests, to 127.0.0.1, with a hard deadline on every exchange.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace k8shmir::testing {

using json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::chrono::milliseconds kDefaultHttpTimeout{15000};

struct HttpResult {
  unsigned status = 0;  // 0: transport error (see `error`)
  Headers headers;      // in the order received
  std::string body;
  std::string error;  // transport error text, empty when a response was read

  // The first header of that name (case-insensitive), "" when absent.
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
  // The body as JSON; a discarded value (is_discarded()) when it is not JSON.
  json Json() const;
  bool Ok() const { return status >= 200 && status < 300; }
  // "503 Service Unavailable-ish summary" for assertion messages: status, outcome, body/error.
  std::string Describe() const;
};

// One request on a new connection, closed afterwards. `headers` are sent after Host (and
// Content-Length, set from the body for methods that carry one); a header given here replaces a
// default of the same name. The whole exchange (connect, write, read) must end within `timeout`.
// The response is read while the request is being written, so an early answer (413) is received
// even when the server stops reading the body.
HttpResult Http(uint16_t port, std::string method, std::string target, std::string body = "",
                Headers headers = {}, std::chrono::milliseconds timeout = kDefaultHttpTimeout);

// A keep-alive connection: requests are sent one after another on the same connection, which is
// opened on first use and reopened after the server closed it or after an error. Not thread-safe.
class HttpConnection {
 public:
  explicit HttpConnection(uint16_t port);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  HttpResult Request(std::string method, std::string target, std::string body = "",
                     Headers headers = {}, std::chrono::milliseconds timeout = kDefaultHttpTimeout);

  // Number of TCP connections opened so far.
  int connections_opened() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sends `bytes` as they are on a new connection and returns everything received until the server
// closes the connection or `timeout` passes (whatever arrived by then).
std::string RawExchange(uint16_t port, std::string bytes,
                        std::chrono::milliseconds timeout = kDefaultHttpTimeout);

// A raw client connection on 127.0.0.1, for what the blocking client hides (idle connections,
// closes by the server).
class RawClient {
 public:
  explicit RawClient(uint16_t port);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& bytes);
  // Reads until `until` appears in what was received, the server closes, or `timeout` passes;
  // returns everything received so far.
  std::string Read(const std::string& until, std::chrono::milliseconds timeout);
  // True once the server closed the connection, waiting up to `timeout` for it.
  bool ClosedWithin(std::chrono::milliseconds timeout);

 private:
  int fd_;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

// The status code of a raw HTTP response ("HTTP/1.1 400 Bad Request..." -> 400), 0 if none.
unsigned RawStatus(std::string_view response);

// The value of a header in a raw HTTP response's head (case-insensitive), "" when absent.
std::string RawHeader(std::string_view response, std::string_view name);

// The sum of the values of `metric`'s samples in Prometheus text `metrics` whose labels contain
// `label` (e.g. `reason="log-full"`; empty: every sample). -1 when no sample matches.
double MetricSum(std::string_view metrics, std::string_view metric, std::string_view label = {});

}  // namespace k8shmir::testing
