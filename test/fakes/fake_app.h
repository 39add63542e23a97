// An in-memory App for unit tests: a journal of applied requests that checks the proxy's
// contract (validated connections, increasing indices) and can fail the ways a real app does.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <string>
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

  // A restart: state lost, index back to 0.
  void Restart() {
    journal.clear();
    last_index = 0;
    connection_valid = false;
  }

  // ---- observations ----
  std::vector<Applied> journal;
  int64_t last_index = 0;
  int contract_violations = 0;  // forwards with index <= last_index
  int forwards = 0;
  bool connection_valid = false;

  void LastIndex(IndexCallback done) override {
    if (down) {
      Post([done] { done(Error{ErrorCode::kUnavailable, "fake app down"}); });
      return;
    }
    Post([done, i = last_index] { done(i); });
  }

  void Forward(const HttpRequest& request, int64_t index, int64_t expected_applied,
               ForwardCallback done) override {
    ++forwards;
    if (down) {
      Post([done] { done(Error{ErrorCode::kUnavailable, "fake app down"}); });
      return;
    }
    if (!connection_valid) {
      if (last_index != expected_applied) {
        Post([done, i = last_index] { done(AppIndexMismatch{i}); });
        return;
      }
      connection_valid = true;
    }
    if (fail_next_forwards_not_applied > 0) {
      --fail_next_forwards_not_applied;
      connection_valid = false;
      Post([done] { done(Error{ErrorCode::kUnknown, "fake reset before apply"}); });
      return;
    }
    if (index <= last_index) ++contract_violations;
    last_index = index;
    journal.push_back({index, request.body});
    if (fail_next_forwards_applied > 0) {
      --fail_next_forwards_applied;
      connection_valid = false;
      Post([done] { done(Error{ErrorCode::kUnknown, "fake reset after apply"}); });
      return;
    }
    HttpResponse res;
    res.status = 200;
    res.body = "applied " + request.body + " at " + std::to_string(index);
    Post([done, res] { done(res); });
  }

  void Reset() override { connection_valid = false; }

 private:
  template <class F>
  void Post(F f) {
    boost::asio::post(ex_, std::move(f));
  }
  boost::asio::any_io_executor ex_;
};

}  // namespace k8shmir::testing
