// EtcdLog against real etcd (Debian's /usr/bin/etcd) on loopback: appends, heads and the log's life
// cycle (a killed or hung member, destruction).
#include "integration/etcd_log_fixture.h"

namespace k8shmir {
namespace {

TEST_F(EtcdLogTest, AppendAssignsIncreasingIndicesAndHeadReportsTheLast) {
  auto log = MakeLog();
  auto empty = HeadSync(*log);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(empty->last_index, 0);
  EXPECT_GE(empty->revision, 1);
  EXPECT_EQ(empty->end_index, EndIndexOfRevision(empty->revision));

  std::vector<int64_t> indices;
  for (int i = 0; i < 5; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(r->created);
    indices.push_back(r->first_index);
  }
  // Nothing else writes to this etcd: one revision per append, each a batch of one at position 0.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(indices[i], IndexOf(empty->revision + 1 + i, 0));

  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->last_index, indices[4]);
  EXPECT_EQ(head->revision, RevisionOfIndex(indices[4]));
  EXPECT_EQ(head->end_index, EndIndexOfRevision(head->revision));

  // On etcd: one key "<id>.1" per append, created at the revision of its index.
  auto raw = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(raw.revision, head->revision);
  std::map<std::string, int64_t> expected;
  for (int i = 0; i < 5; ++i) {
    expected[Prefix("g") + BatchKeySuffix("e" + std::to_string(i), 1)] =
        RevisionOfIndex(indices[i]);
  }
  EXPECT_EQ(raw.keys, expected);
}

TEST_F(EtcdLogTest, AppendingTheSameIdTwiceReturnsTheOriginalIndex) {
  auto log = MakeLog();
  auto first = AppendSync(*log, "dup", "v1");
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->created);
  auto second = AppendSync(*log, "dup", "v2");
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->first_index, first->first_index);
  // The failure branch of the transaction writes nothing.
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->revision, RevisionOfIndex(first->first_index));
  EXPECT_EQ(head->last_index, first->first_index);

  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));
  // Periodic notifications (1 s) or nothing more.
  ASSERT_TRUE(c.WaitProgress(EndIndexOfRevision(head->revision)));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id, "dup");
  EXPECT_EQ(records[0].value, "v1");
  EXPECT_EQ(records[0].index, first->first_index);
  EXPECT_FALSE(records[0].malformed);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, GroupsAreIsolatedAndOnlyCreateGaps) {
  auto a = MakeLog("a");
  auto b = MakeLog("b");
  Collector ca, cb;
  auto sa = a->Subscribe(1, ca.Callback());
  auto sb = b->Subscribe(1, cb.Callback());
  auto a1 = AppendSync(*a, "x1", "a-1");
  auto b1 = AppendSync(*b, "x1", "b-1");  // same id, other group: another entry
  auto a2 = AppendSync(*a, "x2", "a-2");
  auto b2 = AppendSync(*b, "x2", "b-2");
  auto a3 = AppendSync(*a, "x3", "a-3");
  for (auto* r : {&a1, &b1, &a2, &b2, &a3}) {
    ASSERT_TRUE(r->ok()) << r->error().message;
    EXPECT_TRUE((*r)->created);
  }
  // One revision per append, whichever group: the other group's appends leave gaps.
  const int64_t r1 = RevisionOfIndex(a1->first_index);
  EXPECT_EQ(a1->first_index, IndexOf(r1, 0));
  EXPECT_EQ(b1->first_index, IndexOf(r1 + 1, 0));
  EXPECT_EQ(a2->first_index, IndexOf(r1 + 2, 0));
  EXPECT_EQ(b2->first_index, IndexOf(r1 + 3, 0));
  EXPECT_EQ(a3->first_index, IndexOf(r1 + 4, 0));

  ASSERT_TRUE(ca.WaitRecords(3));
  ASSERT_TRUE(cb.WaitRecords(2));
  ASSERT_TRUE(ca.WaitProgress(a3->first_index));
  ASSERT_TRUE(cb.WaitProgress(a3->first_index));
  auto ra = ca.Records();
  auto rb = cb.Records();
  ASSERT_EQ(ra.size(), 3u);
  ASSERT_EQ(rb.size(), 2u);
  EXPECT_EQ(ra[0].index, a1->first_index);
  EXPECT_EQ(ra[1].index, a2->first_index);
  EXPECT_EQ(ra[2].index, a3->first_index);
  EXPECT_EQ(ra[2].value, "a-3");
  EXPECT_EQ(rb[0].index, b1->first_index);
  EXPECT_EQ(rb[1].index, b2->first_index);
  EXPECT_EQ(rb[1].value, "b-2");

  auto head_a = HeadSync(*a);
  ASSERT_TRUE(head_a.ok());
  EXPECT_EQ(head_a->last_index, a3->first_index);
  auto head_b = HeadSync(*b);
  ASSERT_TRUE(head_b.ok());
  EXPECT_EQ(head_b->last_index, b2->first_index);
  EXPECT_EQ(head_b->revision, RevisionOfIndex(a3->first_index));
  EXPECT_EQ(head_b->end_index, EndIndexOfRevision(head_b->revision));
  EXPECT_TRUE(ca.Violations().empty());
  EXPECT_TRUE(cb.Violations().empty());
}

