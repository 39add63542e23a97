// Replica: its lifecycle and state, the app's validation and recovery, the start of the catch-up,
// and the heartbeat (replica.h). The log side is in replica_log.cc, the app side in
// replica_apply.cc, the client side in replica_clients.cc.
#include "replica/replica.h"

#include "common/logging.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "replica/replica_util.h"

namespace k8shmir {

namespace asio = boost::asio;
using namespace replica_internal;

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kCommitted:
      return "committed";
    case Outcome::kNotCommitted:
      return "not-committed";
    case Outcome::kUnknown:
      return "unknown";
    case Outcome::kNone:
      return "";
  }
  return "unknown";
}

Replica::Replica(asio::any_io_executor executor, Log& log, App& app, ReplicaOptions options,
                 SnapshotStore* snapshots, GroupRegistry* registry)
    : strand_(asio::make_strand(executor)),
      log_(log),
      app_(app),
      options_(std::move(options)),
      snapshots_(snapshots),
      registry_(registry),
      last_tick_ns_(SteadyNanos()) {
  status_.replica_id = options_.replica_id;
  status_.group = options_.group;
  status_.state_reason = "waiting for the app";
  NoteRetention(/*app_answered=*/false);
}

Replica::~Replica() = default;

void Replica::Start() {
  asio::post(strand_, [self = shared_from_this()] {
    self->Recover(ReplicaState::kStarting, "waiting for the app's last index");
    self->ScheduleHeartbeat();
  });
}

void Replica::Stop() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->stopped_) return;
    self->stopped_ = true;
    ++self->watch_gen_;
    ++self->app_gen_;
    self->subscription_.reset();
    if (self->heartbeat_timer_) self->heartbeat_timer_->cancel();
    if (self->deadline_timer_) self->deadline_timer_->cancel();
    self->StopReads();
    if (self->registry_ != nullptr) {
      // The record and the taker's role go now, not when their lease expires.
      self->registry_->Leave(Clock::now() + self->options_.etcd_timeout, [](Status) {});
    }
    for (const auto& id : self->pending_.Ids()) {
      auto p = self->pending_.Take(id);
      if (!p) continue;
      if (p->in_outbox) {
        self->Complete(*p, ErrorReply(503, Outcome::kNotCommitted, 0,
                                      "the proxy is shutting down; the request was not sent", 1));
      } else if (p->index != 0) {
        self->Complete(*p, ErrorReply(502, Outcome::kCommitted, p->index,
                                      "the proxy is shutting down; the request was committed"));
      } else {
        self->Complete(*p, ErrorReply(504, Outcome::kUnknown, 0,
                                      "the proxy is shutting down before the log answered"));
      }
    }
  });
}

void Replica::GetStatus(std::function<void(ReplicaStatus)> done) {
  asio::post(strand_, [self = shared_from_this(), done = std::move(done)] {
    ReplicaStatus s = self->status_;
    s.pending_requests = self->pending_.size();
    s.pending_reads = self->reads_.size();
    s.pending_bytes = self->pending_.bytes();
    s.queued_entries = self->queue_.size();
    s.lag_entries = self->queue_.size();
    const LogClientStats log_stats = self->log_.ClientStats();
    s.etcd_endpoint = log_stats.endpoint;
    s.etcd_leader_endpoint = log_stats.leader_endpoint;
    s.etcd_failovers = log_stats.failovers;
    s.etcd_errors = log_stats.errors;
    s.etcd_alarms_known = log_stats.alarms_known;
    s.etcd_nospace_alarm = log_stats.nospace_alarm;
    s.etcd_corrupt_alarm = log_stats.corrupt_alarm;
    s.etcd_db_size_bytes = log_stats.db_size_bytes;
    s.app_unanswered_seconds =
        self->app_unanswered_since_ ? SecondsSince(*self->app_unanswered_since_) : 0.0;
    s.app_hang_timeout_ms = self->options_.app_hang_timeout.count();
    s.oldest_unapplied_age_seconds =
        self->received_at_.empty() ? 0.0 : SecondsSince(self->received_at_.front());
    s.queued_bytes = self->queued_bytes_;
    // Readiness text describes now, not the moment the state was entered.
    if (s.state == ReplicaState::kServing) {
      s.state_reason = "applied index " + std::to_string(s.applied_index) +
                       ", newest log index seen " + std::to_string(s.log_last_index) + ", " +
                       std::to_string(s.queued_entries) + " entries queued";
    } else if (s.state == ReplicaState::kCatchingUp) {
      s.state_reason += "; now at index " + std::to_string(s.applied_index) + ", " +
                        std::to_string(s.queued_entries) + " entries queued";
    }
    done(std::move(s));
  });
}

