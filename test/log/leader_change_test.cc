// JudgeLeader (src/log/leader_change.h): when the etcd log may conclude that the leader changed
// (and re-send the calls in flight), that it did not, or that it must ask again.
#include "log/leader_change.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace k8shmir {
namespace {

constexpr uint64_t kA = 0xa1, kB = 0xb2, kC = 0xc3;
// A led at term 4 when the trouble began.
constexpr LeaderBaseline kALeads{kA, 4};

MemberStatus Said(uint64_t member, uint64_t leader, uint64_t term) {
  return MemberStatus{member, leader, term};
}

TEST(JudgeLeader, NoAnswersTellNothing) {
  const LeaderJudgement j = JudgeLeader({std::nullopt, std::nullopt, std::nullopt}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kUnknown);
  EXPECT_EQ(j.term, 0u);
}

// A was SIGKILLed: its followers still name it until their election timeout.
TEST(JudgeLeader, FollowersStillNamingTheDeadLeaderTellNothing) {
  const LeaderJudgement j = JudgeLeader({std::nullopt, Said(kB, kA, 4), Said(kC, kA, 4)}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kUnknown);
  EXPECT_EQ(j.term, 4u);
}

// Candidates (no leader) tell nothing, whatever their term.
TEST(JudgeLeader, AnElectionUnderWayTellsNothing) {
  const LeaderJudgement j = JudgeLeader({std::nullopt, Said(kB, 0, 5), Said(kC, 0, 5)}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kUnknown);
  EXPECT_EQ(j.term, 5u);
}

// etcd reports the term of the last applied entry: a leader elected a moment ago still says 4.
TEST(JudgeLeader, ANewLeaderReportingTheOldTermIsStillANewLeader) {
  const LeaderJudgement j = JudgeLeader({std::nullopt, Said(kB, kB, 4), Said(kC, kA, 4)}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kChanged);
  EXPECT_EQ(j.leader, kB);
  EXPECT_EQ(j.term, 4u);
}

TEST(JudgeLeader, AFollowerNamingAnotherLeaderOrALaterTermMeansItChanged) {
  LeaderJudgement j = JudgeLeader({std::nullopt, std::nullopt, Said(kC, kB, 4)}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kChanged);
  EXPECT_EQ(j.leader, kB);
  // A itself, restarted and elected again: the same member, a later term.
  j = JudgeLeader({std::nullopt, Said(kB, kA, 6), std::nullopt}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kChanged);
  EXPECT_EQ(j.leader, kA);
  EXPECT_EQ(j.term, 6u);
}

// A follower died (B): the leader A answers for the term the log knew, nothing was lost.
TEST(JudgeLeader, TheBaselineLeaderAnsweringMeansItDidNot) {
  const LeaderJudgement j = JudgeLeader({Said(kA, kA, 4), std::nullopt, Said(kC, kA, 4)}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kSame);
  EXPECT_EQ(j.leader, kA);
  EXPECT_EQ(j.term, 4u);
}

// A deposed leader that has not heard of the new one yet must not hide the change.
TEST(JudgeLeader, ANewerLeaderWinsOverAnOldOneStillAnswering) {
  const LeaderJudgement j =
      JudgeLeader({Said(kA, kA, 4), Said(kB, kB, 5), Said(kC, kB, 5)}, kALeads);
  EXPECT_EQ(j.verdict, LeaderVerdict::kChanged);
  EXPECT_EQ(j.leader, kB);
  EXPECT_EQ(j.term, 5u);
}

// Without a known leader (the log's first check), followers naming someone prove nothing (that
// one may be dead); a member answering as the leader is alive, and counts as a change: the calls
// in flight are re-sent, which is safe (idempotent) and only costs a round trip.
TEST(JudgeLeader, WithoutAKnownLeaderOnlyALiveLeaderTells) {
  LeaderJudgement j = JudgeLeader({std::nullopt, Said(kB, kA, 4), Said(kC, kA, 4)}, {0, 4});
  EXPECT_EQ(j.verdict, LeaderVerdict::kUnknown);
  j = JudgeLeader({std::nullopt, Said(kB, kB, 4), Said(kC, kA, 4)}, {0, 4});
  EXPECT_EQ(j.verdict, LeaderVerdict::kChanged);
  EXPECT_EQ(j.leader, kB);
  j = JudgeLeader({Said(kA, kA, 2)}, {});
  EXPECT_EQ(j.verdict, LeaderVerdict::kChanged);
  EXPECT_EQ(j.leader, kA);
}

}  // namespace
}  // namespace k8shmir
