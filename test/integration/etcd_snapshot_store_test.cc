// EtcdLog's SnapshotStore on a real etcd: a multi-piece snapshot stored and read back, newest
// first, only the newest two kept, a half-written one (no manifest) never listed and cleaned up,
// a corrupt or missing piece refused, a different state at a stored index refused.
#include <gtest/gtest.h>

#include "integration/etcd_log_fixture.h"
#include "log/snapshot_format.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;

const std::string kLogPrefix = "/k8shmir/g/log/";
const std::string kPrefix = "/k8shmir/g/snapshots/";

Deadline In(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }

Result<SnapshotManifest> SaveSync(SnapshotStore& store, const AppSnapshot& s, int keep = 2) {
  auto r = Await<Result<SnapshotManifest>>(
      [&](std::function<void(Result<SnapshotManifest>)> done) {
        store.SaveSnapshot(s, "replica-0", keep, In(10s), std::move(done));
      },
      20s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

Result<std::vector<SnapshotManifest>> ListSync(SnapshotStore& store) {
  auto r = Await<Result<std::vector<SnapshotManifest>>>(
      [&](std::function<void(Result<std::vector<SnapshotManifest>>)> done) {
        store.ListSnapshots(In(5s), std::move(done));
      },
      10s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

Result<AppSnapshot> LoadSync(SnapshotStore& store, const SnapshotManifest& m) {
  auto r = Await<Result<AppSnapshot>>(
      [&](std::function<void(Result<AppSnapshot>)> done) {
        store.LoadSnapshot(m, In(10s), std::move(done));
      },
      20s);
  if (!r) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*r);
}

// Not one byte repeated at the same place from one state to the next.
std::string State(std::size_t size, int seed) {
  std::string s(size, '\0');
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

// On an etcd with its default request limit (EtcdLogTest's is lowered to test the log's limits).
class EtcdSnapshotStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    etcd_ = std::make_unique<testing::EtcdCluster>(1);
    etcd_->Start();
    ASSERT_TRUE(WaitReady(EndpointList(*etcd_))) << "etcd did not start";
  }
  std::unique_ptr<EtcdLog> MakeLog() {
    return std::make_unique<EtcdLog>(Options(EndpointList(*etcd_), "g"));
  }
  std::unique_ptr<testing::EtcdCluster> etcd_;
};

std::vector<int64_t> Indices(const std::vector<SnapshotManifest>& list) {
  std::vector<int64_t> out;
  for (const auto& m : list) out.push_back(m.index);
  return out;
}

TEST_F(EtcdSnapshotStoreTest, ASnapshotInSeveralPiecesIsStoredAndReadBack) {
  auto log = MakeLog();
  const std::string state = State(3 * kSnapshotChunkBytes + 12345, 1);
  auto saved = SaveSync(*log, AppSnapshot{4096, state});
  ASSERT_TRUE(saved.ok()) << saved.error().message;
  EXPECT_EQ(saved->index, 4096);
  EXPECT_EQ(saved->size, state.size());
  EXPECT_EQ(saved->chunks, 4u);
  EXPECT_EQ(saved->sha256, Sha256Hex(state));
  EXPECT_EQ(saved->taker, "replica-0");
  EXPECT_GT(saved->revision, 0);
  auto list = ListSync(*log);
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].sha256, saved->sha256);
  auto loaded = LoadSync(*log, (*list)[0]);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->index, 4096);
  EXPECT_TRUE(loaded->data == state);
  // The log does not see any of it.
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->last_index, 0);
  // Saving the same state again is a no-op; another state at that index is refused.
  EXPECT_TRUE(SaveSync(*log, AppSnapshot{4096, state}).ok());
  auto other = SaveSync(*log, AppSnapshot{4096, State(10, 2)});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kInvalid) << other.error().message;
}

TEST_F(EtcdSnapshotStoreTest, OnlyTheNewestTwoSnapshotsAreKept) {
  auto log = MakeLog();
  for (int64_t index : {256, 512, 768, 1024}) {
    ASSERT_TRUE(SaveSync(*log, AppSnapshot{index, State(1000, static_cast<int>(index))}).ok());
  }
  auto list = ListSync(*log);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(Indices(*list), (std::vector<int64_t>{1024, 768}));
  EXPECT_EQ(etcd_->CountPrefix(kPrefix), 4);  // two pieces and two manifests
  auto loaded = LoadSync(*log, (*list)[1]);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_TRUE(loaded->data == State(1000, 768));
}

TEST_F(EtcdSnapshotStoreTest, AHalfWrittenSnapshotIsNeverListedAndIsCleanedUp) {
  auto log = MakeLog();
  ASSERT_TRUE(SaveSync(*log, AppSnapshot{256, State(100, 1)}).ok());
  // A taker killed after writing pieces of snapshot 512 but before its manifest.
  RawPut(etcd_->Endpoint(0), SnapshotChunkKey(kPrefix, 512, 0), "part of a state");
  auto list = ListSync(*log);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(Indices(*list), (std::vector<int64_t>{256}));
  ASSERT_TRUE(SaveSync(*log, AppSnapshot{768, State(100, 3)}).ok());
  ASSERT_TRUE(SaveSync(*log, AppSnapshot{1024, State(100, 4)}).ok());
  list = ListSync(*log);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(Indices(*list), (std::vector<int64_t>{1024, 768}));
  EXPECT_EQ(etcd_->CountPrefix(SnapshotDir(kPrefix, 512)), 0);
}

TEST_F(EtcdSnapshotStoreTest, ACorruptOrMissingPieceIsRefused) {
  auto log = MakeLog();
  const std::string state = State(2 * kSnapshotChunkBytes + 7, 5);
  auto saved = SaveSync(*log, AppSnapshot{2048, state});
  ASSERT_TRUE(saved.ok());
  const std::string chunk1 = SnapshotChunkKey(kPrefix, 2048, 1);
  std::string flipped = state.substr(kSnapshotChunkBytes, kSnapshotChunkBytes);
  flipped[100] = static_cast<char>(flipped[100] ^ 1);
  RawPut(etcd_->Endpoint(0), chunk1, flipped);
  auto corrupt = LoadSync(*log, *saved);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.error().code, ErrorCode::kProtocol);
  EXPECT_NE(corrupt.error().message.find("SHA-256"), std::string::npos) << corrupt.error().message;
  etcd_->Delete(chunk1);
  auto missing = LoadSync(*log, *saved);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kProtocol);
  EXPECT_NE(missing.error().message.find("missing"), std::string::npos) << missing.error().message;
  RawPut(etcd_->Endpoint(0), SnapshotManifestKey(kPrefix, 2048), "{\"format\": 9}");
  auto list = ListSync(*log);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

}  // namespace
}  // namespace k8shmir
