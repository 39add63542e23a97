// Replica, the app side: forwarding queued entries to the app, strictly in log order, and
// what their answers mean (replica.h).
#include "replica/replica.h"

#include "common/logging.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "replica/replica_util.h"

namespace k8shmir {

namespace asio = boost::asio;
using namespace replica_internal;

// ---- Applying ----------------------------------------------------------------------------------

void Replica::BreakPipeline() {
  ++pipe_gen_;
  sent_at_.clear();
}

void Replica::TryForward() {
  const std::size_t depth = std::max<std::size_t>(options_.app_pipeline_depth, 1);
  // A snapshot being taken holds new forwards until the app's state was read.
  while (!stopped_ && !recover_pending_ && !forward_retry_pending_ && !taking_.hold &&
         sent_at_.size() < queue_.size() && in_flight_ < depth) {
    const std::size_t sent = sent_at_.size();
    const LogRecord& record = queue_[sent];
    auto entry = record.malformed ? Result<Entry>(Error{ErrorCode::kProtocol, "not an entry"})
                                  : DecodeEntry(record.value);
    if (!entry) {
      // Skipped only at the front, once everything before it was applied.
      if (sent > 0) break;
      // Every replica decodes the same bytes, so every replica skips this entry alike.
      LogLine(spdlog::level::err, "undecodable entry skipped (alike on every replica)",
              {{"index", record.index}, {"entry", record.id}, {"error", entry.error().message}});
      processed_ = record.index;
      ++status_.entries_dropped;
      std::string id = record.id;
      PopQueueFront();
      if (pending_.contains(id)) {
        Reply(id, ErrorReply(500, Outcome::kCommitted, processed_, "entry could not be decoded"));
      }
      ReleaseReads();
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
    NoteAppCalled();
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
  MaybeReadSnapshot();
}

void Replica::OnForwarded(uint64_t gen, uint64_t pipe, int64_t index, ForwardResult result) {
  --in_flight_;
  if (stopped_) return;
  // Any answer, of any generation, shows the app is alive.
  if (!std::holds_alternative<Error>(result)) NoteAppAnswered();
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
                   ++status_.app_call_errors;
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
    LogLine(spdlog::level::warn,
            "the app applied entries whose answers the proxy never read (the connection broke "
            "under them); they count as applied, their clients learn they committed",
            {{"index", app_index}, {"first_index", queue_.front().index}, {"count", applied + 1}});
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
  NoteAppliedMark();
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
  ReleaseReads();
  MaybeResumeWatch();
}

void Replica::ResolveSkipped() {
  for (auto& [id, request] : pending_.TakeUpTo(processed_)) {
    Complete(request, ErrorReply(502, Outcome::kCommitted, request.index,
                                 "the request was committed and applied, but this replica's app "
                                 "had applied it before the proxy could read the response"));
  }
}

}  // namespace k8shmir
