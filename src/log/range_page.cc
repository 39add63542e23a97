#include "log/range_page.h"

#include <algorithm>

#include "log/batch_format.h"

namespace k8shmir {

namespace {

bool LowerRevision(const RangePagePlan::Key& a, const RangePagePlan::Key& b) {
  return a.create_revision < b.create_revision;
}

}  // namespace

RangePagePlan::RangePagePlan(int64_t from_index, std::size_t max_keys)
    : from_revision_(RevisionOfIndex(from_index)), max_keys_(std::max<std::size_t>(max_keys, 1)) {}

void RangePagePlan::AddKey(std::string key, int64_t create_revision) {
  // A key created at from_revision_ may still hold entries at or above from_index (a batch's
  // later positions); the reader drops the records below it.
  if (create_revision < from_revision_) return;
  if (keys_.size() < max_keys_) {
    keys_.push_back(Key{create_revision, std::move(key)});
    std::push_heap(keys_.begin(), keys_.end(), LowerRevision);
    return;
  }
  int64_t dropped = create_revision;
  if (create_revision < keys_.front().create_revision) {
    std::pop_heap(keys_.begin(), keys_.end(), LowerRevision);
    dropped = keys_.back().create_revision;
    keys_.back() = Key{create_revision, std::move(key)};
    std::push_heap(keys_.begin(), keys_.end(), LowerRevision);
  }
  lowest_dropped_ = truncated_ ? std::min(lowest_dropped_, dropped) : dropped;
  truncated_ = true;
}

const std::vector<RangePagePlan::Key>& RangePagePlan::Keys() {
  if (!sorted_) {
    std::sort_heap(keys_.begin(), keys_.end(), LowerRevision);
    sorted_ = true;
    // Several keys of one revision (a foreign transaction: ours create one key each) split
    // between kept and dropped: the page ends before that revision, so the next one reads them
    // all. Unless every kept key is of it.
    if (truncated_ && keys_.front().create_revision < lowest_dropped_) {
      while (keys_.back().create_revision >= lowest_dropped_) keys_.pop_back();
    }
  }
  return keys_;
}

void RangePagePlan::Finish(std::size_t fetched, int64_t revision, LogRange& page) {
  const auto& keys = Keys();
  page.revision = revision;
  page.end_index = EndIndexOfRevision(revision);
  fetched = std::min(fetched, keys.size());
  if (fetched < keys.size() || truncated_) {
    // Every key created up to the last fetched one's revision is in the page (keys are fetched in
    // revision order and the kept ones are the lowest): the next page starts after it.
    page.more = true;
    const int64_t last = fetched > 0 ? keys[fetched - 1].create_revision : from_revision_ - 1;
    page.next_index = IndexOf(last + 1, 0);
    return;
  }
  page.more = false;
  page.next_index = page.end_index + 1;
}

}  // namespace k8shmir