TEST_F(EtcdLogTest, KilledEtcdClosesSubscriptionsRefusesAppendsAndRecovers) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 3; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok());
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(3));

  auto killed_at = Clock::now();
  etcd_->KillMember(0);
  // liveness_timeout (1 s) + progress_interval (0.3 s) + slack; a killed local process is
  // usually noticed at once through the closed connection.
  ASSERT_TRUE(c.WaitClosed(3s));
  EXPECT_LT(Clock::now() - killed_at, 3s);
  EXPECT_EQ(c.Closed()->error.code, ErrorCode::kUnavailable) << c.Closed()->error.message;

  // A read first: it is harmless if its first attempt still went out on the connection that
  // was closing (a write sent on it could have reached etcd, and would rightly be "unknown"),
  // and once it failed the channel knows the member is gone.
  auto head_down = HeadSync(*log, 500ms);
  ASSERT_FALSE(head_down.ok());
  EXPECT_EQ(head_down.error().code, ErrorCode::kUnavailable) << head_down.error().message;
  // Nothing can connect: certainly not committed, and answered by the deadline.
  auto started = Clock::now();
  auto down = AppendSync(*log, "during-outage", "x", 1500ms);
  auto took = Clock::now() - started;
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable) << down.error().message;
  EXPECT_LT(took, 2s);
  // The failed attempts are counted as certainly not applied; one member: nowhere to fail over.
  const LogClientStats stats = log->ClientStats();
  EXPECT_GT(stats.errors[0], 0u);
  EXPECT_EQ(stats.failovers, 0u);
  EXPECT_EQ(stats.endpoint, etcd_->Endpoint(0));

  etcd_->StartMember(0);
  // The same log object recovers (reconnect backoff is capped at 1 s).
  Result<AppendResult> after = Error{ErrorCode::kUnavailable, "not tried"};
  auto until = Clock::now() + 30s;
  while (Clock::now() < until) {
    after = AppendSync(*log, "after", Value("after"), 1000ms);
    if (after.ok()) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_GT(after->first_index, indices.back());

  Collector c2;
  auto sub2 = log->Subscribe(indices.back() + 1, c2.Callback());
  ASSERT_TRUE(c2.WaitRecords(1));
  ASSERT_TRUE(c2.WaitProgress(after->first_index));
  auto records = c2.Records();
  // "during-outage" was certainly not committed.
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id, "after");
  EXPECT_EQ(records[0].index, after->first_index);
  EXPECT_TRUE(RawKeys(etcd_->Endpoint(0), Prefix("g"))
                  .keys.count(Prefix("g") + BatchKeySuffix("during-outage", 1)) == 0);
  EXPECT_TRUE(c.Violations().empty());
  EXPECT_TRUE(c2.Violations().empty());
}

TEST_F(EtcdLogTest, UnresponsiveMemberIsDetectedAndAmbiguousAppendsCanBeRetried) {
  auto log = MakeLog();
  auto first = AppendSync(*log, "first", "v");
  ASSERT_TRUE(first.ok());
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));

  // A stopped process keeps its connections open: only the liveness check can tell.
  auto paused_at = Clock::now();
  PauseMember(*etcd_, 0);
  ASSERT_TRUE(c.WaitClosed(4s));
  auto detected = Clock::now() - paused_at;
  // Not before a probe went unanswered for liveness_timeout (the last probe may predate the
  // pause by up to progress_interval).
  EXPECT_GE(detected, 650ms);
  EXPECT_LT(detected, 2500ms);
  auto closed = c.Closed();
  EXPECT_EQ(closed->error.code, ErrorCode::kUnavailable);
  EXPECT_EQ(closed->error.message, "watch stream unresponsive");

  // The request reaches the stopped member, which may process it when it resumes: unknown.
  auto ambiguous = AppendSync(*log, "maybe", "m", 1000ms);
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_EQ(ambiguous.error().code, ErrorCode::kUnknown) << ambiguous.error().message;

  ResumeMember(*etcd_, 0);
  // Retrying the same id tells the truth either way, with one index.
  auto retried = AppendSync(*log, "maybe", "m", 5000ms);
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  auto again = AppendSync(*log, "maybe", "m", 5000ms);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->first_index, retried->first_index);

  Collector c2;
  auto sub2 = log->Subscribe(1, c2.Callback());
  ASSERT_TRUE(c2.WaitRecords(2));
  auto records = c2.Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].id, "maybe");
  EXPECT_EQ(records[1].index, retried->first_index);
}

TEST_F(EtcdLogTest, DestroyingTheLogWithLiveSubscriptionsAndCallsIsClean) {
  Collector c;
  std::unique_ptr<Subscription> sub;
  auto counter = std::make_shared<std::atomic<int>>(0);
  {
    auto log = MakeLog();
    sub = log->Subscribe(1, c.Callback());
    for (int i = 0; i < 20; ++i) {
      log->Append("x" + std::to_string(i), "v", Clock::now() + 10s,
                  [counter](Result<AppendResult>) { ++*counter; });
    }
  }
  EXPECT_EQ(counter->load(), 20);
  EXPECT_FALSE(c.Closed().has_value());
  sub->RequestProgress();
  sub.reset();
  EXPECT_TRUE(c.Violations().empty());
}

}  // namespace
}  // namespace k8shmir
