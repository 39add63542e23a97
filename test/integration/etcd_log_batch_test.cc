// EtcdLog against real etcd (Debian's /usr/bin/etcd) on loopback: batches of entries: consecutive
// indices, retries, partial subscriptions, limits, foreign keys.
#include "integration/etcd_log_fixture.h"

namespace k8shmir {
namespace {

TEST_F(EtcdLogTest, AppendBatchPutsItsEntriesAtConsecutiveIndicesOfOneRevision) {
  auto log = MakeLog();
  auto before = HeadSync(*log);
  ASSERT_TRUE(before.ok()) << before.error().message;
  auto r = AppendBatchSync(*log, "batch", Entries("b", 5));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->created);
  // Nothing else writes to this etcd: the batch's transaction is the next revision.
  const int64_t revision = before->revision + 1;
  EXPECT_EQ(r->first_index, IndexOf(revision, 0));

  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->revision, revision);
  EXPECT_EQ(head->last_index, r->first_index + 4);
  EXPECT_EQ(head->end_index, EndIndexOfRevision(head->revision));

  // One key "<prefix><batch id>.<count>" for the whole batch.
  auto raw = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(raw.revision, revision);
  EXPECT_EQ(raw.keys, (std::map<std::string, int64_t>{{"/k8shmir/g/log/batch.5", revision}}));

  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(5));
  ASSERT_TRUE(c.WaitProgress(head->last_index));
  std::vector<ExpectedRecord> expected;
  for (int i = 0; i < 5; ++i) {
    std::string id = "b-" + std::to_string(i);
    expected.push_back({r->first_index + i, id, Value(id)});
  }
  ExpectRecords(c.Records(), expected);
  EXPECT_FALSE(c.Closed().has_value());
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, RetryingABatchReturnsTheOriginalAndAppendsItOnce) {
  auto log = MakeLog();
  auto first = AppendBatchSync(*log, "retry", Entries("r", 5));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->created);
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->revision, RevisionOfIndex(first->first_index));

  auto second = AppendBatchSync(*log, "retry", Entries("r", 5));
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->first_index, first->first_index);
  // The failure branch of the transaction writes nothing.
  auto head2 = HeadSync(*log);
  ASSERT_TRUE(head2.ok());
  EXPECT_EQ(head2->revision, head->revision);
  EXPECT_EQ(head2->last_index, first->first_index + 4);
  auto after = AppendSync(*log, "after", Value("after"));
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->first_index, IndexOf(head->revision + 1, 0));

  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(6));
  ASSERT_TRUE(c.WaitProgress(after->first_index));
  std::vector<ExpectedRecord> expected;
  for (int i = 0; i < 5; ++i) {
    std::string id = "r-" + std::to_string(i);
    expected.push_back({first->first_index + i, id, Value(id)});
  }
  expected.push_back({after->first_index, "after", Value("after")});
  ExpectRecords(c.Records(), expected);
  EXPECT_EQ(RawKeys(etcd_->Endpoint(0), Prefix("g")).keys.size(), 2u);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, SubscriptionFromInsideABatchDeliversItsRestThenLaterAppends) {
  auto log = MakeLog();
  auto before = AppendSync(*log, "before", Value("before"));
  ASSERT_TRUE(before.ok()) << before.error().message;
  auto batch = AppendBatchSync(*log, "mid", Entries("m", 5));
  ASSERT_TRUE(batch.ok()) << batch.error().message;
  const int64_t revision = RevisionOfIndex(batch->first_index);
  ASSERT_EQ(batch->first_index, IndexOf(RevisionOfIndex(before->first_index) + 1, 0));

  Collector c;      // from entry 2 of the batch
  Collector last;   // from its last entry
  Collector after;  // from just past it, within its revision (what a replica at end_index asks)
  auto sub = log->Subscribe(batch->first_index + 2, c.Callback());
  auto sub_last = log->Subscribe(batch->first_index + 4, last.Callback());
  auto sub_after = log->Subscribe(batch->first_index + 5, after.Callback());
  ASSERT_TRUE(c.WaitRecords(3));
  ASSERT_TRUE(c.WaitProgress(batch->first_index + 4));
  ExpectRecords(c.Records(), {{batch->first_index + 2, "m-2", Value("m-2")},
                              {batch->first_index + 3, "m-3", Value("m-3")},
                              {batch->first_index + 4, "m-4", Value("m-4")}});

  auto later = AppendSync(*log, "later", Value("later"));
  ASSERT_TRUE(later.ok()) << later.error().message;
  EXPECT_EQ(later->first_index, IndexOf(revision + 1, 0));
  auto later_batch = AppendBatchSync(*log, "later-batch", Entries("l", 2));
  ASSERT_TRUE(later_batch.ok()) << later_batch.error().message;
  EXPECT_EQ(later_batch->first_index, IndexOf(revision + 2, 0));

  std::vector<ExpectedRecord> tail = {{later->first_index, "later", Value("later")},
                                      {later_batch->first_index, "l-0", Value("l-0")},
                                      {later_batch->first_index + 1, "l-1", Value("l-1")}};
  ASSERT_TRUE(c.WaitRecords(6));
  ASSERT_TRUE(c.WaitProgress(later_batch->first_index + 1));
  std::vector<ExpectedRecord> expected = {{batch->first_index + 2, "m-2", Value("m-2")},
                                          {batch->first_index + 3, "m-3", Value("m-3")},
                                          {batch->first_index + 4, "m-4", Value("m-4")}};
  expected.insert(expected.end(), tail.begin(), tail.end());
  ExpectRecords(c.Records(), expected);

  ASSERT_TRUE(last.WaitRecords(4));
  ASSERT_TRUE(last.WaitProgress(later_batch->first_index + 1));
  std::vector<ExpectedRecord> expected_last = {{batch->first_index + 4, "m-4", Value("m-4")}};
  expected_last.insert(expected_last.end(), tail.begin(), tail.end());
  ExpectRecords(last.Records(), expected_last);

  ASSERT_TRUE(after.WaitRecords(3));
  ASSERT_TRUE(after.WaitProgress(later_batch->first_index + 1));
  ExpectRecords(after.Records(), tail);

  for (auto* collector : {&c, &last, &after}) {
    EXPECT_FALSE(collector->Closed().has_value());
    EXPECT_TRUE(collector->Violations().empty());
  }
}

