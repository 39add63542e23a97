// The client-facing HTTP/1.1 server: reads each request within limits, hands it to the replica,
// and writes the replica's answer. Keep-alive, pipelining (answered in order), Expect:
// 100-continue, chunked bodies and HTTP/1.0 clients are supported.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "k8shmir/replica_service.h"
#include "k8shmir/result.h"

namespace k8shmir {

struct FrontServerOptions {
  std::string address = "0.0.0.0";
  uint16_t port = 8080;
  std::string index_header = "Log-Index";
  std::size_t body_limit = 1024 * 1024;
  std::size_t header_limit = 64 * 1024;
  std::size_t max_connections = 4096;
  // Idle keep-alive connections are closed after this.
  std::chrono::milliseconds idle_timeout{60000};
  // A request's head, once its first byte arrived, and its body must arrive within this.
  std::chrono::milliseconds read_timeout{10000};
  // One info line per answered request: method, target, status, outcome, index, duration.
  bool access_log = false;
};

class FrontServer {
 public:
  // `ioc` must outlive the server and every session it started: the sessions hold the server's
  // state (and `replica`) in their coroutine frames, which are released when they end or when
  // the io_context destroys its pending handlers. Destroying the server does not end them.
  FrontServer(boost::asio::io_context& ioc, FrontServerOptions options,
              std::shared_ptr<ReplicaService> replica);
  ~FrontServer();

  // Binds and listens; the error names the address when that fails.
  Status Listen();
  void Start();
  // Stops accepting and closes the connections waiting for a request (idle keep-alive ones);
  // a connection with a request in flight finishes it (answered with Connection: close) and
  // closes. Any thread.
  void Stop();
  uint16_t port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace k8shmir
