// Reads that skip the log (src/replica/replica_reads.cc) on the in-memory log and fake app:
// the read barrier, its coalescing, waiting for the barrier to be applied, local reads, and every
// refusal.
#include <gtest/gtest.h>

#include "replica_fixture.h"

namespace k8shmir {
namespace {

// GroupCommitTest: SendAsync, and replies_ by key for writes and reads alike.
class ReadsTest : public GroupCommitTest {
 protected:
  void Routes(const std::string& spec) {
    auto routes = ReadRoutes::Parse(spec);
    ASSERT_TRUE(routes) << routes.error().message;
    options_.read_routes = *routes;
  }

  void Serve(const std::string& routes = "GET /journal*, GET /health local") {
    Routes(routes);
    Make();
    replica_->Start();
    ASSERT_TRUE(WaitState(ReplicaState::kServing));
  }

  // Submits a GET without waiting; its reply lands in replies_[key].
  void ReadAsync(const std::string& key, const std::string& target) {
    HttpRequest req;
    req.method = "GET";
    req.target = target;
    replica_->Submit(req, [this, key](ClientReply r) { replies_[key] = std::move(r); });
  }

  std::optional<ClientReply> Read(const std::string& target) {
    ReadAsync(target, target);
    RunUntil([&] { return replies_.count(target) == 1; });
    auto it = replies_.find(target);
    if (it == replies_.end()) return std::nullopt;
    return it->second;
  }

  bool Answered(const std::string& key) const { return replies_.count(key) == 1; }

  // A serving replica whose log holds appends: "w1" is the append in flight, "w2" waits in the
  // outbox behind it for the next one.
  void ServeWithAnAppendInFlightAndOneWaiting() {
    Serve();
    log_.hold_appends = true;
    SendAsync("w1");
    ASSERT_TRUE(RunUntil([&] { return log_.held_appends() == 1; }));
    SendAsync("w2");
    ioc_.run_for(std::chrono::milliseconds(5));
    ASSERT_EQ(log_.held_appends(), 1u);
  }

  // ... and a linearizable read "r" arrives behind them: it waits for w2's append, no barrier.
  void ReadBehindAnAppendInFlightAndOneWaiting(std::chrono::milliseconds ride_window) {
    options_.read_ride_append_window = ride_window;
    ServeWithAnAppendInFlightAndOneWaiting();
    ReadAsync("r", "/journal");
    ioc_.run_for(std::chrono::milliseconds(20));
    EXPECT_EQ(log_.committed_reads, 0);
  }
};

TEST_F(ReadsTest, LinearizableReadWaitsUntilTheCommittedIndexIsApplied) {
  Serve();
  ASSERT_TRUE(Send("a").has_value());
  const int64_t local = app_.last_index;
  // Another replica's write is committed; this app has not applied it yet.
  app_.hang_forwards = true;
  const int64_t remote = log_.AddEntry("remote", EncodedBody("b", "remote"));
  ReadAsync("r", "/journal");
  ASSERT_TRUE(RunUntil([&] { return log_.committed_reads == 1; }));
  ioc_.run_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(Answered("r")) << "answered before the committed index was applied";
  // The optimistic read went to the app at once; its answer reflects only "a", below the
  // barrier, so it was not used.
  EXPECT_EQ(app_.reads, 1);
  app_.ReleaseHungForwards();
  ASSERT_TRUE(RunUntil([&] { return Answered("r"); }));
  const ClientReply& reply = replies_.at("r");
  EXPECT_EQ(reply.response.status, 200u);
  EXPECT_EQ(reply.response.body, "read /journal at " + std::to_string(remote));
  EXPECT_EQ(reply.index, remote);
  EXPECT_EQ(reply.outcome, Outcome::kNone);
  ASSERT_TRUE(reply.read.has_value());
  EXPECT_EQ(*reply.read, ReadConsistency::kLinearizable);
  EXPECT_EQ(app_.read_min_indices, (std::vector<int64_t>{local, remote}));
  // The read is no log entry: one append ("a"), and the app applied exactly a then b.
  EXPECT_EQ(log_.batch_sizes().size(), 1u);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"a", "b"}));
  auto s = Status();
  EXPECT_EQ(s.reads[0].Of(ReadOutcome::kServed), 1u);
  EXPECT_EQ(s.reads[0].latency.count, 1u);
  EXPECT_EQ(s.read_barriers, 1u);
}

