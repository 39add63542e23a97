// The replica when its app or its own bounds misbehave (issue 10): a last index that is not a
// number, a validation that never answers, an app that stops answering, a paused watch behind
// skipped entries, byte bounds on memory, entries applied behind a broken connection, readiness
// text, and the loop's liveness tick.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "replica/replica_fixture.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;

class ReplicaHealthTest : public GroupCommitTest {
 protected:
  void Serve() {
    Make();
    replica_->Start();
    ASSERT_TRUE(WaitState(ReplicaState::kServing));
  }
  // Entries e1..en from another replica, each with body "b<k>"; returns their indices.
  std::vector<int64_t> AddEntries(int n, const std::string& prefix = "e") {
    std::vector<int64_t> indices;
    for (int k = 1; k <= n; ++k) {
      std::string id = prefix + std::to_string(k);
      indices.push_back(log_.AddEntry(id, EncodedBody("b" + std::to_string(k), id)));
    }
    return indices;
  }
};

// A last index that is not a number ({"index": null}, missing, garbage) is never read as 0:
// nothing is replayed onto the app's live state; the replica is not ready and says why.
TEST_F(ReplicaHealthTest, ALastIndexThatIsNotANumberStopsTheReplicaAndReplaysNothing) {
  Serve();
  ASSERT_EQ(Send("a")->index, 1);
  ASSERT_EQ(Send("b")->index, 2);
  // From here on the app answers {"index": null} (HttpApp's kProtocol).
  app_.last_index_error = Error{ErrorCode::kProtocol, "last-index answered {\"index\": null}"};
  ASSERT_TRUE(WaitState(ReplicaState::kAppContractViolation));
  auto status = Status();
  EXPECT_FALSE(status.Ready());
  EXPECT_NE(status.state_reason.find("null"), std::string::npos) << status.state_reason;
  EXPECT_GE(status.app_contract_violations, 1u);
  // Others keep writing; this replica forwards and replays nothing.
  AddEntries(3, "other");
  ioc_.run_for(200ms);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Status().state, ReplicaState::kAppContractViolation);
  EXPECT_EQ(Status().entries_replayed, 0u);
  auto refused = Send("c");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->response.status, 503u);
  EXPECT_EQ(refused->outcome, Outcome::kNotCommitted);

  // The app reports a number again (its own, 2): the replica goes on from there, exactly.
  app_.last_index_error.reset();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b", "b1", "b2", "b3"}));
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(ReplicaHealthTest, AValidationThatNeverAnswersIsGivenUpAndRetried) {
  options_.app_timeout = 20ms;  // the validation's own deadline is 2 x 20 + 500 ms
  app_.hang_next_last_index = 1;
  AddEntries(2);
  Make();
  replica_->Start();
  ASSERT_TRUE(RunUntil([&] { return app_.last_index_calls >= 2; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"b1", "b2"}));
  EXPECT_NE(Status().last_error.find("did not come within 540 ms"), std::string::npos)
      << Status().last_error;
}

