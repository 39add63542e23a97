#include "log/watch_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>
#include <variant>

#include "common/logging.h"
#include "log/batch_format.h"
#include "log/etcd_errors.h"

namespace k8shmir {

namespace {

constexpr std::chrono::milliseconds kProgressQueryRetry{1000};

}  // namespace

// ------------------------------------------------------------------------------------------------
// WatchSession.

EtcdLog::Core::WatchSession::WatchSession(Core* core, std::shared_ptr<SubShared> shared,
                                          size_t endpoint, int64_t from_index,
                                          EventCallback on_event)
    : core_(core),
      shared_(std::move(shared)),
      endpoint_(endpoint),
      from_index_(from_index),
      on_event_(std::move(on_event)),
      decoder_(core->options.prefix, from_index) {}

void EtcdLog::Core::WatchSession::Start() {
  context_.AddMetadata(kHasLeaderKey, kHasLeaderValue);
  core_->watch_[endpoint_]->async()->Watch(&context_, this);
  // Progress requests are written from the timer thread, outside reactions: the hold keeps
  // the call alive for them until the read side is over (see OnReadDone).
  AddHold();
  {
    MutexLock lock(shared_->mu);
    auto* create = write_.mutable_create_request();
    create->set_key(core_->options.prefix);
    create->set_range_end(core_->range_end);
    // Start revision 0 would mean "from now" to etcd; the log starts at revision 1.
    create->set_start_revision(std::max<int64_t>(RevisionOfIndex(from_index_), 1));
    create->set_progress_notify(true);
    create->add_filters(etcdserverpb::WatchCreateRequest::NODELETE);
    create->set_fragment(true);
    // The log's destructor may have cancelled this subscription since Subscribe registered it
    // (before it was reachable through shared_->session): cancel the call just made.
    if (shared_->cancelled) context_.TryCancel();
    write_in_flight_ = true;
    StartWrite(&write_);
    // The creation counts as the first liveness probe.
    auto now = Clock::now();
    probe_outstanding_ = true;
    probe_sent_at_ = now;
    next_probe_at_ = now + core_->options.progress_interval;
    ScheduleTickLocked(std::min(next_probe_at_, probe_sent_at_ + core_->options.liveness_timeout));
  }
  StartRead(&response_);
  StartCall();
}

void EtcdLog::Core::WatchSession::RequestProgressLocked() {
  if (closed_ || read_done_) return;
  if (query_in_flight_) {
    query_again_ = true;
    return;
  }
  StartQueryLocked();
}

void EtcdLog::Core::WatchSession::OnReadDone(bool ok) {
  if (!ok) {
    {
      MutexLock lock(shared_->mu);
      read_done_ = true;
    }
    // No more reads, and no more writes from outside reactions: OnDone may come.
    RemoveHold();
    return;
  }
  {
    MutexLock deliver_lock(shared_->deliver_mu);
    std::vector<LogEvent> events;
    {
      MutexLock lock(shared_->mu);
      probe_outstanding_ = false;  // any response proves the stream alive
      core_->NoteTerm(response_.header().raft_term());
      if (!shared_->cancelled && !closed_) {
        events = decoder_.Feed(response_);
        if (decoder_.closed()) {
          closed_ = true;
          context_.TryCancel();
          const auto& closed = std::get<LogClosed>(events.back());
          LogLine(spdlog::level::warn, "etcd watch closed",
                  {{"prefix", core_->options.prefix},
                   {"endpoint", core_->endpoints_[endpoint_]},
                   {"error", closed.error.message}});
        } else {
          FilterProgressLocked(events);
          AddSatisfiedProgressLocked(events);
        }
      }
    }
    Deliver(events);
  }
  // Always read on: after a cancellation the read fails, which releases the hold.
  StartRead(&response_);
}

void EtcdLog::Core::WatchSession::OnWriteDone(bool ok) {
  MutexLock lock(shared_->mu);
  write_in_flight_ = false;
  if (!ok) {
    progress_write_wanted_ = false;  // the stream is broken; the read side will tell
    return;
  }
  if (progress_write_wanted_ && !read_done_) {
    progress_write_wanted_ = false;
    WriteProgressRequestLocked();
  }
}

void EtcdLog::Core::WatchSession::OnDone(const grpc::Status& status) {
  bool endpoint_failed = false;
  {
    MutexLock deliver_lock(shared_->deliver_mu);
    std::vector<LogEvent> events;
    {
      MutexLock lock(shared_->mu);
      shared_->session = nullptr;  // nobody may reach this object any more
      if (!shared_->cancelled && !closed_) {
        closed_ = true;
        endpoint_failed = true;
        Error error = unresponsive_ ? Error{ErrorCode::kUnavailable, "watch stream unresponsive"}
                                    : WatchStreamError(status.error_code(), status.error_message());
        LogLine(spdlog::level::warn, "etcd watch closed",
                {{"prefix", core_->options.prefix},
                 {"endpoint", core_->endpoints_[endpoint_]},
                 {"error", error.message}});
        events.emplace_back(LogClosed{std::move(error), 0});
      }
    }
    Deliver(events);
  }
  Core* core = core_;
  SubShared* key = shared_.get();
  if (endpoint_failed) {
    core->EndpointFailed(endpoint_, "watch stream failed");
    core->SuspectLeaderLoss("etcd watch failed", endpoint_);
  }
  delete this;
  core->SessionFinished(key);  // last: the log may be destroyed as soon as it returns
}

void EtcdLog::Core::WatchSession::WriteProgressRequestLocked() {
  write_.Clear();
  write_.mutable_progress_request();
  write_in_flight_ = true;
  StartWrite(&write_);
}

void EtcdLog::Core::WatchSession::ScheduleTickLocked(Clock::time_point when) {
  core_->timer_.Schedule(when, [shared = shared_] {
    MutexLock lock(shared->mu);
    if (shared->session == nullptr) return;
    shared->session->AssertLocked();
    shared->session->TickLocked();
  });
}

void EtcdLog::Core::WatchSession::TickLocked() {
  if (read_done_ || closed_ || unresponsive_ || shared_->cancelled) return;
  auto now = Clock::now();
  const auto& options = core_->options;
  if (probe_outstanding_ && now - probe_sent_at_ >= options.liveness_timeout) {
    unresponsive_ = true;
    context_.TryCancel();  // OnDone reports LogClosed{kUnavailable, "watch stream unresponsive"}
    return;
  }
  if (now >= next_probe_at_) {
    if (!probe_outstanding_) {
      probe_outstanding_ = true;
      probe_sent_at_ = now;
    }
    if (write_in_flight_) {
      progress_write_wanted_ = true;
    } else {
      WriteProgressRequestLocked();
    }
    next_probe_at_ = now + options.progress_interval;
  }
  auto next = next_probe_at_;
  if (probe_outstanding_) next = std::min(next, probe_sent_at_ + options.liveness_timeout);
  ScheduleTickLocked(next);
}

void EtcdLog::Core::WatchSession::FilterProgressLocked(std::vector<LogEvent>& events) {
  // A loop, not std::erase_if with a lambda: the analysis would not know the lambda runs with
  // shared_->mu held.
  auto kept = events.begin();
  for (auto& event : events) {
    const auto* progress = std::get_if<LogProgress>(&event);
    if (progress != nullptr) {
      if (progress->revision <= last_progress_) continue;
      last_progress_ = progress->revision;
    }
    if (&*kept != &event) *kept = std::move(event);
    ++kept;
  }
  events.erase(kept, events.end());
}

void EtcdLog::Core::WatchSession::StartQueryLocked() {
  query_in_flight_ = true;
  query_again_ = false;
  auto request = core_->HeadRequest();
  core_->RunRange("progress query", std::move(request), Clock::now() + core_->options.rpc_timeout,
                  [shared = shared_](Result<etcdserverpb::RangeResponse> result) {
                    OnQueryDone(shared, std::move(result));
                  });
}

void EtcdLog::Core::WatchSession::OnQueryDone(const std::shared_ptr<SubShared>& shared,
                                              Result<etcdserverpb::RangeResponse> result) {
  MutexLock deliver_lock(shared->deliver_mu);
  // Holding deliver_mu keeps the session alive: its OnDone needs it before deleting itself.
  WatchSession* session = nullptr;
  std::vector<LogEvent> events;
  {
    MutexLock lock(shared->mu);
    session = shared->session;
    if (session == nullptr) return;
    session->AssertLocked();
    session->query_in_flight_ = false;
    if (shared->cancelled || session->closed_ || session->read_done_) return;
    if (!result.ok()) {
      LogLine(spdlog::level::warn, "etcd watch progress query failed; retrying",
              {{"prefix", session->core_->options.prefix}, {"error", result.error().message}});
      session->ScheduleQueryRetryLocked();
      return;
    }
    const auto& response = result.value();
    int64_t last_index = LastIndexOf(response, session->core_->options.prefix);
    session->progress_pending_ = true;
    session->pending_revision_ = std::max(session->pending_revision_, response.header().revision());
    session->pending_index_ = std::max(session->pending_index_, last_index);
    session->AddSatisfiedProgressLocked(events);
    if (session->query_again_) session->StartQueryLocked();
  }
  // The analysis does not know that session->shared_ is `shared`, whose deliver_mu is held.
  session->DeliverHeldBy(shared.get(), events);
}

void EtcdLog::Core::WatchSession::ScheduleQueryRetryLocked() {
  core_->timer_.Schedule(Clock::now() + kProgressQueryRetry, [shared = shared_] {
    MutexLock lock(shared->mu);
    auto* session = shared->session;
    if (session == nullptr || shared->cancelled) return;
    session->AssertLocked();
    if (session->query_in_flight_) return;
    session->RequestProgressLocked();
  });
}

void EtcdLog::Core::WatchSession::AddSatisfiedProgressLocked(std::vector<LogEvent>& events) {
  if (!progress_pending_) return;
  if (decoder_.delivered_index() < pending_index_ && last_progress_ < pending_revision_) return;
  progress_pending_ = false;
  // Answer every request, even when a periodic notification already told as much.
  last_progress_ = std::max(last_progress_, pending_revision_);
  events.emplace_back(LogProgress{last_progress_, EndIndexOfRevision(last_progress_)});
}

void EtcdLog::Core::WatchSession::Deliver(std::vector<LogEvent>& events) {
  for (auto& event : events) {
    {
      MutexLock lock(shared_->mu);
      if (shared_->cancelled) return;
    }
    on_event_(std::move(event));
  }
}

void EtcdLog::Core::WatchSession::DeliverHeldBy(const SubShared* shared,
                                                std::vector<LogEvent>& events) {
  (void)shared;  // == shared_.get(): the caller found this session in it
  Deliver(events);
}

// ------------------------------------------------------------------------------------------------
// SubscriptionHandle.

void EtcdLog::Core::SubscriptionHandle::RequestProgress() {
  MutexLock lock(shared_->mu);
  // A live session implies a live log: the log's destructor waits for its sessions.
  if (shared_->session != nullptr && !shared_->cancelled) {
    shared_->session->AssertLocked();
    shared_->session->RequestProgressLocked();
  }
}

void EtcdLog::Core::SubscriptionHandle::Cancel() {
  MutexLock lock(shared_->mu);
  if (shared_->cancelled) return;
  shared_->cancelled = true;
  if (shared_->session == nullptr) return;
  shared_->session->AssertLocked();
  shared_->session->CancelLocked();
}

}  // namespace k8shmir
