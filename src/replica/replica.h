// The replica: owns the replication state of one proxy. It appends client requests to the log,
// applies committed entries to the local app strictly in log order (one at a time, or pipelined on
// one connection to an app that declares it can take that), and answers each client with its own
// app's response (docs/design.md, sections 3 and 4).
//
// Every member is touched only on `strand_`; the log's and the app's callbacks post into it.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/common.h>

#include "codec/entry_codec.h"
#include "config/read_routes.h"
#include "k8shmir/app.h"
#include "k8shmir/group_registry.h"
#include "k8shmir/log.h"
#include "k8shmir/replica_service.h"
#include "k8shmir/snapshot_store.h"
#include "replica/pending_requests.h"
#include "replica/replica_status.h"

namespace k8shmir {

struct ReplicaOptions {
  std::string replica_id = "replica";
  std::string group = "default";
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds etcd_timeout{3000};
  std::size_t max_pending_requests = 4096;
  std::size_t max_queued_entries = 4096;
  // Memory is bounded in bytes too (entries may be up to ~1.5 MiB each): the watch is paused once
  // the queued entries hold this many encoded bytes, and a client request is refused (503) while
  // the pending requests' encoded entries hold this many. Either admits one entry when empty.
  std::size_t max_queued_bytes = 32 * 1024 * 1024;
  std::size_t max_pending_bytes = 32 * 1024 * 1024;
  // How long the app may take to answer one call. A last-index query that has not called back
  // within twice this (HttpApp bounds connect and exchange by it each) is given up and retried. A
  // forward unanswered past it makes the replica not ready (app-not-answering) while it keeps
  // waiting on the same connection: a forward abandoned while the app may still read it could be
  // applied later, and then again when resent.
  std::chrono::milliseconds app_timeout{5000};
  // See Config::app_hang_timeout (ReplicaStatus::AppHung); 0: never.
  std::chrono::milliseconds app_hang_timeout{30000};
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{2000};
  // Forward retries on a fresh, re-validated connection before a full recovery.
  int forward_retries = 2;
  // How often an idle serving replica checks that its app still reports the applied index.
  std::chrono::milliseconds heartbeat_interval{1000};
  // Group commit: requests submitted while this many appends are in flight wait and go to the
  // log together in the next one (never on a timer: a lone client is never delayed).
  std::size_t max_appends_in_flight = 1;
  // A batch is cut at kMaxBatchEntries entries or at this many bytes of encoded entries (a single
  // larger entry goes alone); etcd refuses requests above 1.5 MiB by default.
  std::size_t max_batch_bytes = 512 * 1024;
  // Entries handed to the app at once. The app decides whether they are pipelined: HttpApp writes
  // ahead only to an app that declares it (see ParseLastIndex), and one at a time otherwise.
  // 1 = strictly one at a time whatever the app declares.
  std::size_t app_pipeline_depth = 16;

  // Snapshots and retention (docs/design.md, "Retention"), with a SnapshotStore and a
  // GroupRegistry. The replica holding the taker's role snapshots its app (when it declares
  // snapshots) every this many applied entries, 0: never, and not more often than the interval.
  uint64_t snapshot_every_entries = 10000;
  std::chrono::milliseconds snapshot_min_interval{30000};
  // A larger state is refused (and the log not trimmed), loudly.
  std::size_t snapshot_max_bytes = 64 * 1024 * 1024;
  // To store one, or to load and restore one.
  std::chrono::milliseconds snapshot_timeout{60000};
  int snapshots_kept = 2;
  // Entries kept below a snapshot, so that a replica stopped for a while replays rather than
  // restores.
  uint64_t retain_entries = 300000;
  // Entries applied less than this long ago are never trimmed: an append of theirs may still be
  // retried by its proxy (within its request timeout), and a retried append of a deleted batch
  // would append it again. Longer than every proxy's request timeout.
  std::chrono::milliseconds trim_min_age{60000};
  // How often the replica publishes its record in the registry, and when a record not refreshed
  // expires (the taker's role with it).
  std::chrono::milliseconds registry_interval{2000};
  std::chrono::seconds registry_ttl{10};

