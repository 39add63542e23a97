// EtcdLog against real etcd (Debian's /usr/bin/etcd) on loopback: subscriptions: order, progress,
// fragments, overwrites, compaction, cancellation.
#include "integration/etcd_log_fixture.h"

namespace k8shmir {
namespace {

TEST_F(EtcdLogTest, SubscriptionFromOneDeliversEverythingInOrder) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 10; ++i) {
    auto r = AppendSync(*log, "old" + std::to_string(i), Value("old" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(10));
  for (int i = 0; i < 5; ++i) {
    auto r = AppendSync(*log, "new" + std::to_string(i), Value("new" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  ASSERT_TRUE(c.WaitRecords(15));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 15u);
  for (int i = 0; i < 15; ++i) {
    std::string id = i < 10 ? "old" + std::to_string(i) : "new" + std::to_string(i - 10);
    EXPECT_EQ(records[i].id, id);
    EXPECT_EQ(records[i].value, Value(id));
    EXPECT_EQ(records[i].index, indices[i]);
    EXPECT_FALSE(records[i].malformed);
  }
  EXPECT_FALSE(c.Closed().has_value());
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, SubscriptionFromTheMiddleDeliversOnlyLaterEntries) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 10; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(indices[6], c.Callback());
  ASSERT_TRUE(c.WaitRecords(4));
  ASSERT_TRUE(c.WaitProgress(indices[9]));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(records[i].index, indices[6 + i]);
    EXPECT_EQ(records[i].id, "e" + std::to_string(6 + i));
  }
}

TEST_F(EtcdLogTest, RequestProgressComesAfterEveryEntryUpToTheHead) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 50; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), std::string(1000, 'a' + i % 26));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  // Asked at once, before the catch-up: the answer must still come after all 50 entries.
  sub->RequestProgress();
  ASSERT_TRUE(c.WaitProgress(indices.back(), 10s));
  EXPECT_EQ(c.Records().size(), 50u);
  c.CheckProgressAfterRecords(indices);

  // On an idle, caught-up subscription the answer is the current revision.
  auto other = MakeLog("other");
  auto foreign = AppendSync(*other, "f", "x");
  ASSERT_TRUE(foreign.ok());
  sub->RequestProgress();
  ASSERT_TRUE(c.WaitProgress(foreign->first_index, 10s));
  EXPECT_EQ(c.Records().size(), 50u);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, RequestProgressOnAnEmptyLogAndFromTheFuture) {
  auto log = MakeLog("empty");
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  Collector c1, c2;
  auto s1 = log->Subscribe(1, c1.Callback());
  auto s2 = log->Subscribe(IndexOf(head->revision + 100, 0), c2.Callback());
  s1->RequestProgress();
  s2->RequestProgress();
  ASSERT_TRUE(c1.WaitProgress(EndIndexOfRevision(head->revision), 5s));
  ASSERT_TRUE(c2.WaitProgress(EndIndexOfRevision(head->revision), 5s));
  EXPECT_TRUE(c1.Records().empty());
  EXPECT_TRUE(c2.Records().empty());
  EXPECT_TRUE(c1.Violations().empty());
  EXPECT_TRUE(c2.Violations().empty());
}

TEST_F(EtcdLogTest, PeriodicProgressNotificationsArrive) {
  // etcd runs with --experimental-watch-progress-notify-interval=1s.
  auto log = MakeLog();
  auto r = AppendSync(*log, "only", "v");
  ASSERT_TRUE(r.ok());
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));
  ASSERT_TRUE(c.WaitProgress(r->first_index, 5s));
  c.CheckProgressAfterRecords({r->first_index});
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, FragmentedWatchResponsesAreDeliveredAsTheyCome) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  // etcd 3.4 splits a watch response above max-request-bytes + 512 KiB (its allowance for gRPC
  // overhead), here 640 KiB: 12 x 100 kB needs at least two fragments.
  constexpr int kEntries = 12;
  constexpr size_t kValueBytes = 100000;
  for (int i = 0; i < kEntries; ++i) {
    auto r = AppendSync(*log, "big" + std::to_string(i), std::string(kValueBytes, 'A' + i));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(indices[0], c.Callback());
  ASSERT_TRUE(c.WaitRecords(kEntries));
  // etcd catches the new watcher up with one response, which it must split into fragments; they
  // are delivered as they come (at least two batches), so that no subscriber has to hold a whole
  // catch-up response (up to 1,000 revisions) before it can pause.
  const std::vector<LogRecord> records = BatchRecords(c.Events());
  EXPECT_GE(BatchCount(c.Events()), 2u);
  ASSERT_EQ(records.size(), static_cast<size_t>(kEntries));
  for (int i = 0; i < kEntries; ++i) {
    EXPECT_EQ(records[i].index, indices[i]);
    EXPECT_EQ(records[i].value, std::string(kValueBytes, 'A' + i));
  }
}

