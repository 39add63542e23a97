// The replica's ordering, de-duplication, recovery and client-outcome logic, against an
// in-memory log and a fake app.
#include "replica/replica.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/logging.h"

#include "replica/replica_fixture.h"

namespace k8shmir {
namespace {

TEST_F(ReplicaTest, ServesOnEmptyLogAndAnswersWithOwnAppsResponse) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  auto reply = Send("a");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->outcome, Outcome::kCommitted);
  EXPECT_EQ(reply->index, 1);
  EXPECT_EQ(reply->response.status, 200u);
  EXPECT_EQ(reply->response.body, "applied a at 1");
  EXPECT_EQ(Status().applied_index, 1);
}

TEST_F(ReplicaTest, StatusShowsWhatTheAppDeclaresAndTheDepthItGets) {
  options_.app_pipeline_depth = 8;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_FALSE(Status().app_pipelining);
  EXPECT_EQ(Status().app_pipeline_depth, 1u);
  // A new app version declares it: the next heartbeat tells.
  app_.pipelining = true;
  ASSERT_TRUE(RunUntil([&] { return Status().app_pipelining; }));
  EXPECT_EQ(Status().app_pipeline_depth, 8u);
  app_.pipelining = false;
  ASSERT_TRUE(RunUntil([&] { return !Status().app_pipelining; }));
  EXPECT_EQ(Status().app_pipeline_depth, 1u);
}

TEST_F(ReplicaTest, CatchesUpInLogOrderAcrossGapsBeforeServing) {
  log_.AddEntry("e1", EncodedBody("one", "e1"));
  log_.BumpRevision(3);  // another group wrote meanwhile
  log_.AddEntry("e2", EncodedBody("two", "e2"));
  log_.AddEntry("e3", EncodedBody("three", "e3"));
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(app_.journal[1].index, 5);
  EXPECT_EQ(app_.last_index, 6);
  EXPECT_EQ(Status().applied_index, 6);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(ReplicaTest, StartsFromTheAppsIndexAndDoesNotReapply) {
  log_.AddEntry("e1", EncodedBody("one", "e1"));
  log_.AddEntry("e2", EncodedBody("two", "e2"));
  log_.AddEntry("e3", EncodedBody("three", "e3"));
  app_.last_index = 2;  // the app kept its state across a proxy restart
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"three"}));
  EXPECT_EQ(log_.last_subscribe_from(), 3);
}

TEST_F(ReplicaTest, DropsDuplicateAndRewoundDeliveries) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  log_.AddEntry("e1", EncodedBody("one", "e1"));
  log_.AddEntry("e2", EncodedBody("two", "e2"));
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 2; }));
  // etcd 3.4.23 may repeat events or go back in time after a partition.
  log_.DeliverRaw({{2, "e2", EncodedBody("two", "e2")}, {1, "e1", EncodedBody("one", "e1")}});
  log_.AddEntry("e3", EncodedBody("three", "e3"));
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 3; }));
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(Status().entries_dropped, 2u);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(ReplicaTest, LostResponseIsNeverReappliedAndTheClientLearnsItCommitted) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  app_.fail_next_forwards_applied = 1;
  auto reply = Send("x");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->outcome, Outcome::kCommitted);
  EXPECT_EQ(reply->response.status, 502u);
  EXPECT_EQ(reply->index, 1);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"x"}));
  auto next = Send("y");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->response.status, 200u);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"x", "y"}));
}

TEST_F(ReplicaTest, FailedForwardThatDidNotApplyIsRetriedOnce) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  app_.fail_next_forwards_not_applied = 2;
  auto reply = Send("x");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->response.status, 200u);
  EXPECT_EQ(reply->response.body, "applied x at 1");
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"x"}));
}

TEST_F(ReplicaTest, AppRestartIsDetectedOnTheNextForwardAndTheLogIsReplayed) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  ASSERT_EQ(Send("a")->response.status, 200u);
  ASSERT_EQ(Send("b")->response.status, 200u);
  app_.Restart();  // faster than a heartbeat: only the connection check can see it
  log_.AddEntry("e3", EncodedBody("c", "e3"));
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 3; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(app_.contract_violations, 0);
  EXPECT_EQ(Status().recoveries, 1u);
}