  // Reads that skip the log (docs/design.md, "Reads that skip the log"): requests on these
  // routes are served by this replica without a log entry. Empty: every request is logged.
  ReadRoutes read_routes;
  // Reads waiting (for a barrier, for this replica to apply it, or for the app) at most; their
  // bytes count against max_pending_bytes apart from the logged requests'.
  std::size_t max_pending_reads = 4096;
  // Linearizable reads wait for the next append (whose transaction reads the committed head)
  // instead of sending a barrier only while the append ahead of it has been in flight for less
  // than this: an append answers in a few milliseconds; one that takes longer is stuck behind an
  // etcd fault, which a barrier may get past. 0: reads never wait for an append.
  std::chrono::milliseconds read_ride_append_window{10};
};

class Replica : public ReplicaService, public std::enable_shared_from_this<Replica> {
 public:
  // `log`, `app`, and `snapshots` and `registry` when given, must outlive the replica. Without
  // them it neither takes nor restores snapshots, nor trims.
  Replica(boost::asio::any_io_executor executor, Log& log, App& app, ReplicaOptions options,
          SnapshotStore* snapshots = nullptr, GroupRegistry* registry = nullptr);
  ~Replica();

  // Begins: validate the app, catch up with the log, then serve.
  void Start();
  // Stops applying and watching; pending clients get their answer at their deadline at the latest.
  void Stop();

  // Replicates `request`, or serves it without the log when it is on a read route. `done` runs
  // exactly once, on the replica's strand, never inside this call.
  void Submit(HttpRequest request, ReplyCallback done) override;

  void NoteRejected(Rejection reason, unsigned status) override;

  // A consistent snapshot, delivered on the replica's strand.
  void GetStatus(std::function<void(ReplicaStatus)> done) override;

  // How long ago the replica's loop last ran its periodic tick (every heartbeat interval). Any
  // thread; for /healthz, which must answer even when the strand is wedged.
  std::chrono::steady_clock::duration SinceLastTick() const override;

 private:
  using Clock = std::chrono::steady_clock;

  void SetState(ReplicaState state, const std::string& why);
  // For /status: what the app declared in its last answer, and the depth that gives.
  void NoteAppDeclares(const AppIndex& app);
  // Sets last_error; logs it (warn unless told otherwise) when it differs from the last one.
  void RecordError(const std::string& message,
                   spdlog::level::level_enum level = spdlog::level::warn);

  // Full (re)start of the pipeline from the app's own index.
  void Recover(ReplicaState state, const std::string& why);
  void BeginValidation();
  void ValidateApp(uint64_t gen);
  // LastIndex with a deadline of its own; `done` runs exactly once, on the strand.
  void QueryAppIndex(std::function<void(Result<AppIndex>)> done);
  // A last-index answer that is not a number: not ready, loudly, and nothing is replayed.
  void AppContractViolation(const std::string& what);
  void FetchHeadAndSubscribe(uint64_t gen);
  void Subscribe(int64_t from_index);
  void OnLogEvent(uint64_t watch_gen, LogEvent event);
  void OnBatch(LogBatch& batch);
  void OnClosed(const LogClosed& closed);
  // Catch-up by reading live keys, when the history a watch would replay was compacted: one
  // page at a time (each page bounded by the log), paused like the watch while the queue is full,
  // then a watch from the end of the read.
  void StartRangeCatchUp(int64_t compact_revision);
  void ReadRangePage();
  void OnRangePage(Result<LogRange> page);
  void ResubscribeLater();
  void MaybeServing();
  // Resumes a watch paused for a full queue once the queue has drained to half its bounds.
  void MaybeResumeWatch();
  bool QueueFull() const;
  // Pops the queue's front entry (applied or skipped), keeping queued_bytes_ in step.
  void PopQueueFront();
  // Records the backlog's size (queued + pending bytes) for MaybeReleaseMemory.
  void NoteBacklog();
  // Gives freed heap back to the system once a large backlog has drained.
  void MaybeReleaseMemory();

  void TryForward();
  void OnForwarded(uint64_t app_gen, uint64_t pipe_gen, int64_t index, ForwardResult result);
  // Ends the current pipeline: what is in flight is stale, the queue is resent from its front.
  void BreakPipeline();
  // The app reports an index above the one it was told to have applied (a validation after a
  // broken connection): entries it applied whose answers were lost, or a foreign state.
  void OnAppAhead(int64_t app_index);
  void MarkApplied(const LogRecord& record, HttpResponse* response);
  void ResolveSkipped();

