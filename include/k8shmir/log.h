// The replicated log: a totally ordered, durable sequence of entries shared by all replicas of a
// group. Implemented on etcd (src/log/etcd_log.*) and in memory for unit tests.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "k8shmir/result.h"

namespace k8shmir {

// One committed entry. `index` is its log position. Indices increase strictly along the log but
// may have gaps (etcd: revision x 256 + position in the batch, see src/log/batch_format.h).
// Kinds of failed log calls (k8shmir_etcd_errors_total{kind}): certainly not applied, maybe
// applied, refused for good (too large, out of space), the member had no leader.
inline constexpr const char* kLogErrorKinds[] = {"unavailable", "unknown", "rejected", "no-leader"};
struct LogClientStats {
  std::string endpoint;         // the member calls go to first now ("" when not known)
  std::string leader_endpoint;  // etcd's leader, where linearizable reads go ("" when not known)
  uint64_t failovers = 0;       // times calls moved to another member after a failure
  std::array<uint64_t, std::size(kLogErrorKinds)> errors{};  // failed attempts by kind
  // etcd's alarms as last polled (every few seconds); all false until a poll was answered.
  bool alarms_known = false;
  bool nospace_alarm = false;  // NOSPACE: etcd refuses every write until it is disarmed
  bool corrupt_alarm = false;  // CORRUPT: members disagree on their data
  // The largest database a member reported in the last poll (bytes, etcd's dbSize, which its
  // quota limits); -1 when no member answered.
  int64_t db_size_bytes = -1;
};

struct LogRecord {
  int64_t index = 0;
  std::string id;     // the entry's unique id
  std::string value;  // the encoded entry
  // The log holds something at this index that is not an entry of ours (a foreign or corrupt
  // write): every replica sees it alike and must skip it. `value` is empty then.
  bool malformed = false;
};

// One entry to append.
struct LogEntry {
  std::string id;
  std::string value;
};

// The most entries one Append may carry.
inline constexpr std::size_t kMaxBatchEntries = 256;

struct AppendResult {
  // Index of the batch's first entry; entry i of the batch has index first_index + i.
  int64_t first_index = 0;
  // False when the batch already existed (a retried append); first_index is still the original.
  bool created = true;
  // When created: the index of the group's newest entry committed before this batch (0: none),
  // read in the transaction that created it. Every append acknowledged before AppendBatch was
  // called is at or below it, so it serves as a read barrier for reads that arrived before the
  // call (docs/design.md, "Reads that skip the log"). -1 when not known.
  int64_t committed_before = -1;
};

struct LogHead {
  // The log service's current revision (the "log head" shown in /status).
  int64_t revision = 0;
  // Index of the newest entry of this group, 0 when the group's log is empty.
  int64_t last_index = 0;
  // Every index <= end_index that will ever exist is already in the log: an app reporting an
  // index above it holds state that does not come from this log.
  int64_t end_index = 0;
  // Entries with index <= trimmed_index may have been deleted by retention (Log::Trim; 0:
  // nothing was): a replica whose app is below it cannot replay, and restores a snapshot.
  int64_t trimmed_index = 0;
};

// What one Log::Trim did.
struct TrimResult {
  int64_t trimmed_index = 0;  // the group's trimmed point now (never lower than before)
  uint64_t keys_deleted = 0;  // batches deleted by this call
  uint64_t entries_deleted = 0;
};

// One page of the group's live entries, read at one revision (Log::ReadRange).
struct LogRange {
  std::vector<LogRecord> records;  // index >= the requested from_index, strictly increasing
  // The log service's revision the page was read at; later pages of one catch-up read at it too.
  int64_t revision = 0;
  // Every live entry with from_index <= index < next_index is in `records`: the next page starts
  // here.
  int64_t next_index = 0;
  // False on the last page: then every entry with index <= end_index that still exists has been
  // returned, and a subscription from end_index + 1 continues the log.
  bool more = false;
  int64_t end_index = 0;
  // Entries with index <= trimmed_index may have been deleted by retention (0: nothing was): a
  // reader that needs any of them needs a state transfer instead.
  int64_t trimmed_index = 0;
};

// Whether the log service accepts writes (Log::CheckSpace).
struct LogSpace {
  // Writes are refused for lack of space (etcd: a NOSPACE alarm is raised), until an operator
  // frees space and disarms the alarm.
  bool full = false;
  std::string detail;  // what the log service says, for /status
};

// What a subscription delivers, in log order.
struct LogBatch {
  std::vector<LogRecord> records;  // strictly increasing indices within the batch
  int64_t revision = 0;            // log service revision when the batch was sent
};
struct LogProgress {
  // The log service's revision this progress mark stands for.
  int64_t revision = 0;
  // Every record with index <= end_index has been delivered before this event.
  int64_t end_index = 0;
};
struct LogClosed {
  // kCompacted (with compact_revision set) or kUnavailable/kUnknown/kProtocol. Never kCancelled:
  // a subscription closed by its owner delivers nothing more.
  Error error;
  int64_t compact_revision = 0;
};
using LogEvent = std::variant<LogBatch, LogProgress, LogClosed>;

// A live subscription. Destroying it (or Cancel) stops delivery; events already being delivered
// on another thread may still arrive, so the consumer must tolerate stale events (k8shmir's
// replica tags each subscription with a generation).
class Subscription {
 public:
  virtual ~Subscription() = default;
  // Asks the log to send a LogProgress as soon as everything up to its head was delivered.
  virtual void RequestProgress() = 0;
  virtual void Cancel() = 0;
};

using Deadline = std::chrono::steady_clock::time_point;

class Log {
 public:
  using AppendCallback = std::function<void(Result<AppendResult>)>;
  using HeadCallback = std::function<void(Result<LogHead>)>;
  using EventCallback = std::function<void(LogEvent)>;
  using RangeCallback = std::function<void(Result<LogRange>)>;
  using SpaceCallback = std::function<void(Result<LogSpace>)>;
  using TrimCallback = std::function<void(Result<TrimResult>)>;
  using CommittedCallback = std::function<void(Result<int64_t>)>;

