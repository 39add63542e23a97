// The admin HTTP server (port 9901 by default): /healthz (liveness), /readyz (readiness: 200 only
// while serving), /status (JSON) and /metrics (Prometheus text format). Never replicated.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "k8shmir/result.h"
#include "replica/replica.h"

namespace k8shmir {

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& ioc, std::string address, uint16_t port,
              std::shared_ptr<Replica> replica);
  ~AdminServer();
  Status Listen();
  void Start();
  void Stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace k8shmir