  // Sends batches from outbox_ while fewer than max_appends_in_flight appends are in flight.
  void FlushAppends();
  // `riders`: the linearizable reads whose barrier the append's committed head is.
  void OnAppended(const std::vector<std::string>& ids, const std::vector<uint64_t>& riders,
                  Result<AppendResult> result);
  void OnEntryAppended(const std::string& id, const Result<int64_t>& index);
  // One timer for every pending request: armed for the earliest deadline.
  void ArmDeadlineTimer();
  void OnDeadlines();
  // Answers the pending request `id` (if it still waits) / one already taken out of pending_.
  void Reply(const std::string& id, ClientReply reply);
  void Complete(PendingRequests<ReplyCallback>::Request& request, ClientReply reply);
  void NoteAppCalled() {
    if (!app_unanswered_since_) app_unanswered_since_ = Clock::now();
  }
  void NoteAppAnswered() { app_unanswered_since_.reset(); }
  // Every client answer passes here (on the strand) on its way out: latency, status class.
  void NoteAnswer(const ClientReply& reply, Clock::time_point arrived);
  // `reply`, counted as a rejection for `reason`.
  ClientReply Rejected(Rejection reason, ClientReply reply);

  void ScheduleHeartbeat();
  void Heartbeat();
  // An entry in flight past the app timeout makes the replica not ready until it is answered.
  void CheckAppAnswers();
  // The log is out of space (an append refused, or CheckSpace says so): not ready until it has
  // space again, which CheckLogSpace (every tick while serving or full) notices.
  void EnterLogFull(const std::string& detail);
  void CheckLogSpace();

  // ---- Snapshots, retention, state transfer, registry (replica_snapshots.cc) ----
  // Every tick: the registry refresh, a snapshot when due, a stalled state transfer's retry.
  void OnRetentionTick();
  // Publishes this replica's record every registry interval; learns whether it is the taker.
  void MaybeRefreshRegistry();
  // Retention stays off while a live replica's app does not declare snapshots.
  void NoteUnrestorableReplicas();
  // Taker only: holds forwarding once enough entries were applied since the last snapshot; the
  // app's state is read once nothing is in flight (TryForward calls MaybeReadSnapshot).
  void MaybeTakeSnapshot();
  void MaybeReadSnapshot();
  void OnAppSnapshot(uint64_t gen, int64_t expected, std::chrono::steady_clock::time_point started,
                     Result<AppSnapshot> snapshot);
  void SaveAppSnapshot(std::shared_ptr<AppSnapshot> snapshot);
  // After a durable snapshot at `index`: trims what every live replica and the retained tail
  // allow.
  void MaybeTrim(int64_t snapshot_index);
  void NoteAppliedMark();
  // The app needs entries the log no longer has: restore a snapshot at or after `trimmed`.
  void NeedStateTransfer(int64_t trimmed, const std::string& why);
  void RunStateTransfer();
  void TryRestore(uint64_t gen, std::size_t candidate);
  void StateTransferFailed(uint64_t gen, const std::string& why);
  // Snapshots are configured: a store, a registry and --snapshot-every-entries above 0.
  bool TakesSnapshots() const;
  // Sets status_.retention from what keeps the log from being trimmed: "on", or "off: <why>"
  // (an app without snapshots is warned about once, once it has answered).
  void NoteRetention(bool app_answered);
  // A failure to take, store or restore a snapshot: last_error and snapshot_error.
  void NoteSnapshotError(const std::string& why,
                         spdlog::level::level_enum level = spdlog::level::warn);

