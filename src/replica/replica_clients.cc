// Replica, the client side: Submit, group commit of appends, deadlines, answers (replica.h).
#include "replica/replica.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "k8shmir/config.h"
#include "replica/replica_util.h"

namespace k8shmir {

namespace asio = boost::asio;
using namespace replica_internal;

// ---- Client requests ---------------------------------------------------------------------------

void Replica::Submit(HttpRequest request, ReplyCallback client_done) {
  // Counted on the way out, whatever answers it (every answer runs on the strand).
  ReplyCallback done = [self = shared_from_this(), arrived = Clock::now(),
                        client_done = std::move(client_done)](ClientReply reply) {
    self->NoteAnswer(reply, arrived);
    client_done(std::move(reply));
  };
  // The routes are fixed at construction: matched here, off the strand.
  if (std::optional<ReadConsistency> read =
          options_.read_routes.Match(request.method, request.target)) {
    asio::post(strand_, [self = shared_from_this(), consistency = *read,
                         request = std::move(request), done = std::move(done)]() mutable {
      self->StartRead(std::move(request), consistency, std::move(done));
    });
    return;
  }
  asio::post(strand_, [self = shared_from_this(), request = std::move(request),
                       done = std::move(done)]() mutable {
    if (self->stopped_ || self->status_.state != ReplicaState::kServing) {
      ++self->status_.requests_not_committed;
      done(self->Rejected(
          Rejection::kNotServing,
          ErrorReply(503, Outcome::kNotCommitted, 0,
                     std::string("replica is ") + ReplicaStateName(self->status_.state) + ": " +
                         self->status_.state_reason,
                     1)));
      return;
    }
    if (self->pending_.size() >= self->options_.max_pending_requests) {
      ++self->status_.requests_not_committed;
      done(self->Rejected(
          Rejection::kTooManyPending,
          ErrorReply(503, Outcome::kNotCommitted, 0,
                     "too many requests are waiting for the log on this replica", 1)));
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
      done(self->Rejected(
          Rejection::kTooLarge,
          ErrorReply(413, Outcome::kNotCommitted, 0,
                     "request is too large for one log entry (" + std::to_string(value.size()) +
                         " bytes encoded, limit " + std::to_string(kMaxEntryBytes) + ")")));
      return;
    }
    if (!self->pending_.empty() &&
        self->pending_.bytes() + value.size() > self->options_.max_pending_bytes) {
      ++self->status_.requests_not_committed;
      ++self->status_.requests_over_byte_budget;
      done(self->Rejected(
          Rejection::kTooManyPending,
          ErrorReply(503, Outcome::kNotCommitted, 0,
                     "too many bytes of requests are waiting for the log on this replica (" +
                         std::to_string(self->pending_.bytes()) + " pending, limit " +
                         std::to_string(self->options_.max_pending_bytes) + ")",
                     1)));
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
    if (batch.empty()) break;
    ++appends_in_flight_;
    last_append_sent_ = Clock::now();
    // The reads waiting for a round trip ride this one: it started after they arrived.
    std::vector<uint64_t> riders = std::move(read_waiters_);
    read_waiters_.clear();
    ++status_.log_appends;
    status_.log_appended_entries += batch.size();
    // Leave a quarter of the budget (at most 1 s) to apply the entries once they are committed.
    auto margin = std::min<std::chrono::milliseconds>(options_.request_timeout / 4,
                                                      std::chrono::milliseconds(1000));
    // The first entry's id names the batch: unique, and the same on every retry of the append.
    std::string batch_id = ids.front();
    log_.AppendBatch(batch_id, std::move(batch), deadline - margin,
                     [self = shared_from_this(), ids = std::move(ids),
                      riders = std::move(riders)](Result<AppendResult> r) {
                       asio::post(self->strand_, [self, ids, riders, r = std::move(r)]() mutable {
                         self->OnAppended(ids, riders, std::move(r));
                       });
                     });
  }
  MaybeSendBarrier();
}

void Replica::OnAppended(const std::vector<std::string>& ids, const std::vector<uint64_t>& riders,
                         Result<AppendResult> result) {
  --appends_in_flight_;
  if (!riders.empty()) {
    if (result && result->created && result->committed_before >= 0) {
      ++status_.read_appends;
      status_.read_append_reads += riders.size();
      OnRoundTrip(riders, result->committed_before);
    } else {
      // It cannot tell what was committed before it (it failed, or an earlier attempt created
      // the batch): they wait for the next round trip, which also starts after they arrived.
      read_waiters_.insert(read_waiters_.begin(), riders.begin(), riders.end());
    }
  }
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
      Reply(id,
            Rejected(Rejection::kLogUnavailable, ErrorReply(503, Outcome::kNotCommitted, 0,
                                                            "log unavailable: " + e.message, 1)));
    } else if (e.code == ErrorCode::kLogFull) {
      ++status_.log_full_refusals;
      EnterLogFull(e.message);
      Reply(id, Rejected(Rejection::kLogFull,
                         ErrorReply(503, Outcome::kNotCommitted, 0,
                                    "the log is full: it refuses writes for lack of space (" +
                                        e.message + "); not committed",
                                    5)));
    } else if (e.code == ErrorCode::kInvalid) {
      Reply(id,
            Rejected(Rejection::kTooLarge, ErrorReply(413, Outcome::kNotCommitted, 0,
                                                      "the log refused the entry: " + e.message)));
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
      Complete(p, Rejected(Rejection::kLogUnavailable,
                           ErrorReply(503, Outcome::kNotCommitted, 0,
                                      "the log was too slow: the request waited for it past the "
                                      "request timeout and was not sent",
                                      1)));
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
    case Outcome::kNone:  // reads are counted apart (status_.reads)
      break;
  }
  request.done(std::move(reply));
}

ClientReply Replica::Rejected(Rejection reason, ClientReply reply) {
  status_.Count(reason);
  return reply;
}

void Replica::NoteAnswer(const ClientReply& reply, Clock::time_point arrived) {
  std::size_t outcome = 3;  // "read"
  if (!reply.read) {
    switch (reply.outcome) {
      case Outcome::kCommitted:
        outcome = 0;
        break;
      case Outcome::kNotCommitted:
        outcome = 1;
        break;
      case Outcome::kUnknown:
        outcome = 2;
        break;
      case Outcome::kNone:
        break;
    }
  }
  status_.request_latency[outcome].Observe(SecondsSince(arrived));
  status_.CountResponse(reply.response.status);
}

void Replica::NoteRejected(Rejection reason, unsigned status) {
  asio::post(strand_, [self = shared_from_this(), reason, status] {
    self->status_.Count(reason);
    self->status_.CountResponse(status);
  });
}

}  // namespace k8shmir
