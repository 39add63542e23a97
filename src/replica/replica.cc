#include "replica/replica.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <variant>

#include "k8shmir/config.h"

namespace k8shmir {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

int64_t Millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// A backlog this large, once drained, is worth handing back to the system (malloc_trim).
constexpr std::size_t kReleaseMemoryAfterBytes = 8 * 1024 * 1024;

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

ClientReply ErrorReply(unsigned status, Outcome outcome, int64_t index, const std::string& why,
                       int retry_after = 0) {
  ClientReply r;
  r.response.status = status;
  r.response.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
  r.response.body = "k8shmir: " + why + "\n";
  r.outcome = outcome;
  r.index = index;
  r.retry_after = retry_after;
  return r;
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kCommitted:
      return "committed";
    case Outcome::kNotCommitted:
      return "not-committed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "unknown";
}

Replica::Replica(asio::any_io_executor executor, Log& log, App& app, ReplicaOptions options)
    : strand_(asio::make_strand(executor)),
      log_(log),
      app_(app),
      options_(std::move(options)),
      last_tick_ns_(SteadyNanos()) {
  status_.replica_id = options_.replica_id;
  status_.group = options_.group;
  status_.state_reason = "waiting for the app";
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
    s.pending_bytes = self->pending_.bytes();
    s.queued_entries = self->queue_.size();
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
    spdlog::info("replica {} state {} -> {}: {}", options_.replica_id,
                 ReplicaStateName(status_.state), ReplicaStateName(state), why);
  }
  status_.state = state;
  status_.state_reason = why;
}

void Replica::NoteAppDeclares(const AppIndex& app) {
  status_.app_pipelining = app.pipelining;
  status_.app_pipeline_depth =
      app.pipelining ? std::max<std::size_t>(options_.app_pipeline_depth, 1) : 1;
}