TEST_F(ReplicaTest, HeartbeatDetectsAnIdleAppRestart) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  ASSERT_EQ(Send("a")->response.status, 200u);
  app_.Restart();
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 1 && Status().recoveries == 1; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a"}));
  EXPECT_EQ(app_.last_index, 1);
}

TEST_F(ReplicaTest, AppDownMeansNotReadyAndClientsGet503) {
  app_.down = true;
  Make();
  replica_->Start();
  ioc_.run_for(std::chrono::milliseconds(30));
  EXPECT_EQ(Status().state, ReplicaState::kStarting);
  auto reply = Send("a");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->response.status, 503u);
  EXPECT_EQ(reply->outcome, Outcome::kNotCommitted);
  EXPECT_EQ(reply->retry_after, 1);
  EXPECT_TRUE(log_.records().empty());
  EXPECT_EQ(Status().Of(Rejection::kNotServing), 1u);
  EXPECT_GT(Status().app_call_errors, 0u);  // the last-index queries of the app that is down
  app_.down = false;
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
}

TEST_F(ReplicaTest, AppendRefusedIs503NotCommittedAndAmbiguousIs504Unknown) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  log_.append_error = Error{ErrorCode::kUnavailable, "no leader"};
  auto refused = Send("a");
  EXPECT_EQ(refused->response.status, 503u);
  EXPECT_EQ(refused->outcome, Outcome::kNotCommitted);
  log_.append_error = Error{ErrorCode::kUnknown, "deadline exceeded"};
  auto unknown = Send("b");
  EXPECT_EQ(unknown->response.status, 504u);
  EXPECT_EQ(unknown->outcome, Outcome::kUnknown);
  EXPECT_TRUE(app_.journal.empty());
  log_.append_error.reset();
  auto committed = Send("c");
  EXPECT_EQ(committed->response.status, 200u);
  // Every answer is counted by outcome and status class; only the refusal is a rejection.
  auto s = Status();
  EXPECT_EQ(s.request_latency[0].count, 1u);  // committed
  EXPECT_EQ(s.request_latency[1].count, 1u);  // not-committed
  EXPECT_EQ(s.request_latency[2].count, 1u);  // unknown
  EXPECT_EQ(s.responses_by_class, (std::array<uint64_t, 5>{0, 1, 0, 0, 2}));
  EXPECT_EQ(s.Of(Rejection::kLogUnavailable), 1u);
  uint64_t rejections = 0;
  for (auto r : s.rejections) rejections += r;
  EXPECT_EQ(rejections, 1u);
}

TEST_F(ReplicaTest, AppendThatCommittedDespiteAnErrorIsStillAppliedEverywhere) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  log_.append_commits_then_fails = true;
  auto reply = Send("a");
  ASSERT_TRUE(reply);
  // Either the entry was applied before the append's error arrived (then the client has the
  // app's answer), or the client is told "unknown"; never "not committed".
  EXPECT_NE(reply->outcome, Outcome::kNotCommitted);
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 1; }));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a"}));
}

TEST_F(ReplicaTest, WatchLossMakesItNotReadyThenResumesWithoutDuplicates) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  ASSERT_EQ(Send("a")->response.status, 200u);
  log_.CloseSubscriptions(Error{ErrorCode::kUnavailable, "stream reset"});
  log_.AddEntry("e2", EncodedBody("b", "e2"));
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 2; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(log_.last_subscribe_from(), 2);
  EXPECT_EQ(Status().watch_restarts, 1u);
}

