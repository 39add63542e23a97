// What the replicas of one group share beside the log and the snapshots (docs/design.md,
// "Retention"): the group's format marker, a registry of the live replicas, and which one of
// them takes snapshots. Implemented on etcd (src/log/group_registry.cc) and in memory for unit
// tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "k8shmir/log.h"
#include "k8shmir/result.h"

namespace k8shmir {

// The layout of a group's log and snapshots that this build reads and writes. A group marked
// with another format is refused (written by a newer k8shmir, or not by k8shmir at all).
inline constexpr int kGroupFormat = 1;

// One replica as it last published itself.
struct ReplicaRecord {
  std::string replica_id;
  std::string state;  // ReplicaStateName
  int64_t applied_index = 0;
  int64_t last_snapshot_index = 0;  // newest snapshot it took or restored (0: none)
  bool app_snapshots = false;       // its app declares snapshots
  int64_t updated_unix_ms = 0;
  // For k8shmirctl. Records of proxies older than these fields lack them: they parse, and the
  // optional ones stay empty, so that "unknown" is not shown as 0 or false.
  std::optional<uint64_t> lag_entries;  // committed entries received and not yet applied
  std::string last_error;               // "" when none
  int64_t last_error_unix_ms = 0;
  std::optional<bool> app_pipelining;  // its app declares pipelining
};

// The group as one Refresh saw it.
struct GroupView {
  bool taker = false;    // the caller holds the snapshot taker's role
  std::string taker_id;  // who holds it ("" when nobody does)
  // Every replica whose record has not expired, the caller included, ordered by id.
  std::vector<ReplicaRecord> replicas;
};

class GroupRegistry {
 public:
  using StatusCallback = std::function<void(Status)>;
  using RefreshCallback = std::function<void(Result<GroupView>)>;

  virtual ~GroupRegistry() = default;

  // Reads the group's format marker, writing kGroupFormat when the group has none. kInvalid
  // (with both formats named) when it holds another one; kUnavailable when it cannot be read.
  // Callbacks of this interface run exactly once, on any thread, never inside the call.
  virtual void CheckFormat(Deadline deadline, StatusCallback done) = 0;

  // Publishes `self` (refreshing it: a record not refreshed within `ttl` expires and drops out
  // of the registry) and takes the snapshot taker's role when nobody holds it; the holder keeps
  // it while it refreshes. One Refresh at a time per registry.
  virtual void Refresh(const ReplicaRecord& self, std::chrono::seconds ttl, Deadline deadline,
                       RefreshCallback done) = 0;

  // Withdraws the record and the taker's role at once (a clean shutdown), instead of at expiry.
  virtual void Leave(Deadline deadline, StatusCallback done) = 0;
};

}  // namespace k8shmir