std::chrono::steady_clock::duration Replica::SinceLastTick() const {
  return std::chrono::nanoseconds(SteadyNanos() - last_tick_ns_.load());
}

void Replica::SetState(ReplicaState state, const std::string& why) {
  if (status_.state != state) {
    LogLine(spdlog::level::info, "replica state changed",
            {{"state", ReplicaStateName(state)},
             {"previous_state", ReplicaStateName(status_.state)},
             {"reason", why},
             {"index", status_.applied_index}});
  }
  const bool was_serving = status_.state == ReplicaState::kServing;
  status_.state = state;
  status_.state_reason = why;
  if (was_serving && state != ReplicaState::kServing) {
    FailWaitingReads(std::string("replica is ") + ReplicaStateName(state) + ": " + why +
                     "; a linearizable read needs a serving replica");
  }
}

void Replica::NoteAppDeclares(const AppIndex& app) {
  status_.app_pipelining = app.pipelining;
  status_.app_snapshots = app.snapshots;
  status_.app_pipeline_depth =
      app.pipelining ? std::max<std::size_t>(options_.app_pipeline_depth, 1) : 1;
  NoteRetention(/*app_answered=*/true);
}

void Replica::RecordError(const std::string& message, spdlog::level::level_enum level) {
  if (message != status_.last_error) {
    LogLine(level, "replica error",
            {{"state", ReplicaStateName(status_.state)},
             {"index", status_.applied_index},
             {"error", message}});
  }
  status_.last_error = message;
  status_.last_error_unix_ms = UnixMillis();
}

std::chrono::milliseconds Replica::NextBackoff() {
  backoff_ =
      backoff_.count() == 0 ? options_.min_backoff : std::min(backoff_ * 2, options_.max_backoff);
  return backoff_;
}

void Replica::ScheduleRetry(std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(strand_, NextBackoff());
  timer->async_wait([self = shared_from_this(), timer, fn = std::move(fn)](auto ec) {
    if (!ec && !self->stopped_) fn();
  });
}

// ---- Pipeline (re)start ------------------------------------------------------------------------

void Replica::Recover(ReplicaState state, const std::string& why) {
  if (stopped_) return;
  if (state == ReplicaState::kRecovering) {
    ++status_.recoveries;
    RecordError(why);
  }
  recovery_started_ = Clock::now();
  SetState(state, why);
  ++app_gen_;
  ++watch_gen_;
  subscription_.reset();
  watch_paused_ = false;
  range_ = RangeRead{};
  taking_.hold = false;
  queue_.clear();
  received_at_.clear();
  queued_bytes_ = 0;
  forward_failures_ = 0;
  forward_retry_pending_ = false;
  BreakPipeline();
  app_.Reset();
  if (in_flight_ > 0) {
    // Validate only once the app has answered the entry in flight, so its index is stable.
    recover_pending_ = true;
    return;
  }
  BeginValidation();
}

void Replica::BeginValidation() {
  if (transfer_.wanted) {
    RunStateTransfer();
    return;
  }
  ValidateApp(app_gen_);
}

void Replica::QueryAppIndex(std::function<void(Result<AppIndex>)> done) {
  // HttpApp bounds each step by the app timeout, but a LastIndex that never calls back (an
  // exception swallowed, a resolver that hangs, a bug) must not hang the replica: the first of
  // the answer and this deadline wins, the other is ignored.
  const auto limit = 2 * options_.app_timeout + std::chrono::milliseconds(500);
  auto answered = std::make_shared<bool>(false);
  NoteAppCalled();
  auto timer = std::make_shared<asio::steady_timer>(strand_, limit);
  timer->async_wait(
      [self = shared_from_this(), answered, done, limit](boost::system::error_code ec) {
        if (ec || *answered) return;
        *answered = true;
        ++self->status_.app_call_timeouts;
        done(Error{ErrorCode::kUnavailable, "the app's last-index answer did not come within " +
                                                std::to_string(limit.count()) + " ms"});
      });
  app_.LastIndex([self = shared_from_this(), answered, timer, done](Result<AppIndex> r) {
    asio::post(self->strand_, [self, answered, timer, done, r = std::move(r)]() mutable {
      if (*answered) return;
      *answered = true;
      timer->cancel();
      if (r) {
        self->NoteAppAnswered();
      } else {
        ++self->status_.app_call_errors;
      }
      done(std::move(r));
    });
  });
}

void Replica::AppContractViolation(const std::string& what) {
  ++status_.app_contract_violations;
  std::string why = "app contract violation: " + what +
                    "; only a number is a last index. Nothing is replayed or forwarded until "
                    "the app reports one again (a request that reached the app without the "
                    "index header, around the proxy, is the usual cause; restart the app to "
                    "rebuild its state from the log)";
  RecordError(why, spdlog::level::err);
  SetState(ReplicaState::kAppContractViolation, why);
}

