// The replica unit tests' fixtures: a Replica on an in-memory log and a fake app, driven by one
// io_context on the test's thread.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codec/entry_codec.h"
#include "fakes/fake_app.h"
#include "fakes/fake_log.h"
#include "replica/replica.h"

namespace k8shmir {

using testing::FakeApp;
using testing::FakeLog;

class ReplicaTest : public ::testing::Test {
 protected:
  ReplicaTest() : log_(ioc_.get_executor()), app_(ioc_.get_executor()) {
    options_.replica_id = "r1";
    options_.min_backoff = std::chrono::milliseconds(1);
    options_.max_backoff = std::chrono::milliseconds(5);
    options_.heartbeat_interval = std::chrono::milliseconds(20);
  }

  void Make() { replica_ = std::make_shared<Replica>(ioc_.get_executor(), log_, app_, options_); }

  ~ReplicaTest() override {
    if (replica_) replica_->Stop();
    ioc_.run_for(std::chrono::milliseconds(20));
  }

  // Runs the io_context until `pred` holds or 5 s pass.
  template <class Pred>
  bool RunUntil(Pred pred) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      ioc_.run_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  ReplicaStatus Status() {
    std::optional<ReplicaStatus> s;
    replica_->GetStatus([&](ReplicaStatus st) { s = st; });
    RunUntil([&] { return s.has_value(); });
    return *s;
  }

  // Runs until a status satisfies `pred` (or 5 s pass).
  template <class Pred>
  bool WaitStatus(Pred pred) {
    return RunUntil([&] {
      // Shared, not a local captured by reference: when run_for returns before the status
      // arrives, the callback runs in a later round, after this lambda's locals are gone.
      auto s = std::make_shared<std::optional<ReplicaStatus>>();
      replica_->GetStatus([s](ReplicaStatus st) { *s = std::move(st); });
      ioc_.run_for(std::chrono::milliseconds(1));
      return s->has_value() && pred(**s);
    });
  }

  bool WaitState(ReplicaState state) {
    return WaitStatus([state](const ReplicaStatus& s) { return s.state == state; });
  }

  static std::string EncodedBody(const std::string& body, const std::string& id) {
    Entry e;
    e.request_id = id;
    e.origin = "other";
    e.request.method = "POST";
    e.request.target = "/journal";
    e.request.body = body;
    return EncodeEntry(e);
  }

  std::optional<ClientReply> Send(const std::string& body) {
    std::optional<ClientReply> reply;
    HttpRequest req;
    req.method = "POST";
    req.target = "/journal";
    req.body = body;
    replica_->Submit(req, [&](ClientReply r) { reply = std::move(r); });
    RunUntil([&] { return reply.has_value(); });
    return reply;
  }

  std::vector<std::string> Bodies() const {
    std::vector<std::string> out;
    for (const auto& a : app_.journal) out.push_back(a.body);
    return out;
  }

  boost::asio::io_context ioc_;
  FakeLog log_;
  FakeApp app_;
  ReplicaOptions options_;
  std::shared_ptr<Replica> replica_;
};

// Submits requests without waiting for their answers.
class GroupCommitTest : public ReplicaTest {
 protected:
  // Submits `body` without waiting; the reply lands in replies_[body].
  void SendAsync(const std::string& body) {
    HttpRequest req;
    req.method = "POST";
    req.target = "/journal";
    req.body = body;
    replica_->Submit(req, [this, body](ClientReply r) { replies_[body] = std::move(r); });
  }
  // Starts a serving replica whose log holds appends, and submits `first`: sent alone at once
  // (nobody waits for company), it stays the one append in flight until ReleaseAppends().
  void ServeWithFirstAppendHeld(const std::string& first) {
    Make();
    replica_->Start();
    ASSERT_TRUE(WaitState(ReplicaState::kServing));
    log_.hold_appends = true;
    SendAsync(first);
    ASSERT_TRUE(RunUntil([&] { return log_.held_appends() == 1; }));
  }
  // The log answers the held appends and every later one at once.
  void ReleaseAppends() {
    log_.hold_appends = false;
    log_.ReleaseAppends();
  }
  std::map<std::string, ClientReply> replies_;
};

}  // namespace k8shmir
