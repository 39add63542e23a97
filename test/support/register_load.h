// Load for the linearizability checks of reads that skip the log: clients that mix logged writes
// (SET of a value unique to the client and step) with reads of the register on a read route
// (GET /integer), each recorded with its invoke and return times. Writes also go to a History,
// so that the fault suite's CheckHistory holds the logged requests to the same rules as always.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "support/fault_load.h"
#include "support/linearizability.h"

namespace k8shmir::testing {

class RegisterLoad {
 public:
  struct Options {
    int clients_per_target = 3;
    // Bounded even if never stopped: about a minute at the pause below.
    int max_ops_per_client = 3000;
    int write_percent = 30;
    std::chrono::milliseconds client_timeout{20000};  // far above the proxy's request timeout
    // Between two requests of a client: the load lasts through the faults a test injects, and the
    // history stays small enough to check exactly.
    std::chrono::milliseconds pause{20};
    std::chrono::milliseconds pause_after_error{50};
  };

  // Starts `clients_per_target` clients per entry of `targets` (replica indices).
  RegisterLoad(ReplicatedCluster& cluster, History& history, std::vector<int> targets,
               Options options);
  ~RegisterLoad();  // Stop()
  RegisterLoad(const RegisterLoad&) = delete;
  RegisterLoad& operator=(const RegisterLoad&) = delete;

  void Stop();

  // Every write and every answered read so far, for CheckRegisterLinearizable. A write answered
  // not-committed is left out (it never happened); one without a known outcome (no answer, 504
  // unknown, or committed without the app's answer) returns at "infinity".
  std::vector<RegisterOp> Ops() const;

  // Reads answered 200 with K8shmir-Read: linearizable, through proxy `target` (-1: any).
  int64_t ServedReads(int target = -1) const;
  // Reads refused by the proxy (5xx with K8shmir-Outcome: not-committed), through `target`.
  int64_t RefusedReads(int target = -1) const;
  // The longest a read refused through `target` took to be answered, in ms.
  int64_t SlowestRefusalMs(int target) const;
  // Reads answered 200 but without K8shmir-Read: linearizable (a logged read): must be none.
  int64_t UnroutedReads() const { return unrouted_reads_.load(); }
  // Waits until every client got `n` more 2xx answers (reads or writes), at most `timeout`.
  bool WaitProgress(int n, std::chrono::milliseconds timeout);

 private:
  struct Client {
    int id = 0;
    int target = 0;
    std::atomic<int64_t> ok{0};
    std::atomic<int64_t> served_reads{0};
    std::atomic<int64_t> refused_reads{0};
    std::atomic<int64_t> slowest_refusal_ms{0};
    std::thread thread;
  };
  void Run(Client& c);
  void Record(RegisterOp op);

  ReplicatedCluster& cluster_;
  History& history_;
  Options options_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> unrouted_reads_{0};
  mutable std::mutex mu_;
  std::vector<RegisterOp> ops_;  // guarded by mu_
  std::vector<std::unique_ptr<Client>> clients_;
};

// The nanoseconds of a steady_clock time point, as RegisterOp wants them.
int64_t SteadyNs(std::chrono::steady_clock::time_point t);

}  // namespace k8shmir::testing