void Replica::ValidateApp(uint64_t gen) {
  QueryAppIndex([self = shared_from_this(), gen](Result<AppIndex> r) {
    if (self->stopped_ || gen != self->app_gen_) return;
    if (!r) {
      if (r.error().code == ErrorCode::kProtocol) {
        self->AppContractViolation(r.error().message);
      } else {
        self->RecordError("app not ready: " + r.error().message);
        self->status_.state_reason = "waiting for the app: " + r.error().message;
      }
      self->ScheduleRetry([self, gen] {
        if (gen == self->app_gen_) self->ValidateApp(gen);
      });
      return;
    }
    int64_t app_index = r->index;
    self->NoteAppDeclares(*r);
    if (self->status_.state == ReplicaState::kAppContractViolation) {
      self->SetState(ReplicaState::kRecovering,
                     "the app reports a number again: index " + std::to_string(app_index));
    }
    LogLine(spdlog::level::info, "app reports its last index", {{"index", app_index}});
    self->status_.applied_index = app_index;
    self->processed_ = app_index;
    self->position_ = app_index;
    self->ResolveSkipped();
    self->FetchHeadAndSubscribe(self->watch_gen_);
  });
}

void Replica::FetchHeadAndSubscribe(uint64_t gen) {
  auto deadline = Clock::now() + options_.etcd_timeout;
  if (registry_ != nullptr && !format_checked_) {
    registry_->CheckFormat(deadline, [self = shared_from_this(), gen](Status format) {
      asio::post(self->strand_, [self, gen, format = std::move(format)] {
        if (self->stopped_ || gen != self->watch_gen_) return;
        if (!format) {
          if (format.error().code == ErrorCode::kInvalid) {
            self->RecordError(format.error().message, spdlog::level::err);
            self->SetState(ReplicaState::kIncompatibleLog, format.error().message);
          } else {
            self->RecordError("log unavailable: " + format.error().message);
            self->status_.state_reason = "waiting for the log: " + format.error().message;
          }
          self->ScheduleRetry([self, gen] {
            if (gen == self->watch_gen_) self->FetchHeadAndSubscribe(gen);
          });
          return;
        }
        self->format_checked_ = true;
        self->FetchHeadAndSubscribe(gen);
      });
    });
    return;
  }
  log_.Head(deadline, [self = shared_from_this(), gen](Result<LogHead> r) {
    asio::post(self->strand_, [self, gen, r = std::move(r)]() mutable {
      if (self->stopped_ || gen != self->watch_gen_) return;
      auto retry = [self, gen] {
        self->ScheduleRetry([self, gen] {
          if (gen == self->watch_gen_) self->FetchHeadAndSubscribe(gen);
        });
      };
      if (!r) {
        self->RecordError("log unavailable: " + r.error().message);
        self->status_.state_reason = "waiting for the log: " + r.error().message;
        retry();
        return;
      }
      self->status_.log_head = std::max(self->status_.log_head, r->revision);
      if (self->status_.applied_index > r->end_index) {
        // The app holds state this log never had (another log, or a wiped etcd). Applying new
        // entries on top would silently diverge, so refuse to serve and say why.
        std::string why = "app is at index " + std::to_string(self->status_.applied_index) +
                          " but the log's head is revision " + std::to_string(r->revision) +
                          ": the app's state does not come from this log";
        self->RecordError(why);
        self->SetState(ReplicaState::kRecovering, why);
        retry();
        return;
      }
      self->status_.trimmed_index = std::max(self->status_.trimmed_index, r->trimmed_index);
      if (self->position_ < r->trimmed_index) {
        self->NeedStateTransfer(r->trimmed_index, "the app is at index " +
                                                      std::to_string(self->position_) +
                                                      " but the log was trimmed up to index " +
                                                      std::to_string(r->trimmed_index) +
                                                      ": the entries it needs are gone");
        return;
      }
      self->target_ = r->last_index;
      self->status_.log_last_index = std::max(self->status_.log_last_index, r->last_index);
      self->backoff_ = std::chrono::milliseconds(0);
      if (self->status_.state != ReplicaState::kServing) {
        self->SetState(ReplicaState::kCatchingUp, "replaying the log from index " +
                                                      std::to_string(self->position_ + 1) +
                                                      " up to " + std::to_string(self->target_));
      }
      self->Subscribe(self->position_ + 1);
      self->MaybeServing();
    });
  });
}

void Replica::Subscribe(int64_t from_index) {
  uint64_t gen = watch_gen_;
  watch_paused_ = false;
  subscription_ = log_.Subscribe(from_index, [self = shared_from_this(), gen](LogEvent event) {
    asio::post(self->strand_, [self, gen, event = std::move(event)]() mutable {
      self->OnLogEvent(gen, std::move(event));
    });
  });
}

