// The replicated log: a totally ordered, durable sequence of entries shared by all replicas of a
// group. Implemented on etcd (src/log/etcd_log.*) and in memory for unit tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "k8shmir/result.h"

namespace k8shmir {

// One committed entry. `index` is the log position (etcd: the revision that created the key).
// Indices increase strictly along the log but may have gaps.
struct LogRecord {
  int64_t index = 0;
  std::string id;     // the entry's unique id (last segment of its key)
  std::string value;  // the encoded entry
};

struct AppendResult {
  int64_t index = 0;
  // False when the entry already existed (a retried append); index is still the original one.
  bool created = true;
};

struct LogHead {
  // The log service's current revision (the "log head" shown in /status).
  int64_t revision = 0;
  // Index of the newest entry of this group, 0 when the group's log is empty.
  int64_t last_index = 0;
};

// What a subscription delivers, in log order.
struct LogBatch {
  std::vector<LogRecord> records;  // strictly increasing indices within the batch
  int64_t revision = 0;            // log service revision when the batch was sent
};
struct LogProgress {
  // Every record with index <= revision has been delivered before this event.
  int64_t revision = 0;
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

  virtual ~Log() = default;

  // Appends `value` as entry `id` unless an entry with that id exists (then returns the existing
  // one's index with created=false): retries are idempotent. kUnavailable means the log refused it
  // before it could commit; kUnknown means it may have committed.
  // The callback runs exactly once, on any thread, never inside this call.
  virtual void Append(const std::string& id, std::string value, Deadline deadline,
                      AppendCallback done) = 0;

  // Reads the log head. The callback runs exactly once, on any thread, never inside this call.
  virtual void Head(Deadline deadline, HeadCallback done) = 0;

  // Delivers every entry with index >= from_index, then new ones as they commit, in order, then
  // possibly one LogClosed. Events for one subscription never run concurrently and arrive in
  // order. `on_event` may run on any thread, never inside this call.
  virtual std::unique_ptr<Subscription> Subscribe(int64_t from_index, EventCallback on_event) = 0;
};

}  // namespace k8shmir
