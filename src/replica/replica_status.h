// The replica's observable state, for /status, /readyz and /metrics.
#pragma once

#include <array>
#include <cstdint>
#include <iterator>
#include <string>

namespace k8shmir {

enum class ReplicaState {
  kStarting,
  kCatchingUp,
  kServing,
  kRecovering,
  kNeedsStateTransfer,
  // The app's last-index answer broke the contract (null, missing, not a number, not JSON):
  // nothing is replayed or forwarded until it reports a number again.
  kAppContractViolation,
  // An entry in flight has not been answered within the app timeout: the proxy keeps waiting on
  // the same connection (an abandoned entry could still be applied later, and twice).
  kAppNotAnswering,
  // The log refuses writes for lack of space: clients get 503 at once; entries committed before
  // are still applied; serving again by itself once the log has space.
  kLogFull,
  // Restoring the app from a stored snapshot (the entries it needs were trimmed, or it restarted
  // empty after a trim); not ready until it has caught up after it.
  kTransferringState,
  // The group's format marker names a format this proxy does not know: nothing is read or
  // written until it does (a newer proxy wrote it, or the prefix is not k8shmir's).
  kIncompatibleLog,
};
// Every state, in declaration order (for /metrics).
inline constexpr ReplicaState kAllReplicaStates[] = {ReplicaState::kStarting,
                                                     ReplicaState::kCatchingUp,
                                                     ReplicaState::kServing,
                                                     ReplicaState::kRecovering,
                                                     ReplicaState::kNeedsStateTransfer,
                                                     ReplicaState::kAppContractViolation,
                                                     ReplicaState::kAppNotAnswering,
                                                     ReplicaState::kLogFull,
                                                     ReplicaState::kTransferringState,
                                                     ReplicaState::kIncompatibleLog};
const char* ReplicaStateName(ReplicaState state);

// Latency histogram with fixed Prometheus buckets (seconds).
struct Histogram {
  static constexpr std::array<double, 14> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  std::array<uint64_t, kBounds.size() + 1> counts{};
  double sum = 0;
  uint64_t count = 0;
  void Observe(double seconds);
};

// What became of a read that skips the log (docs/design.md, "Reads that skip the log").
enum class ReadOutcome {
  kServed,
  kNotServing,      // the replica was not serving (or was stopping): 503
  kLogUnavailable,  // the read barrier failed: 503
  kAppBehind,       // a new read connection found the app below the barrier: 503
  kAppFailed,       // the app did not answer the read: 502 / 504
  kTimedOut,        // not answered within the request timeout: 503 / 504
  kOverloaded,      // too many reads waiting: 503
};
inline constexpr ReadOutcome kAllReadOutcomes[] = {
    ReadOutcome::kServed,    ReadOutcome::kNotServing, ReadOutcome::kLogUnavailable,
    ReadOutcome::kAppBehind, ReadOutcome::kAppFailed,  ReadOutcome::kTimedOut,
    ReadOutcome::kOverloaded};
const char* ReadOutcomeName(ReadOutcome outcome);

// Why a client request was refused without being committed (k8shmir_rejections_total).
enum class Rejection {
  kTooLarge,            // 413: over the body limit or one log entry
  kBadRequest,          // 400 / 431 / 501 and friends: the front server could not take it
  kTooManyConnections,  // 503: over the front server's connection limit
  kTooManyPending,      // 503: too many requests (or their bytes, or reads) waiting here
  kNotServing,          // 503: the replica is not serving (starting, catching up, ...)
  kLogFull,             // 503: etcd refuses writes for lack of space
  kLogUnavailable,      // 503: the log (or a read barrier) could not be reached in time
};
inline constexpr Rejection kAllRejections[] = {
    Rejection::kTooLarge,       Rejection::kBadRequest, Rejection::kTooManyConnections,
    Rejection::kTooManyPending, Rejection::kNotServing, Rejection::kLogFull,
    Rejection::kLogUnavailable};
const char* RejectionName(Rejection rejection);

// The outcome label of k8shmir_request_latency_seconds: the K8shmir-Outcome of a logged
// request, or "read" for a request on a read route.
inline constexpr const char* kRequestOutcomeLabels[] = {"committed", "not-committed", "unknown",
                                                        "read"};

// Reads of one consistency (linearizable or local).
struct ReadCounters {
  std::array<uint64_t, std::size(kAllReadOutcomes)> by_outcome{};
  Histogram latency;  // arrival to answer, served reads only
  void Count(ReadOutcome outcome) { ++by_outcome[static_cast<std::size_t>(outcome)]; }
  uint64_t Of(ReadOutcome outcome) const { return by_outcome[static_cast<std::size_t>(outcome)]; }
};

struct ReplicaStatus {
  std::string replica_id;
  std::string group;
  ReplicaState state = ReplicaState::kStarting;
  std::string state_reason;
  int64_t applied_index = 0;   // index of the last entry the app applied
  int64_t log_head = 0;        // newest log service revision seen (all groups)
  int64_t log_last_index = 0;  // newest entry index of this group known to this replica
  std::string last_error;
  int64_t last_error_unix_ms = 0;

