// Snapshots, retention and state transfer in the replica (replica_snapshots.cc), on the fake log,
// app, snapshot store and registry. The fake log gives entry k the index k.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fakes/fake_group.h"
#include "replica_fixture.h"

namespace k8shmir {
namespace {

using testing::FakeGroupRegistry;
using testing::FakeSnapshotStore;

std::vector<std::string> Numbers(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i) out.push_back(std::to_string(i));
  return out;
}

// The fake app's snapshot of a journal whose entry k has body "k" (FakeApp::GetSnapshot).
std::string JournalSnapshot(int from, int to) {
  nlohmann::json entries = nlohmann::json::array();
  for (int i = from; i <= to; ++i) entries.push_back({i, std::to_string(i)});
  return entries.dump();
}

class RetentionTest : public ReplicaTest {
 protected:
  RetentionTest() : store_(ioc_.get_executor()), registry_(ioc_.get_executor()) {
    options_.snapshot_every_entries = 10;
    options_.snapshot_min_interval = std::chrono::milliseconds(0);
    options_.retain_entries = 5;
    options_.trim_min_age = std::chrono::milliseconds(0);
    options_.registry_interval = std::chrono::milliseconds(1);
    app_.snapshots = true;
  }

  // The replica must not outlive the store and the registry (its Stop leaves the registry): it
  // stops and goes before they do, not in ReplicaTest's destructor, which runs after theirs.
  ~RetentionTest() override {
    if (!replica_) return;
    replica_->Stop();
    ioc_.run_for(std::chrono::milliseconds(20));
    replica_.reset();
    ioc_.run_for(std::chrono::milliseconds(5));
  }

  void MakeWithGroup() {
    replica_ =
        std::make_shared<Replica>(ioc_.get_executor(), log_, app_, options_, &store_, &registry_);
  }

  void Serve() {
    MakeWithGroup();
    replica_->Start();
    ASSERT_TRUE(WaitState(ReplicaState::kServing));
  }

  // Sends "from".."to" one after the other; entry k gets index k on an empty fake log.
  void SendNumbers(int from, int to) {
    for (int i = from; i <= to; ++i) {
      auto reply = Send(std::to_string(i));
      ASSERT_TRUE(reply);
      ASSERT_EQ(reply->index, i);
    }
  }

  bool WaitTaken(uint64_t n, uint64_t trims) {
    return WaitStatus(
        [&](const ReplicaStatus& s) { return s.snapshots_taken >= n && s.trims >= trims; });
  }

  // Entries e<from>..e<to> written by another replica, whose bodies are their numbers.
  void AddEntries(int from, int to) {
    for (int i = from; i <= to; ++i) {
      const std::string id = "e" + std::to_string(i);
      log_.AddEntry(id, EncodedBody(std::to_string(i), id));
    }
  }

  // A log trimmed through `trimmed` whose entries trimmed+1..last are live, and stored
  // snapshots of the journal at each of `snapshots`.
  void TrimmedLog(int trimmed, int last, std::vector<int> snapshots) {
    AddEntries(1, last);
    log_.Trim(trimmed, {}, [](Result<TrimResult>) {});
    for (int index : snapshots) {
      store_.SaveSnapshot(AppSnapshot{index, JournalSnapshot(1, index)}, "r0", 2, {},
                          [](Result<SnapshotManifest>) {});
    }
    // Their callbacks; the io_context ran out of work, and is made ready to run again.
    ioc_.run();
    ioc_.restart();
  }

