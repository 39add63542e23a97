// A TCP relay on 127.0.0.1 in front of one target port, which a test can cut to put one process
// out of a service's reach: a partition that drops traffic (connections stay open, no byte passes
// in either direction, nothing is reset, new connections are accepted and then left unanswered),
// and restore. One thread polls every connection. Harness code, free of GoogleTest.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>

namespace k8shmir::testing {

class TcpRelay {
 public:
  // Listens on a free loopback port and relays every connection to 127.0.0.1:target_port.
  // Throws std::runtime_error when it cannot listen.
  explicit TcpRelay(uint16_t target_port);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  uint16_t port() const { return port_; }
  // From now on nothing passes; connections are held open.
  void Cut();
  // Closes the connections held during the cut (their peers reconnect), then relays again.
  void Restore();
  bool cut() const { return cut_.load(); }

 private:
  void Run();
  void Wake();

  uint16_t target_port_;
  uint16_t port_ = 0;
  int listener_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<bool> cut_{false};
  std::atomic<bool> restore_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace k8shmir::testing