// A log pipeline selects on fields, so a state change's message is fixed and its states and
// reason are fields; the replica and group come once, from the process's base fields.
TEST_F(ReplicaTest, StateChangesAreLoggedWithTheStatesAndTheReasonAsFields) {
  std::stringstream out;
  SetUpLogging("info", "json", {{"replica", "r1"}, {"group", "g1"}},
               std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  struct RestoreLogging {
    ~RestoreLogging() { SetUpLogging("info", "text"); }
  } restore;
  const int64_t index = log_.AddEntry("e1", EncodedBody("one", "e1"));
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  app_.Restart();  // the heartbeat finds the app at index 0: a recovery
  ASSERT_TRUE(RunUntil([&] { return Status().recoveries == 1; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  spdlog::default_logger()->flush();

  std::vector<nlohmann::json> changes;
  std::vector<nlohmann::json> errors;
  std::string line;
  while (std::getline(out, line)) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << line;
    // Once: a duplicate key would be a second "replica" the parser silently drops.
    std::size_t replica_keys = 0;
    for (auto at = line.find("\"replica\":"); at != std::string::npos;
         at = line.find("\"replica\":", at + 1)) {
      ++replica_keys;
    }
    EXPECT_EQ(replica_keys, 1u) << line;
    if (j["msg"] == "replica state changed") changes.push_back(j);
    if (j["msg"] == "replica error") errors.push_back(j);
  }

  const std::string n = std::to_string(index);
  struct Change {
    const char* state;
    const char* previous_state;
    std::string reason;
    int64_t index;
  };
  const std::vector<Change> expected = {
      {"catching-up", "starting", "replaying the log from index 1 up to " + n, 0},
      {"serving", "catching-up", "caught up with the log at index " + n, index},
      {"recovering", "serving",
       "heartbeat: app reports index 0 but " + n + " was applied: the app restarted", index},
      {"catching-up", "recovering", "replaying the log from index 1 up to " + n, 0},
      {"serving", "catching-up", "caught up with the log at index " + n, index},
  };
  ASSERT_EQ(changes.size(), expected.size()) << nlohmann::json(changes).dump(1);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& j = changes[i];
    EXPECT_EQ(j["level"], "info") << j;
    EXPECT_EQ(j["state"], expected[i].state) << j;
    EXPECT_EQ(j["previous_state"], expected[i].previous_state) << j;
    EXPECT_EQ(j["reason"], expected[i].reason) << j;
    EXPECT_EQ(j["index"], expected[i].index) << j;
    EXPECT_EQ(j["replica"], "r1") << j;
    EXPECT_EQ(j["group"], "g1") << j;
    // time, level, msg, replica, group and the four fields: nothing else.
    EXPECT_EQ(j.size(), 9u) << j;
  }
  // The recovery's cause is also logged as an error, in the state it was found in.
  ASSERT_EQ(errors.size(), 1u) << nlohmann::json(errors).dump(1);
  EXPECT_EQ(errors[0]["level"], "warning");
  EXPECT_EQ(errors[0]["state"], "serving");
  EXPECT_EQ(errors[0]["index"], index);
  EXPECT_EQ(errors[0]["error"],
            "heartbeat: app reports index 0 but " + n + " was applied: the app restarted");
}

class RangeCatchUpTest : public ReplicaTest {
 protected:
  // Entries e<from>..e<to> from another replica, whose bodies are their numbers.
  void AddEntries(int from, int to) {
    for (int i = from; i <= to; ++i) {
      const std::string id = "e" + std::to_string(i);
      log_.AddEntry(id, EncodedBody(std::to_string(i), id));
    }
  }
};

std::vector<std::string> Numbers(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i) out.push_back(std::to_string(i));
  return out;
}

// etcd compaction drops old versions of keys, never live keys: a watch whose start revision was
// compacted gives way to reading the live entries, page by page, then a watch from the end.
TEST_F(RangeCatchUpTest, CompactedHistoryIsReadFromTheLiveEntriesThenWatched) {
  AddEntries(1, 5);
  log_.compacted_below = 4;
  log_.range_page_records = 2;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 5));
  EXPECT_EQ(log_.range_froms(), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(log_.last_subscribe_from(), 6);
  auto s = Status();
  EXPECT_EQ(s.range_catch_ups, 1u);
  EXPECT_EQ(s.applied_index, 5);
  // The watch from the end of the read carries on.
  log_.AddEntry("e6", EncodedBody("6", "e6"));
  auto reply = Send("x");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->index, 7);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "x"}));
}

