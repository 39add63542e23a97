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

#include "k8shmir/result.h"
#include "replica/replica.h"

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
};

class FrontServer {
 public:
  FrontServer(boost::asio::io_context& ioc, FrontServerOptions options,
              std::shared_ptr<Replica> replica);
  ~FrontServer();

  // Binds and listens; the error names the address when that fails.
  Status Listen();
  void Start();
  // Stops accepting; open connections finish their current request and close.
  void Stop();
  uint16_t port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace k8shmir