  FakeSnapshotStore store_;
  FakeGroupRegistry registry_;
};

// Snapshot at 10 (entries 1..10): nothing trimmed yet (no snapshot before it). At 20: the mark 5
// entries below it is 15, but the trim stops at the previous snapshot, 10. At 30: 20.
TEST_F(RetentionTest, TakerSnapshotsEveryNEntriesAndTrimsBehindTheRetainedTail) {
  Serve();
  SendNumbers(1, 10);
  ASSERT_TRUE(WaitTaken(1, 0));
  ASSERT_EQ(store_.stored.size(), 1u);
  EXPECT_EQ(store_.stored[0].manifest.index, 10);
  EXPECT_EQ(store_.stored[0].data, JournalSnapshot(1, 10));
  EXPECT_EQ(store_.stored[0].manifest.taker, "r1");
  ioc_.run_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(log_.trim_calls().empty());

  SendNumbers(11, 20);
  ASSERT_TRUE(WaitTaken(2, 1));
  EXPECT_EQ(log_.trim_calls(), (std::vector<int64_t>{10}));
  EXPECT_EQ(log_.records().front().index, 11);
  SendNumbers(21, 30);
  ASSERT_TRUE(WaitTaken(3, 2));
  ASSERT_EQ(store_.stored.size(), 2u);
  EXPECT_EQ(store_.stored[0].manifest.index, 20);
  EXPECT_EQ(store_.stored[1].manifest.index, 30);
  EXPECT_EQ(store_.stored[1].data, JournalSnapshot(1, 30));
  EXPECT_EQ(log_.trim_calls(), (std::vector<int64_t>{10, 20}));
  auto s = Status();
  EXPECT_EQ(s.retention, "on");
  EXPECT_TRUE(s.snapshot_taker);
  EXPECT_EQ(s.last_snapshot_index, 30);
  EXPECT_EQ(s.trimmed_index, 20);
  EXPECT_EQ(s.entries_trimmed, 20u);
  EXPECT_EQ(Bodies(), Numbers(1, 30));
  EXPECT_EQ(app_.contract_violations, 0);
  ASSERT_TRUE(RunUntil([&] {
    return registry_.last_published && registry_.last_published->last_snapshot_index == 30;
  }));
  EXPECT_EQ(registry_.last_published->replica_id, "r1");
}

TEST_F(RetentionTest, AReplicaWithoutTheTakersRoleNeitherSnapshotsNorTrims) {
  registry_.taker = "r2";
  Serve();
  SendNumbers(1, 25);
  ioc_.run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(app_.snapshot_gets, 0);
  EXPECT_TRUE(log_.trim_calls().empty());
  auto s = Status();
  EXPECT_FALSE(s.snapshot_taker);
  EXPECT_EQ(s.snapshot_taker_id, "r2");
}

// Another live replica's app cannot be restored: it must never need a state transfer.
TEST_F(RetentionTest, ALiveReplicaWhoseAppHasNoSnapshotsStopsTrims) {
  ReplicaRecord other;
  other.replica_id = "r2";
  other.state = "serving";
  other.app_snapshots = false;
  registry_.others["r2"] = other;
  Serve();
  SendNumbers(1, 10);
  ASSERT_TRUE(WaitTaken(1, 0));
  SendNumbers(11, 20);
  ASSERT_TRUE(WaitTaken(2, 0));
  SendNumbers(21, 30);
  ASSERT_TRUE(WaitTaken(3, 0));
  ioc_.run_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(log_.trim_calls().empty());
  auto s = Status();
  EXPECT_EQ(s.retention.rfind("off: replica r2's app does not declare snapshots", 0), 0u)
      << s.retention;
  // Once it is gone from the registry, trims resume.
  registry_.others.clear();
  SendNumbers(31, 40);
  ASSERT_TRUE(WaitTaken(4, 1));
  EXPECT_EQ(Status().retention, "on");
}

TEST_F(RetentionTest, AnAppWithoutSnapshotsIsNeverTrimmedAndSaysSo) {
  app_.snapshots = false;
  Serve();
  SendNumbers(1, 25);
  ioc_.run_for(std::chrono::milliseconds(100));
  EXPECT_EQ(app_.snapshot_gets, 0);
  EXPECT_TRUE(log_.trim_calls().empty());
  auto s = Status();
  EXPECT_EQ(s.retention.rfind("off: the app does not declare \"snapshots\": true", 0), 0u)
      << s.retention;
}

TEST_F(RetentionTest, ASnapshotOverTheSizeLimitIsRefusedAndNothingIsTrimmed) {
  options_.snapshot_max_bytes = 4;
  Serve();
  SendNumbers(1, 10);
  ASSERT_TRUE(RunUntil([&] { return app_.snapshot_gets >= 1; }));
  ioc_.run_for(std::chrono::milliseconds(50));
  auto s = Status();
  EXPECT_GE(s.snapshots_too_large, 1u);
  EXPECT_EQ(s.retention.rfind("off: the app's state is larger than the snapshot size limit", 0), 0u)
      << s.retention;
  EXPECT_NE(s.last_error.find("--snapshot-max-bytes"), std::string::npos) << s.last_error;
  EXPECT_TRUE(store_.stored.empty());
  EXPECT_TRUE(log_.trim_calls().empty());
  // Clients are served meanwhile.
  SendNumbers(11, 12);
  EXPECT_EQ(Bodies(), Numbers(1, 12));
}

TEST_F(RetentionTest, AnAppBelowTheTrimmedPointIsRestoredFromTheNewestSnapshotThenReplays) {
  TrimmedLog(10, 15, {8, 10});
  MakeWithGroup();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 15));
  EXPECT_EQ(app_.snapshot_puts, 1);
  auto s = Status();
  EXPECT_EQ(s.snapshots_restored, 1u);
  EXPECT_EQ(s.last_snapshot_index, 10);
  EXPECT_EQ(s.applied_index, 15);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(RetentionTest, ACorruptSnapshotIsRefusedAndAnOlderOneCoveringTheTrimIsUsed) {
  TrimmedLog(8, 15, {8, 10});
  store_.corrupt_indices = {10};
  MakeWithGroup();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 15));
  auto s = Status();
  EXPECT_EQ(s.snapshots_rejected, 1u);
  EXPECT_EQ(s.snapshots_restored, 1u);
  EXPECT_EQ(s.last_snapshot_index, 8);
}