  // ---- Reads that skip the log (replica_reads.cc) ----
  struct PendingRead {
    // What the read waits for: its barrier (while an optimistic app read may be in flight), this
    // replica to apply the barrier, or the app's answer that decides it.
    enum class Stage { kBarrier, kApply, kApp };
    HttpRequest request;  // kept: an optimistic read that proved too old is sent again
    ReadConsistency consistency = ReadConsistency::kLinearizable;
    ReplyCallback done;
    Clock::time_point arrived;
    Clock::time_point deadline;
    std::size_t bytes = 0;
    Stage stage = Stage::kBarrier;
    int64_t barrier = 0;  // the committed index a linearizable read must reflect
    // Its place in reads_awaiting_apply_ while it waits there.
    std::optional<std::multimap<int64_t, uint64_t>::iterator> awaiting;
    // The app read last sent (attempt numbers tell a superseded answer), whether the replica
    // was serving then, and what it had applied: the answer reflects at least that.
    uint32_t attempt = 0;
    bool in_flight = false;
    bool serving_at_send = false;
    int64_t processed_at_send = 0;
    // An optimistic answer that came before the barrier: it stands if processed_at_send turns
    // out to be at or above the barrier.
    std::optional<AppReadAnswer> early_answer;
    std::size_t early_bytes = 0;  // its body, counted in read_bytes_
  };
  void StartRead(HttpRequest request, ReadConsistency consistency, ReplyCallback done);
  // Sends a barrier for read_waiters_, unless one is in flight or an append is about to carry
  // them: one waits in outbox_ behind a young append in flight (ride_timer_ bounds the wait,
  // options_.read_ride_append_window).
  void MaybeSendBarrier();
  // One linearizable read of the committed index for every read in read_waiters_.
  void SendBarrier();
  void OnBarrier(Clock::time_point started, const Result<int64_t>& committed);
  // A round trip that started after `riders` arrived ended: with the group's committed index
  // then, or with why it could not tell (the reads fail: 503).
  void OnRoundTrip(const std::vector<uint64_t>& riders, const Result<int64_t>& committed);
  // Sends the reads whose barrier this replica has now applied (processed_ advanced).
  void ReleaseReads();
  void SendRead(uint64_t id);
  void OnAppRead(uint64_t id, uint32_t attempt, ReadResult result);
  // The barrier is known (read.barrier): answer with an optimistic answer that reflects it, wait
  // for the one in flight when it will, else read again once the replica applied the barrier.
  void OnReadBarrierKnown(std::map<uint64_t, PendingRead>::iterator it);
  void AnswerFromApp(std::map<uint64_t, PendingRead>::iterator it, ReadResult result);
  void AnswerRead(std::map<uint64_t, PendingRead>::iterator it, ClientReply reply,
                  ReadOutcome outcome);
  // Leaving the serving state: reads not yet at the app are answered 503 now.
  void FailWaitingReads(const std::string& why);
  void ArmReadDeadline();
  void OnReadDeadlines();
  void StopReads();

  std::chrono::milliseconds NextBackoff();
  void ScheduleRetry(std::function<void()> fn);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  Log& log_;
  App& app_;
  ReplicaOptions options_;
  SnapshotStore* const snapshots_;  // may be null
  GroupRegistry* const registry_;   // may be null

  ReplicaStatus status_;  // state, indices, counters, errors
  bool stopped_ = false;
  // Steady-clock nanoseconds of the last tick; written on the strand, read by /healthz.
  std::atomic<int64_t> last_tick_ns_;

  // Generations: callbacks of a superseded app pipeline or subscription are ignored.
  uint64_t app_gen_ = 0;
  uint64_t watch_gen_ = 0;

  // Entries received from the log and not yet applied, in index order.
  std::deque<LogRecord> queue_;
  // When each entry of queue_ arrived from the log (same length as queue_): the age of the
  // oldest unapplied one is the metric an operator alerts on.
  std::deque<Clock::time_point> received_at_;
  // Since when the app has been asked something (an entry, its last index) without answering
  // anything: set by the first call after an answer, cleared by any answer. An app that is down
  // (refusing connections) counts as not answering too.
  std::optional<Clock::time_point> app_unanswered_since_;
  std::size_t queued_bytes_ = 0;  // sum of queue_[i].value.size()
  // Highest queued_bytes_ + pending_.bytes() since memory was last given back.
  std::size_t backlog_peak_bytes_ = 0;
  int64_t position_ = 0;  // highest index received (queued or applied)
  int64_t target_ = 0;    // catch-up target: the log's last index when catching up began
  std::unique_ptr<Subscription> subscription_;
  bool watch_paused_ = false;  // paused because queue_ is full
  // A catch-up by range read (StartRangeCatchUp) in progress: the next page's start, the
  // revision every page reads at (0 until the first page), and whether it waits for the queue.
  struct RangeRead {
    bool active = false;
    bool paused = false;
    int64_t next_index = 0;
    int64_t revision = 0;
  };
  RangeRead range_;
  // Forwards in flight, of any generation: a recovery validates the app only once they returned.
  std::size_t in_flight_ = 0;
  // The first sent_at_.size() entries of queue_ are in flight in the current pipeline (with the
  // time each was sent), which pipe_gen_ names: a failed forward ends the pipeline (every later
  // forward fails too) and its stale results are ignored.
  std::deque<std::chrono::steady_clock::time_point> sent_at_;
  uint64_t pipe_gen_ = 0;
  bool forward_retry_pending_ = false;  // a failed forward is retried after a backoff
  bool recover_pending_ = false;        // a recovery waits for the in-flight Forward to return
  int forward_failures_ = 0;
  uint64_t forwards_started_ = 0;
  // Highest index ever handed to the app: an app reporting an index above what it was told to
  // have applied, but not above this, applied entries whose answers the proxy never read.
  int64_t highest_forwarded_ = 0;
  int64_t processed_ = 0;  // highest index taken off the queue (applied, or skipped as invalid)
  bool heartbeat_in_flight_ = false;
  bool space_check_in_flight_ = false;
  std::unique_ptr<boost::asio::steady_timer> heartbeat_timer_;
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point recovery_started_;

