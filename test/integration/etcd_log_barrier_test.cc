// The read barrier against real etcd (Log::ReadCommittedIndex): the committed head moves with
// every batch created, in the batch's own transaction, and only then; other groups and other
// keys do not move it; a head that is not ours is an error, not an index. An append's
// transaction reads the head before moving it (AppendResult::committed_before).
#include "integration/etcd_log_fixture.h"

namespace k8shmir {
namespace {

TEST_F(EtcdLogTest, TheCommittedIndexIsTheLastEntryOfTheNewestBatch) {
  auto log = MakeLog();
  auto empty = CommittedIndexSync(*log);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(*empty, 0);

  auto one = AppendSync(*log, "a", Value("a"));
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(*CommittedIndexSync(*log), one->first_index);

  std::vector<LogEntry> batch;
  for (int i = 0; i < 5; ++i) batch.push_back({"b" + std::to_string(i), Value("b")});
  auto five = AppendBatchSync(*log, "b0", batch);
  ASSERT_TRUE(five.ok()) << five.error().message;
  EXPECT_EQ(*CommittedIndexSync(*log), five->first_index + 4);

  // A retried append of an existing batch changes nothing; neither do other groups' appends nor
  // other keys, which only move etcd's revision.
  auto retried = AppendSync(*log, "a", Value("a"));
  ASSERT_TRUE(retried.ok());
  EXPECT_FALSE(retried->created);
  auto other = MakeLog("other");
  ASSERT_TRUE(AppendSync(*other, "x", Value("x")).ok());
  RawPut(etcd_->Endpoint(0), "/unrelated", "v");
  EXPECT_EQ(*CommittedIndexSync(*log), five->first_index + 4);
  auto other_index = CommittedIndexSync(*other);
  ASSERT_TRUE(other_index.ok());
  EXPECT_GT(*other_index, five->first_index + 4);

  // The head key sits outside the log's range: a watch and a range read never see it.
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->last_index, five->first_index + 4);
  auto raw = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(raw.keys.size(), 2u);
}

TEST_F(EtcdLogTest, AnAppendTellsTheCommittedIndexBeforeIt) {
  auto log = MakeLog();
  auto other = MakeLog("other");
  auto first = AppendSync(*log, "a", Value("a"));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->committed_before, 0);  // the group's first batch

  std::vector<LogEntry> batch;
  for (int i = 0; i < 3; ++i) batch.push_back({"b" + std::to_string(i), Value("b")});
  auto three = AppendBatchSync(*log, "b0", batch);
  ASSERT_TRUE(three.ok()) << three.error().message;
  EXPECT_EQ(three->committed_before, first->first_index);

  // Other groups and other keys move etcd's revision, not this group's head.
  ASSERT_TRUE(AppendSync(*other, "x", Value("x")).ok());
  RawPut(etcd_->Endpoint(0), "/unrelated", "v");
  auto next = AppendSync(*log, "c", Value("c"));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->committed_before, three->first_index + 2);
  EXPECT_EQ(*CommittedIndexSync(*log), next->first_index);

  // A retry finds its batch: it cannot tell what was committed before it.
  auto retried = AppendBatchSync(*log, "b0", batch);
  ASSERT_TRUE(retried.ok());
  EXPECT_FALSE(retried->created);
  EXPECT_EQ(retried->first_index, three->first_index);
  EXPECT_EQ(retried->committed_before, -1);

  // A head that is not ours: the append stands, the barrier it would give is unknown.
  RawPut(etcd_->Endpoint(0), CommittedHeadKey(Prefix("g")), "garbage");
  auto after_garbage = AppendSync(*log, "d", Value("d"));
  ASSERT_TRUE(after_garbage.ok()) << after_garbage.error().message;
  EXPECT_TRUE(after_garbage->created);
  EXPECT_EQ(after_garbage->committed_before, -1);
}

TEST_F(EtcdLogTest, ACommittedHeadThatIsNotACountIsAnError) {
  auto log = MakeLog();
  ASSERT_TRUE(AppendSync(*log, "a", Value("a")).ok());
  RawPut(etcd_->Endpoint(0), CommittedHeadKey(Prefix("g")), "garbage");
  auto r = CommittedIndexSync(*log);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kProtocol);
  EXPECT_NE(r.error().message.find("garbage"), std::string::npos) << r.error().message;
  // The next batch rewrites it.
  auto b = AppendSync(*log, "b", Value("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*CommittedIndexSync(*log), b->first_index);
}

TEST_F(EtcdLogTest, TheBarrierFailsWithinItsDeadlineWithoutEtcd) {
  auto log = MakeLog();
  ASSERT_TRUE(AppendSync(*log, "a", Value("a")).ok());
  etcd_->KillMember(0);
  const auto started = Clock::now();
  auto r = CommittedIndexSync(*log, 1500ms);
  EXPECT_LT(Clock::now() - started, 4s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
}

}  // namespace
}  // namespace k8shmir
