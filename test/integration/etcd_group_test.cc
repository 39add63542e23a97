// EtcdLog's retention (Trim) and GroupRegistry on a real etcd: the marker first, only batches
// entirely at or below it deleted (over several pages), the head and range reads reporting it;
// the format marker written once and an unknown one refused; records on leases that expire, and
// one taker at a time, handed over when its holder leaves or stops refreshing.
#include <gtest/gtest.h>

#include "integration/etcd_log_fixture.h"
#include "log/batch_format.h"
#include "log/group_format.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;

Deadline In(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }

Result<TrimResult> TrimSync(Log& log, int64_t through) {
  auto r = Await<Result<TrimResult>>(
      [&](std::function<void(Result<TrimResult>)> done) {
        log.Trim(through, In(20s), std::move(done));
      },
      30s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

Result<GroupView> RefreshSync(GroupRegistry& registry, const std::string& id, int64_t applied,
                              std::chrono::seconds ttl = 10s) {
  ReplicaRecord record;
  record.replica_id = id;
  record.state = "serving";
  record.applied_index = applied;
  auto r = Await<Result<GroupView>>(
      [&](std::function<void(Result<GroupView>)> done) {
        registry.Refresh(record, ttl, In(5s), std::move(done));
      },
      10s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

Status FormatSync(GroupRegistry& registry) {
  auto r = Await<Status>(
      [&](std::function<void(Status)> done) { registry.CheckFormat(In(5s), std::move(done)); },
      10s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

Status LeaveSync(GroupRegistry& registry) {
  auto r = Await<Status>(
      [&](std::function<void(Status)> done) { registry.Leave(In(5s), std::move(done)); }, 10s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

using EtcdGroupTest = EtcdLogTest;

// 1100 single-entry batches and a 4-entry batch (more than one page of keys): a trim
// through the middle of a 4-entry batch keeps that batch whole.
TEST_F(EtcdGroupTest, TrimDeletesOnlyBatchesEntirelyAtOrBelowTheMarkAndRecordsItFirst) {
  auto log = MakeLog();
  std::vector<int64_t> firsts;
  for (int i = 0; i < 1100; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    firsts.push_back(r->first_index);
  }
  auto batch = AppendBatchSync(*log, "b", Entries("b", 4));
  ASSERT_TRUE(batch.ok());
  auto tail = AppendSync(*log, "last", Value("last"));
  ASSERT_TRUE(tail.ok());

  // Through entry 999 and into the middle of nothing: entries 0..999 go.
  auto trimmed = TrimSync(*log, firsts[999]);
  ASSERT_TRUE(trimmed.ok()) << trimmed.error().message;
  EXPECT_EQ(trimmed->trimmed_index, firsts[999]);
  EXPECT_EQ(trimmed->keys_deleted, 1000u);
  EXPECT_EQ(trimmed->entries_deleted, 1000u);
  const std::string endpoint = EndpointList(*etcd_)[0];
  EXPECT_EQ(RawKeys(endpoint, Prefix("g")).keys.size(), 100u + 2u);

  // Through the second entry of the 4-entry batch: the batch stays, the 100 before it go.
  trimmed = TrimSync(*log, batch->first_index + 1);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(trimmed->keys_deleted, 100u);
  auto keys = RawKeys(endpoint, Prefix("g")).keys;
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.count(Prefix("g") + "b.4"), 1u);

  // The marker never goes down; a lower trim deletes nothing more.
  trimmed = TrimSync(*log, firsts[10]);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(trimmed->trimmed_index, batch->first_index + 1);
  EXPECT_EQ(trimmed->keys_deleted, 0u);

  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->trimmed_index, batch->first_index + 1);
  EXPECT_EQ(head->last_index, tail->first_index);

  auto range = Await<Result<LogRange>>(
      [&](std::function<void(Result<LogRange>)> done) {
        log->ReadRange(1, 0, In(5s), std::move(done));
      },
      10s);
  ASSERT_TRUE(range && range->ok());
  EXPECT_EQ((*range)->trimmed_index, batch->first_index + 1);
  ASSERT_EQ((*range)->records.size(), 5u);
  EXPECT_EQ((*range)->records[0].index, batch->first_index);
  EXPECT_EQ((*range)->records[4].index, tail->first_index);
}

TEST_F(EtcdGroupTest, TheFormatMarkerIsWrittenOnceAndAnUnknownFormatIsRefused) {
  auto log = MakeLog();
  ASSERT_TRUE(FormatSync(*log).ok());
  const std::string endpoint = EndpointList(*etcd_)[0];
  const std::string key = GroupFormatKey(Prefix("g"));
  auto first = RawKeys(endpoint, key);
  ASSERT_EQ(first.keys.size(), 1u);
  ASSERT_TRUE(FormatSync(*log).ok());
  EXPECT_EQ(RawKeys(endpoint, key).keys, first.keys);

  RawPut(endpoint, key, "{\"format\": 2}");
  auto refused = FormatSync(*log);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
  EXPECT_NE(refused.error().message.find("format 2"), std::string::npos) << refused.error().message;
  RawPut(endpoint, key, "not json");
  refused = FormatSync(*log);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
}

TEST_F(EtcdGroupTest, OneTakerAtATimeHandedOverWhenItLeavesOrItsRecordExpires) {
  auto a = MakeLog();
  auto b = MakeLog();
  auto va = RefreshSync(*a, "a", 10, 3s);
  ASSERT_TRUE(va.ok()) << va.error().message;
  EXPECT_TRUE(va->taker);
  auto vb = RefreshSync(*b, "b", 7, 3s);
  ASSERT_TRUE(vb.ok());
  EXPECT_FALSE(vb->taker);
  EXPECT_EQ(vb->taker_id, "a");
  ASSERT_EQ(vb->replicas.size(), 2u);
  EXPECT_EQ(vb->replicas[0].replica_id, "a");
  EXPECT_EQ(vb->replicas[0].applied_index, 10);
  EXPECT_EQ(vb->replicas[1].replica_id, "b");
  EXPECT_EQ(vb->replicas[1].applied_index, 7);
  // The holder keeps its role across refreshes (each on a new lease).
  for (int i = 0; i < 3; ++i) {
    va = RefreshSync(*a, "a", 11 + i, 3s);
    ASSERT_TRUE(va.ok());
    EXPECT_TRUE(va->taker);
  }
  // A clean leave hands it over at once.
  ASSERT_TRUE(LeaveSync(*a).ok());
  vb = RefreshSync(*b, "b", 8, 3s);
  ASSERT_TRUE(vb.ok());
  EXPECT_TRUE(vb->taker);
  ASSERT_EQ(vb->replicas.size(), 1u);
  // A holder that stops refreshing (killed) loses it when its lease expires.
  va = RefreshSync(*a, "a", 12, 3s);
  ASSERT_TRUE(va.ok());
  EXPECT_FALSE(va->taker);
  EXPECT_EQ(va->taker_id, "b");
  std::this_thread::sleep_for(4500ms);
  va = RefreshSync(*a, "a", 13, 3s);
  ASSERT_TRUE(va.ok());
  EXPECT_TRUE(va->taker);
  ASSERT_EQ(va->replicas.size(), 1u);
  EXPECT_EQ(va->replicas[0].replica_id, "a");
}

}  // namespace
}  // namespace k8shmir
