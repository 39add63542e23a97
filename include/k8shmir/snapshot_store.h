// Durable app snapshots for a replication group (docs/design.md, "Snapshots"): the whole state
// of an app at a log index, stored beside the group's log so that a replica that needs entries
// the log no longer holds can be restored. Implemented on etcd (src/log/snapshot_*.cc) and in
// memory for unit tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "k8shmir/app.h"
#include "k8shmir/log.h"
#include "k8shmir/result.h"

namespace k8shmir {

// What describes a stored snapshot; written after all of its data, so a snapshot without one
// (its taker died while writing) is never seen.
struct SnapshotManifest {
  int64_t index = 0;     // the last log index the state reflects
  int64_t revision = 0;  // the log service's revision at which its manifest was written
  uint64_t size = 0;     // bytes of state
  uint32_t chunks = 0;   // pieces it is stored in
  std::string sha256;    // of the state, lowercase hex
  std::string taker;     // the replica that took it
  int64_t taken_unix_ms = 0;
};

class SnapshotStore {
 public:
  using SaveCallback = std::function<void(Result<SnapshotManifest>)>;
  using ListCallback = std::function<void(Result<std::vector<SnapshotManifest>>)>;
  using LoadCallback = std::function<void(Result<AppSnapshot>)>;

  virtual ~SnapshotStore() = default;

  // Stores `snapshot` (its data in pieces, then its manifest), then deletes all but the newest
  // `keep` snapshots and any older piece without a manifest. kInvalid when a snapshot at that
  // index already exists with other content. Callbacks of this interface run exactly once, on
  // any thread, never inside the call.
  virtual void SaveSnapshot(const AppSnapshot& snapshot, const std::string& taker, int keep,
                            Deadline deadline, SaveCallback done) = 0;

  // The stored snapshots, newest (highest index) first.
  virtual void ListSnapshots(Deadline deadline, ListCallback done) = 0;

  // Reads one back and checks it against its manifest (pieces, size, SHA-256): kProtocol when it
  // is incomplete or corrupt, so the caller can try an older one.
  virtual void LoadSnapshot(const SnapshotManifest& manifest, Deadline deadline,
                            LoadCallback done) = 0;
};

}  // namespace k8shmir