  // Encoded entries waiting for an append slot, oldest first; ids whose request was answered
  // meanwhile (deadline) are dropped when the batch is cut.
  std::deque<LogEntry> outbox_;
  std::size_t appends_in_flight_ = 0;
  Clock::time_point last_append_sent_{};

  PendingRequests<ReplyCallback> pending_;
  std::unique_ptr<boost::asio::steady_timer> deadline_timer_;
  bool deadline_armed_ = false;  // a wait is in progress, for deadline_timer_->expiry()

  // The group's format marker was found to be one this proxy knows.
  bool format_checked_ = false;
  bool registry_in_flight_ = false;
  Clock::time_point next_registry_refresh_{};
  GroupView group_;  // as the last registry refresh saw it
  // Taking snapshots: forwarding is held while the app's state is read (nothing in flight).
  struct Taking {
    bool hold = false;             // no new forwards until the app's state was read
    bool reading = false;          // GetSnapshot in flight
    bool saving = false;           // SaveSnapshot or Trim in flight
    uint64_t applied_at_last = 0;  // entries_applied when the last one was taken
    Clock::time_point last_at{};
    int64_t previous_index = 0;  // the snapshot before the newest one (retention's floor)
  };
  Taking taking_;
  // (entries applied, index, when) every mark step: which index lies retain_entries entries and
  // trim_min_age below a snapshot.
  struct AppliedMark {
    uint64_t count;
    int64_t index;
    Clock::time_point at;
  };
  std::deque<AppliedMark> marks_;
  // A state transfer wanted: run instead of the app's validation once a recovery reset the
  // pipeline (nothing in flight), at a snapshot with index >= min_index.
  struct Transfer {
    bool wanted = false;
    int64_t min_index = 0;
    std::vector<SnapshotManifest> candidates;  // newest first
    bool failed = false;                       // an attempt failed: its reason stays shown
    Clock::time_point retry_at{};
  };
  Transfer transfer_;
  bool warned_no_snapshots_ = false;
  // Why the app's last state was refused as too large ("" once one fits): no trims meanwhile.
  std::string snapshot_too_large_;
  // A live replica (by the registry) whose app does not declare snapshots, "" when none.
  std::string unrestorable_peer_;

  // Reads that skip the log, by arrival (so by deadline: every read has the same timeout).
  std::map<uint64_t, PendingRead> reads_;
  uint64_t last_read_id_ = 0;
  std::size_t read_bytes_ = 0;
  // Linearizable reads waiting for a round trip to etcd that starts after they arrived: the next
  // append (FlushAppends takes them; its transaction reads the committed head) or the next
  // barrier, whichever goes first. The barrier in flight answers barrier_riders_.
  std::vector<uint64_t> read_waiters_;
  bool barrier_in_flight_ = false;
  std::vector<uint64_t> barrier_riders_;
  // Armed while read_waiters_ wait for an append: sends their barrier if the append in flight
  // takes longer than options_.read_ride_append_window.
  std::unique_ptr<boost::asio::steady_timer> ride_timer_;
  bool ride_timer_armed_ = false;
  // Reads whose barrier is known, by that index, until processed_ reaches it.
  std::multimap<int64_t, uint64_t> reads_awaiting_apply_;
  std::unique_ptr<boost::asio::steady_timer> read_deadline_timer_;
  bool read_deadline_armed_ = false;
};

}  // namespace k8shmir