TEST_F(EtcdLogTest, AnOverwrittenEntryIsNotDeliveredAgain) {
  auto log = MakeLog();
  auto a = AppendSync(*log, "a", "original");
  ASSERT_TRUE(a.ok());
  // Something other than k8shmir overwrites the entry's batch key.
  int64_t overwritten_at =
      RawPut(etcd_->Endpoint(0), Prefix("g") + BatchKeySuffix("a", 1), "overwritten");
  ASSERT_EQ(overwritten_at, RevisionOfIndex(a->first_index) + 1);
  auto b = AppendSync(*log, "b", "vb");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->first_index, IndexOf(overwritten_at + 1, 0));
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(2));
  ASSERT_TRUE(c.WaitProgress(b->first_index));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 2u);
  // The watch replays both revisions of "a": the creation is delivered, with its original
  // value; the overwrite is not.
  EXPECT_EQ(records[0].id, "a");
  EXPECT_EQ(records[0].index, a->first_index);
  EXPECT_EQ(records[0].value, "original");
  EXPECT_FALSE(records[0].malformed);
  EXPECT_EQ(records[1].id, "b");
  EXPECT_EQ(records[1].index, b->first_index);
  EXPECT_FALSE(records[1].malformed);
  // Appending "a" again still finds the (overwritten) batch: created=false, the original index.
  auto again = AppendSync(*log, "a", "original");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->first_index, a->first_index);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, CompactedHistoryClosesTheSubscription) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 5; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok());
    indices.push_back(r->first_index);
  }
  // Compaction works on revisions.
  const int64_t compact_revision = RevisionOfIndex(indices[3]);
  auto compacted = CompactSync(*log, compact_revision);
  ASSERT_TRUE(compacted.ok()) << compacted.error().message;

  Collector c;
  auto sub = log->Subscribe(indices[1], c.Callback());
  ASSERT_TRUE(c.WaitClosed(5s));
  auto closed = c.Closed();
  EXPECT_EQ(closed->error.code, ErrorCode::kCompacted) << closed->error.message;
  EXPECT_EQ(closed->compact_revision, compact_revision);
  EXPECT_TRUE(c.Records().empty());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(c.Events().size(), 1u);
  EXPECT_TRUE(c.Violations().empty());

  // After the compaction point the history is still there.
  Collector later;
  auto sub2 = log->Subscribe(IndexOf(compact_revision + 1, 0), later.Callback());
  ASSERT_TRUE(later.WaitRecords(1));
  EXPECT_EQ(later.Records()[0].index, indices[4]);
  // So is the compaction revision itself: etcd keeps it.
  Collector at;
  auto sub3 = log->Subscribe(indices[3], at.Callback());
  ASSERT_TRUE(at.WaitRecords(2));
  ASSERT_TRUE(at.WaitProgress(indices[4]));
  auto records = at.Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].index, indices[3]);
  EXPECT_EQ(records[0].id, "e3");
  EXPECT_EQ(records[1].index, indices[4]);
  EXPECT_FALSE(at.Closed().has_value());
  EXPECT_TRUE(later.Violations().empty());
  EXPECT_TRUE(at.Violations().empty());

  auto again = CompactSync(*log, RevisionOfIndex(indices[2]));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kCompacted) << again.error().message;
  auto future = CompactSync(*log, RevisionOfIndex(indices[4]) + 1000);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.error().code, ErrorCode::kInvalid) << future.error().message;
}

TEST_F(EtcdLogTest, CancelStopsDeliveryWithoutLogClosed) {
  auto log = MakeLog();
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  auto r = AppendSync(*log, "a", "v");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(c.WaitRecords(1));
  sub->Cancel();
  sub->RequestProgress();  // harmless after Cancel
  auto before = c.Events().size();
  ASSERT_TRUE(AppendSync(*log, "b", "v").ok());
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(c.Events().size(), before);
  EXPECT_FALSE(c.Closed().has_value());
  sub.reset();
  // Destroying a live subscription's handle cancels it too.
  Collector c2;
  log->Subscribe(1, c2.Callback());
  std::this_thread::sleep_for(300ms);
  auto n = c2.Events().size();
  ASSERT_TRUE(AppendSync(*log, "c", "v").ok());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(c2.Events().size(), n);
}

}  // namespace
}  // namespace k8shmir
