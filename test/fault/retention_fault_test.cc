// 11. Retention under load (docs/design.md, "Retention"): with small --snapshot-every-entries and
// --retain-entries, snapshots are taken and the log trimmed while clients write; a replica
// stopped past the retained tail, a 4th replica with an empty app and three apps killed at once
// are restored from the snapshot and catch up; the snapshot taker SIGKILLed mid-upload leaves no
// partial snapshot visible and the next one succeeds; a corrupted piece is refused. Every check
// of the fault suite (CheckHistory) holds on every replica: nothing acknowledged is lost.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "log/etcd_log.h"
#include "log/snapshot_format.h"
#include "support/fault_load.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

// FaultOptions' small retention: snapshots every 50 entries, 100 retained below them, so the
// snapshot before the newest always covers the trimmed point; trims wait 6 s.
ReplicatedClusterOptions RetentionOptions(const std::string& group) { return FaultOptions(group); }

std::string LogPrefix(ReplicatedCluster& cluster) {
  return "/k8shmir/" + cluster.group() + "/log/";
}

// Runs `start(callback)` and waits for the callback's value, at most 20 s.
template <class T>
std::optional<T> Await(const std::function<void(std::function<void(T)>)>& start) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> future = promise->get_future();
  start([promise](T value) { promise->set_value(std::move(value)); });
  if (future.wait_for(20s) != std::future_status::ready) return std::nullopt;
  return future.get();
}

Result<std::vector<SnapshotManifest>> List(EtcdLog& store) {
  auto list = Await<Result<std::vector<SnapshotManifest>>>(
      [&](std::function<void(Result<std::vector<SnapshotManifest>>)> done) {
        store.ListSnapshots(std::chrono::steady_clock::now() + 5s, std::move(done));
      });
  if (!list) return Error{ErrorCode::kUnavailable, "no answer"};
  return std::move(*list);
}

int64_t Retention(ReplicatedCluster& cluster, int i, const char* name) {
  const json s = cluster.Status(i);
  if (!s.is_object() || !s.contains("retention")) return -1;
  return s.at("retention").value(name, int64_t{-1});
}

// A retention counter summed over the group's proxies (a restarted proxy starts from 0).
int64_t RetentionSum(ReplicatedCluster& cluster, const char* name) {
  int64_t sum = 0;
  for (int i = 0; i < cluster.size(); ++i) sum += std::max<int64_t>(0, Retention(cluster, i, name));
  return sum;
}

int Taker(ReplicatedCluster& cluster) {
  for (int i = 0; i < cluster.size(); ++i) {
    const json s = cluster.Status(i);
    if (s.is_object() && s.contains("retention") &&
        s.at("retention").value("snapshot_taker", false)) {
      return i;
    }
  }
  return -1;
}

// The trimmed point passes `index` (and at least two trims happened) within 90 s.
bool WaitTrimmedPast(ReplicatedCluster& cluster, int64_t index) {
  return WaitFor([&] { return cluster.Etcd().TrimmedIndex(LogPrefix(cluster)) > index; }, 90s,
                 200ms);
}

