// RangePagePlan: which keys one ReadRange page fetches, and where the next page starts.
#include "log/range_page.h"

#include <gtest/gtest.h>

#include "log/batch_format.h"

namespace k8shmir {
namespace {

std::vector<int64_t> Revisions(RangePagePlan& plan) {
  std::vector<int64_t> out;
  for (const auto& k : plan.Keys()) out.push_back(k.create_revision);
  return out;
}

TEST(RangePagePlanTest, KeepsTheLowestRevisionsFromTheStartInRevisionOrder) {
  RangePagePlan plan(IndexOf(10, 3), 3);
  // Key order is not revision order.
  for (int64_t rev : {40, 9, 12, 30, 10, 11, 50}) plan.AddKey("k" + std::to_string(rev), rev);
  EXPECT_EQ(Revisions(plan), (std::vector<int64_t>{10, 11, 12}));
  EXPECT_EQ(plan.Keys().front().key, "k10");
  LogRange page;
  plan.Finish(3, 60, page);
  EXPECT_TRUE(page.more);
  EXPECT_EQ(page.next_index, IndexOf(13, 0));
  EXPECT_EQ(page.revision, 60);
  EXPECT_EQ(page.end_index, EndIndexOfRevision(60));
}

TEST(RangePagePlanTest, APageCutShortByBytesEndsAfterTheLastFetchedKey) {
  RangePagePlan plan(1, 10);
  for (int64_t rev : {5, 7, 9}) plan.AddKey("k", rev);
  LogRange page;
  plan.Finish(2, 20, page);
  EXPECT_TRUE(page.more);
  EXPECT_EQ(page.next_index, IndexOf(8, 0));
}

TEST(RangePagePlanTest, TheLastPageEndsAtItsRevision) {
  RangePagePlan plan(1, 10);
  for (int64_t rev : {5, 7, 9}) plan.AddKey("k", rev);
  LogRange page;
  plan.Finish(3, 20, page);
  EXPECT_FALSE(page.more);
  EXPECT_EQ(page.end_index, EndIndexOfRevision(20));
  EXPECT_EQ(page.next_index, EndIndexOfRevision(20) + 1);
}

TEST(RangePagePlanTest, NothingToReadIsALastEmptyPage) {
  RangePagePlan plan(IndexOf(100, 0), 10);
  plan.AddKey("old", 99);
  EXPECT_TRUE(plan.Keys().empty());
  LogRange page;
  plan.Finish(0, 120, page);
  EXPECT_FALSE(page.more);
}

// Keys of one revision (a foreign transaction) split between kept and dropped: the page ends
// before that revision so that the next page reads all of them.
TEST(RangePagePlanTest, ARevisionSplitByTheBoundIsLeftToTheNextPage) {
  RangePagePlan plan(1, 3);
  plan.AddKey("a", 4);
  plan.AddKey("b", 6);
  plan.AddKey("c", 6);
  plan.AddKey("d", 6);
  EXPECT_EQ(Revisions(plan), (std::vector<int64_t>{4}));
  LogRange page;
  plan.Finish(1, 10, page);
  EXPECT_TRUE(page.more);
  EXPECT_EQ(page.next_index, IndexOf(5, 0));
}

}  // namespace
}  // namespace k8shmir