TEST_F(RangeCatchUpTest, RangeCatchUpWaitsForAFullQueueAndLosesNothing) {
  AddEntries(1, 100);
  log_.compacted_below = 101;
  log_.range_page_records = 10;
  options_.max_queued_entries = 16;
  app_.hang_forwards = true;  // nothing drains the queue yet
  Make();
  replica_->Start();
  ASSERT_TRUE(RunUntil([&] { return log_.range_reads() == 2; }));
  // Two pages (20 entries) fill the queue: no third read while it stays full.
  ioc_.run_for(std::chrono::milliseconds(200));
  EXPECT_EQ(log_.range_reads(), 2);
  auto stuck = Status();
  EXPECT_EQ(stuck.queued_entries, 20u);
  // The entries in flight to the hung app count as unapplied; the oldest arrived before the
  // 200 ms wait above.
  EXPECT_EQ(stuck.lag_entries, 20u);
  EXPECT_GE(stuck.oldest_unapplied_age_seconds, 0.2);
  app_.ReleaseHungForwards();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 100));
  auto drained = Status();
  EXPECT_EQ(drained.lag_entries, 0u);
  EXPECT_EQ(drained.oldest_unapplied_age_seconds, 0.0);
  EXPECT_EQ(log_.range_reads(), 10);
  EXPECT_EQ(log_.last_subscribe_from(), 101);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(RangeCatchUpTest, RangeRevisionCompactedMidwayReadsOnAtTheCurrentRevision) {
  AddEntries(1, 5);
  log_.compacted_below = 6;
  log_.range_page_records = 2;
  log_.compact_range_reads = 1;  // the second page's revision is gone
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(1, 5));
  EXPECT_EQ(log_.range_froms(), (std::vector<int64_t>{1, 3, 3, 5}));
  EXPECT_EQ(Status().range_catch_ups, 1u);
}

// Only entries deleted by retention need a state transfer: replaying cannot rebuild them.
TEST_F(RangeCatchUpTest, TrimmedEntriesNeedStateTransferAndNothingIsApplied) {
  AddEntries(1, 4);
  log_.compacted_below = 3;
  log_.trimmed_index = 2;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kNeedsStateTransfer));
  EXPECT_TRUE(app_.journal.empty());
  auto s = Status();
  EXPECT_NE(s.last_error.find("trimmed up to index 2"), std::string::npos) << s.last_error;
  EXPECT_EQ(Send("x")->response.status, 503u);
}

TEST_F(RangeCatchUpTest, AnAppPastTheTrimmedPointCatchesUpByRange) {
  AddEntries(1, 4);
  log_.compacted_below = 3;
  log_.trimmed_index = 2;
  app_.last_index = 2;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), Numbers(3, 4));
}

TEST_F(ReplicaTest, BoundedQueuePausesTheWatchAndLosesNothing) {
  for (int i = 1; i <= 100; ++i) {
    log_.AddEntry("e" + std::to_string(i), EncodedBody(std::to_string(i), "e" + std::to_string(i)));
  }
  options_.max_queued_entries = 16;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  ASSERT_EQ(app_.journal.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(app_.journal[i].body, std::to_string(i + 1));
  EXPECT_GT(log_.subscribe_calls(), 1);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(ReplicaTest, TooManyPendingRequestsAre503) {
  options_.max_pending_requests = 1;
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  app_.down = true;  // the first request cannot complete
  std::optional<ClientReply> first, second;
  HttpRequest req{"POST", "/journal", 11, {}, "a"};
  replica_->Submit(req, [&](ClientReply r) { first = r; });
  replica_->Submit(req, [&](ClientReply r) { second = r; });
  ASSERT_TRUE(RunUntil([&] { return second.has_value(); }));
  EXPECT_EQ(second->response.status, 503u);
  EXPECT_EQ(second->outcome, Outcome::kNotCommitted);
  EXPECT_FALSE(first.has_value());
  EXPECT_EQ(Status().Of(Rejection::kTooManyPending), 1u);
  // Stopping answers the first request while `first` is still in scope.
  replica_->Stop();
  ASSERT_TRUE(RunUntil([&] { return first.has_value(); }));
  EXPECT_EQ(first->outcome, Outcome::kCommitted);
  EXPECT_EQ(first->index, 1);
}

// ---- Group commit ------------------------------------------------------------------------------

TEST_F(GroupCommitTest, RequestsArrivingDuringAnAppendGoTogetherInTheNext) {
  ASSERT_NO_FATAL_FAILURE(ServeWithFirstAppendHeld("a"));
  for (const char* body : {"b", "c", "d", "e"}) SendAsync(body);
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(log_.held_appends(), 1u);  // one append in flight at a time
  ReleaseAppends();                    // "a" commits; b..e go out as one batch
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 5; }));
  EXPECT_EQ(log_.batch_sizes(), (std::vector<std::size_t>{1, 4}));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  int64_t expected_index = 1;
  for (const char* body : {"a", "b", "c", "d", "e"}) {
    const ClientReply& r = replies_.at(body);
    EXPECT_EQ(r.outcome, Outcome::kCommitted) << body;
    EXPECT_EQ(r.index, expected_index) << body;
    EXPECT_EQ(r.response.body,
              std::string("applied ") + body + " at " + std::to_string(expected_index));
    ++expected_index;
  }
  auto status = Status();
  EXPECT_EQ(status.log_appends, 2u);
  EXPECT_EQ(status.log_appended_entries, 5u);
  EXPECT_EQ(app_.contract_violations, 0);
}

