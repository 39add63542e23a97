// In-memory SnapshotStore and GroupRegistry for unit tests: what the replicas of one group share
// beside the log, with knobs for the failures etcd and damaged data produce. Callbacks are posted
// to the executor, never run inside the call.
#pragma once

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "k8shmir/group_registry.h"
#include "k8shmir/snapshot_store.h"

namespace k8shmir::testing {

class FakeSnapshotStore : public SnapshotStore {
 public:
  explicit FakeSnapshotStore(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // ---- knobs ----
  std::optional<Error> save_error;
  std::optional<Error> list_error;
  // Loading the snapshot at this index fails as a corrupt one does (kProtocol).
  std::vector<int64_t> corrupt_indices;

  struct Stored {
    SnapshotManifest manifest;
    std::string data;
  };
  // Newest last.
  std::vector<Stored> stored;
  int saves = 0;
  int loads = 0;

  void SaveSnapshot(const AppSnapshot& snapshot, const std::string& taker, int keep, Deadline,
                    SaveCallback done) override {
    ++saves;
    if (save_error) return Post([done, e = *save_error] { done(e); });
    SnapshotManifest m;
    m.index = snapshot.index;
    m.revision = ++revision_;
    m.size = snapshot.data.size();
    m.chunks = 1;
    m.taker = taker;
    stored.push_back(Stored{m, snapshot.data});
    std::sort(stored.begin(), stored.end(),
              [](const Stored& a, const Stored& b) { return a.manifest.index < b.manifest.index; });
    while (stored.size() > static_cast<std::size_t>(std::max(keep, 1)))
      stored.erase(stored.begin());
    Post([done, m] { done(m); });
  }

  void ListSnapshots(Deadline, ListCallback done) override {
    if (list_error) return Post([done, e = *list_error] { done(e); });
    std::vector<SnapshotManifest> list;
    for (auto it = stored.rbegin(); it != stored.rend(); ++it) list.push_back(it->manifest);
    Post([done, list] { done(list); });
  }

  void LoadSnapshot(const SnapshotManifest& manifest, Deadline, LoadCallback done) override {
    ++loads;
    const int64_t index = manifest.index;
    if (std::find(corrupt_indices.begin(), corrupt_indices.end(), index) != corrupt_indices.end()) {
      return Post([done] { done(Error{ErrorCode::kProtocol, "fake: chunk checksum mismatch"}); });
    }
    for (const auto& s : stored) {
      if (s.manifest.index == index) {
        return Post([done, snap = AppSnapshot{index, s.data}] { done(snap); });
      }
    }
    Post([done] { done(Error{ErrorCode::kProtocol, "fake: snapshot deleted"}); });
  }

 private:
  template <class F>
  void Post(F f) {
    boost::asio::post(ex_, std::move(f));
  }
  boost::asio::any_io_executor ex_;
  int64_t revision_ = 0;
};

class FakeGroupRegistry : public GroupRegistry {
 public:
  explicit FakeGroupRegistry(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // ---- knobs ----
  std::optional<Error> format_error;
  std::optional<Error> refresh_error;
  // Who holds the taker's role; "" gives it to the next Refresh.
  std::string taker;
  // Records of other replicas, returned with the caller's own.
  std::map<std::string, ReplicaRecord> others;

  // ---- observations ----
  std::optional<ReplicaRecord> last_published;
  int refreshes = 0;
  int leaves = 0;

  void CheckFormat(Deadline, StatusCallback done) override {
    if (format_error) return Post([done, e = *format_error] { done(e); });
    Post([done] { done(OkStatus()); });
  }

  void Refresh(const ReplicaRecord& self, std::chrono::seconds, Deadline,
               RefreshCallback done) override {
    ++refreshes;
    if (refresh_error) return Post([done, e = *refresh_error] { done(e); });
    last_published = self;
    if (taker.empty()) taker = self.replica_id;
    GroupView view;
    view.taker = taker == self.replica_id;
    view.taker_id = taker;
    auto all = others;
    all[self.replica_id] = self;
    for (auto& [id, record] : all) view.replicas.push_back(record);
    Post([done, view] { done(view); });
  }

  void Leave(Deadline, StatusCallback done) override {
    ++leaves;
    Post([done] { done(OkStatus()); });
  }

 private:
  template <class F>
  void Post(F f) {
    boost::asio::post(ex_, std::move(f));
  }
  boost::asio::any_io_executor ex_;
};

}  // namespace k8shmir::testing
