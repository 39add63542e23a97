// The client requests a replica is answering, and what each waits for: first its append (the
// entry is "in the outbox" until it was sent to the log, certainly not committed), then its index
// to be applied, until its deadline. Pure bookkeeping with no I/O, timers or threads: the replica
// (src/replica/replica.cc) arms one timer for NextDeadline() and answers what TakeExpired,
// TakeUpTo and Take hand back. Not thread-safe: the replica's strand owns it.
//
// `Done` is the request's completion (the replica's ReplyCallback); a template so that the unit
// tests (test/replica/pending_requests_test.cc) need neither Asio nor the replica.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace k8shmir {

template <class Done>
class PendingRequests {
 public:
  using Clock = std::chrono::steady_clock;

  struct Request {
    Done done;
    Clock::time_point submitted_at;
    Clock::time_point deadline;
    std::size_t bytes = 0;  // of its encoded entry
    int64_t index = 0;      // known once the append answered
    bool in_outbox = true;  // not sent to the log yet: certainly not committed
  };
  using Taken = std::pair<std::string, Request>;

  std::size_t size() const { return by_id_.size(); }
  bool empty() const { return by_id_.empty(); }
  // Sum of the requests' `bytes`.
  std::size_t bytes() const { return bytes_; }
  bool contains(const std::string& id) const { return by_id_.count(id) != 0; }

  // Adds a request under a new `id` (ids are unique: a second Add of one is ignored, false).
  bool Add(const std::string& id, Request request) {
    auto [it, added] = by_id_.try_emplace(id, std::move(request));
    if (!added) return false;
    bytes_ += it->second.bytes;
    by_deadline_.emplace(it->second.deadline, id);
    return true;
  }

  // The request's entry was sent to the log (it may commit from now on).
  void MarkSent(const std::string& id) {
    if (auto it = by_id_.find(id); it != by_id_.end()) it->second.in_outbox = false;
  }

  // The append answered: the request's entry is at `index`; it waits for that index from now on.
  void SetIndex(const std::string& id, int64_t index) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return;
    if (it->second.index != 0) by_index_.erase(it->second.index);
    it->second.index = index;
    by_index_[index] = id;
  }

  const Request* Find(const std::string& id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &it->second;
  }

  // Removes and returns the request (nullopt when it was answered already).
  std::optional<Request> Take(const std::string& id) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    Request request = std::move(it->second);
    by_id_.erase(it);
    bytes_ -= request.bytes;
    if (request.index != 0) by_index_.erase(request.index);
    by_deadline_.erase({request.deadline, id});
    return request;
  }

  // Removes and returns, in index order, the requests whose entries have an index <= `processed`
  // (applied or skipped before their answers could be read).
  std::vector<Taken> TakeUpTo(int64_t processed) {
    std::vector<std::string> ids;
    for (auto it = by_index_.begin(); it != by_index_.end() && it->first <= processed; ++it) {
      ids.push_back(it->second);
    }
    return TakeAll(ids);
  }

  // Removes and returns, oldest deadline first, the requests whose deadline is <= `now`.
  std::vector<Taken> TakeExpired(Clock::time_point now) {
    std::vector<std::string> ids;
    for (auto it = by_deadline_.begin(); it != by_deadline_.end() && it->first <= now; ++it) {
      ids.push_back(it->second);
    }
    return TakeAll(ids);
  }

  // The earliest deadline, nullopt when nothing is pending.
  std::optional<Clock::time_point> NextDeadline() const {
    if (by_deadline_.empty()) return std::nullopt;
    return by_deadline_.begin()->first;
  }

  // Every pending id (for shutdown), in no particular order.
  std::vector<std::string> Ids() const {
    std::vector<std::string> ids;
    ids.reserve(by_id_.size());
    for (const auto& [id, request] : by_id_) ids.push_back(id);
    return ids;
  }

 private:
  std::vector<Taken> TakeAll(const std::vector<std::string>& ids) {
    std::vector<Taken> out;
    out.reserve(ids.size());
    for (const auto& id : ids) {
      if (auto request = Take(id)) out.emplace_back(id, std::move(*request));
    }
    return out;
  }

  std::unordered_map<std::string, Request> by_id_;
  std::map<int64_t, std::string> by_index_;
  std::set<std::pair<Clock::time_point, std::string>> by_deadline_;
  std::size_t bytes_ = 0;
};

}  // namespace k8shmir
