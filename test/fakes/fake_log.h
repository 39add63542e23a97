// An in-memory Log for unit tests: a vector of records, indices from a counter that other
// "groups" can bump to create gaps (a batch's entries get consecutive indices), and knobs to
// inject the failures etcd can produce.
#pragma once

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "k8shmir/log.h"

namespace k8shmir::testing {

class FakeLog : public Log {
 public:
  explicit FakeLog(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // ---- knobs ----
  std::optional<Error> append_error;       // every Append fails with it (nothing stored)
  bool append_commits_then_fails = false;  // stores the entry but reports kUnknown
  std::optional<Error> head_error;
  // Appends wait in held_appends() until ReleaseAppends() (to observe group commit).
  bool hold_appends = false;
  int64_t compacted_below = 0;  // Subscribe(from < this) closes with kCompacted
  // ReadRange: records per page; entries up to this index count as trimmed (and are not read);
  // the next calls reading at a past revision fail with kCompacted.
  std::size_t range_page_records = 2;
  int64_t trimmed_index = 0;
  int compact_range_reads = 0;
  // Out of space: appends fail with kLogFull (nothing stored) and CheckSpace says so.
  bool full = false;

  // Writes by someone else: advances the revision without an entry of ours (an index gap).
  void BumpRevision(int64_t n) { revision_ += n; }

  // Adds an entry as another replica would, delivering it to subscribers.
  int64_t AddEntry(const std::string& id, const std::string& value) {
    LogRecord r{++revision_, id, value};
    records_.push_back(r);
    for (auto& s : subs_) s->Deliver({r});
    return r.index;
  }

  // Delivers arbitrary records to live subscriptions (duplicates, rewinds...).
  void DeliverRaw(std::vector<LogRecord> records) {
    for (auto& s : subs_) s->Deliver(records);
  }

  // Closes every live subscription with `error`.
  void CloseSubscriptions(Error error, int64_t compact_revision = 0) {
    for (auto& s : subs_) s->Close(error, compact_revision);
  }

  // Completes every held append (in order), as the log would.
  void ReleaseAppends() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& h : held) DoAppend(h.batch_id, std::move(h.entries), std::move(h.done));
  }
  std::size_t held_appends() const { return held_.size(); }
  // Entry count of every AppendBatch call, in call order.
  const std::vector<std::size_t>& batch_sizes() const { return batch_sizes_; }

  const std::vector<LogRecord>& records() const { return records_; }
  int subscribe_calls() const { return subscribe_calls_; }
  int64_t last_subscribe_from() const { return last_from_; }
  int live_subscriptions() const {
    int n = 0;
    for (auto& s : subs_) n += s->live ? 1 : 0;
    return n;
  }

  // ---- Log ----
  void AppendBatch(const std::string& batch_id, std::vector<LogEntry> entries, Deadline,
                   AppendCallback done) override {
    batch_sizes_.push_back(entries.size());
    if (hold_appends) {
      held_.push_back(Held{batch_id, std::move(entries), std::move(done)});
      return;
    }
    DoAppend(batch_id, std::move(entries), std::move(done));
  }

  void CheckSpace(Deadline, SpaceCallback done) override {
    ++space_checks_;
    LogSpace space{full, full ? "fake: alarm NOSPACE" : ""};
    Post([done, space] { done(space); });
  }
  int space_checks() const { return space_checks_; }

  void Head(Deadline, HeadCallback done) override {
    if (head_error) {
      Post([done, e = *head_error] { done(e); });
      return;
    }
    LogHead h{revision_, records_.empty() ? 0 : records_.back().index, revision_, trimmed_index};
    Post([done, h] { done(h); });
  }

  // Read barriers: the last record's index (what etcd's committed head would say). With
  // `hold_committed_reads` they wait in held_committed_reads() until ReleaseCommittedReads(),
  // which answers them with the index as of the release (or with committed_error).
  bool hold_committed_reads = false;
  std::optional<Error> committed_error;
  int committed_reads = 0;
  void ReadCommittedIndex(Deadline, CommittedCallback done) override {
    ++committed_reads;
    if (hold_committed_reads) {
      held_committed_.push_back(std::move(done));
      return;
    }
    AnswerCommitted(std::move(done));
  }
  std::size_t held_committed_reads() const { return held_committed_.size(); }
  void ReleaseCommittedReads() {
    auto held = std::move(held_committed_);
    held_committed_.clear();
    for (auto& done : held) AnswerCommitted(std::move(done));
  }
  int64_t LastIndex() const { return records_.empty() ? 0 : records_.back().index; }

  // Raises trimmed_index and deletes the records at or below it.
  std::optional<Error> trim_error;
  void Trim(int64_t through_index, Deadline, TrimCallback done) override {
    trim_calls_.push_back(through_index);
    if (trim_error) {
      Post([done, e = *trim_error] { done(e); });
      return;
    }
    trimmed_index = std::max(trimmed_index, through_index);
    TrimResult result{trimmed_index, 0, 0};
    while (!records_.empty() && records_.front().index <= trimmed_index) {
      records_.erase(records_.begin());
      ++result.keys_deleted;
      ++result.entries_deleted;
    }
    Post([done, result] { done(result); });
  }
  const std::vector<int64_t>& trim_calls() const { return trim_calls_; }