TEST_F(ReadsTest, ReadsArrivingWhileABarrierIsInFlightShareTheNextOne) {
  Serve();
  log_.hold_committed_reads = true;
  ReadAsync("r1", "/journal");
  ASSERT_TRUE(RunUntil([&] { return log_.held_committed_reads() == 1; }));
  // A write is acknowledged after the first barrier was sent: reads that arrive now must not be
  // answered by it (etcd may have answered it before they arrived).
  ASSERT_TRUE(Send("w").has_value());
  const int64_t written = app_.last_index;
  ReadAsync("r2", "/journal/digest");
  ReadAsync("r3", "/journal?from=1");
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(log_.committed_reads, 1) << "one barrier in flight at a time";
  log_.ReleaseCommittedReads();
  ASSERT_TRUE(RunUntil([&] { return Answered("r1"); }));
  ASSERT_TRUE(RunUntil([&] { return log_.held_committed_reads() == 1; }));
  EXPECT_FALSE(Answered("r2"));
  EXPECT_FALSE(Answered("r3"));
  EXPECT_EQ(log_.committed_reads, 2);
  log_.ReleaseCommittedReads();
  ASSERT_TRUE(RunUntil([&] { return Answered("r2") && Answered("r3"); }));
  for (const char* key : {"r2", "r3"}) {
    EXPECT_EQ(replies_.at(key).response.status, 200u) << key;
    EXPECT_GE(replies_.at(key).index, written) << key;
  }
  auto s = Status();
  EXPECT_EQ(s.read_barriers, 2u);
  EXPECT_EQ(s.read_barrier_reads, 3u);
  EXPECT_EQ(s.reads[0].Of(ReadOutcome::kServed), 3u);
}

TEST_F(ReadsTest, AReadBehindAnAppendInFlightRidesTheNextAppendInsteadOfABarrier) {
  options_.read_ride_append_window = std::chrono::hours(1);
  app_.hang_forwards = true;  // nothing is applied until the end
  ServeWithAnAppendInFlightAndOneWaiting();
  // Committed before the read arrived: the read must reflect it.
  const int64_t remote = log_.AddEntry("remote", EncodedBody("b", "remote"));
  ReadAsync("r", "/journal");
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(log_.committed_reads, 0) << "a barrier, though an append was about to leave";
  // w1 commits; w2 leaves in the next append, and the read rides it.
  log_.ReleaseAppends();
  ASSERT_TRUE(RunUntil([&] { return log_.held_appends() == 1; }));
  EXPECT_FALSE(Answered("r"));
  log_.hold_appends = false;
  log_.ReleaseAppends();
  // w2's transaction read the committed head before it moved: w1, above `remote`. The replica
  // has applied nothing yet, so the read waits for it.
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(Answered("r")) << "answered before the committed head was applied";
  app_.ReleaseHungForwards();
  ASSERT_TRUE(RunUntil([&] { return Answered("r") && Answered("w1") && Answered("w2"); }));
  const int64_t w1 = replies_.at("w1").index;
  EXPECT_EQ(w1, remote + 1);
  const ClientReply& reply = replies_.at("r");
  EXPECT_EQ(reply.response.status, 200u);
  EXPECT_GE(reply.index, w1);
  EXPECT_EQ(log_.committed_reads, 0);
  EXPECT_EQ(Bodies(), (std::vector<std::string>{"b", "w1", "w2"}));
  auto s = Status();
  EXPECT_EQ(s.read_barriers, 0u);
  EXPECT_EQ(s.read_appends, 1u);
  EXPECT_EQ(s.read_append_reads, 1u);
  EXPECT_EQ(s.reads[0].Of(ReadOutcome::kServed), 1u);
}

TEST_F(ReadsTest, AReadWhoseAppendFailedWaitsForTheNextRoundTrip) {
  ReadBehindAnAppendInFlightAndOneWaiting(std::chrono::hours(1));
  log_.append_error = Error{ErrorCode::kUnavailable, "fake: no leader"};
  log_.ReleaseAppends();  // w1 fails; w2's append, with the read on it, is held
  ASSERT_TRUE(RunUntil([&] { return log_.held_appends() == 1; }));
  log_.hold_appends = false;
  log_.ReleaseAppends();  // w2 fails: the read needs a barrier now
  ASSERT_TRUE(RunUntil([&] { return Answered("r") && Answered("w1") && Answered("w2"); }));
  EXPECT_EQ(replies_.at("w1").response.status, 503u);
  EXPECT_EQ(replies_.at("w2").response.status, 503u);
  EXPECT_EQ(replies_.at("r").response.status, 200u);
  EXPECT_EQ(log_.committed_reads, 1);
  auto s = Status();
  EXPECT_EQ(s.read_barriers, 1u);
  EXPECT_EQ(s.read_barrier_reads, 1u);
  EXPECT_EQ(s.read_appends, 0u);
}

