#include "support/linearizability.h"

#include <algorithm>
#include <limits>
#include <unordered_set>

namespace k8shmir::testing {

namespace {

// One call or return event in the doubly linked list the search lifts operations out of.
struct Event {
  bool call = false;
  int op = 0;
  int64_t time = 0;
  int prev = -1;
  int next = -1;
  int match = -1;  // the call's return event, or the return's call event
};

struct Memo {
  std::vector<uint64_t> linearized;
  int64_t state = 0;
  bool operator==(const Memo& o) const { return state == o.state && linearized == o.linearized; }
};

struct MemoHash {
  std::size_t operator()(const Memo& m) const {
    uint64_t h = static_cast<uint64_t>(m.state) * 0x9E3779B97F4A7C15ULL;
    for (uint64_t word : m.linearized) h = (h ^ word) * 0x100000001B3ULL + (h >> 29);
    return static_cast<std::size_t>(h);
  }
};

std::string Describe(const RegisterOp& op) {
  std::string s = (op.write ? "write " : "read -> ") + std::to_string(op.value);
  if (!op.label.empty()) s += " (" + op.label + ")";
  return s;
}

}  // namespace

LinearizabilityResult CheckRegisterLinearizable(const std::vector<RegisterOp>& ops, int64_t initial,
                                                uint64_t max_states) {
  LinearizabilityResult result;
  const int n = static_cast<int>(ops.size());
  // Events 0 (head sentinel) then 2 per operation, sorted by time; at equal times calls come
  // first (the two operations overlap: the more permissive reading).
  std::vector<Event> events(1);
  for (int i = 0; i < n; ++i) {
    Event call{true, i, ops[i].invoked};
    Event ret{false, i,
              ops[i].returned_known ? ops[i].returned : std::numeric_limits<int64_t>::max()};
    events.push_back(call);
    events.push_back(ret);
  }
  std::stable_sort(events.begin() + 1, events.end(), [](const Event& a, const Event& b) {
    if (a.time != b.time) return a.time < b.time;
    return a.call && !b.call;
  });
  std::vector<int> call_of(n), return_of(n);
  for (int e = 1; e < static_cast<int>(events.size()); ++e) {
    (events[e].call ? call_of : return_of)[events[e].op] = e;
  }
  for (int e = 0; e < static_cast<int>(events.size()); ++e) {
    events[e].prev = e - 1;
    events[e].next = e + 1 < static_cast<int>(events.size()) ? e + 1 : -1;
    if (e > 0) {
      events[e].match = events[e].call ? return_of[events[e].op] : call_of[events[e].op];
    }
  }
  auto unlink = [&](int e) {
    events[events[e].prev].next = events[e].next;
    if (events[e].next != -1) events[events[e].next].prev = events[e].prev;
  };
  auto relink = [&](int e) {
    events[events[e].prev].next = e;
    if (events[e].next != -1) events[events[e].next].prev = e;
  };

  std::vector<uint64_t> linearized((n + 63) / 64, 0);
  std::unordered_set<Memo, MemoHash> seen;
  struct Frame {
    int call_event;
    int64_t state_before;
  };
  std::vector<Frame> stack;
  int64_t state = initial;
  int entry = events[0].next;
  std::size_t deepest = 0;
  std::string stuck;
  while (events[0].next != -1) {
    if (++result.states_explored > max_states) {
      result.explanation = "the search gave up after " + std::to_string(max_states) + " steps";
      return result;
    }
    const Event& ev = events[entry];
    if (ev.call) {
      const RegisterOp& op = ops[ev.op];
      const bool legal = op.write || op.value == state;
      if (legal) {
        const int64_t next_state = op.write ? op.value : state;
        std::vector<uint64_t> next_linearized = linearized;
        next_linearized[ev.op / 64] |= uint64_t{1} << (ev.op % 64);
        if (seen.insert(Memo{next_linearized, next_state}).second) {
          stack.push_back(Frame{entry, state});
          state = next_state;
          linearized = std::move(next_linearized);
          unlink(ev.match);
          unlink(entry);
          entry = events[0].next;
          continue;
        }
      }
      entry = ev.next;
      continue;
    }
    // A return event: the operation it ends must have been linearized before here.
    if (stack.size() >= deepest) {
      deepest = stack.size();
      stuck = "after " + std::to_string(stack.size()) + " of " + std::to_string(n) +
              " operations, with the register at " + std::to_string(state) + ", no order lets " +
              Describe(ops[ev.op]) + " return";
    }
    if (stack.empty()) {
      result.explanation = stuck;
      return result;
    }
    Frame top = stack.back();
    stack.pop_back();
    const int op = events[top.call_event].op;
    state = top.state_before;
    linearized[op / 64] &= ~(uint64_t{1} << (op % 64));
    relink(top.call_event);
    relink(events[top.call_event].match);
    entry = events[top.call_event].next;
  }
  result.linearizable = true;
  return result;
}

}  // namespace k8shmir::testing
