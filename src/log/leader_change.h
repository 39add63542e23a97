// How the etcd log tells that etcd's leadership moved (issue 10), kept free of I/O so that it is
// unit-testable (test/log/leader_change_test.cc).
//
// Why it matters: a member SIGKILLed while it leads fails the calls written to it at once, but a
// write sent to a follower is forwarded to the leader and, if that leader died, is simply lost;
// etcd answers it only when the client's deadline passes. So when something suggests that a
// member died (its connection broke, a call failed), the log asks every member for its status,
// every few tens of milliseconds, until it knows whether the leader is still the same one or a
// new one exists; in the latter case the calls in flight are re-sent at once (writes with the
// same batch id, which the transaction's create_revision == 0 check makes safe).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace k8shmir {

// One member's answer to a maintenance Status call.
struct MemberStatus {
  uint64_t member_id = 0;  // the answering member (header.member_id)
  uint64_t leader = 0;     // the leader it knows, 0 for none
  // etcd 3.4's "raftTerm" (like every response header's raft_term) is the term of the last entry
  // the member applied, not raft's current term: a leader elected a moment ago still reports the
  // previous term until it applies its first entry. Hence the leader's identity counts too.
  uint64_t term = 0;
};

// What the log knew before the trouble.
struct LeaderBaseline {
  uint64_t leader = 0;  // the leader's member id, 0 if unknown
  uint64_t term = 0;    // the newest term seen in any answer, 0 if none
};

enum class LeaderVerdict {
  kUnknown,  // no answer tells yet: ask again
  kSame,     // the baseline's leader is alive and still leads: nothing was lost
  kChanged,  // another leader (or a later term) exists: calls sent before it may be lost
};

struct LeaderJudgement {
  LeaderVerdict verdict = LeaderVerdict::kUnknown;
  uint64_t leader = 0;  // the leader now (kSame, kChanged)
  uint64_t term = 0;    // the newest term seen in the answers
};

// `answers` holds one entry per member asked (nullopt: no answer).
//  - A member that answers as the leader is alive: the same leader if it is the baseline's and
//    reports no later term, otherwise a new one (also when the baseline's leader is unknown:
//    re-sending calls that were not lost is safe, and only costs a round trip).
//  - A follower naming a leader other than the baseline's, or reporting a later term, proves a
//    change (a member only learns of a new leader from that leader, alive then). A follower still
//    naming the baseline's leader proves nothing: that leader may have just died.
// A change wins over the old leader still answering (a deposed leader that has not heard yet).
LeaderJudgement JudgeLeader(const std::vector<std::optional<MemberStatus>>& answers,
                            const LeaderBaseline& baseline);

}  // namespace k8shmir