  // Counters.
  uint64_t requests_committed = 0;
  uint64_t requests_not_committed = 0;
  uint64_t requests_unknown = 0;
  // Every client answer, from arrival to answer, by kRequestOutcomeLabels.
  std::array<Histogram, std::size(kRequestOutcomeLabels)> request_latency;
  // Every client answer by status class: [0] 1xx ... [4] 5xx.
  std::array<uint64_t, 5> responses_by_class{};
  void CountResponse(unsigned status) {
    const unsigned status_class = status / 100;
    if (status_class >= 1 && status_class <= 5) ++responses_by_class[status_class - 1];
  }
  std::array<uint64_t, std::size(kAllRejections)> rejections{};
  void Count(Rejection r) { ++rejections[static_cast<std::size_t>(r)]; }
  uint64_t Of(Rejection r) const { return rejections[static_cast<std::size_t>(r)]; }
  // App calls (forwards, heartbeats, validations, reads) that failed: connection refused or
  // broken, a malformed answer. Timeouts are app_stalls (forwards) and read timeouts.
  uint64_t app_call_errors = 0;
  // Last-index queries that got no answer at all within their bound (forwards: app_stalls).
  uint64_t app_call_timeouts = 0;
  // The log client (etcd): the member in use, failovers, failed attempts by kind
  // (kLogErrorKinds), as Log::ClientStats reported them.
  std::string etcd_endpoint;
  std::string etcd_leader_endpoint;  // where linearizable reads go first ("" unknown)
  uint64_t etcd_failovers = 0;
  std::array<uint64_t, 4> etcd_errors{};
  // etcd's alarms as last polled (LogClientStats); not exported until a poll was answered.
  bool etcd_alarms_known = false;
  bool etcd_nospace_alarm = false;
  bool etcd_corrupt_alarm = false;
  int64_t etcd_db_size_bytes = -1;  // LogClientStats::db_size_bytes; not exported while -1
  uint64_t entries_applied = 0;
  uint64_t entries_replayed = 0;  // applied while catching up or recovering
  uint64_t entries_dropped = 0;   // duplicates or out-of-order deliveries from the log
  uint64_t recoveries = 0;
  uint64_t watch_restarts = 0;
  uint64_t log_appends = 0;                // append requests (batches) sent to the log
  uint64_t log_appended_entries = 0;       // entries in them
  uint64_t app_contract_violations = 0;    // last-index answers that were not a number
  uint64_t app_stalls = 0;                 // times an entry went unanswered past the app timeout
  uint64_t requests_over_byte_budget = 0;  // refused: pending bytes over the budget
  uint64_t watch_pauses = 0;               // watch paused for a full queue (entries or bytes)
  uint64_t log_full_refusals = 0;          // appends the log refused for lack of space
  uint64_t range_catch_ups = 0;  // catch-ups by reading live keys (the watch history compacted)
  int64_t last_recovery_ms = 0;

