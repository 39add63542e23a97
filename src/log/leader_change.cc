#include "log/leader_change.h"

#include <algorithm>

namespace k8shmir {

LeaderJudgement JudgeLeader(const std::vector<std::optional<MemberStatus>>& answers,
                            const LeaderBaseline& baseline) {
  LeaderJudgement out;
  bool same = false;
  uint64_t changed_to = 0;
  uint64_t changed_term = 0;
  for (const auto& answer : answers) {
    if (!answer) continue;
    out.term = std::max(out.term, answer->term);
    if (answer->leader == 0) continue;
    const bool known = baseline.leader != 0;
    const bool other = answer->leader != baseline.leader || answer->term > baseline.term;
    const bool claims = answer->leader == answer->member_id;
    bool changed = false;
    if (claims) {
      changed = !known || other;
      if (!changed) same = true;
    } else {
      changed = known && other;
    }
    if (changed && (changed_to == 0 || answer->term > changed_term)) {
      changed_to = answer->leader;
      changed_term = answer->term;
    }
  }
  if (changed_to != 0) {
    out.verdict = LeaderVerdict::kChanged;
    out.leader = changed_to;
  } else if (same) {
    out.verdict = LeaderVerdict::kSame;
    out.leader = baseline.leader;
  }
  return out;
}

}  // namespace k8shmir