TEST_F(EtcdLogTest, MixedAppendsAndBatchesLookTheSameToEverySubscription) {
  auto log = MakeLog();
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  int64_t revision = head->revision;
  std::vector<ExpectedRecord> expected;
  // Nothing else writes to this etcd: each append takes the next revision.
  auto single = [&](const std::string& id) {
    auto r = AppendSync(*log, id, Value(id));
    ASSERT_TRUE(r.ok()) << id << ": " << r.error().message;
    EXPECT_TRUE(r->created);
    EXPECT_EQ(r->first_index, IndexOf(++revision, 0)) << id;
    expected.push_back({r->first_index, id, Value(id)});
  };
  auto batch = [&](const std::string& batch_id, int n) {
    auto r = AppendBatchSync(*log, batch_id, Entries(batch_id, n));
    ASSERT_TRUE(r.ok()) << batch_id << ": " << r.error().message;
    EXPECT_TRUE(r->created);
    EXPECT_EQ(r->first_index, IndexOf(++revision, 0)) << batch_id;
    for (int i = 0; i < n; ++i) {
      std::string id = batch_id + "-" + std::to_string(i);
      expected.push_back({r->first_index + i, id, Value(id)});
    }
  };

  Collector early;  // before anything was appended
  auto s1 = log->Subscribe(1, early.Callback());
  single("s0");
  batch("b1", 3);
  single("s1");
  batch("b2", 1);
  Collector middle;  // halfway: catches up, then follows
  auto s2 = log->Subscribe(1, middle.Callback());
  batch("b3", 4);
  single("s2");
  batch("b4", 2);
  single("s3");
  Collector late;  // after everything
  auto s3 = log->Subscribe(1, late.Callback());

  ASSERT_EQ(expected.size(), 14u);
  for (size_t i = 1; i < expected.size(); ++i) {
    EXPECT_GT(expected[i].index, expected[i - 1].index) << "record " << i;
  }
  for (auto* c : {&early, &middle, &late}) {
    ASSERT_TRUE(c->WaitRecords(expected.size()));
    ASSERT_TRUE(c->WaitProgress(expected.back().index));
    ExpectRecords(c->Records(), expected);
    EXPECT_FALSE(c->Closed().has_value());
    EXPECT_TRUE(c->Violations().empty());
  }
  auto end = HeadSync(*log);
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(end->revision, revision);
  EXPECT_EQ(end->last_index, expected.back().index);
}