  virtual ~Log() = default;

  // How this client fares with the log service, for metrics: any thread, never blocks.
  virtual LogClientStats ClientStats() const { return {}; }

  // Appends `entries` (1 to kMaxBatchEntries, in this order, at consecutive indices) atomically as
  // batch `batch_id`, unless a batch with that id and entry count exists (then returns the
  // existing one's first index with created=false): a retry with the same id and entries is
  // idempotent. Batch ids must be unique: the log does not compare the entries of a retry.
  // kUnavailable means the log refused it before it could commit; kUnknown means it may have
  // committed; kInvalid means it can never be appended (empty, too many entries, too large);
  // kLogFull means the log is out of space and it did not commit. The
  // callback runs exactly once, on any thread, never inside this call.
  virtual void AppendBatch(const std::string& batch_id, std::vector<LogEntry> entries,
                           Deadline deadline, AppendCallback done) = 0;

  // A batch of one entry whose batch id is the entry's id.
  void Append(const std::string& id, std::string value, Deadline deadline, AppendCallback done) {
    std::vector<LogEntry> entries;
    entries.push_back(LogEntry{id, std::move(value)});
    AppendBatch(id, std::move(entries), deadline, std::move(done));
  }

  // Whether the log accepts writes: a cheap query (no consensus round), made periodically by
  // every replica so that all of them report a full log, and notice when it has space again.
  // The callback runs exactly once, on any thread, never inside this call.
  virtual void CheckSpace(Deadline deadline, SpaceCallback done) = 0;

  // Reads the log head. The callback runs exactly once, on any thread, never inside this call.
  virtual void Head(Deadline deadline, HeadCallback done) = 0;

  // A read barrier (docs/design.md, "Reads that skip the log"): the index of the newest entry of
  // this group committed before this call began (0 when there is none), read linearizably, in
  // one round trip whose cost does not grow with the log. Every append acknowledged before the
  // call is at or below it. kUnavailable/kUnknown when the log could not confirm it in time. The
  // callback runs exactly once, on any thread, never inside this call.
  virtual void ReadCommittedIndex(Deadline deadline, CommittedCallback done) = 0;

  // Reads one bounded page of the live entries with index >= from_index, as of `revision` (0: the
  // current one; a later page of the same catch-up passes the first page's). This is how a reader
  // catches up when the history a subscription replays was compacted (LogClosed kCompacted):
  // compaction drops old versions of keys, never live keys. kCompacted when `revision` itself
  // was compacted meanwhile (start again at 0). The callback runs exactly once, on any thread,
  // never inside this call.
  virtual void ReadRange(int64_t from_index, int64_t revision, Deadline deadline,
                         RangeCallback done) = 0;

  // Retention: records `through_index` as the group's trimmed point (never lowering it), and
  // only then deletes every batch whose entries all have index <= through_index, in bounded
  // pages. The caller guarantees that a durable snapshot covers through_index and that no append
  // of a deleted batch can still be retried (a retried append of a deleted batch would append it
  // again). kUnavailable/kUnknown: part of it may be done; calling again finishes it. The
  // callback runs exactly once, on any thread, never inside this call.
  virtual void Trim(int64_t through_index, Deadline deadline, TrimCallback done) = 0;

  // Delivers every entry with index >= from_index, then new ones as they commit, in order, then
  // possibly one LogClosed. Events for one subscription never run concurrently and arrive in
  // order. `on_event` may run on any thread, never inside this call.
  virtual std::unique_ptr<Subscription> Subscribe(int64_t from_index, EventCallback on_event) = 0;
};

}  // namespace k8shmir