void Replica::RecordError(const std::string& message, spdlog::level::level_enum level) {
  if (message != status_.last_error) {
    spdlog::log(level, "replica {}: {}", options_.replica_id, message);
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
  queue_.clear();
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

void Replica::BeginValidation() { ValidateApp(app_gen_); }

void Replica::QueryAppIndex(std::function<void(Result<AppIndex>)> done) {
  // HttpApp bounds each step by the app timeout, but a LastIndex that never calls back (an
  // exception swallowed, a resolver that hangs, a bug) must not hang the replica: the first of
  // the answer and this deadline wins, the other is ignored.
  const auto limit = 2 * options_.app_timeout + std::chrono::milliseconds(500);
  auto answered = std::make_shared<bool>(false);
  auto timer = std::make_shared<asio::steady_timer>(strand_, limit);
  timer->async_wait([answered, done, limit](boost::system::error_code ec) {
    if (ec || *answered) return;
    *answered = true;
    done(Error{ErrorCode::kUnavailable, "the app's last-index answer did not come within " +
                                            std::to_string(limit.count()) + " ms"});
  });
  app_.LastIndex([self = shared_from_this(), answered, timer, done](Result<AppIndex> r) {
    asio::post(self->strand_, [answered, timer, done, r = std::move(r)]() mutable {
      if (*answered) return;
      *answered = true;
      timer->cancel();
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
    spdlog::info("replica {}: app reports last index {}", self->options_.replica_id, app_index);
    self->status_.applied_index = app_index;
    self->processed_ = app_index;
    self->position_ = app_index;
    self->ResolveSkipped();
    self->FetchHeadAndSubscribe(self->watch_gen_);
  });
}

void Replica::FetchHeadAndSubscribe(uint64_t gen) {
  auto deadline = Clock::now() + options_.etcd_timeout;
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

// ---- Log events --------------------------------------------------------------------------------

void Replica::OnLogEvent(uint64_t gen, LogEvent event) {
  if (stopped_ || gen != watch_gen_) return;
  std::visit(
      Overloaded{
          [this](LogBatch& b) { OnBatch(b); },
          [this](LogProgress& p) { status_.log_head = std::max(status_.log_head, p.revision); },
          [this](LogClosed& c) { OnClosed(c); },
      },
      event);
}

void Replica::OnBatch(LogBatch& batch) {
  backoff_ = std::chrono::milliseconds(0);
  status_.log_head = std::max(status_.log_head, batch.revision);
  for (auto& record : batch.records) {
    if (record.index <= position_) {
      // etcd 3.4.23 can repeat or rewind watch events; applying them again would corrupt the app.
      ++status_.entries_dropped;
      if (record.index == position_) {
        spdlog::warn("replica {}: log delivered index {} twice; dropped", options_.replica_id,
                     record.index);
      } else {
        spdlog::error("replica {}: log went back in time: index {} after {}; dropped",
                      options_.replica_id, record.index, position_);
      }
      continue;
    }
    position_ = record.index;
    status_.log_last_index = std::max(status_.log_last_index, record.index);
    queued_bytes_ += record.value.size();
    queue_.push_back(std::move(record));
  }
  NoteBacklog();
  if (QueueFull() && subscription_) {
    // Bound memory: stop the watch and resume from position_ + 1 once the app has caught up.
    ++watch_gen_;
    subscription_.reset();
    watch_paused_ = true;
    ++status_.watch_pauses;
  }
  TryForward();
}

bool Replica::QueueFull() const {
  return queue_.size() >= options_.max_queued_entries || queued_bytes_ >= options_.max_queued_bytes;
}

void Replica::MaybeResumeWatch() {
  if (watch_paused_ && queue_.size() <= options_.max_queued_entries / 2 &&
      queued_bytes_ <= options_.max_queued_bytes / 2) {
    Subscribe(position_ + 1);
  }
}

void Replica::PopQueueFront() {
  queued_bytes_ -= queue_.front().value.size();
  queue_.pop_front();
}

void Replica::NoteBacklog() {
  backlog_peak_bytes_ = std::max(backlog_peak_bytes_, queued_bytes_ + pending_.bytes());
}

void Replica::MaybeReleaseMemory() {
  // Drained means "down to about one entry's worth": under steady load pending requests are
  // never all answered at once.
  const std::size_t backlog = queued_bytes_ + pending_.bytes();
  if (backlog_peak_bytes_ < kReleaseMemoryAfterBytes || backlog > kMaxEntryBytes) return;
  backlog_peak_bytes_ = backlog;
  // glibc keeps freed arena memory for reuse; after a burst of large entries that is tens of
  // MiB the process would hold for ever. A few milliseconds, once per drained backlog.
  ::malloc_trim(0);
}

void Replica::OnClosed(const LogClosed& closed) {
  ++watch_gen_;
  subscription_.reset();
  if (closed.error.code == ErrorCode::kCompacted) {
    std::string why = "the log was compacted up to revision " +
                      std::to_string(closed.compact_revision) + " but the app is at index " +
                      std::to_string(status_.applied_index) +
                      ": the entries it needs are gone; a state transfer is needed";
    RecordError(why);
    SetState(ReplicaState::kNeedsStateTransfer, why);
    return;
  }
  ++status_.watch_restarts;
  RecordError("log watch closed: " + closed.error.message);
  if (status_.state == ReplicaState::kServing) {
    SetState(ReplicaState::kCatchingUp, "log watch lost: " + closed.error.message);
  }
  ResubscribeLater();
}

void Replica::ResubscribeLater() {
  uint64_t gen = watch_gen_;
  ScheduleRetry([self = shared_from_this(), gen] {
    if (gen == self->watch_gen_) self->FetchHeadAndSubscribe(gen);
  });
}

// ---- Applying ----------------------------------------------------------------------------------

void Replica::BreakPipeline() {
  ++pipe_gen_;
  sent_at_.clear();
}

void Replica::TryForward() {
  const std::size_t depth = std::max<std::size_t>(options_.app_pipeline_depth, 1);
  while (!stopped_ && !recover_pending_ && !forward_retry_pending_ &&
         sent_at_.size() < queue_.size() && in_flight_ < depth) {
    const std::size_t sent = sent_at_.size();
    const LogRecord& record = queue_[sent];
    auto entry = record.malformed ? Result<Entry>(Error{ErrorCode::kProtocol, "not an entry"})
                                  : DecodeEntry(record.value);
    if (!entry) {
      // Skipped only at the front, once everything before it was applied.
      if (sent > 0) break;
      // Every replica decodes the same bytes, so every replica skips this entry alike.
      spdlog::error("replica {}: entry {} at index {} skipped: {}", options_.replica_id, record.id,
                    record.index, entry.error().message);
      processed_ = record.index;
      ++status_.entries_dropped;
      std::string id = record.id;
      PopQueueFront();
      if (pending_.contains(id)) {
        Reply(id, ErrorReply(500, Outcome::kCommitted, processed_, "entry could not be decoded"));
      }
      // A paused watch resumes when the queue drains, whether its entries were applied or
      // skipped: a tail of skipped entries must not leave the replica waiting for nothing.
      MaybeResumeWatch();
      continue;
    }
    // The app must have applied exactly the entry before this one (or, at the front, what it
    // has applied so far).
    int64_t expected = sent == 0 ? status_.applied_index : queue_[sent - 1].index;
    int64_t index = record.index;
    ++in_flight_;
    ++forwards_started_;
    highest_forwarded_ = std::max(highest_forwarded_, index);
    sent_at_.push_back(Clock::now());
    app_.Forward(
        entry->request, index, expected,
        [self = shared_from_this(), gen = app_gen_, pipe = pipe_gen_, index](ForwardResult r) {
          asio::post(self->strand_, [self, gen, pipe, index, r = std::move(r)]() mutable {
            self->OnForwarded(gen, pipe, index, std::move(r));
          });
        });
  }
  MaybeServing();
  MaybeReleaseMemory();
}

void Replica::OnForwarded(uint64_t gen, uint64_t pipe, int64_t index, ForwardResult result) {
  --in_flight_;
  if (stopped_) return;
  if (recover_pending_) {
    if (in_flight_ == 0) {
      recover_pending_ = false;
      BeginValidation();
    }
    return;
  }
  if (gen != app_gen_ || pipe != pipe_gen_) {
    // A result of a superseded pipeline: what it applied, the app's index will tell.
    TryForward();
    return;
  }
  if (sent_at_.empty() || queue_.empty() || queue_.front().index != index) {
    // The app answers in order; anything else is a bug of ours: trust only the app's index.
    Recover(ReplicaState::kRecovering, "forward result for index " + std::to_string(index) +
                                           " out of order; re-validating the app");
    return;
  }
  const auto started = sent_at_.front();
  std::visit(Overloaded{
                 [&](HttpResponse& response) {
                   forward_failures_ = 0;
                   status_.apply_latency.Observe(SecondsSince(started));
                   if (status_.state == ReplicaState::kAppNotAnswering) {
                     SetState(ReplicaState::kServing,
                              "the app answered index " + std::to_string(index) + " after " +
                                  std::to_string(Millis(Clock::now() - started)) + " ms");
                   }
                   MarkApplied(queue_.front(), &response);
                   TryForward();
                 },
                 [&](AppIndexMismatch& m) {
                   BreakPipeline();
                   OnAppAhead(m.app_index);
                 },
                 [&](Error& e) {
                   BreakPipeline();
                   ++forward_failures_;
                   RecordError(e.message);
                   if (e.code == ErrorCode::kProtocol) {
                     // The validation answer broke the contract: retrying cannot help.
                     Recover(ReplicaState::kRecovering, "validating the app: " + e.message);
                     return;
                   }
                   if (forward_failures_ > options_.forward_retries) {
                     Recover(ReplicaState::kRecovering,
                             "forwarding index " + std::to_string(index) + " failed " +
                                 std::to_string(forward_failures_) + " times: " + e.message);
                     return;
                   }
                   // Unknown outcome: the retry re-validates the app on a fresh connection first.
                   uint64_t app_gen = app_gen_;
                   forward_retry_pending_ = true;
                   ScheduleRetry([self = shared_from_this(), app_gen] {
                     if (app_gen != self->app_gen_) return;
                     self->forward_retry_pending_ = false;
                     self->TryForward();
                   });
                 },
             },
             result);
}

void Replica::OnAppAhead(int64_t app_index) {
  // Entries written to the app whose answers were never read (a connection that broke under a
  // pipeline): the app may have applied some of them. It applies in order, so reporting the index
  // of one of them means it applied exactly the queue up to there.
  std::size_t applied = 0;
  while (applied < queue_.size() && queue_[applied].index < app_index) ++applied;
  if (app_index > status_.applied_index && app_index <= highest_forwarded_ &&
      applied < queue_.size() && queue_[applied].index == app_index) {
    spdlog::warn(
        "replica {}: the app applied up to index {} although the proxy had not read the "
        "answers from index {} on (the connection broke under them); {} entries count as "
        "applied, their clients learn they committed",
        options_.replica_id, app_index, queue_.front().index, applied + 1);
    forward_failures_ = 0;
    for (std::size_t i = 0; i <= applied; ++i) MarkApplied(queue_.front(), nullptr);
    TryForward();
    return;
  }
  std::string what = app_index < status_.applied_index
                         ? "the app restarted or its state was replaced"
                     : app_index > highest_forwarded_
                         ? "the app holds entries this proxy never sent it (changed behind the "
                           "proxy, or another proxy reached it)"
                         : "the app applied part of an entry sequence out of order";
  Recover(ReplicaState::kRecovering, "app reports index " + std::to_string(app_index) + " but " +
                                         std::to_string(status_.applied_index) +
                                         " was applied: " + what);
}

void Replica::MarkApplied(const LogRecord& record, HttpResponse* response) {
  status_.applied_index = record.index;
  processed_ = record.index;
  ++status_.entries_applied;
  if (status_.state != ReplicaState::kServing) ++status_.entries_replayed;
  std::string id = record.id;
  int64_t index = record.index;
  PopQueueFront();
  if (!sent_at_.empty()) sent_at_.pop_front();
  if (pending_.contains(id)) {
    if (response != nullptr) {
      ClientReply reply;
      reply.response = std::move(*response);
      reply.outcome = Outcome::kCommitted;
      reply.index = index;
      Reply(id, std::move(reply));
    } else {
      Reply(id, ErrorReply(502, Outcome::kCommitted, index,
                           "the request was applied but the app's response was lost"));
    }
  }
  ResolveSkipped();
  MaybeResumeWatch();
}

void Replica::ResolveSkipped() {
  for (auto& [id, request] : pending_.TakeUpTo(processed_)) {
    Complete(request, ErrorReply(502, Outcome::kCommitted, request.index,
                                 "the request was committed and applied, but this replica's app "
                                 "had applied it before the proxy could read the response"));
  }
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
    self->Heartbeat();
    self->ScheduleHeartbeat();
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
  if (heartbeat_in_flight_ || status_.state != ReplicaState::kServing || in_flight_ > 0 ||
      !queue_.empty()) {
    return;
  }
  heartbeat_in_flight_ = true;
  uint64_t gen = app_gen_;
  uint64_t forwards = forwards_started_;
  int64_t expected = status_.applied_index;
  QueryAppIndex([self = shared_from_this(), gen, forwards, expected](Result<AppIndex> r) {
    self->heartbeat_in_flight_ = false;
    // A forward since the heartbeat began makes the answer ambiguous: the next one decides.
    if (self->stopped_ || gen != self->app_gen_ || forwards != self->forwards_started_) return;
    if (self->status_.state != ReplicaState::kServing) return;
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

// ---- Client requests ---------------------------------------------------------------------------

void Replica::Submit(HttpRequest request, ReplyCallback done) {
  asio::post(strand_, [self = shared_from_this(), request = std::move(request),
                       done = std::move(done)]() mutable {
    if (self->stopped_ || self->status_.state != ReplicaState::kServing) {
      ++self->status_.requests_not_committed;
      done(ErrorReply(503, Outcome::kNotCommitted, 0,
                      std::string("replica is ") + ReplicaStateName(self->status_.state) + ": " +
                          self->status_.state_reason,
                      1));
      return;
    }
    if (self->pending_.size() >= self->options_.max_pending_requests) {
      ++self->status_.requests_not_committed;
      done(ErrorReply(503, Outcome::kNotCommitted, 0,
                      "too many requests are waiting for the log on this replica", 1));
      return;
    }
    Entry entry;
    entry.request_id = NewRequestId();
    entry.origin = self->options_.replica_id;
    entry.appended_unix_ms = UnixMillis();
    entry.request = std::move(request);
    std::string value = EncodeEntry(entry);
    if (value.size() > kMaxEntryBytes) {
      ++self->status_.requests_not_committed;
      done(ErrorReply(413, Outcome::kNotCommitted, 0,
                      "request is too large for one log entry (" + std::to_string(value.size()) +
                          " bytes encoded, limit " + std::to_string(kMaxEntryBytes) + ")"));
      return;
    }
    if (!self->pending_.empty() &&
        self->pending_.bytes() + value.size() > self->options_.max_pending_bytes) {
      ++self->status_.requests_not_committed;
      ++self->status_.requests_over_byte_budget;
      done(ErrorReply(503, Outcome::kNotCommitted, 0,
                      "too many bytes of requests are waiting for the log on this replica (" +
                          std::to_string(self->pending_.bytes()) + " pending, limit " +
                          std::to_string(self->options_.max_pending_bytes) + ")",
                      1));
      return;
    }
    std::string id = entry.request_id;
    auto now = Clock::now();
    auto deadline = now + self->options_.request_timeout;
    PendingRequests<ReplyCallback>::Request pending;
    pending.done = std::move(done);
    pending.submitted_at = now;
    pending.deadline = deadline;
    pending.bytes = value.size();
    self->pending_.Add(id, std::move(pending));
    self->NoteBacklog();
    self->ArmDeadlineTimer();
    self->outbox_.push_back(LogEntry{std::move(id), std::move(value)});
    self->FlushAppends();
  });
}

void Replica::FlushAppends() {
  while (appends_in_flight_ < options_.max_appends_in_flight && !outbox_.empty()) {
    std::vector<LogEntry> batch;
    std::vector<std::string> ids;
    std::size_t bytes = 0;
    Clock::time_point deadline = Clock::time_point::max();
    while (!outbox_.empty() && batch.size() < kMaxBatchEntries) {
      LogEntry& next = outbox_.front();
      const auto* pending = pending_.Find(next.id);
      if (pending == nullptr) {  // answered while waiting (deadline)
        outbox_.pop_front();
        continue;
      }
      if (!batch.empty() && bytes + next.value.size() > options_.max_batch_bytes) break;
      bytes += next.value.size();
      deadline = std::min(deadline, pending->deadline);
      pending_.MarkSent(next.id);
      ids.push_back(next.id);
      batch.push_back(std::move(next));
      outbox_.pop_front();
    }
    if (batch.empty()) return;
    ++appends_in_flight_;
    ++status_.log_appends;
    status_.log_appended_entries += batch.size();
    // Leave a quarter of the budget (at most 1 s) to apply the entries once they are committed.
    auto margin = std::min<std::chrono::milliseconds>(options_.request_timeout / 4,
                                                      std::chrono::milliseconds(1000));
    // The first entry's id names the batch: unique, and the same on every retry of the append.
    std::string batch_id = ids.front();
    log_.AppendBatch(batch_id, std::move(batch), deadline - margin,
                     [self = shared_from_this(), ids = std::move(ids)](Result<AppendResult> r) {
                       asio::post(self->strand_, [self, ids, r = std::move(r)]() mutable {
                         self->OnAppended(ids, std::move(r));
                       });
                     });
  }
}

void Replica::OnAppended(const std::vector<std::string>& ids, Result<AppendResult> result) {
  --appends_in_flight_;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (result) {
      OnEntryAppended(ids[i], result->first_index + static_cast<int64_t>(i));
    } else {
      OnEntryAppended(ids[i], result.error());
    }
  }
  if (!stopped_) FlushAppends();
}

void Replica::OnEntryAppended(const std::string& id, const Result<int64_t>& result) {
  const auto* pending = pending_.Find(id);
  if (pending == nullptr) return;  // already answered: applied first, or past its deadline
  status_.append_latency.Observe(SecondsSince(pending->submitted_at));
  if (!result) {
    const Error& e = result.error();
    if (e.code == ErrorCode::kUnavailable) {
      Reply(id, ErrorReply(503, Outcome::kNotCommitted, 0, "log unavailable: " + e.message, 1));
    } else if (e.code == ErrorCode::kInvalid) {
      Reply(id,
            ErrorReply(413, Outcome::kNotCommitted, 0, "the log refused the entry: " + e.message));
    } else {
      Reply(id, ErrorReply(504, Outcome::kUnknown, 0,
                           "the log did not confirm the append (" + e.message +
                               "); the request may still be applied"));
    }
    return;
  }
  int64_t index = *result;
  status_.log_last_index = std::max(status_.log_last_index, index);
  pending_.SetIndex(id, index);
  // Applied (or skipped) before the append's answer came: answered here, nothing to wait for.
  ResolveSkipped();
}

void Replica::ArmDeadlineTimer() {
  auto next = pending_.NextDeadline();
  if (!next || (deadline_armed_ && deadline_timer_->expiry() <= *next)) return;
  if (!deadline_timer_) deadline_timer_ = std::make_unique<asio::steady_timer>(strand_);
  // Re-arming cancels the wait in progress; its handler sees operation_aborted.
  deadline_armed_ = true;
  deadline_timer_->expires_at(*next);
  deadline_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->stopped_) return;
    self->deadline_armed_ = false;
    self->OnDeadlines();
    self->ArmDeadlineTimer();
  });
}

void Replica::OnDeadlines() {
  for (auto& [id, p] : pending_.TakeExpired(Clock::now())) {
    if (p.in_outbox) {
      Complete(p, ErrorReply(503, Outcome::kNotCommitted, 0,
                             "the log was too slow: the request waited for it past the request "
                             "timeout and was not sent",
                             1));
    } else if (p.index != 0) {
      Complete(p, ErrorReply(504, Outcome::kCommitted, p.index,
                             "the request was committed at index " + std::to_string(p.index) +
                                 " but this replica did not apply it within the request timeout"));
    } else {
      Complete(p, ErrorReply(504, Outcome::kUnknown, 0,
                             "the log did not confirm the append within the request timeout; "
                             "the request may still be applied"));
    }
  }
}

void Replica::Reply(const std::string& id, ClientReply reply) {
  if (auto p = pending_.Take(id)) Complete(*p, std::move(reply));
}

void Replica::Complete(PendingRequests<ReplyCallback>::Request& request, ClientReply reply) {
  switch (reply.outcome) {
    case Outcome::kCommitted:
      ++status_.requests_committed;
      break;
    case Outcome::kNotCommitted:
      ++status_.requests_not_committed;
      break;
    case Outcome::kUnknown:
      ++status_.requests_unknown;
      break;
  }
  request.done(std::move(reply));
}

}  // namespace k8shmir
