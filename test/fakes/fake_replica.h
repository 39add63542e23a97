// A ReplicaService for the servers' tests: records what it is submitted, answers on its own
// executor (after the call returns, as the real replica does), and can hold answers back to keep
// requests in flight. Thread-safe: the servers call it from their io threads.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "k8shmir/replica_service.h"

namespace k8shmir::testing {

class FakeReplica : public ReplicaService {
 public:
  explicit FakeReplica(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // Like Replica, which uses the Log it borrowed while it is destroyed (it drops its
  // subscription): counts its destruction in `*borrowed`, so that ASan reports a replica
  // outliving what it borrowed.
  ~FakeReplica() override {
    if (borrowed_ != nullptr) ++*borrowed_;
  }
  void Borrow(int* borrowed) { borrowed_ = borrowed; }

  // ---- knobs (set before the servers run) ----
  // The answer to a request; by default 200 with the body "ok <method> <target>".
  std::function<ClientReply(const HttpRequest&)> answer = [](const HttpRequest& r) {
    ClientReply reply;
    reply.response.status = 200;
    reply.response.headers = {{"Content-Type", "text/plain"}};
    reply.response.body = "ok " + r.method + " " + r.target;
    reply.outcome = Outcome::kCommitted;
    reply.index = 256;
    return reply;
  };
  ReplicaStatus status;
  std::chrono::steady_clock::duration since_last_tick{};

  // While held, answers wait until Release().
  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = true;
  }
  void Release() {
    std::deque<std::function<void()>> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = false;
      ready.swap(waiting_);
    }
    for (auto& fn : ready) boost::asio::post(ex_, std::move(fn));
  }

  void NoteRejected(Rejection reason, unsigned status) override {
    std::lock_guard<std::mutex> lock(mu_);
    rejected_.emplace_back(reason, status);
  }
  std::vector<std::pair<Rejection, unsigned>> Rejected() {
    std::lock_guard<std::mutex> lock(mu_);
    return rejected_;
  }

  void Submit(HttpRequest request, ReplyCallback done) override {
    std::function<void()> fn = [this, request, done = std::move(done)] { done(answer(request)); };
    std::lock_guard<std::mutex> lock(mu_);
    submitted_.push_back(std::move(request));
    if (held_) {
      waiting_.push_back(std::move(fn));
      return;
    }
    boost::asio::post(ex_, std::move(fn));
  }

  // Changes `status` while the servers run (GetStatus reads it on their thread).
  void UpdateStatus(const std::function<void(ReplicaStatus&)>& change) {
    std::lock_guard<std::mutex> lock(mu_);
    change(status);
  }

  void GetStatus(std::function<void(ReplicaStatus)> done) override {
    boost::asio::post(ex_, [this, done = std::move(done)] {
      std::lock_guard<std::mutex> lock(mu_);
      done(status);
    });
  }

  std::chrono::steady_clock::duration SinceLastTick() const override { return since_last_tick; }

  std::vector<HttpRequest> Submitted() const {
    std::lock_guard<std::mutex> lock(mu_);
    return submitted_;
  }
  std::size_t Waiting() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_.size();
  }

 private:
  boost::asio::any_io_executor ex_;
  int* borrowed_ = nullptr;
  mutable std::mutex mu_;
  bool held_ = false;
  std::vector<HttpRequest> submitted_;
  std::deque<std::function<void()>> waiting_;
  std::vector<std::pair<Rejection, unsigned>> rejected_;
};

}  // namespace k8shmir::testing
