// Replica, the group side (replica.h; docs/design.md, "Retention"): the registry record, taking
// snapshots (the taker only, between two entries), trimming the log behind them, and restoring a
// snapshot into an app that needs entries the log no longer holds (state transfer).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "common/logging.h"
#include "replica/replica.h"
#include "replica/replica_util.h"

namespace k8shmir {

namespace asio = boost::asio;
using namespace replica_internal;

namespace {

// A replica in one of these states (as its registry record names it) is applying the log, or
// about to.
bool FollowsTheLog(const std::string& state) {
  for (ReplicaState s :
       {ReplicaState::kServing, ReplicaState::kCatchingUp, ReplicaState::kRecovering,
        ReplicaState::kAppNotAnswering, ReplicaState::kLogFull, ReplicaState::kStarting}) {
    if (state == ReplicaStateName(s)) return true;
  }
  return false;
}

// How long a needs-state-transfer replica waits before asking its app again (it may have been
// given snapshot endpoints and restarted meanwhile).
constexpr std::chrono::seconds kStateTransferRecheck{10};

}  // namespace

void Replica::OnRetentionTick() {
  MaybeRefreshRegistry();
  MaybeTakeSnapshot();
  if (status_.state == ReplicaState::kNeedsStateTransfer &&
      transfer_.retry_at != Clock::time_point{} && Clock::now() >= transfer_.retry_at) {
    transfer_.retry_at = {};
    Recover(ReplicaState::kNeedsStateTransfer, status_.state_reason);
  }
}

bool Replica::TakesSnapshots() const {
  return snapshots_ != nullptr && registry_ != nullptr && options_.snapshot_every_entries > 0;
}

void Replica::NoteRetention(bool app_answered) {
  std::string off;
  if (snapshots_ == nullptr || registry_ == nullptr) {
    off = "no snapshot store";
  } else if (options_.snapshot_every_entries == 0) {
    off = "snapshots are off (--snapshot-every-entries 0)";
  } else if (!status_.app_snapshots) {
    off =
        "the app does not declare \"snapshots\": true in its last-index answer, so this group's "
        "log is never trimmed and grows until etcd's quota (README, \"The app contract\")";
    // Warned once the app has answered (before, it has declared nothing yet), once.
    if (app_answered && !warned_no_snapshots_) {
      warned_no_snapshots_ = true;
      LogLine(spdlog::level::warn, "retention off", {{"reason", off}});
    }
  } else if (!snapshot_too_large_.empty()) {
    off = snapshot_too_large_;  // until a snapshot fits again
  } else if (!unrestorable_peer_.empty()) {
    off = "replica " + unrestorable_peer_ +
          "'s app does not declare snapshots, so it could not be restored after a trim";
  }
  status_.retention = off.empty() ? "on" : "off: " + off;
}

void Replica::NoteSnapshotError(const std::string& why, spdlog::level::level_enum level) {
  RecordError(why, level);
  status_.snapshot_error = why;
}

// ---- Registry ----------------------------------------------------------------------------------

void Replica::MaybeRefreshRegistry() {
  if (registry_ == nullptr || registry_in_flight_ || stopped_) return;
  const auto now = Clock::now();
  if (now < next_registry_refresh_) return;
  next_registry_refresh_ = now + options_.registry_interval;
  registry_in_flight_ = true;
  ReplicaRecord record;
  record.replica_id = options_.replica_id;
  record.state = ReplicaStateName(status_.state);
  record.applied_index = status_.applied_index;
  record.last_snapshot_index = status_.last_snapshot_index;
  record.app_snapshots = status_.app_snapshots;
  record.last_error = status_.last_error;
  record.last_error_unix_ms = status_.last_error_unix_ms;
  record.app_pipelining = status_.app_pipelining;
  // What GetStatus reports as lag_entries: status_ itself does not track it.
  record.lag_entries = queue_.size();
  registry_->Refresh(record, options_.registry_ttl, now + options_.etcd_timeout,
                     [self = shared_from_this()](Result<GroupView> view) {
                       asio::post(self->strand_, [self, view = std::move(view)]() mutable {
                         self->registry_in_flight_ = false;
                         if (self->stopped_) return;
                         if (!view) {
                           // Only snapshots wait for it; a taker whose record lapsed meanwhile
                           // takes at most one snapshot too many, which is harmless.
                           LogLine(spdlog::level::debug, "registry refresh failed",
                                   {{"error", view.error().message}});
                           return;
                         }
                         self->group_ = std::move(*view);
                         self->status_.snapshot_taker = self->group_.taker;
                         self->status_.snapshot_taker_id = self->group_.taker_id;
                         self->status_.live_replicas = self->group_.replicas.size();
                         self->NoteUnrestorableReplicas();
                         self->MaybeTakeSnapshot();
                       });
                     });
}

void Replica::NoteUnrestorableReplicas() {
  // A live replica whose app cannot be restored must never need a state transfer: no trims.
  std::string peer;
  for (const auto& record : group_.replicas) {
    if (!record.app_snapshots && FollowsTheLog(record.state) &&
        record.replica_id != options_.replica_id) {
      peer = record.replica_id;
      break;
    }
  }
  if (peer == unrestorable_peer_) return;
  unrestorable_peer_ = peer;
  NoteRetention(/*app_answered=*/true);
  if (!peer.empty()) {
    LogLine(spdlog::level::warn,
            "retention off: a live replica's app does not declare snapshots, so it could not be "
            "restored after a trim",
            {{"peer", peer}});
  }
}

// ---- Taking snapshots --------------------------------------------------------------------------

void Replica::MaybeTakeSnapshot() {
  if (!TakesSnapshots() || !status_.snapshot_taker || !status_.app_snapshots) return;
  if (status_.state != ReplicaState::kServing) return;
  if (taking_.hold || taking_.reading || taking_.saving) return;
  if (status_.entries_applied - taking_.applied_at_last < options_.snapshot_every_entries) return;
  if (status_.applied_index <= status_.last_snapshot_index) return;
  if (taking_.last_at != Clock::time_point{} &&
      Clock::now() - taking_.last_at < options_.snapshot_min_interval) {
    return;
  }
  taking_.hold = true;
  MaybeReadSnapshot();
}

void Replica::MaybeReadSnapshot() {
  if (!taking_.hold || taking_.reading || in_flight_ > 0 || recover_pending_ || stopped_) return;
  if (status_.state != ReplicaState::kServing) {
    taking_.hold = false;
    TryForward();
    return;
  }
  // Nothing is in flight: the app's state is exactly the applied index's.
  taking_.reading = true;
  const uint64_t gen = app_gen_;
  const int64_t expected = status_.applied_index;
  const auto started = Clock::now();
  status_.last_snapshot_started_unix_ms = UnixMillis();
  app_.GetSnapshot(options_.snapshot_max_bytes, [self = shared_from_this(), gen, expected,
                                                 started](Result<AppSnapshot> snapshot) {
    asio::post(self->strand_,
               [self, gen, expected, started, snapshot = std::move(snapshot)]() mutable {
                 self->OnAppSnapshot(gen, expected, started, std::move(snapshot));
               });
  });
}

void Replica::OnAppSnapshot(uint64_t gen, int64_t expected, Clock::time_point started,
                            Result<AppSnapshot> snapshot) {
  taking_.reading = false;
  taking_.hold = false;
  if (stopped_ || gen != app_gen_) return;  // a recovery restarted the pipeline meanwhile
  status_.last_snapshot_ms = Millis(Clock::now() - started);
  TryForward();  // clients wait no longer than the read itself
  auto give_up = [this](const std::string& why, spdlog::level::level_enum level) {
    NoteSnapshotError(why, level);
    // Tried again after another interval's worth of entries.
    taking_.last_at = Clock::now();
    taking_.applied_at_last = status_.entries_applied;
  };
  if (!snapshot) {
    if (snapshot.error().code == ErrorCode::kInvalid) {
      ++status_.snapshots_too_large;
      const std::string why =
          "the app's state is larger than the snapshot size limit of " +
          std::to_string(options_.snapshot_max_bytes) +
          " bytes (--snapshot-max-bytes): no snapshot is stored and the log is not trimmed (" +
          snapshot.error().message + ")";
      give_up(why, spdlog::level::err);
      snapshot_too_large_ = why;
      NoteRetention(/*app_answered=*/true);
      return;
    }
    ++status_.snapshot_failures;
    give_up("reading the app's snapshot: " + snapshot.error().message, spdlog::level::warn);
    return;
  }
  if (snapshot->index != expected) {
    ++status_.snapshot_failures;
    give_up("the app's snapshot reports index " + std::to_string(snapshot->index) + " but " +
                std::to_string(expected) + " was applied and nothing was in flight: not stored",
            spdlog::level::err);
    return;
  }
  SaveAppSnapshot(std::make_shared<AppSnapshot>(std::move(*snapshot)));
}

void Replica::SaveAppSnapshot(std::shared_ptr<AppSnapshot> snapshot) {
  taking_.saving = true;
  const uint64_t applied_count = status_.entries_applied;
  const auto deadline = Clock::now() + options_.snapshot_timeout;
  snapshots_->SaveSnapshot(
      *snapshot, options_.replica_id, options_.snapshots_kept, deadline,
      [self = shared_from_this(), snapshot, applied_count](Result<SnapshotManifest> manifest) {
        asio::post(self->strand_,
                   [self, snapshot, applied_count, manifest = std::move(manifest)]() mutable {
                     if (self->stopped_) return;
                     auto& s = self->status_;
                     self->taking_.last_at = Clock::now();
                     self->taking_.applied_at_last = applied_count;
                     if (!manifest) {
                       self->taking_.saving = false;
                       ++s.snapshot_failures;
                       self->NoteSnapshotError("storing the snapshot at index " +
                                               std::to_string(snapshot->index) + ": " +
                                               manifest.error().message);
                       return;
                     }
                     ++s.snapshots_taken;
                     if (s.last_snapshot_index > 0)
                       self->taking_.previous_index = s.last_snapshot_index;
                     s.last_snapshot_index = manifest->index;
                     s.last_snapshot_bytes = manifest->size;
                     s.last_snapshot_unix_ms = UnixMillis();
                     s.snapshot_error.clear();
                     self->snapshot_too_large_.clear();
                     self->NoteRetention(/*app_answered=*/true);
                     LogLine(spdlog::level::info, "snapshot stored",
                             {{"index", manifest->index},
                              {"bytes", manifest->size},
                              {"chunks", manifest->chunks},
                              {"read_ms", s.last_snapshot_ms}});
                     self->MaybeTrim(manifest->index);
                   });
      });
}

void Replica::NoteAppliedMark() {
  if (!TakesSnapshots()) return;
  const uint64_t step =
      std::max<uint64_t>({1, options_.retain_entries / 64, options_.snapshot_every_entries / 64});
  if (status_.entries_applied % step != 0) return;
  marks_.push_back(AppliedMark{status_.entries_applied, status_.applied_index, Clock::now()});
  // Bounded; losing the oldest marks only makes trims more conservative.
  if (marks_.size() > 8192) marks_.pop_front();
}

void Replica::MaybeTrim(int64_t snapshot_index) {
  // The newest mark at least retain_entries below the snapshot and old enough.
  const auto now = Clock::now();
  int64_t through = 0;
  while (!marks_.empty()) {
    const AppliedMark& mark = marks_.front();
    if (mark.index > snapshot_index ||
        mark.count + options_.retain_entries > taking_.applied_at_last ||
        now - mark.at < options_.trim_min_age) {
      break;
    }
    through = mark.index;
    marks_.pop_front();
  }
  // Never past the snapshot before this one: if the newest turns out corrupt, the previous one
  // still restores a replica, and every live replica at or above it replays rather than restores.
  through = std::min(through, taking_.previous_index);
  if (!unrestorable_peer_.empty()) through = 0;
  if (through <= status_.trimmed_index) {
    taking_.saving = false;
    return;
  }
  log_.Trim(through, now + options_.snapshot_timeout,
            [self = shared_from_this(), through](Result<TrimResult> trimmed) {
              asio::post(self->strand_, [self, through, trimmed = std::move(trimmed)] {
                self->taking_.saving = false;
                if (self->stopped_) return;
                if (!trimmed) {
                  self->RecordError("trimming the log through index " + std::to_string(through) +
                                    ": " + trimmed.error().message);
                  return;
                }
                ++self->status_.trims;
                self->status_.entries_trimmed += trimmed->entries_deleted;
                self->status_.trimmed_index =
                    std::max(self->status_.trimmed_index, trimmed->trimmed_index);
              });
            });
}

// ---- State transfer ----------------------------------------------------------------------------

void Replica::NeedStateTransfer(int64_t trimmed, const std::string& why) {
  status_.trimmed_index = std::max(status_.trimmed_index, trimmed);
  if (snapshots_ == nullptr || !status_.app_snapshots) {
    const std::string stuck =
        why + (snapshots_ == nullptr
                   ? "; this proxy has no snapshot store to restore from"
                   : "; the app does not declare \"snapshots\": true, so no snapshot can be put "
                     "into it: give it GET and PUT on its snapshot path (README, \"The app "
                     "contract\"), or restart it with the state it needs");
    transfer_ = Transfer{};
    transfer_.retry_at = Clock::now() + kStateTransferRecheck;
    RecordError(stuck, spdlog::level::err);
    SetState(ReplicaState::kNeedsStateTransfer, stuck);
    return;
  }
  transfer_ = Transfer{};
  transfer_.wanted = true;
  transfer_.min_index = std::max(trimmed, position_);
  // The pipeline is reset first (nothing in flight): the app's state is then replaced whole.
  Recover(ReplicaState::kTransferringState, why + "; restoring a stored snapshot");
}

void Replica::RunStateTransfer() {
  const uint64_t gen = app_gen_;
  // A retry keeps the last failure as the reason until it gets further.
  if (!transfer_.failed) {
    status_.state_reason = "listing the stored snapshots (one at index " +
                           std::to_string(transfer_.min_index) + " or above is needed)";
  }
  snapshots_->ListSnapshots(
      Clock::now() + options_.etcd_timeout,
      [self = shared_from_this(), gen](Result<std::vector<SnapshotManifest>> list) {
        asio::post(self->strand_, [self, gen, list = std::move(list)]() mutable {
          if (self->stopped_ || gen != self->app_gen_) return;
          if (!list)
            return self->StateTransferFailed(gen, "listing snapshots: " + list.error().message);
          auto& candidates = self->transfer_.candidates;
          candidates.clear();
          for (auto& m : *list) {
            if (m.index >= self->transfer_.min_index) candidates.push_back(std::move(m));
          }
          if (candidates.empty()) {
            return self->StateTransferFailed(
                gen,
                "no stored snapshot is at index " + std::to_string(self->transfer_.min_index) +
                    " or above (" + std::to_string(list->size()) + " stored" +
                    (list->empty() ? ""
                                   : ", the newest at " + std::to_string(list->front().index)) +
                    ")");
          }
          self->TryRestore(gen, 0);
        });
      });
}

void Replica::TryRestore(uint64_t gen, std::size_t candidate) {
  if (candidate >= transfer_.candidates.size()) {
    return StateTransferFailed(gen, "every stored snapshot at index " +
                                        std::to_string(transfer_.min_index) +
                                        " or above was refused: " + status_.snapshot_error);
  }
  const SnapshotManifest manifest = transfer_.candidates[candidate];
  status_.state_reason = "loading the snapshot at index " + std::to_string(manifest.index) + " (" +
                         std::to_string(manifest.size) + " bytes)";
  snapshots_->LoadSnapshot(
      manifest, Clock::now() + options_.snapshot_timeout,
      [self = shared_from_this(), gen, candidate, manifest](Result<AppSnapshot> loaded) {
        asio::post(self->strand_, [self, gen, candidate, manifest,
                                   loaded = std::move(loaded)]() mutable {
          if (self->stopped_ || gen != self->app_gen_) return;
          if (!loaded && loaded.error().code != ErrorCode::kProtocol) {
            return self->StateTransferFailed(gen, "loading the snapshot at index " +
                                                      std::to_string(manifest.index) + ": " +
                                                      loaded.error().message);
          }
          if (!loaded || loaded->index != manifest.index) {
            ++self->status_.snapshots_rejected;
            const std::string why = "the stored snapshot at index " +
                                    std::to_string(manifest.index) + " is refused: " +
                                    (loaded ? "it holds index " + std::to_string(loaded->index)
                                            : loaded.error().message) +
                                    "; trying an older one";
            self->NoteSnapshotError(why, spdlog::level::err);
            return self->TryRestore(gen, candidate + 1);
          }
          auto snapshot = std::make_shared<AppSnapshot>(std::move(*loaded));
          self->status_.state_reason =
              "putting the snapshot at index " + std::to_string(manifest.index) + " into the app";
          self->app_.PutSnapshot(*snapshot, [self, gen, snapshot](Status put) {
            asio::post(self->strand_, [self, gen, snapshot, put = std::move(put)] {
              if (self->stopped_ || gen != self->app_gen_) return;
              const int64_t index = snapshot->index;
              if (!put) {
                return self->StateTransferFailed(gen, "the app refused the snapshot at index " +
                                                          std::to_string(index) + ": " +
                                                          put.error().message);
              }
              self->QueryAppIndex([self, gen, index](Result<AppIndex> app) {
                if (self->stopped_ || gen != self->app_gen_) return;
                if (!app || app->index != index) {
                  return self->StateTransferFailed(
                      gen, "after PUT of the snapshot at index " + std::to_string(index) +
                               " the app reports " +
                               (app ? "index " + std::to_string(app->index) : app.error().message));
                }
                ++self->status_.snapshots_restored;
                self->status_.last_snapshot_index = index;
                self->status_.snapshot_error.clear();
                self->transfer_ = Transfer{};
                self->backoff_ = std::chrono::milliseconds(0);
                LogLine(spdlog::level::info, "snapshot restored; replaying the log from there",
                        {{"index", index}});
                self->Recover(ReplicaState::kCatchingUp, "restored the snapshot at index " +
                                                             std::to_string(index) +
                                                             "; replaying the log from there");
              });
            });
          });
        });
      });
}

void Replica::StateTransferFailed(uint64_t gen, const std::string& why) {
  RecordError("state transfer: " + why);
  status_.snapshot_error = why;
  status_.state_reason = "state transfer: " + why + "; retrying";
  transfer_.failed = true;
  ScheduleRetry([self = shared_from_this(), gen] {
    if (gen == self->app_gen_ && self->transfer_.wanted) self->RunStateTransfer();
  });
}

}  // namespace k8shmir
