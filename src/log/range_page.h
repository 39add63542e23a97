// How the etcd log reads one page of a group's live entries (Log::ReadRange) without etcd
// loading the whole group: etcd pushes the limit of a Range down to its store only when the Range
// neither sorts nor filters by revision; with a sort or a create-revision filter it reads every
// key of the range, values included, into memory first, and a large log then costs a large
// allocation per page. So a page is read in two steps, each bounded:
//  1. a pass over the group's keys in key order (keys only, `limit` per request, at one revision)
//     that keeps the `max_keys` keys of lowest create revision at or above the page's start;
//  2. the values of those keys, lowest create revision first, a few keys per request, until the
//     page holds `max_bytes` (at least one key).
// A RangePagePlan is step 1's bookkeeping and step 2's result; it does no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "k8shmir/log.h"

namespace k8shmir {

class RangePagePlan {
 public:
  struct Key {
    int64_t create_revision = 0;
    std::string key;
  };

  // The page starts at `from_index`: keys created before its revision are skipped.
  RangePagePlan(int64_t from_index, std::size_t max_keys);

  // Step 1: one key seen by the pass (any order).
  void AddKey(std::string key, int64_t create_revision);

  // After the pass: the kept keys, lowest create revision first (the order to fetch them in).
  const std::vector<Key>& Keys();

  // Step 2 done: `fetched` is how many of Keys() were fetched (a prefix, at least one unless there
  // are none), all read at `revision`. Fills the page's positions: next_index, more, end_index.
  void Finish(std::size_t fetched, int64_t revision, LogRange& page);

 private:
  int64_t from_revision_;
  std::size_t max_keys_;
  bool sorted_ = false;
  // More keys qualified than were kept: the page ends before the lowest of them.
  bool truncated_ = false;
  int64_t lowest_dropped_ = 0;
  // A max-heap on create_revision while the pass runs (the highest kept key on top), then sorted.
  std::vector<Key> keys_;
};

}  // namespace k8shmir
