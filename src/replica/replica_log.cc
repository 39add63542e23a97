// Replica, the log side: the watch and its queue, the catch-up by range reads after
// compaction, the bounds on what is queued (replica.h).
#include "replica/replica.h"

#include "common/logging.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <variant>

#include "k8shmir/config.h"
#include "replica/replica_util.h"

namespace k8shmir {

namespace asio = boost::asio;
using namespace replica_internal;

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
        LogLine(spdlog::level::warn, "log delivered an entry twice; dropped",
                {{"index", record.index}});
      } else {
        LogLine(spdlog::level::err, "log went back in time; entry dropped",
                {{"index", record.index}, {"after_index", position_}});
      }
      continue;
    }
    position_ = record.index;
    status_.log_last_index = std::max(status_.log_last_index, record.index);
    queued_bytes_ += record.value.size();
    queue_.push_back(std::move(record));
    received_at_.push_back(Clock::now());
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
  if (queue_.size() > options_.max_queued_entries / 2 ||
      queued_bytes_ > options_.max_queued_bytes / 2) {
    return;
  }
  if (watch_paused_) Subscribe(position_ + 1);
  if (range_.active && range_.paused) {
    range_.paused = false;
    ReadRangePage();
  }
}

void Replica::PopQueueFront() {
  queued_bytes_ -= queue_.front().value.size();
  queue_.pop_front();
  received_at_.pop_front();
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
    StartRangeCatchUp(closed.compact_revision);
    return;
  }
  ++status_.watch_restarts;
  RecordError("log watch closed: " + closed.error.message);
  if (status_.state == ReplicaState::kServing) {
    SetState(ReplicaState::kCatchingUp, "log watch lost: " + closed.error.message);
  }
  ResubscribeLater();
}

void Replica::StartRangeCatchUp(int64_t compact_revision) {
  // etcd compaction drops old versions of keys; log keys are written once, so every entry not
  // deleted by retention is still a live key.
  ++status_.range_catch_ups;
  LogLine(spdlog::level::info, "the log's history was compacted; reading its live entries",
          {{"revision", compact_revision}, {"index", position_ + 1}});
  if (status_.state == ReplicaState::kServing) {
    SetState(ReplicaState::kCatchingUp, "the log's history before revision " +
                                            std::to_string(compact_revision) +
                                            " was compacted: reading the live entries from index " +
                                            std::to_string(position_ + 1));
  }
  range_ = RangeRead{true, false, position_ + 1, 0};
  ReadRangePage();
}

void Replica::ReadRangePage() {
  const uint64_t gen = watch_gen_;
  const auto deadline = Clock::now() + options_.etcd_timeout;
  log_.ReadRange(range_.next_index, range_.revision, deadline,
                 [self = shared_from_this(), gen](Result<LogRange> page) {
                   asio::post(self->strand_, [self, gen, page = std::move(page)]() mutable {
                     if (self->stopped_ || gen != self->watch_gen_ || !self->range_.active) return;
                     self->OnRangePage(std::move(page));
                   });
                 });
}

void Replica::OnRangePage(Result<LogRange> page) {
  if (!page) {
    if (page.error().code == ErrorCode::kCompacted) {
      // The pages' revision was compacted meanwhile: read on at the current one. Live keys at a
      // later revision are a superset of those at the earlier one.
      range_.revision = 0;
    }
    RecordError("reading the log's live entries: " + page.error().message);
    const uint64_t gen = watch_gen_;
    ScheduleRetry([self = shared_from_this(), gen] {
      if (gen == self->watch_gen_ && self->range_.active) self->ReadRangePage();
    });
    return;
  }
  backoff_ = std::chrono::milliseconds(0);
  if (page->trimmed_index > position_) {
    // Entries this replica needs were deleted after a snapshot: replaying cannot rebuild them.
    range_ = RangeRead{};
    NeedStateTransfer(page->trimmed_index,
                      "the log was trimmed up to index " + std::to_string(page->trimmed_index) +
                          " but the replica is at index " + std::to_string(position_) +
                          ": the entries it needs are gone");
    return;
  }
  range_.revision = page->revision;
  range_.next_index = page->next_index;
  status_.log_head = std::max(status_.log_head, page->revision);
  if (!page->records.empty()) {
    LogBatch batch{std::move(page->records), page->revision};
    OnBatch(batch);
  }
  if (page->more) {
    if (QueueFull()) {
      range_.paused = true;  // MaybeResumeWatch reads on
    } else {
      ReadRangePage();
    }
    return;
  }
  // Everything up to end_index that exists was read: the watch continues from there, at a
  // revision the compaction left (if it is compacted again meanwhile, this repeats from there).
  range_ = RangeRead{};
  position_ = std::max(position_, page->end_index);
  Subscribe(position_ + 1);
  MaybeServing();
}

void Replica::ResubscribeLater() {
  uint64_t gen = watch_gen_;
  ScheduleRetry([self = shared_from_this(), gen] {
    if (gen == self->watch_gen_) self->FetchHeadAndSubscribe(gen);
  });
}

}  // namespace k8shmir