  void ReadRange(int64_t from_index, int64_t revision, Deadline, RangeCallback done) override {
    ++range_reads_;
    range_froms_.push_back(from_index);
    if (revision != 0 && compact_range_reads > 0) {
      --compact_range_reads;
      Post([done] { done(Error{ErrorCode::kCompacted, "fake: range revision compacted"}); });
      return;
    }
    LogRange page;
    page.revision = revision != 0 ? revision : revision_;
    page.trimmed_index = trimmed_index;
    page.end_index = page.revision;
    page.next_index = page.revision + 1;
    for (const auto& r : records_) {
      if (r.index < from_index || r.index > page.revision || r.index <= trimmed_index) continue;
      if (page.records.size() == range_page_records) {
        page.more = true;
        page.next_index = r.index;
        break;
      }
      page.records.push_back(r);
    }
    Post([done, page = std::move(page)] { done(page); });
  }
  int range_reads() const { return range_reads_; }
  const std::vector<int64_t>& range_froms() const { return range_froms_; }

  std::unique_ptr<Subscription> Subscribe(int64_t from_index, EventCallback on_event) override {
    ++subscribe_calls_;
    last_from_ = from_index;
    auto sub = std::make_shared<Sub>(this, std::move(on_event));
    subs_.push_back(sub);
    if (from_index < compacted_below) {
      sub->Close(Error{ErrorCode::kCompacted, "fake: compacted"}, compacted_below);
    } else {
      std::vector<LogRecord> backlog;
      for (const auto& r : records_) {
        if (r.index >= from_index) backlog.push_back(r);
      }
      if (!backlog.empty()) sub->Deliver(backlog);
    }
    return std::make_unique<Handle>(sub);
  }

 private:
  void AnswerCommitted(CommittedCallback done) {
    if (committed_error) return Post([done, e = *committed_error] { done(e); });
    Post([done, i = std::max(LastIndex(), trimmed_index)] { done(i); });
  }
  std::vector<CommittedCallback> held_committed_;

  struct Held {
    std::string batch_id;
    std::vector<LogEntry> entries;
    AppendCallback done;
  };

  void DoAppend(const std::string& batch_id, std::vector<LogEntry> entries, AppendCallback done) {
    if (append_error) {
      Post([done, e = *append_error] { done(e); });
      return;
    }
    if (full) {
      Post([done] { done(Error{ErrorCode::kLogFull, "fake: database space exceeded"}); });
      return;
    }
    if (auto it = batches_.find(batch_id); it != batches_.end()) {
      Post([done, i = it->second] { done(AppendResult{i, false}); });
      return;
    }
    const int64_t committed_before = std::max(LastIndex(), trimmed_index);
    std::vector<LogRecord> added;
    for (auto& e : entries) {
      added.push_back(LogRecord{++revision_, std::move(e.id), std::move(e.value)});
      records_.push_back(added.back());
    }
    int64_t first = added.front().index;
    batches_[batch_id] = first;
    for (auto& s : subs_) s->Deliver(added);
    if (append_commits_then_fails) {
      Post([done] { done(Error{ErrorCode::kUnknown, "fake: deadline exceeded"}); });
      return;
    }
    Post([done, first, committed_before] { done(AppendResult{first, true, committed_before}); });
  }

  struct Sub {
    Sub(FakeLog* l, EventCallback cb) : log(l), on_event(std::move(cb)) {}
    FakeLog* log;
    EventCallback on_event;
    bool live = true;
    void Deliver(std::vector<LogRecord> records) {
      if (!live) return;
      LogBatch b{std::move(records), log->revision_};
      log->Post([cb = on_event, b] { cb(b); });
    }
    void Close(Error e, int64_t compact) {
      if (!live) return;
      live = false;
      log->Post([cb = on_event, e, compact] { cb(LogClosed{e, compact}); });
    }
  };
  struct Handle : Subscription {
    explicit Handle(std::shared_ptr<Sub> s) : sub(std::move(s)) {}
    ~Handle() override { Cancel(); }
    void RequestProgress() override {}
    void Cancel() override { sub->live = false; }
    std::shared_ptr<Sub> sub;
  };

  template <class F>
  void Post(F f) {
    boost::asio::post(ex_, std::move(f));
  }

  boost::asio::any_io_executor ex_;
  int64_t revision_ = 0;
  std::vector<LogRecord> records_;
  std::map<std::string, int64_t> batches_;  // batch id -> first index
  std::vector<Held> held_;
  std::vector<std::size_t> batch_sizes_;
  std::vector<std::shared_ptr<Sub>> subs_;
  int subscribe_calls_ = 0;
  int64_t last_from_ = 0;
  int range_reads_ = 0;
  std::vector<int64_t> trim_calls_;
  int space_checks_ = 0;
  std::vector<int64_t> range_froms_;
};

}  // namespace k8shmir::testing
