// The failover section of k8shmir-bench (issue 10): closed-loop clients send requests through
// the proxies while the etcd leader is SIGKILLed, and the bench measures, in the same run, etcd's
// own election time (SIGKILL until a surviving member names a new leader) and the clients' stall
// (the longest time without a successful answer at any one proxy, around the kill).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace k8shmir::bench {

struct FailoverOptions {
  int rounds = 3;               // leader kills, one after the other
  int clients = 12;             // spread evenly over the proxies
  double before_s = 2.0;        // steady load before each kill
  double after_s = 4.0;         // load after each kill, measured
  double stall_margin_s = 0.5;  // target: stall <= election + this
};

// What the section needs from the bench's cluster.
struct FailoverHooks {
  std::vector<uint16_t> proxy_ports;
  std::vector<uint16_t> etcd_client_ports;
  std::function<void(int)> kill_member;     // SIGKILL etcd member i
  std::function<void(int)> restart_member;  // start member i again, wait until etcd is healthy
  std::function<bool()> wait_proxies_ready;
  std::function<void(const std::string&)> log;
};

// Runs the rounds and returns their figures (see bench/README.md, "failover"). `max_index`
// receives the highest Log-Index answered, for the bench's final consistency check. Throws
// std::runtime_error when the cluster cannot be driven (no leader, a member does not restart).
nlohmann::ordered_json RunFailover(const FailoverOptions& options, const FailoverHooks& hooks,
                                   int64_t* max_index);

}  // namespace k8shmir::bench