TEST_F(ReadsTest, AReadWaitsForAnAppendNoLongerThanTheWindow) {
  ReadBehindAnAppendInFlightAndOneWaiting(std::chrono::milliseconds(300));
  // The append in flight does not come back: the read's barrier goes once the window is over.
  ASSERT_TRUE(RunUntil([&] { return Answered("r"); }));
  EXPECT_EQ(replies_.at("r").response.status, 200u);
  EXPECT_EQ(log_.committed_reads, 1);
  EXPECT_EQ(log_.held_appends(), 1u);
  log_.hold_appends = false;
  log_.ReleaseAppends();
  ASSERT_TRUE(RunUntil([&] { return Answered("w1") && Answered("w2"); }));
  EXPECT_EQ(Status().read_appends, 0u);
}

TEST_F(ReadsTest, AReadBehindAnAppendWithNothingAfterItSendsABarrier) {
  options_.read_ride_append_window = std::chrono::hours(1);
  Serve();
  log_.hold_appends = true;
  SendAsync("w1");
  ASSERT_TRUE(RunUntil([&] { return log_.held_appends() == 1; }));
  // No append will follow the one in flight: waiting for one could wait for ever.
  ReadAsync("r", "/journal");
  ASSERT_TRUE(RunUntil([&] { return Answered("r"); }));
  EXPECT_EQ(replies_.at("r").response.status, 200u);
  EXPECT_EQ(log_.committed_reads, 1);
  log_.hold_appends = false;
  log_.ReleaseAppends();
  ASSERT_TRUE(RunUntil([&] { return Answered("w1"); }));
}

TEST_F(ReadsTest, AnUpToDateReplicaAsksTheAppOnceAlongsideTheBarrier) {
  Serve();
  ASSERT_TRUE(Send("a").has_value());
  const int64_t applied = app_.last_index;
  // The app answers before the barrier returns: the answer waits for it, then stands.
  log_.hold_committed_reads = true;
  ReadAsync("early", "/journal");
  ASSERT_TRUE(RunUntil([&] { return log_.held_committed_reads() == 1 && app_.reads == 1; }));
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(Answered("early")) << "answered before the barrier";
  log_.ReleaseCommittedReads();
  ASSERT_TRUE(RunUntil([&] { return Answered("early"); }));
  EXPECT_EQ(replies_.at("early").response.body, "read /journal at " + std::to_string(applied));
  EXPECT_EQ(replies_.at("early").index, applied);
  // The barrier returns before the app answers: the answer in flight decides.
  log_.hold_committed_reads = false;
  app_.hang_reads = true;
  ReadAsync("late", "/journal");
  ASSERT_TRUE(RunUntil([&] { return log_.committed_reads == 2; }));
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(Answered("late"));
  app_.ReleaseHungReads();
  ASSERT_TRUE(RunUntil([&] { return Answered("late"); }));
  EXPECT_EQ(replies_.at("late").response.status, 200u);
  EXPECT_EQ(app_.reads, 2);  // one app read per client read
}

TEST_F(ReadsTest, LocalReadSkipsTheBarrierAndIsServedWhileNotServing) {
  Routes("GET /health local");
  app_.last_index = 7;
  Make();  // not started: the replica is "starting"
  auto reply = Read("/health");
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->response.status, 200u);
  EXPECT_EQ(reply->response.body, "read /health at 7");
  EXPECT_EQ(reply->index, 7);  // what the read connection was validated at
  ASSERT_TRUE(reply->read.has_value());
  EXPECT_EQ(*reply->read, ReadConsistency::kLocal);
  EXPECT_EQ(log_.committed_reads, 0);
  EXPECT_EQ(app_.read_min_indices, std::vector<int64_t>{0});
  EXPECT_EQ(Status().reads[1].Of(ReadOutcome::kServed), 1u);
}

TEST_F(ReadsTest, LinearizableReadOnAReplicaNotServingIs503) {
  Routes("GET /journal");
  app_.down = true;
  Make();
  replica_->Start();
  auto reply = Read("/journal");
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->response.status, 503u);
  EXPECT_EQ(reply->outcome, Outcome::kNotCommitted);
  EXPECT_NE(reply->response.body.find("needs a serving replica"), std::string::npos)
      << reply->response.body;
  EXPECT_EQ(log_.committed_reads, 0);
  EXPECT_EQ(app_.reads, 0);
  EXPECT_EQ(Status().reads[0].Of(ReadOutcome::kNotServing), 1u);
}