TEST_F(GroupCommitTest, BatchesAreCutByByteSize) {
  options_.max_batch_bytes = 1;  // every entry is larger: one entry per batch
  ASSERT_NO_FATAL_FAILURE(ServeWithFirstAppendHeld("a"));
  for (const char* body : {"b", "c"}) SendAsync(body);
  ioc_.run_for(std::chrono::milliseconds(10));
  ReleaseAppends();
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 3; }));
  EXPECT_EQ(log_.batch_sizes(), (std::vector<std::size_t>{1, 1, 1}));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(GroupCommitTest, BatchesAreCutAtTheEntryLimit) {
  ASSERT_NO_FATAL_FAILURE(ServeWithFirstAppendHeld("first"));
  for (std::size_t i = 0; i < kMaxBatchEntries + 10; ++i) SendAsync("x" + std::to_string(i));
  ioc_.run_for(std::chrono::milliseconds(20));
  ReleaseAppends();
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == kMaxBatchEntries + 11; }));
  EXPECT_EQ(log_.batch_sizes(), (std::vector<std::size_t>{1, kMaxBatchEntries, 10}));
  ASSERT_EQ(app_.journal.size(), kMaxBatchEntries + 11);
  for (std::size_t i = 0; i < kMaxBatchEntries + 10; ++i) {
    EXPECT_EQ(app_.journal[i + 1].body, "x" + std::to_string(i));
  }
}

TEST_F(GroupCommitTest, ARequestStillWaitingForTheLogAtItsDeadlineIsNotCommitted) {
  options_.request_timeout = std::chrono::milliseconds(200);
  ASSERT_NO_FATAL_FAILURE(ServeWithFirstAppendHeld("a"));
  SendAsync("b");  // waits behind "a", which the log never answers
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 2; }));
  EXPECT_EQ(replies_.at("a").outcome, Outcome::kUnknown);
  EXPECT_EQ(replies_.at("a").response.status, 504u);
  EXPECT_EQ(replies_.at("b").outcome, Outcome::kNotCommitted);
  EXPECT_EQ(replies_.at("b").response.status, 503u);
  ReleaseAppends();  // "a" commits late; "b" must never reach the log
  ASSERT_TRUE(RunUntil([&] { return app_.journal.size() == 1; }));
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(log_.batch_sizes(), (std::vector<std::size_t>{1}));
  EXPECT_EQ(log_.records().size(), 1u);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a"}));
}

TEST_F(GroupCommitTest, MalformedRecordsAreSkippedAlike) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  log_.DeliverRaw({LogRecord{5, "foreign", "", true}});
  log_.BumpRevision(5);
  ASSERT_EQ(Send("a")->index, 6);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Status().entries_dropped, 1u);
}
// ---- Pipelined forwarding (--app-pipeline-depth) ----------------------------------------------

class PipelineTest : public GroupCommitTest {
 protected:
  PipelineTest() { options_.app_pipeline_depth = 4; }

