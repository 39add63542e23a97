// A linearizability checker for a single register (Wing & Gong's search with Lowe's memoization,
// as in "Testing for linearizability", Lowe 2017): given a concurrent history of writes and reads
// with their invoke and return times, is there a total order of them that respects real time
// (an operation that returned before another was invoked comes first) in which every read
// returns the value of the write before it?
//
// Operations whose outcome is unknown (no answer, or an error that may have taken effect) return
// at "infinity": they may take effect at any point after their invocation, or never (a write
// placed after everything else affects no read). Reads that got no answer are left out: they
// constrain nothing. Harness code, free of GoogleTest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace k8shmir::testing {

struct RegisterOp {
  bool write = false;
  int64_t value = 0;  // written, or returned by the read
  // Invocation and response times (any monotonic clock, e.g. steady_clock nanoseconds).
  int64_t invoked = 0;
  int64_t returned = 0;
  bool returned_known = true;  // false: unknown outcome (returned is ignored)
  std::string label;           // for the report: who sent it, where
};

struct LinearizabilityResult {
  bool linearizable = false;
  // When not linearizable: the operations the longest linearizable prefix found could not
  // extend with (the return event it was stuck at, and the operations concurrent with it).
  std::string explanation;
  uint64_t states_explored = 0;
};

// Checks `ops` against a register that holds `initial` before any of them. Exact; exponential
// only in how many operations overlap at once (the memo makes repeated states free).
// `max_states` bounds the search: beyond it the result says so and is not linearizable.
LinearizabilityResult CheckRegisterLinearizable(const std::vector<RegisterOp>& ops, int64_t initial,
                                                uint64_t max_states = 20000000);

}  // namespace k8shmir::testing
