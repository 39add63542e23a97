// The admin HTTP server (port 9901 by default): /healthz (liveness: 200 while the replica's loop
// makes progress), /readyz (readiness: 200 only while serving), /status (JSON) and /metrics
// (Prometheus text format). Never replicated.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "k8shmir/replica_service.h"
#include "k8shmir/result.h"

namespace k8shmir {

class AdminServer {
 public:
  // `ioc` must outlive the server and every session it started (run it until they end, or destroy
  // its pending handlers first): sessions hold the server's state, and `replica`, in their frames.
  // /healthz answers 503 once the replica's periodic tick is older than `liveness_timeout`: a
  // wedged strand then gets the proxy restarted by its liveness probe.
  AdminServer(boost::asio::io_context& ioc, std::string address, uint16_t port,
              std::shared_ptr<ReplicaService> replica,
              std::chrono::milliseconds liveness_timeout = std::chrono::seconds(10));
  ~AdminServer();
  Status Listen();
  void Start();
  // Stops accepting and closes the connections waiting for a request; a request being answered
  // gets its answer with Connection: close. Any thread.
  void Stop();
  // From now on /readyz answers 503 ("draining"), whatever the replica's state: the proxy is
  // shutting down and wants no new traffic, though it still serves what comes. Any thread.
  void SetDraining();
  // The bound port (after Listen), 0 before.
  uint16_t port() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace k8shmir