  // Snapshots and retention (docs/design.md, "Retention").
  // "on", or why this group's log is not trimmed (e.g. the app does not declare snapshots).
  std::string retention = "on";
  bool snapshot_taker = false;  // this replica holds the taker's role
  std::string snapshot_taker_id;
  uint64_t live_replicas = 0;                 // records in the group's registry at the last refresh
  int64_t last_snapshot_index = 0;            // newest snapshot taken or restored here
  int64_t last_snapshot_started_unix_ms = 0;  // when its app's state was asked for
  int64_t last_snapshot_unix_ms = 0;          // when it was stored
  uint64_t last_snapshot_bytes = 0;
  int64_t last_snapshot_ms = 0;  // how long the app took to give its state (forwards held)
  int64_t trimmed_index = 0;     // the group's trimmed point, as last seen
  std::string snapshot_error;    // the last failure to take, store or restore one ("" once fine)
  uint64_t snapshots_taken = 0;
  uint64_t snapshots_too_large = 0;  // refused: larger than the snapshot size limit
  uint64_t snapshot_failures = 0;    // taking or storing one failed otherwise
  uint64_t snapshots_restored = 0;
  uint64_t snapshots_rejected = 0;  // found corrupt or incomplete when loaded
  uint64_t trims = 0;
  uint64_t entries_trimmed = 0;
  // The app's last /last-index answer declared "pipelining": true; entries in flight to it at
  // most (1 unless it did). The forwarding connection reads the declaration again when opened.
  bool app_pipelining = false;
  bool app_snapshots = false;  // the app's last /last-index answer declared "snapshots": true
  uint64_t app_pipeline_depth = 1;
  uint64_t pending_requests = 0;
  uint64_t pending_bytes = 0;  // encoded entries of the requests waiting for their answer
  uint64_t queued_entries = 0;
  // Committed entries this replica received from the log and has not applied yet (queued or in
  // flight to the app). While the watch is paused for a full queue, or a catch-up is still
  // reading, more are behind them; the index distance (Lag()) bounds those.
  uint64_t lag_entries = 0;
  // Since the oldest of them arrived from the log; 0 when none waits.
  double oldest_unapplied_age_seconds = 0;
  // How long the app has answered nothing the replica asked of it (0: it answered the last
  // call, or nothing is asked), and the bound past which it counts as hung (0: never).
  double app_unanswered_seconds = 0;
  int64_t app_hang_timeout_ms = 0;
  bool AppHung() const {
    return app_hang_timeout_ms > 0 &&
           app_unanswered_seconds * 1000 >= static_cast<double>(app_hang_timeout_ms);
  }
  uint64_t queued_bytes = 0;  // encoded entries received from the log and not yet applied
  Histogram append_latency;
  // From handing an entry to the App until its response: with pipelining this includes the
  // entries written ahead of it (and, for an app that does not declare pipelining, the wait for
  // their answers), so it is the apply delay, not the app's own service time.
  Histogram apply_latency;

  // Reads that skip the log, indexed by ReadConsistency (linearizable, local).
  std::array<ReadCounters, 2> reads;
  uint64_t read_barriers = 0;          // linearizable etcd reads of the committed index
  uint64_t read_barrier_reads = 0;     // reads those answered (coalesced: many per barrier)
  uint64_t read_appends = 0;           // appends whose committed head was reads' barrier
  uint64_t read_append_reads = 0;      // reads those answered, instead of a barrier
  uint64_t read_barrier_failures = 0;  // barriers the log could not confirm
  Histogram read_barrier_latency;
  uint64_t pending_reads = 0;

  // Index distance between the newest known entry of the group and the app's state. Not an entry
  // count: indices of consecutive batches are at least 256 apart.
  int64_t Lag() const {
    return log_last_index > applied_index ? log_last_index - applied_index : 0;
  }
  bool Ready() const { return state == ReplicaState::kServing; }
};

}  // namespace k8shmir
