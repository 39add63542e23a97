// An in-memory App for unit tests: a journal of applied requests that checks the proxy's
// contract (validated connections, increasing indices) and can fail the ways a real app does.
#pragma once

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "k8shmir/app.h"

namespace k8shmir::testing {

class FakeApp : public App {
 public:
  explicit FakeApp(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

  struct Applied {
    int64_t index;
    std::string body;
  };

  // ---- knobs ----
  int fail_next_forwards_applied = 0;      // apply, then report a connection error
  int fail_next_forwards_not_applied = 0;  // report a connection error without applying
  bool down = false;                       // LastIndex and Forward fail: the app is not running
  int64_t fail_at_index = 0;               // the forward of this index breaks the connection,
  bool fail_at_index_applies = false;      // after applying it or before
  bool pipelining = false;                 // what LastIndex declares (forwards queue regardless)
  bool snapshots = false;                  // what LastIndex declares; the endpoints work anyway
  std::optional<Error> snapshot_error;     // GetSnapshot and PutSnapshot answer this
  std::optional<Error> last_index_error;   // LastIndex answers this (kProtocol: a null index)
  int hang_next_last_index = 0;            // that many LastIndex calls never call back
  // Forwards queue up unanswered (a stopped app) until ReleaseHungForwards().
  bool hang_forwards = false;
  // The next n forwards are applied but answered with an error (the connection broke before
  // their responses were read); the forwards behind them fail unapplied.
  int lose_next_answers = 0;

  void ReleaseHungForwards() {
    hang_forwards = false;
    if (!processing_ && !queued_.empty()) {
      processing_ = true;
      Post([this] { ProcessQueue(); });
    }
  }

  // A restart: state lost, index back to 0.
  void Restart() {
    journal.clear();
    last_index = 0;
    connection_valid = false;
    read_connection_valid_ = false;
  }

  // ---- observations ----
  std::vector<Applied> journal;
  int64_t last_index = 0;
  int contract_violations = 0;  // forwards with index <= last_index
  int forwards = 0;
  int max_pipelined = 0;  // most forwards queued at once
  int last_index_calls = 0;
  int snapshot_gets = 0;
  int snapshot_puts = 0;
  bool connection_valid = false;

  void LastIndex(IndexCallback done) override {
    ++last_index_calls;
    if (hang_next_last_index > 0) {
      --hang_next_last_index;
      hung_callbacks_.push_back(std::move(done));  // kept, never called: a lost answer
      return;
    }
    if (last_index_error) {
      Post([done, e = *last_index_error] { done(e); });
      return;
    }
    if (down) {
      Post([done] { done(Error{ErrorCode::kUnavailable, "fake app down"}); });
      return;
    }
    Post([done, i = AppIndex{last_index, pipelining, snapshots}] { done(i); });
  }

  // The journal and the last index, as JSON.
  void GetSnapshot(std::size_t max_bytes, SnapshotCallback done) override {
    ++snapshot_gets;
    if (auto e = SnapshotFailure()) return Post([done, e = *e] { done(e); });
    nlohmann::json entries = nlohmann::json::array();
    for (const auto& a : journal) entries.push_back({a.index, a.body});
    AppSnapshot snapshot{last_index, entries.dump()};
    if (snapshot.data.size() > max_bytes) {
      return Post([done] { done(Error{ErrorCode::kInvalid, "fake: snapshot too large"}); });
    }
    Post([done, snapshot = std::move(snapshot)] { done(snapshot); });
  }

  void PutSnapshot(const AppSnapshot& snapshot, StatusCallback done) override {
    ++snapshot_puts;
    if (auto e = SnapshotFailure()) return Post([done, e = *e] { done(e); });
    auto entries = nlohmann::json::parse(snapshot.data, nullptr, /*allow_exceptions=*/false);
    if (!entries.is_array()) {
      return Post([done] { done(Error{ErrorCode::kProtocol, "fake: not a snapshot"}); });
    }
    journal.clear();
    for (const auto& e : entries) journal.push_back(Applied{e[0].get<int64_t>(), e[1]});
    last_index = snapshot.index;
    connection_valid = false;
    Post([done] { done(OkStatus()); });
  }

  // Like HttpApp, forwards are queued and processed in order on one "connection" (pipelining);
  // a failure breaks the connection, and every forward queued behind it fails unapplied.
  void Forward(const HttpRequest& request, int64_t index, int64_t expected_applied,
               ForwardCallback done) override {
    ++forwards;
    queued_.push_back(Job{request.body, index, expected_applied, std::move(done)});
    max_pipelined = std::max(max_pipelined, static_cast<int>(queued_.size()));
    if (!processing_ && !hang_forwards) {
      processing_ = true;
      Post([this] { ProcessQueue(); });
    }
  }

  // Reads: answered "read <target> at <last_index>" from the current state. A read connection
  // is validated like HttpApp's (LastIndex >= min_index when opened) and stays valid until
  // Restart(); `hang_reads` keeps reads unanswered until ReleaseHungReads().
  bool hang_reads = false;
  int reads = 0;
  std::vector<int64_t> read_min_indices;  // min_index of every Read, in call order
  void Read(const HttpRequest& request, int64_t min_index, ReadCallback done) override {
    ++reads;
    read_min_indices.push_back(min_index);
    if (hang_reads) {
      hung_reads_.push_back({request.target, min_index, std::move(done)});
      return;
    }
    AnswerRead(request.target, min_index, std::move(done));
  }
  void ReleaseHungReads() {
    hang_reads = false;
    auto hung = std::move(hung_reads_);
    hung_reads_.clear();
    for (auto& r : hung) AnswerRead(r.target, r.min_index, std::move(r.done));
  }

  void Reset() override { connection_valid = false; }

  std::optional<Error> SnapshotFailure() const {
    if (snapshot_error) return snapshot_error;
    if (down) return Error{ErrorCode::kUnavailable, "fake app down"};
    return std::nullopt;
  }

 private:
  struct Job {
    std::string body;
    int64_t index;
    int64_t expected;
    ForwardCallback done;
  };

  void ProcessQueue() {
    processing_ = false;
    std::vector<Job> jobs(std::make_move_iterator(queued_.begin()),
                          std::make_move_iterator(queued_.end()));
    queued_.clear();
    bool broken = false;
    for (auto& job : jobs) {
      ForwardResult result =
          broken ? ForwardResult(Error{ErrorCode::kUnknown, "fake: broken"}) : Apply(job);
      if (!broken && lose_next_answers > 0 && std::holds_alternative<HttpResponse>(result)) {
        result = Error{ErrorCode::kUnknown, "fake: connection broke before the answer"};
        if (--lose_next_answers > 0) {
          Post([done = std::move(job.done), result = std::move(result)]() mutable {
            done(std::move(result));
          });
          continue;
        }
        connection_valid = false;
      }
      if (!std::holds_alternative<HttpResponse>(result)) broken = true;
      Post([done = std::move(job.done), result = std::move(result)]() mutable {
        done(std::move(result));
      });
    }
  }

  ForwardResult Apply(const Job& job) {
    if (down) return Error{ErrorCode::kUnavailable, "fake app down"};
    if (!connection_valid) {
      if (last_index != job.expected) return AppIndexMismatch{last_index};
      connection_valid = true;
      connection_index_ = job.expected;
    }
    if (job.expected != connection_index_) {
      connection_valid = false;
      return Error{ErrorCode::kUnavailable, "fake: forward out of sequence"};
    }
    if (fail_at_index == job.index) {
      fail_at_index = 0;
      connection_valid = false;
      if (!fail_at_index_applies) return Error{ErrorCode::kUnknown, "fake reset before apply"};
      Record(job);
      return Error{ErrorCode::kUnknown, "fake reset after apply"};
    }
    if (fail_next_forwards_not_applied > 0) {
      --fail_next_forwards_not_applied;
      connection_valid = false;
      return Error{ErrorCode::kUnknown, "fake reset before apply"};
    }
    Record(job);
    if (fail_next_forwards_applied > 0) {
      --fail_next_forwards_applied;
      connection_valid = false;
      return Error{ErrorCode::kUnknown, "fake reset after apply"};
    }
    HttpResponse res;
    res.status = 200;
    res.body = "applied " + job.body + " at " + std::to_string(job.index);
    return res;
  }

  void Record(const Job& job) {
    if (job.index <= last_index) ++contract_violations;
    last_index = job.index;
    connection_index_ = job.index;
    journal.push_back({job.index, job.body});
  }

  struct HungRead {
    std::string target;
    int64_t min_index;
    ReadCallback done;
  };
  void AnswerRead(const std::string& target, int64_t min_index, ReadCallback done) {
    if (down) {
      return Post([done] { done(Error{ErrorCode::kUnavailable, "fake app down"}); });
    }
    if (!read_connection_valid_) {
      if (last_index < min_index) {
        return Post([done, i = last_index] { done(AppIndexMismatch{i}); });
      }
      read_connection_valid_ = true;
      read_validated_index_ = last_index;
    }
    AppReadAnswer answer;
    answer.validated_index = read_validated_index_;
    answer.response.status = 200;
    answer.response.body = "read " + target + " at " + std::to_string(last_index);
    Post([done, answer = std::move(answer)] { done(answer); });
  }
  std::vector<HungRead> hung_reads_;
  bool read_connection_valid_ = false;
  int64_t read_validated_index_ = 0;

  std::vector<Job> queued_;
  std::vector<IndexCallback> hung_callbacks_;
  bool processing_ = false;
  int64_t connection_index_ = 0;

  template <class F>
  void Post(F f) {
    boost::asio::post(ex_, std::move(f));
  }
  boost::asio::any_io_executor ex_;
};

}  // namespace k8shmir::testing