TEST_F(EtcdLogTest, AFullBatchUsesEveryIndexOfItsRevision) {
  auto log = MakeLog();
  auto before = HeadSync(*log);
  ASSERT_TRUE(before.ok());
  auto full = AppendBatchSync(*log, "full", Entries("f", static_cast<int>(kMaxBatchEntries)));
  ASSERT_TRUE(full.ok()) << full.error().message;
  const int64_t revision = before->revision + 1;
  EXPECT_EQ(full->first_index, IndexOf(revision, 0));
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->last_index, full->first_index + 255);
  EXPECT_EQ(head->last_index, EndIndexOfRevision(revision));
  EXPECT_EQ(head->end_index, EndIndexOfRevision(revision));
  auto next = AppendSync(*log, "next", Value("next"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->first_index, EndIndexOfRevision(revision) + 1);

  Collector c;
  auto sub = log->Subscribe(full->first_index, c.Callback());
  ASSERT_TRUE(c.WaitRecords(257));
  ASSERT_TRUE(c.WaitProgress(next->first_index));
  std::vector<ExpectedRecord> expected;
  for (int i = 0; i < 256; ++i) {
    std::string id = "f-" + std::to_string(i);
    expected.push_back({full->first_index + i, id, Value(id)});
  }
  expected.push_back({next->first_index, "next", Value("next")});
  ExpectRecords(c.Records(), expected);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, InvalidBatchesAreRefusedAndWriteNothing) {
  auto log = MakeLog();
  ASSERT_TRUE(AppendSync(*log, "existing", Value("existing")).ok());
  auto before = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  ASSERT_EQ(before.keys.size(), 1u);

  auto no_id = Entries("x", 3);
  no_id[1].id.clear();
  struct Case {
    std::string name;
    std::string batch_id;
    std::vector<LogEntry> entries;
  };
  std::vector<Case> cases;
  cases.push_back({"no entries", "empty", {}});
  cases.push_back({"257 entries", "too-many", Entries("t", 257)});
  cases.push_back({"an entry without id", "no-id", no_id});
  cases.push_back({"no batch id", "", Entries("y", 2)});
  cases.push_back({"a single entry without id", "single-no-id", {LogEntry{"", "v"}}});
  for (auto& c : cases) {
    auto r = AppendBatchSync(*log, c.batch_id, std::move(c.entries));
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid) << c.name << ": " << r.error().message;
  }
  auto single = AppendSync(*log, "", "v");
  ASSERT_FALSE(single.ok());
  EXPECT_EQ(single.error().code, ErrorCode::kInvalid) << single.error().message;

  auto after = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(after.revision, before.revision);
  EXPECT_EQ(after.keys, before.keys);
}

TEST_F(EtcdLogTest, ABatchTooLargeForEtcdIsInvalid) {
  auto log = MakeLog();
  ASSERT_TRUE(AppendSync(*log, "existing", Value("existing")).ok());
  auto before = RawKeys(etcd_->Endpoint(0), Prefix("g"));

  // 200 kB: above --max-request-bytes (128 KiB), below what etcd's gRPC server reads at all
  // (max-request-bytes + 512 KiB): etcd's own check refuses it before proposing.
  auto too_large = AppendBatchSync(*log, "too-large", Entries("l", 2, 100000));
  ASSERT_FALSE(too_large.ok());
  EXPECT_EQ(too_large.error().code, ErrorCode::kInvalid) << too_large.error().message;
  EXPECT_NE(too_large.error().message.find("etcdserver: request is too large"), std::string::npos)
      << too_large.error().message;

  // 2 MiB: etcd's gRPC server refuses to read the request.
  auto huge = AppendBatchSync(*log, "huge", Entries("h", 16, 128 * 1024));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, ErrorCode::kInvalid) << huge.error().message;
  EXPECT_NE(huge.error().message.find("grpc: received message larger than max"), std::string::npos)
      << huge.error().message;

  auto after = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(after.revision, before.revision);
  EXPECT_EQ(after.keys, before.keys);

  // The limit is on the batch as a whole: the same entries fit one at a time.
  auto one = AppendSync(*log, "l-0", std::string(100000, 'a'));
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->first_index, IndexOf(before.revision + 1, 0));
}

