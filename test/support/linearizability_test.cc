// The register linearizability checker (support/linearizability.h) on hand-made histories whose
// answer is known, including the ones a stale read produces.
#include "support/linearizability.h"

#include <gtest/gtest.h>

namespace k8shmir::testing {
namespace {

RegisterOp W(int64_t v, int64_t from, int64_t to) { return {true, v, from, to, true, ""}; }
RegisterOp R(int64_t v, int64_t from, int64_t to) { return {false, v, from, to, true, ""}; }
RegisterOp Unknown(int64_t v, int64_t from) { return {true, v, from, 0, false, ""}; }

TEST(Linearizability, SequentialHistories) {
  EXPECT_TRUE(CheckRegisterLinearizable({}, 0).linearizable);
  EXPECT_TRUE(CheckRegisterLinearizable({R(0, 1, 2)}, 0).linearizable);
  EXPECT_TRUE(
      CheckRegisterLinearizable({W(1, 1, 2), R(1, 3, 4), W(2, 5, 6), R(2, 7, 8)}, 0).linearizable);
  // A stale read: 1 was overwritten by 2 before the read began.
  auto stale = CheckRegisterLinearizable({W(1, 1, 2), W(2, 3, 4), R(1, 5, 6)}, 0);
  EXPECT_FALSE(stale.linearizable);
  EXPECT_NE(stale.explanation.find("read -> 1"), std::string::npos) << stale.explanation;
  // A read of the initial value after a write returned.
  EXPECT_FALSE(CheckRegisterLinearizable({W(1, 1, 2), R(0, 3, 4)}, 0).linearizable);
}

TEST(Linearizability, ConcurrentOperationsMayTakeEffectInEitherOrder) {
  // The read overlaps the write: it may see either value.
  EXPECT_TRUE(CheckRegisterLinearizable({W(1, 1, 10), R(0, 2, 3)}, 0).linearizable);
  EXPECT_TRUE(CheckRegisterLinearizable({W(1, 1, 10), R(1, 2, 3)}, 0).linearizable);
  // Two reads during one write cannot see new then old.
  EXPECT_FALSE(CheckRegisterLinearizable({W(1, 1, 10), R(1, 2, 3), R(0, 4, 5)}, 0).linearizable);
  // Two overlapping writes, then reads that agree on the later one.
  EXPECT_TRUE(
      CheckRegisterLinearizable({W(1, 1, 5), W(2, 2, 6), R(1, 7, 8), R(1, 9, 10)}, 0).linearizable);
  EXPECT_FALSE(
      CheckRegisterLinearizable({W(1, 1, 5), W(2, 2, 6), R(1, 7, 8), R(2, 9, 10)}, 0).linearizable);
}

TEST(Linearizability, UnknownWritesMayHappenLateOrNever) {
  // Never observed: fine.
  EXPECT_TRUE(CheckRegisterLinearizable({Unknown(5, 1), R(0, 2, 3)}, 0).linearizable);
  // Observed long after it was sent: fine (it took effect late).
  EXPECT_TRUE(
      CheckRegisterLinearizable({Unknown(5, 1), R(0, 2, 3), R(5, 100, 101)}, 0).linearizable);
  // But not observed, then un-observed.
  EXPECT_FALSE(CheckRegisterLinearizable({Unknown(5, 1), R(5, 2, 3), R(0, 4, 5)}, 0).linearizable);
  // Nor observed before it was sent.
  EXPECT_FALSE(CheckRegisterLinearizable({R(5, 1, 2), Unknown(5, 3)}, 0).linearizable);
}

TEST(Linearizability, ManyConcurrentClientsStayTractable) {
  // 8 clients, 250 rounds each of a write and a read that overlap the other clients' ones.
  std::vector<RegisterOp> ops;
  int64_t t = 0;
  int64_t value = 0;
  for (int round = 0; round < 250; ++round) {
    const int64_t start = t;
    for (int c = 0; c < 8; ++c) ops.push_back(W(++value, start + c, start + 20 + c));
    // After every write of the round returned, all reads see the last one to take effect: the
    // write with the latest start can be ordered last.
    for (int c = 0; c < 8; ++c) ops.push_back(R(value, start + 30 + c, start + 40 + c));
    t += 50;
  }
  auto result = CheckRegisterLinearizable(ops, 0);
  EXPECT_TRUE(result.linearizable) << result.explanation;
  EXPECT_LT(result.states_explored, 1000000u);
}

}  // namespace
}  // namespace k8shmir::testing