void Replica::MaybeServing() {
  if (status_.state != ReplicaState::kCatchingUp) return;
  if (!subscription_ && !watch_paused_) return;
  if (processed_ < target_) return;
  status_.last_recovery_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - recovery_started_)
          .count();
  SetState(ReplicaState::kServing, "caught up with the log at index " + std::to_string(processed_));
}

// ---- Heartbeat ---------------------------------------------------------------------------------

void Replica::ScheduleHeartbeat() {
  if (stopped_) return;
  if (!heartbeat_timer_) heartbeat_timer_ = std::make_unique<asio::steady_timer>(strand_);
  heartbeat_timer_->expires_after(options_.heartbeat_interval);
  heartbeat_timer_->async_wait([self = shared_from_this()](auto ec) {
    if (ec || self->stopped_) return;
    self->last_tick_ns_.store(SteadyNanos());
    self->CheckAppAnswers();
    self->CheckLogSpace();
    self->OnRetentionTick();
    self->Heartbeat();
    self->ScheduleHeartbeat();
  });
}

void Replica::EnterLogFull(const std::string& detail) {
  if (status_.state != ReplicaState::kServing) return;
  const std::string why =
      "the log refuses writes for lack of space (" + detail +
      "): clients get 503 until an operator frees space (etcd: compact, defragment, raise the "
      "quota) and disarms the alarm; this replica resumes by itself";
  RecordError(why, spdlog::level::err);
  SetState(ReplicaState::kLogFull, why);
}

void Replica::CheckLogSpace() {
  if (space_check_in_flight_) return;
  if (status_.state != ReplicaState::kServing && status_.state != ReplicaState::kLogFull) return;
  space_check_in_flight_ = true;
  const auto deadline = Clock::now() + options_.etcd_timeout;
  log_.CheckSpace(deadline, [self = shared_from_this()](Result<LogSpace> space) {
    asio::post(self->strand_, [self, space = std::move(space)] {
      self->space_check_in_flight_ = false;
      // Unknown (the log unreachable): the appends and the watch tell their own story.
      if (self->stopped_ || !space) return;
      if (space->full) {
        self->EnterLogFull(space->detail);
      } else if (self->status_.state == ReplicaState::kLogFull) {
        self->SetState(ReplicaState::kCatchingUp, "the log accepts writes again");
        self->MaybeServing();
      }
    });
  });
}

void Replica::CheckAppAnswers() {
  if (sent_at_.empty() || queue_.empty()) return;
  const auto waited = Clock::now() - sent_at_.front();
  if (waited < options_.app_timeout) return;
  std::string why = "the app has not answered index " + std::to_string(queue_.front().index) +
                    " for " + std::to_string(Millis(waited)) + " ms (app timeout " +
                    std::to_string(options_.app_timeout.count()) +
                    " ms); still waiting for it on the same connection";
  if (status_.state == ReplicaState::kServing) {
    ++status_.app_stalls;
    RecordError(why);
    SetState(ReplicaState::kAppNotAnswering, why);
  } else if (status_.state == ReplicaState::kAppNotAnswering ||
             status_.state == ReplicaState::kCatchingUp) {
    status_.state_reason = why;
  }
}

void Replica::Heartbeat() {
  // Entries waiting to be forwarded will validate the app themselves (and a forward being retried
  // may have applied already, which a heartbeat would misread as a restart).
  // A full log stops writes, not the app: its restarts are still noticed.
  const bool checked =
      status_.state == ReplicaState::kServing || status_.state == ReplicaState::kLogFull;
  if (heartbeat_in_flight_ || !checked || in_flight_ > 0 || !queue_.empty()) return;
  heartbeat_in_flight_ = true;
  uint64_t gen = app_gen_;
  uint64_t forwards = forwards_started_;
  int64_t expected = status_.applied_index;
  QueryAppIndex([self = shared_from_this(), gen, forwards, expected](Result<AppIndex> r) {
    self->heartbeat_in_flight_ = false;
    // A forward since the heartbeat began makes the answer ambiguous: the next one decides.
    if (self->stopped_ || gen != self->app_gen_ || forwards != self->forwards_started_) return;
    if (self->status_.state != ReplicaState::kServing &&
        self->status_.state != ReplicaState::kLogFull) {
      return;
    }
    if (!r) {
      self->Recover(ReplicaState::kRecovering, "heartbeat: " + r.error().message);
    } else if (r->index != expected) {
      self->Recover(ReplicaState::kRecovering,
                    "heartbeat: app reports index " + std::to_string(r->index) + " but " +
                        std::to_string(expected) + " was applied: the app restarted");
    } else {
      self->NoteAppDeclares(*r);
    }
  });
}

}  // namespace k8shmir