TEST_F(ReplicaHealthTest, AHeartbeatThatNeverAnswersDoesNotStopLaterHeartbeats) {
  options_.app_timeout = 20ms;
  Serve();
  ASSERT_EQ(Send("a")->index, 1);
  const int calls = app_.last_index_calls;
  app_.hang_next_last_index = 1;
  ASSERT_TRUE(RunUntil([&] { return app_.last_index_calls > calls; }));  // the lost heartbeat
  ASSERT_TRUE(RunUntil([&] { return Status().recoveries >= 1; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  // Heartbeats go on: an idle restart is still noticed, and the log replayed onto the new app.
  app_.Restart();
  ASSERT_TRUE(RunUntil([&] { return Status().recoveries >= 2; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a"}));
}

// A stopped app (SIGSTOP) keeps its entries unanswered: past the app timeout the replica is not
// ready (clients go elsewhere), and it waits on the same connection rather than resending what
// the app may still apply. When the app answers, it serves again with nothing applied twice.
TEST_F(ReplicaHealthTest, AnAppThatStopsAnsweringMakesTheReplicaNotReadyUntilItAnswers) {
  options_.app_timeout = 60ms;
  options_.app_hang_timeout = 300ms;
  Serve();
  EXPECT_FALSE(Status().AppHung());
  app_.hang_forwards = true;
  SendAsync("slow");
  ASSERT_TRUE(WaitState(ReplicaState::kAppNotAnswering));
  auto status = Status();
  EXPECT_FALSE(status.Ready());
  EXPECT_NE(status.state_reason.find("has not answered index 1"), std::string::npos)
      << status.state_reason;
  EXPECT_EQ(status.app_stalls, 1u);
  auto refused = Send("meanwhile");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->response.status, 503u);
  // Not ready at once; hung (restart-worthy: /app-healthz fails) only past the hang timeout.
  EXPECT_FALSE(Status().AppHung());
  ASSERT_TRUE(RunUntil([&] { return Status().AppHung(); }));
  EXPECT_GE(Status().app_unanswered_seconds, 0.3);

  app_.ReleaseHungForwards();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_FALSE(Status().AppHung());
  // The answer restarted the count (it was past 0.3 s): a call sent since (the next heartbeat's
  // last-index query) may be in flight, counted from its own sending.
  EXPECT_LT(Status().app_unanswered_seconds, 0.1);
  ASSERT_TRUE(RunUntil([&] { return replies_.count("slow") == 1; }));
  EXPECT_EQ(replies_["slow"].outcome, Outcome::kCommitted);
  EXPECT_EQ(replies_["slow"].response.body, "applied slow at 1");
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"slow"}));
  EXPECT_EQ(Status().recoveries, 0u);
  EXPECT_EQ(app_.contract_violations, 0);
  EXPECT_EQ(Send("after")->index, 2);  // "meanwhile" was refused before the log
}

// A watch paused for a full queue resumes when the queue drains, also when the entries that
// drain it are skipped (malformed) rather than applied.
TEST_F(ReplicaHealthTest, APausedWatchResumesWhenItsQueueDrainsThroughSkippedEntries) {
  options_.max_queued_entries = 4;
  Serve();
  std::vector<LogRecord> foreign;
  for (int64_t i = 1; i <= 8; ++i)
    foreign.push_back(LogRecord{i, "f" + std::to_string(i), "", true});
  log_.BumpRevision(8);
  log_.DeliverRaw(foreign);  // eight malformed records at once: the watch pauses
  ASSERT_TRUE(RunUntil([&] { return Status().entries_dropped == 8; }));
  EXPECT_GE(Status().watch_pauses, 1u);
  // Entries committed afterwards arrive only if the watch came back.
  AddEntries(2);
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 2; })) << Status().queued_entries;
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"b1", "b2"}));
}

// Memory is bounded in bytes, not only in entries: a queue of large entries pauses the watch
// at the byte bound, and resumes without losing or repeating anything.
TEST_F(ReplicaHealthTest, TheQueueIsBoundedInBytes) {
  options_.max_queued_entries = 4096;
  options_.max_queued_bytes = 3 * 10000;
  const std::string big(10000, 'x');
  for (int k = 1; k <= 20; ++k) {
    std::string id = "big" + std::to_string(k);
    log_.AddEntry(id, EncodedBody(std::to_string(k) + big, id));
  }
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  ASSERT_EQ(app_.journal.size(), 20u);
  for (int k = 1; k <= 20; ++k) EXPECT_EQ(app_.journal[k - 1].body, std::to_string(k) + big);
  EXPECT_GE(Status().watch_pauses, 1u);
  EXPECT_EQ(Status().queued_bytes, 0u);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(ReplicaHealthTest, PendingRequestsAreBoundedInBytes) {
  options_.max_pending_bytes = 3000;
  ServeWithFirstAppendHeld(std::string(2000, 'a'));  // one pending request always fits
  SendAsync(std::string(2000, 'b'));                 // over the budget
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 1; }));
  const ClientReply& refused = replies_.begin()->second;
  EXPECT_EQ(refused.response.status, 503u);
  EXPECT_EQ(refused.outcome, Outcome::kNotCommitted);
  EXPECT_NE(refused.response.body.find("too many bytes"), std::string::npos);
  EXPECT_EQ(Status().requests_over_byte_budget, 1u);
  ReleaseAppends();
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 2; }));
  EXPECT_EQ(Status().pending_bytes, 0u);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{std::string(2000, 'a')}));
}