  // n entries e1..en in the log before the replica starts; returns their indices.
  std::vector<int64_t> Backlog(int n) {
    std::vector<int64_t> indices;
    for (int k = 1; k <= n; ++k) {
      std::string id = "e" + std::to_string(k);
      indices.push_back(log_.AddEntry(id, EncodedBody("b" + std::to_string(k), id)));
    }
    return indices;
  }
  // Catches up 12 entries while the forward of entry `at` (0-based) breaks the connection.
  void CatchUpThroughABreak(int at, bool applies) {
    auto indices = Backlog(12);
    app_.fail_at_index = indices[at];
    app_.fail_at_index_applies = applies;
    Make();
    replica_->Start();
    ASSERT_TRUE(WaitState(ReplicaState::kServing));
    EXPECT_EQ(Bodies(), BodiesUpTo(12));
    EXPECT_EQ(app_.contract_violations, 0);
  }
  static std::vector<std::string> BodiesUpTo(int n) {
    std::vector<std::string> out;
    for (int k = 1; k <= n; ++k) out.push_back("b" + std::to_string(k));
    return out;
  }
};

TEST_F(PipelineTest, CatchUpKeepsSeveralEntriesInFlightAndAppliesInOrder) {
  Backlog(20);
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), BodiesUpTo(20));
  EXPECT_EQ(app_.max_pipelined, 4);
  EXPECT_EQ(app_.forwards, 20);
  EXPECT_EQ(app_.contract_violations, 0);
  EXPECT_EQ(Status().applied_index, 20);
}

TEST_F(PipelineTest, DepthOneNeverPipelines) {
  options_.app_pipeline_depth = 1;
  Backlog(10);
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), BodiesUpTo(10));
  EXPECT_EQ(app_.max_pipelined, 1);
}

TEST_F(PipelineTest, ABreakAfterApplyingMidPipelineLosesAndRepeatsNothing) {
  // Entry 6 is applied, then the connection breaks; 7.. fail unapplied.
  CatchUpThroughABreak(/*at=*/5, /*applies=*/true);
  EXPECT_EQ(Status().recoveries, 0u);  // the front's retry found it applied
}

TEST_F(PipelineTest, ABreakBeforeApplyingMidPipelineIsRetried) {
  CatchUpThroughABreak(/*at=*/2, /*applies=*/false);
}

TEST_F(PipelineTest, AnAppRestartMidPipelineReplaysEverythingInOrder) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  for (const char* body : {"a", "b", "c", "d", "e", "f"}) SendAsync(body);
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 6; }));
  app_.Restart();
  for (const char* body : {"g", "h"}) SendAsync(body);
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == 8; }));
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h"}));
  EXPECT_EQ(app_.contract_violations, 0);
  EXPECT_GE(Status().recoveries, 1u);
  for (const char* body : {"a", "b", "c", "d", "e", "f"}) {
    EXPECT_EQ(replies_.at(body).outcome, Outcome::kCommitted) << body;
    EXPECT_EQ(replies_.at(body).response.status, 200u) << body;
  }
  // g and h were committed; their client sees the replayed app's answer or a committed error.
  for (const char* body : {"g", "h"}) {
    EXPECT_EQ(replies_.at(body).outcome, Outcome::kCommitted) << body;
  }
}

TEST_F(PipelineTest, ClientsGetTheirOwnAppsAnswersUnderPipelining) {
  Make();
  replica_->Start();
  ASSERT_TRUE(WaitState(ReplicaState::kServing));
  std::vector<std::string> bodies;
  for (int k = 0; k < 40; ++k) bodies.push_back("r" + std::to_string(k));
  for (const auto& b : bodies) SendAsync(b);
  ASSERT_TRUE(RunUntil([&] { return replies_.size() == bodies.size(); }));
  ASSERT_EQ(Bodies(), bodies);
  for (std::size_t k = 0; k < bodies.size(); ++k) {
    const ClientReply& r = replies_.at(bodies[k]);
    EXPECT_EQ(r.outcome, Outcome::kCommitted);
    EXPECT_EQ(r.index, app_.journal[k].index);
    EXPECT_EQ(r.response.body, "applied " + bodies[k] + " at " + std::to_string(r.index));
  }
}

}  // namespace
}  // namespace k8shmir
