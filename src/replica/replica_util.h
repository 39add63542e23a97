// Small helpers shared by the files of the replica (replica.cc, replica_log.cc,
// replica_apply.cc, replica_clients.cc). Internal to src/replica.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "k8shmir/replica_service.h"

namespace k8shmir::replica_internal {

using Clock = std::chrono::steady_clock;

inline int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

inline int64_t Millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// A backlog this large, once drained, is worth handing back to the system (malloc_trim).
inline constexpr std::size_t kReleaseMemoryAfterBytes = 8 * 1024 * 1024;

inline int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

inline ClientReply ErrorReply(unsigned status, Outcome outcome, int64_t index,
                              const std::string& why, int retry_after = 0) {
  ClientReply r;
  r.response.status = status;
  r.response.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
  r.response.body = "k8shmir: " + why + "\n";
  r.outcome = outcome;
  r.index = index;
  r.retry_after = retry_after;
  return r;
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace k8shmir::replica_internal