// The connection broke under a pipeline after the app had applied three entries whose answers
// were never read: the app then reports the third one's index. That is not a restart: those
// entries count as applied (nothing is resent, nothing recovered) and the rest follows.
TEST_F(ReplicaHealthTest, EntriesAppliedBehindABrokenConnectionAreNotResentOrMistakenForARestart) {
  options_.app_pipeline_depth = 8;
  app_.pipelining = true;
  auto indices = AddEntries(6);
  app_.lose_next_answers = 3;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"b1", "b2", "b3", "b4", "b5", "b6"}));
  EXPECT_EQ(app_.contract_violations, 0);
  EXPECT_EQ(Status().recoveries, 0u);
  EXPECT_EQ(Status().applied_index, indices.back());
}

// Readiness text says where the replica is now, not where it was when it started serving.
TEST_F(ReplicaHealthTest, ReadinessTextDescribesTheCurrentState) {
  Serve();
  AddEntries(3);
  ASSERT_TRUE(RunUntil([&] { return Status().applied_index == 3; }));
  EXPECT_EQ(Status().state_reason, "applied index 3, newest log index seen 3, 0 entries queued");
}

// The loop ticks every heartbeat interval; /healthz reads the tick's age from any thread.
TEST_F(ReplicaHealthTest, TheLivenessTickStopsWhenTheLoopIsWedged) {
  Serve();
  ioc_.run_for(60ms);
  EXPECT_LT(replica_->SinceLastTick(), 200ms);
  // A handler that blocks the loop: no tick meanwhile.
  std::this_thread::sleep_for(300ms);
  EXPECT_GE(replica_->SinceLastTick(), 300ms);
  ioc_.run_for(60ms);
  EXPECT_LT(replica_->SinceLastTick(), 200ms);
}

// A full log (etcd NOSPACE): the refused request is 503 not-committed with the reason, the
// replica is not ready and refuses at once, entries committed before still apply, and it serves
// again by itself once the log has space.
TEST_F(ReplicaHealthTest, AFullLogMakesTheReplicaNotReadyUntilItHasSpaceAgain) {
  Serve();
  ASSERT_EQ(Send("a")->response.status, 200u);
  log_.full = true;
  auto refused = Send("b");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->response.status, 503u);
  EXPECT_EQ(refused->outcome, Outcome::kNotCommitted);
  EXPECT_NE(refused->response.body.find("the log is full"), std::string::npos)
      << refused->response.body;
  auto s = Status();
  EXPECT_EQ(s.state, ReplicaState::kLogFull);
  EXPECT_FALSE(s.Ready());
  EXPECT_EQ(s.log_full_refusals, 1u);
  EXPECT_NE(s.state_reason.find("lack of space"), std::string::npos) << s.state_reason;
  // Refused at once, without asking the log.
  const auto batches = log_.batch_sizes().size();
  auto fast = Send("c");
  EXPECT_EQ(fast->response.status, 503u);
  EXPECT_EQ(fast->outcome, Outcome::kNotCommitted);
  EXPECT_EQ(log_.batch_sizes().size(), batches);
  // Another replica's entry, committed before the log filled, still applies.
  log_.AddEntry("x1", EncodedBody("x", "x1"));
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 2; }));
  log_.full = false;
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  ASSERT_EQ(Send("d")->response.status, 200u);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "x", "d"}));
}

// Every replica watches the log's space, not only the one whose append was refused.
TEST_F(ReplicaHealthTest, AnIdleReplicaNoticesAFullLog) {
  Serve();
  log_.full = true;
  ASSERT_TRUE(WaitState(ReplicaState::kLogFull));
  EXPECT_EQ(Status().log_full_refusals, 0u);
  log_.full = false;
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
}

}  // namespace
}  // namespace k8shmir