TEST_F(EtcdLogTest, FragmentedWatchResponsesOfBatchesAreDeliveredAsTheyCome) {
  auto log = MakeLog();
  // As FragmentedWatchResponsesAreDeliveredAsTheyCome, with batches of 2 x 50 kB: 12 keys of 100 kB
  // need at least two fragments of etcd's catch-up response.
  constexpr int kBatches = 12;
  constexpr size_t kValueBytes = 50000;
  std::vector<ExpectedRecord> expected;
  for (int b = 0; b < kBatches; ++b) {
    std::string batch_id = "big" + std::to_string(b);
    auto entries = Entries(batch_id, 2, kValueBytes);
    auto r = AppendBatchSync(*log, batch_id, entries);
    ASSERT_TRUE(r.ok()) << r.error().message;
    for (int i = 0; i < 2; ++i) {
      expected.push_back({r->first_index + i, entries[i].id, entries[i].value});
    }
  }
  // From the second entry of the first batch.
  expected.erase(expected.begin());
  Collector c;
  auto sub = log->Subscribe(expected.front().index, c.Callback());
  ASSERT_TRUE(c.WaitRecords(expected.size()));
  EXPECT_GE(BatchCount(c.Events()), 2u);
  ExpectRecords(BatchRecords(c.Events()), expected);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, ForeignKeysBecomeMalformedRecords) {
  auto log = MakeLog();
  auto a = AppendSync(*log, "a", "va");
  ASSERT_TRUE(a.ok()) << a.error().message;
  Collector live;  // follows the foreign writes as they happen
  auto sub = log->Subscribe(1, live.Callback());
  ASSERT_TRUE(live.WaitRecords(1));

  // Written by something other than k8shmir: a key that names no batch, a batch whose key
  // announces 3 entries but holds 1, and an empty value (no entries) under a key announcing 2.
  const std::string endpoint = etcd_->Endpoint(0);
  int64_t plain = RawPut(endpoint, Prefix("g") + "plain-key", "not a batch");
  int64_t liar = RawPut(endpoint, Prefix("g") + "liar.3", *EncodeBatch({{"only", "one"}}));
  int64_t empty = RawPut(endpoint, Prefix("g") + "empty.2", "");
  EXPECT_EQ(plain, RevisionOfIndex(a->first_index) + 1);
  EXPECT_EQ(liar, plain + 1);
  EXPECT_EQ(empty, liar + 1);

  // Each is one malformed record at the index its key announces last; the head agrees.
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->revision, empty);
  EXPECT_EQ(head->last_index, IndexOf(empty, 1));
  // A progress request is answered once the malformed record at the head was delivered.
  sub->RequestProgress();
  ASSERT_TRUE(live.WaitProgress(head->last_index));

  auto b = AppendSync(*log, "b", "vb");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->first_index, IndexOf(empty + 1, 0));

  std::vector<ExpectedRecord> expected = {{a->first_index, "a", "va"},
                                          {IndexOf(plain, 0), "plain-key", "", true},
                                          {IndexOf(liar, 2), "liar.3", "", true},
                                          {IndexOf(empty, 1), "empty.2", "", true},
                                          {b->first_index, "b", "vb"}};
  Collector replay;  // reads them back from history
  auto sub2 = log->Subscribe(1, replay.Callback());
  for (auto* c : {&live, &replay}) {
    ASSERT_TRUE(c->WaitRecords(expected.size()));
    ASSERT_TRUE(c->WaitProgress(b->first_index));
    ExpectRecords(c->Records(), expected);
    EXPECT_FALSE(c->Closed().has_value());
    EXPECT_TRUE(c->Violations().empty());
  }
}

}  // namespace
}  // namespace k8shmir