TEST(Retention, SnapshotsAndTrimsUnderLoadAndAStoppedReplicaPastTheTailIsRestored) {
  ReplicatedCluster cluster(RetentionOptions("retention-load"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  {
    Load load(cluster, history, {0, 1, 2});
    ASSERT_TRUE(load.WaitProgress(20, 30s));
    // Replica 2's proxy stops; its app keeps its state, soon behind the trimmed point.
    cluster.KillProxy(2);
    const int64_t stopped_at = cluster.AppLastIndex(2);
    ASSERT_GT(stopped_at, 0);
    ASSERT_TRUE(WaitTrimmedPast(cluster, stopped_at)) << history.Summary();
    cluster.StartProxy(2);
    ASSERT_TRUE(cluster.WaitServing(2, 60s));
    ASSERT_TRUE(load.WaitProgress(20, 30s, {0, 1}));
    // Under load until the running proxies count two snapshots and two trims (the taker may
    // have been the proxy that was restarted, whose counters started again from 0).
    EXPECT_TRUE(WaitFor(
        [&] {
          return RetentionSum(cluster, "snapshots_taken") >= 2 &&
                 RetentionSum(cluster, "trims") >= 2;
        },
        60s, 200ms))
        << "snapshots " << RetentionSum(cluster, "snapshots_taken") << ", trims "
        << RetentionSum(cluster, "trims");
  }
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
  EXPECT_GE(Retention(cluster, 2, "snapshots_restored"), 1);
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_EQ(cluster.Status(i).at("retention").value("state", ""), "on") << i;
  }
  // The log holds far fewer entries than were applied.
  const int64_t live = cluster.Etcd().CountLogEntries(LogPrefix(cluster));
  EXPECT_LT(live, static_cast<int64_t>(cluster.Journal(0).size())) << history.Summary();
}

TEST(Retention, AFourthReplicaJoinsLateAndThreeAppsKilledAtOnceAreRestored) {
  ReplicatedCluster cluster(RetentionOptions("retention-join"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  History history;
  {
    Load load(cluster, history, {0, 1, 2});
    ASSERT_TRUE(load.WaitProgress(20, 30s));
    ASSERT_TRUE(WaitTrimmedPast(cluster, 0)) << history.Summary();
    // Scale-up: an empty app and a new proxy, after entries it would need were deleted.
    const int joined = cluster.AddReplica();
    cluster.StartApp(joined);
    cluster.StartProxy(joined);
    ASSERT_TRUE(cluster.WaitServing(joined, 60s));
    ASSERT_TRUE(load.WaitProgress(20, 30s));
  }
  ASSERT_GE(Retention(cluster, 3, "snapshots_restored"), 1);
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));

  // Every app at once, restarted empty: nothing but the snapshot and the retained tail is left.
  for (int i = 0; i < 3; ++i) cluster.KillApp(i);
  for (int i = 0; i < 3; ++i) cluster.StartApp(i);
  // Each proxy notices its app's restart (heartbeat) and restores it.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(WaitFor([&] { return Retention(cluster, i, "snapshots_restored") >= 1; }, 60s))
        << i;
  }
  ASSERT_TRUE(cluster.WaitAllServing(60s));
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

TEST(Retention, TheTakerKilledMidUploadLeavesNoPartialSnapshotAndACorruptPieceIsRefused) {
  ReplicatedCluster cluster(RetentionOptions("retention-taker"));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  const std::string snapshots = SnapshotPrefixOf(LogPrefix(cluster));
  EtcdLogOptions log_options;
  for (int i = 0; i < cluster.Etcd().size(); ++i) {
    log_options.endpoints.push_back(cluster.Etcd().Endpoint(i));
  }
  log_options.prefix = LogPrefix(cluster);
  EtcdLog store(log_options);

  History history;
  Load::Options load_options;
  // Snapshots of megabytes (many pieces, a long upload), bounded well below --snapshot-max-bytes.
  load_options.append_bytes = 8 * 1024;
  load_options.max_ops_per_client = 800;
  int64_t partial = -1;
  int killed = -1;
  {
    Load load(cluster, history, {0, 1, 2}, load_options);
    ASSERT_TRUE(WaitFor([&] { return Taker(cluster) >= 0; }, 30s));
    killed = Taker(cluster);
    // A snapshot directory with pieces and no manifest yet: its upload is under way.
    ASSERT_TRUE(WaitFor(
        [&] {
          std::set<int64_t> with_pieces;
          std::set<int64_t> with_manifest;
          for (const auto& key : cluster.Etcd().Keys(snapshots)) {
            const SnapshotKey k = ParseSnapshotKey(snapshots, key);
            if (k.index < 0) continue;
            (k.manifest ? with_manifest : with_pieces).insert(k.index);
          }
          for (int64_t index : with_pieces) {
            if (with_manifest.count(index) == 0) {
              cluster.KillProxy(killed);
              partial = index;
              return true;
            }
          }
          return false;
        },
        60s, 2ms))
        << "no upload seen under way";
    // The next taker (once the killed one's lease expired) stores a newer one. The killed
    // upload is listed only if its manifest made it before the kill: then it is whole.
    ASSERT_TRUE(WaitFor(
        [&] {
          auto list = List(store);
          return list.ok() && !list->empty() && list->front().index > partial;
        },
        60s, 200ms));
    cluster.StartProxy(killed);
    ASSERT_TRUE(cluster.WaitServing(killed, 60s));
    ASSERT_TRUE(WaitTrimmedPast(cluster, 0)) << history.Summary();
  }
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
  // No piece is left without its manifest (once any upload still under way has ended), and
  // every listed snapshot reads back whole.
  Result<std::vector<SnapshotManifest>> list = Error{ErrorCode::kUnavailable, "not read"};
  ASSERT_TRUE(WaitFor(
      [&] {
        list = List(store);
        if (!list.ok()) return false;
        std::set<int64_t> listed;
        for (const auto& m : *list) listed.insert(m.index);
        for (const auto& key : cluster.Etcd().Keys(snapshots)) {
          if (listed.count(ParseSnapshotKey(snapshots, key).index) == 0) return false;
        }
        return true;
      },
      30s, 200ms));
  ASSERT_EQ(list->size(), 2u);
  for (const auto& m : *list) {
    auto loaded = Await<Result<AppSnapshot>>([&](std::function<void(Result<AppSnapshot>)> done) {
      store.LoadSnapshot(m, std::chrono::steady_clock::now() + 10s, std::move(done));
    });
    ASSERT_TRUE(loaded && loaded->ok()) << m.index;
  }

  // A piece of the newest snapshot corrupted: the next restore refuses it and uses the older one.
  const SnapshotManifest newest = list->front();
  cluster.Etcd().Put(SnapshotChunkKey(snapshots, newest.index, 0), "corrupted");
  const int victim = (killed + 1) % cluster.size();
  const int64_t rejected_before = Retention(cluster, victim, "snapshots_rejected");
  cluster.KillApp(victim);
  cluster.StartApp(victim);
  const int64_t restored_before = Retention(cluster, victim, "snapshots_restored");
  ASSERT_TRUE(WaitFor(
      [&] { return Retention(cluster, victim, "snapshots_restored") == restored_before + 1; },
      60s));
  ASSERT_TRUE(cluster.WaitServing(victim, 60s));
  EXPECT_EQ(Retention(cluster, victim, "snapshots_rejected"), rejected_before + 1);
  EXPECT_EQ(Retention(cluster, victim, "last_snapshot_index"), list->at(1).index);
  ASSERT_NO_FATAL_FAILURE(CheckHistory(cluster, history));
}

}  // namespace
}  // namespace k8shmir::testing