TEST_F(ReadsTest, BarrierFailureIs503AndNeverALocalAnswer) {
  Serve();
  log_.committed_error = Error{ErrorCode::kUnavailable, "fake: no quorum"};
  auto reply = Read("/journal");
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->response.status, 503u);
  EXPECT_EQ(reply->outcome, Outcome::kNotCommitted);
  EXPECT_EQ(reply->retry_after, 1);
  EXPECT_NE(reply->response.body.find("fake: no quorum"), std::string::npos);
  EXPECT_EQ(app_.reads, 1);  // the optimistic read, whose answer was not used
  auto s = Status();
  EXPECT_EQ(s.reads[0].Of(ReadOutcome::kLogUnavailable), 1u);
  EXPECT_EQ(s.read_barrier_failures, 1u);
  // The log is back: reads are served again.
  log_.committed_error.reset();
  replies_.clear();
  auto again = Read("/journal");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->response.status, 200u);
}

TEST_F(ReadsTest, AnAppThatRestartedBehindTheBarrierIsNotRead) {
  options_.heartbeat_interval = std::chrono::seconds(30);  // the replica has not noticed yet
  Serve();
  ASSERT_TRUE(Send("a").has_value());
  ASSERT_TRUE(Send("b").has_value());
  const int64_t applied = app_.last_index;
  app_.Restart();
  auto reply = Read("/journal");
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->response.status, 503u);
  EXPECT_EQ(reply->outcome, Outcome::kNotCommitted);
  EXPECT_NE(reply->response.body.find("reports index 0, below the " + std::to_string(applied)),
            std::string::npos)
      << reply->response.body;
  EXPECT_EQ(Status().reads[0].Of(ReadOutcome::kAppBehind), 1u);
}

TEST_F(ReadsTest, RequestsOffTheRoutesAreLogged) {
  Serve("GET /journal");
  ASSERT_TRUE(Send("x").has_value());  // POST /journal: logged
  replies_.clear();
  auto digest = Read("/journal/digest");  // not "GET /journal": logged too (a GET entry)
  ASSERT_TRUE(digest.has_value());
  EXPECT_EQ(digest->outcome, Outcome::kCommitted);
  EXPECT_FALSE(digest->read.has_value());
  auto routed = Read("/journal?x=1");  // the query is not part of the path
  ASSERT_TRUE(routed.has_value());
  EXPECT_EQ(routed->outcome, Outcome::kNone);
  EXPECT_EQ(log_.batch_sizes().size(), 2u);
  EXPECT_EQ(log_.committed_reads, 1);
}

TEST_F(ReadsTest, AReadTheAppDoesNotAnswerTimesOut) {
  options_.request_timeout = std::chrono::milliseconds(200);
  Serve();
  app_.hang_reads = true;
  auto reply = Read("/journal");
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->response.status, 504u);
  EXPECT_EQ(reply->outcome, Outcome::kNotCommitted);
  EXPECT_EQ(Status().reads[0].Of(ReadOutcome::kTimedOut), 1u);
  app_.ReleaseHungReads();  // a late answer is dropped
  ioc_.run_for(std::chrono::milliseconds(20));
  EXPECT_EQ(Status().pending_reads, 0u);
}

TEST_F(ReadsTest, LeavingServingAnswersTheReadsWaitingToApply) {
  Serve();
  app_.hang_forwards = true;
  log_.AddEntry("remote", EncodedBody("b", "remote"));
  ReadAsync("r", "/journal");
  ASSERT_TRUE(RunUntil([&] { return log_.committed_reads == 1; }));
  ioc_.run_for(std::chrono::milliseconds(20));
  ASSERT_FALSE(Answered("r"));
  // The app goes away under the forward: the replica recovers, and the read is not left waiting
  // for an index it cannot apply now.
  app_.down = true;
  app_.ReleaseHungForwards();
  ASSERT_TRUE(RunUntil([&] { return Answered("r"); }));
  EXPECT_EQ(replies_.at("r").response.status, 503u);
  EXPECT_EQ(replies_.at("r").outcome, Outcome::kNotCommitted);
}

TEST_F(ReadsTest, TooManyReadsAreRefused) {
  options_.max_pending_reads = 2;
  Serve();
  log_.hold_committed_reads = true;
  ReadAsync("r1", "/journal");
  ReadAsync("r2", "/journal");
  ReadAsync("r3", "/journal");
  ASSERT_TRUE(RunUntil([&] { return Answered("r3"); }));
  EXPECT_EQ(replies_.at("r3").response.status, 503u);
  EXPECT_EQ(Status().reads[0].Of(ReadOutcome::kOverloaded), 1u);
  log_.hold_committed_reads = false;
  log_.ReleaseCommittedReads();
  ASSERT_TRUE(RunUntil([&] { return Answered("r1") && Answered("r2"); }));
  EXPECT_EQ(replies_.at("r1").response.status, 200u);
  EXPECT_EQ(replies_.at("r2").response.status, 200u);
}

}  // namespace
}  // namespace k8shmir
