// Replica, reads that skip the log (replica.h; docs/design.md, "Reads that skip the log").
//
// A linearizable read waits for a read barrier: the group's committed index B as of a round trip
// to etcd that started after the read arrived, shared by every read waiting when it started. The
// round trip is the next append, whose transaction reads the committed head before moving it
// (AppendResult::committed_before), when one is about to leave; else a linearizable etcd read of
// the committed index (Log::ReadCommittedIndex), at most one in flight. A read arriving while a
// round trip is in flight waits for the next, because etcd may have answered the one in flight
// before the read arrived. Once this replica has applied B, the read
// goes to the app on a read connection (App::Read), whose app was validated to hold at least B.
// Every write acknowledged before the read arrived was committed before the barrier was sent, so
// it is at or below B, and the app's answer reflects it.
//
// Optimistically, the app is asked at once, together with the barrier: the answer reflects what
// the replica had applied when it was asked (P), so it stands if P >= B, and the read costs
// max(barrier, app) instead of their sum. Otherwise (the replica was behind) the app is asked
// again once the replica applied B.
//
// A `local` read skips the barrier: it reflects what the app holds when it is asked.
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "replica/replica.h"
#include "replica/replica_util.h"

namespace k8shmir {

namespace asio = boost::asio;
using namespace replica_internal;

namespace {

// A refused read is a rejection too (k8shmir_rejections_total); an app failure or a timeout is
// not: the replica took it.
std::optional<Rejection> RejectionOfRead(ReadOutcome outcome) {
  switch (outcome) {
    case ReadOutcome::kNotServing:
    case ReadOutcome::kAppBehind:
      return Rejection::kNotServing;
    case ReadOutcome::kLogUnavailable:
      return Rejection::kLogUnavailable;
    case ReadOutcome::kOverloaded:
      return Rejection::kTooManyPending;
    case ReadOutcome::kServed:
    case ReadOutcome::kAppFailed:
    case ReadOutcome::kTimedOut:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

const char* ReadOutcomeName(ReadOutcome outcome) {
  switch (outcome) {
    case ReadOutcome::kServed:
      return "served";
    case ReadOutcome::kNotServing:
      return "not-serving";
    case ReadOutcome::kLogUnavailable:
      return "log-unavailable";
    case ReadOutcome::kAppBehind:
      return "app-behind";
    case ReadOutcome::kAppFailed:
      return "app-failed";
    case ReadOutcome::kTimedOut:
      return "timed-out";
    case ReadOutcome::kOverloaded:
      return "overloaded";
  }
  return "served";
}

void Replica::StartRead(HttpRequest request, ReadConsistency consistency, ReplyCallback done) {
  const bool linearizable = consistency == ReadConsistency::kLinearizable;
  auto refuse = [&](ReadOutcome outcome, unsigned status, const std::string& why) {
    ClientReply reply = ErrorReply(status, Outcome::kNotCommitted, 0, why, 1);
    reply.read = consistency;
    status_.reads[static_cast<int>(consistency)].Count(outcome);
    if (auto rejection = RejectionOfRead(outcome)) status_.Count(*rejection);
    done(std::move(reply));
  };
  if (stopped_) {
    return refuse(ReadOutcome::kNotServing, 503, "the proxy is shutting down");
  }
  if (linearizable && status_.state != ReplicaState::kServing) {
    return refuse(ReadOutcome::kNotServing, 503,
                  std::string("replica is ") + ReplicaStateName(status_.state) + ": " +
                      status_.state_reason + "; a linearizable read needs a serving replica");
  }
  const std::size_t bytes = request.body.size() + request.target.size();
  if (reads_.size() >= options_.max_pending_reads ||
      (!reads_.empty() && read_bytes_ + bytes > options_.max_pending_bytes)) {
    return refuse(ReadOutcome::kOverloaded, 503,
                  "too many reads are waiting on this replica (" + std::to_string(reads_.size()) +
                      " reads, " + std::to_string(read_bytes_) + " bytes)");
  }
  const uint64_t id = ++last_read_id_;
  PendingRead& read = reads_[id];
  read.request = std::move(request);
  read.consistency = consistency;
  read.done = std::move(done);
  read.arrived = Clock::now();
  read.deadline = read.arrived + options_.request_timeout;
  read.bytes = bytes;
  read_bytes_ += bytes;
  ArmReadDeadline();
  if (!linearizable) {
    read.stage = PendingRead::Stage::kApp;
    return SendRead(id);
  }
  read.stage = PendingRead::Stage::kBarrier;
  SendRead(id);  // optimistic: its answer stands if it reflects the barrier
  // A round trip in flight may have been answered before this read arrived: it waits for the
  // next one.
  read_waiters_.push_back(id);
  MaybeSendBarrier();
}

void Replica::MaybeSendBarrier() {
  if (read_waiters_.empty() || barrier_in_flight_ || stopped_) return;
  const auto now = Clock::now();
  const auto ride_until = last_append_sent_ + options_.read_ride_append_window;
  if (!outbox_.empty() && appends_in_flight_ > 0 && now < ride_until) {
    // The next append leaves when the one in flight returns, and carries them at no cost to
    // etcd; unless it takes longer than a barrier would.
    if (ride_timer_armed_) return;
    if (!ride_timer_) ride_timer_ = std::make_unique<asio::steady_timer>(strand_);
    ride_timer_armed_ = true;
    ride_timer_->expires_at(ride_until);
    ride_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
      self->ride_timer_armed_ = false;
      if (ec || self->stopped_) return;
      if (!self->read_waiters_.empty() && !self->barrier_in_flight_) self->SendBarrier();
    });
    return;
  }
  SendBarrier();
}

void Replica::SendBarrier() {
  if (ride_timer_armed_) ride_timer_->cancel();  // its handler sees operation_aborted
  barrier_in_flight_ = true;
  barrier_riders_ = std::move(read_waiters_);
  read_waiters_.clear();
  ++status_.read_barriers;
  status_.read_barrier_reads += barrier_riders_.size();
  // Half the request timeout: the reads waiting for the next barrier still have time for it.
  const auto started = Clock::now();
  const auto deadline = started + options_.request_timeout / 2;
  log_.ReadCommittedIndex(
      deadline, [self = shared_from_this(), started](Result<int64_t> committed) {
        asio::post(self->strand_,
                   [self, started, committed]() { self->OnBarrier(started, committed); });
      });
}

void Replica::OnBarrier(Clock::time_point started, const Result<int64_t>& committed) {
  barrier_in_flight_ = false;
  std::vector<uint64_t> riders = std::move(barrier_riders_);
  barrier_riders_.clear();
  if (committed) {
    status_.read_barrier_latency.Observe(SecondsSince(started));
  } else {
    ++status_.read_barrier_failures;
    RecordError("read barrier: " + committed.error().message);
  }
  OnRoundTrip(riders, committed);
  MaybeSendBarrier();
}

void Replica::OnRoundTrip(const std::vector<uint64_t>& riders, const Result<int64_t>& committed) {
  if (committed) status_.log_last_index = std::max(status_.log_last_index, *committed);
  for (uint64_t id : riders) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;  // answered at its deadline
    if (!committed) {
      AnswerRead(
          it,
          ErrorReply(503, Outcome::kNotCommitted, 0,
                     "the log could not confirm what is committed (" + committed.error().message +
                         "); a linearizable read is not answered from local state",
                     1),
          ReadOutcome::kLogUnavailable);
      continue;
    }
    if (status_.state != ReplicaState::kServing || stopped_) {
      AnswerRead(it,
                 ErrorReply(503, Outcome::kNotCommitted, 0,
                            std::string("replica is ") + ReplicaStateName(status_.state) + ": " +
                                status_.state_reason +
                                "; a linearizable read needs a serving "
                                "replica",
                            1),
                 ReadOutcome::kNotServing);
      continue;
    }
    it->second.barrier = *committed;
    OnReadBarrierKnown(it);
  }
}

void Replica::OnReadBarrierKnown(std::map<uint64_t, PendingRead>::iterator it) {
  PendingRead& read = it->second;
  const bool reflects = read.serving_at_send && read.processed_at_send >= read.barrier;
  std::optional<AppReadAnswer> early = std::move(read.early_answer);
  read.early_answer.reset();
  read_bytes_ -= read.early_bytes;
  read.early_bytes = 0;
  if (reflects && early) return AnswerFromApp(it, std::move(*early));
  if (reflects && read.in_flight) {
    // Its answer will reflect the barrier: it decides.
    read.stage = PendingRead::Stage::kApp;
    return;
  }
  if (processed_ >= read.barrier) {
    read.stage = PendingRead::Stage::kApp;
    return SendRead(it->first);
  }
  read.stage = PendingRead::Stage::kApply;
  read.awaiting = reads_awaiting_apply_.emplace(read.barrier, it->first);
}

void Replica::ReleaseReads() {
  while (!reads_awaiting_apply_.empty() && reads_awaiting_apply_.begin()->first <= processed_) {
    const uint64_t id = reads_awaiting_apply_.begin()->second;
    reads_awaiting_apply_.erase(reads_awaiting_apply_.begin());
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    it->second.awaiting.reset();
    it->second.stage = PendingRead::Stage::kApp;
    SendRead(id);
  }
}

void Replica::SendRead(uint64_t id) {
  PendingRead& read = reads_.at(id);
  const uint32_t attempt = ++read.attempt;
  read.in_flight = true;
  read.serving_at_send = status_.state == ReplicaState::kServing;
  read.processed_at_send = processed_;
  // A new read connection must find the app at least where this replica believes it is (and so
  // at the barrier, once the replica applied it); a kept-alive one leads to the app process this
  // replica forwards to (App::Read). A local read takes the app as it is.
  const int64_t min_index =
      read.consistency == ReadConsistency::kLinearizable ? processed_ : int64_t{0};
  app_.Read(read.request, min_index, [self = shared_from_this(), id, attempt](ReadResult result) {
    asio::post(self->strand_, [self, id, attempt, result = std::move(result)]() mutable {
      self->OnAppRead(id, attempt, std::move(result));
    });
  });
}

void Replica::OnAppRead(uint64_t id, uint32_t attempt, ReadResult result) {
  auto it = reads_.find(id);
  if (it == reads_.end()) return;  // answered at its deadline, or at Stop
  PendingRead& read = it->second;
  if (!std::holds_alternative<Error>(result)) NoteAppAnswered();
  if (attempt != read.attempt) return;  // superseded by a later read of the app
  read.in_flight = false;
  switch (read.stage) {
    case PendingRead::Stage::kApp:
      return AnswerFromApp(it, std::move(result));
    case PendingRead::Stage::kBarrier:
      // Optimistic, before the barrier: kept if it is an answer (and fits the reads' byte
      // budget; else the app is asked again), and judged by the barrier.
      if (auto* answer = std::get_if<AppReadAnswer>(&result)) {
        const std::size_t size = answer->response.body.size();
        if (read_bytes_ + size <= options_.max_pending_bytes) {
          read.early_answer = std::move(*answer);
          read.early_bytes = size;
          read_bytes_ += size;
        }
      }
      return;
    case PendingRead::Stage::kApply:
      return;  // too old for the barrier: read again once the replica applied it
  }
}

void Replica::AnswerFromApp(std::map<uint64_t, PendingRead>::iterator it, ReadResult result) {
  PendingRead& read = it->second;
  std::visit(
      Overloaded{
          [&](AppReadAnswer& answer) {
            ClientReply reply;
            reply.response = std::move(answer.response);
            reply.outcome = Outcome::kNone;
            // The least index the answer reflects: what the app was validated at, and (on a
            // serving replica, whose read connections lead to the app it forwards to) what it
            // had applied when asked.
            reply.index = std::max(read.barrier, answer.validated_index);
            if (read.serving_at_send) reply.index = std::max(reply.index, read.processed_at_send);
            AnswerRead(it, std::move(reply), ReadOutcome::kServed);
          },
          [&](AppIndexMismatch& behind) {
            RecordError("a read found the app at index " + std::to_string(behind.app_index) +
                        ", below the " + std::to_string(read.processed_at_send) +
                        " this replica applied: the app restarted or lost its state");
            AnswerRead(it,
                       ErrorReply(503, Outcome::kNotCommitted, 0,
                                  "the app reports index " + std::to_string(behind.app_index) +
                                      ", below the " + std::to_string(read.processed_at_send) +
                                      " the read must reflect (the app restarted?)",
                                  1),
                       ReadOutcome::kAppBehind);
          },
          [&](Error& error) {
            AnswerRead(
                it,
                ErrorReply(error.code == ErrorCode::kUnknown ? 504 : 502, Outcome::kNotCommitted, 0,
                           "the app did not answer the read: " + error.message),
                ReadOutcome::kAppFailed);
          },
      },
      result);
}

void Replica::AnswerRead(std::map<uint64_t, PendingRead>::iterator it, ClientReply reply,
                         ReadOutcome outcome) {
  PendingRead read = std::move(it->second);
  reads_.erase(it);
  read_bytes_ -= read.bytes + read.early_bytes;
  if (read.awaiting) reads_awaiting_apply_.erase(*read.awaiting);
  auto& counters = status_.reads[static_cast<int>(read.consistency)];
  counters.Count(outcome);
  if (outcome == ReadOutcome::kServed) counters.latency.Observe(SecondsSince(read.arrived));
  if (auto rejection = RejectionOfRead(outcome)) status_.Count(*rejection);
  if (outcome == ReadOutcome::kAppFailed) ++status_.app_call_errors;
  reply.read = read.consistency;
  read.done(std::move(reply));
}

void Replica::FailWaitingReads(const std::string& why) {
  for (auto it = reads_.begin(); it != reads_.end();) {
    auto next = std::next(it);
    if (it->second.stage != PendingRead::Stage::kApp) {
      AnswerRead(it, ErrorReply(503, Outcome::kNotCommitted, 0, why, 1), ReadOutcome::kNotServing);
    }
    it = next;
  }
}

void Replica::ArmReadDeadline() {
  if (reads_.empty() || read_deadline_armed_) return;
  if (!read_deadline_timer_) read_deadline_timer_ = std::make_unique<asio::steady_timer>(strand_);
  // Every read has the same timeout, so the oldest read's deadline is the earliest.
  read_deadline_armed_ = true;
  read_deadline_timer_->expires_at(reads_.begin()->second.deadline);
  read_deadline_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    self->read_deadline_armed_ = false;
    if (ec || self->stopped_) return;
    self->OnReadDeadlines();
    self->ArmReadDeadline();
  });
}

void Replica::OnReadDeadlines() {
  const auto now = Clock::now();
  while (!reads_.empty() && reads_.begin()->second.deadline <= now) {
    auto it = reads_.begin();
    const char* where = it->second.stage == PendingRead::Stage::kBarrier
                            ? "the log did not confirm what is committed"
                        : it->second.stage == PendingRead::Stage::kApply
                            ? "this replica did not apply what the read must reflect"
                            : "the app did not answer";
    const unsigned status = it->second.stage == PendingRead::Stage::kApp ? 504 : 503;
    AnswerRead(it,
               ErrorReply(status, Outcome::kNotCommitted, 0,
                          std::string(where) + " within the request timeout", 1),
               ReadOutcome::kTimedOut);
  }
}

void Replica::StopReads() {
  if (read_deadline_timer_) read_deadline_timer_->cancel();
  if (ride_timer_) ride_timer_->cancel();
  for (auto it = reads_.begin(); it != reads_.end();) {
    auto next = std::next(it);
    AnswerRead(it, ErrorReply(503, Outcome::kNotCommitted, 0, "the proxy is shutting down", 1),
               ReadOutcome::kNotServing);
    it = next;
  }
}

}  // namespace k8shmir