TEST_F(RetentionTest, WithoutASnapshotCoveringTheTrimTheReplicaWaitsNotReadyAndSaysWhy) {
  TrimmedLog(10, 15, {8});
  MakeWithGroup();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kTransferringState));
  ioc_.run_for(std::chrono::milliseconds(50));
  auto s = Status();
  EXPECT_EQ(s.state, ReplicaState::kTransferringState);
  EXPECT_NE(s.state_reason.find("no stored snapshot is at index 10 or above"), std::string::npos)
      << s.state_reason;
  EXPECT_TRUE(app_.journal.empty());
  EXPECT_EQ(Send("x")->response.status, 503u);
  // Once one is stored, the retry finds it.
  store_.SaveSnapshot(AppSnapshot{12, JournalSnapshot(1, 12)}, "r0", 2, {},
                      [](Result<SnapshotManifest>) {});
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 15));
}

TEST_F(RetentionTest, AnAppWithoutSnapshotsBelowTheTrimNeedsAStateTransferAndSaysWhy) {
  TrimmedLog(10, 15, {10});
  app_.snapshots = false;
  MakeWithGroup();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kNeedsStateTransfer));
  auto s = Status();
  EXPECT_NE(s.state_reason.find("does not declare \"snapshots\": true"), std::string::npos)
      << s.state_reason;
  EXPECT_EQ(app_.snapshot_puts, 0);
  EXPECT_TRUE(app_.journal.empty());
}

// All state lost after a trim (the app restarted empty): the heartbeat notices, the replica
// restores the snapshot and replays the retained tail; the journal is as before.
TEST_F(RetentionTest, AnAppThatRestartsEmptyAfterATrimIsRestored) {
  Serve();
  SendNumbers(1, 10);
  ASSERT_TRUE(WaitTaken(1, 0));
  SendNumbers(11, 20);
  ASSERT_TRUE(WaitTaken(2, 1));
  ASSERT_EQ(log_.trimmed_index, 10);
  SendNumbers(21, 22);
  app_.Restart();
  ASSERT_TRUE(RunUntil([&] { return app_.snapshot_puts == 1; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 22));
  auto s = Status();
  EXPECT_EQ(s.snapshots_restored, 1u);
  EXPECT_EQ(s.last_snapshot_index, 20);
  SendNumbers(23, 23);
  EXPECT_EQ(Bodies(), Numbers(1, 23));
}

TEST_F(RetentionTest, AGroupOfAnUnknownFormatIsRefusedWithTheReason) {
  registry_.format_error =
      Error{ErrorCode::kInvalid, "the group's log and snapshots are in format 2"};
  MakeWithGroup();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kIncompatibleLog));
  auto s = Status();
  EXPECT_NE(s.state_reason.find("format 2"), std::string::npos) << s.state_reason;
  EXPECT_EQ(Send("x")->response.status, 503u);
  EXPECT_TRUE(log_.records().empty());
  registry_.format_error.reset();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
}

}  // namespace
}  // namespace k8shmir
