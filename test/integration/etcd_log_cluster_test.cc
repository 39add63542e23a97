// EtcdLog against real etcd (Debian's /usr/bin/etcd) on loopback: three members: failover, and the
// first endpoint the options name.
#include "integration/etcd_log_fixture.h"
#include "support/util.h"

namespace k8shmir {
namespace {

TEST(EtcdLogClusterTest, FailsOverWhenMembersDie) {
  testing::EtcdCluster etcd(3);
  etcd.Start();
  ASSERT_TRUE(WaitReady(EndpointList(etcd))) << "cluster did not start";

  // A dead endpoint first: it must not matter.
  auto endpoints = EndpointList(etcd);
  auto closed_port = testing::FreePort();
  endpoints.insert(endpoints.begin(), "127.0.0.1:" + std::to_string(closed_port));
  EtcdLog log(Options(endpoints, "g"));

  std::vector<std::string> ids;
  std::vector<int64_t> indices;
  auto append = [&](const std::string& id) {
    auto r = AppendSync(log, id, Value(id), 10s);
    ASSERT_TRUE(r.ok()) << id << ": " << r.error().message;
    ids.push_back(id);
    indices.push_back(r->first_index);
  };
  for (int i = 0; i < 3; ++i) append("before" + std::to_string(i));

  Collector c;
  auto sub = log.Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(3));

  // The log prefers the first member that works, m0 here: kill it (it may be the leader).
  etcd.KillMember(0);
  for (int i = 0; i < 3; ++i) append("after-m0" + std::to_string(i));
  auto head = HeadSync(log, 10s);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->last_index, indices.back());

  // Resubscribing from the last delivered index + 1 yields the rest, whichever member serves.
  std::vector<LogRecord> all = c.Records();
  if (c.Closed().has_value()) {
    EXPECT_EQ(c.Closed()->error.code, ErrorCode::kUnavailable);
  } else {
    ASSERT_TRUE(c.WaitRecords(6));
    all = c.Records();
  }
  if (all.size() < 6) {
    Collector c2;
    auto sub2 = log.Subscribe(all.back().index + 1, c2.Callback());
    ASSERT_TRUE(c2.WaitRecords(6 - all.size()));
    for (auto& r : c2.Records()) all.push_back(r);
  }
  ASSERT_EQ(all.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(all[i].id, ids[i]);
    EXPECT_EQ(all[i].index, indices[i]);
  }

  // Without a quorum nothing commits; the answer comes by the deadline.
  etcd.KillMember(1);
  auto started = Clock::now();
  auto no_quorum = AppendSync(log, "no-quorum", "x", 2000ms);
  ASSERT_FALSE(no_quorum.ok());
  EXPECT_TRUE(no_quorum.error().code == ErrorCode::kUnavailable ||
              no_quorum.error().code == ErrorCode::kUnknown)
      << no_quorum.error().message;
  EXPECT_LT(Clock::now() - started, 2500ms);

  // Back to a quorum: it works again, and the retried id gives one answer.
  etcd.StartMember(0);
  Result<AppendResult> retried = Error{ErrorCode::kUnavailable, "not tried"};
  auto until = Clock::now() + 30s;
  while (Clock::now() < until) {
    retried = AppendSync(log, "no-quorum", "x", 2000ms);
    if (retried.ok()) break;
  }
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  EXPECT_GT(retried->first_index, indices.back());
}

// The endpoint tried first is the one the options name: with member 0 hung (connections open,
// nothing answers) and attempts longer than the deadline, a log that starts with member 0 cannot
// append in time; one that starts with member 1 appends and watches as if nothing happened.
TEST(EtcdLogClusterTest, TheFirstEndpointIsTheOneTheOptionsName) {
  testing::EtcdCluster etcd(3);
  etcd.Start();
  // Member 0 itself must answer: a log whose first endpoint is not up yet moves on at once.
  ASSERT_TRUE(WaitReady({etcd.Endpoint(0)})) << "member 0 did not start";
  EtcdLogOptions starts_at_1 = Options(EndpointList(etcd), "g");
  starts_at_1.rpc_timeout = 20s;
  starts_at_1.first_endpoint = 4;  // modulo 3: member 1
  EtcdLogOptions starts_at_0 = starts_at_1;
  starts_at_0.first_endpoint = 0;
  EtcdLog log(starts_at_1);
  EtcdLog control(starts_at_0);
  // Both connected and used once: each now prefers the endpoint that answered, its first.
  ASSERT_TRUE(AppendSync(log, "warm-1", Value("warm-1"), 10s).ok());
  ASSERT_TRUE(AppendSync(control, "warm-0", Value("warm-0"), 10s).ok());

  PauseMember(etcd, 0);
  // Member 0 may have been the leader: the others elect a new one within about a second.
  auto r = AppendSync(log, "via-1", Value("via-1"), 10s);
  auto stalled = AppendSync(control, "via-0", Value("via-0"), 2s);
  ResumeMember(etcd, 0);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(stalled.ok());
  EXPECT_TRUE(stalled.error().code == ErrorCode::kUnknown ||
              stalled.error().code == ErrorCode::kUnavailable)
      << stalled.error().message;

  Collector c;
  auto sub = log.Subscribe(r->first_index, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));
  EXPECT_EQ(c.Records()[0].id, "via-1");
  EXPECT_EQ(c.Records()[0].index, r->first_index);
}

// Range calls member i has answered (its gRPC server metrics).
double RangesServed(testing::EtcdCluster& etcd, int i) {
  const testing::HttpResult metrics =
      testing::Http(etcd.HealthPort(i), "GET", "/metrics", "", {}, 5s);
  return testing::MetricSum(metrics.body, "grpc_server_handled_total", "grpc_method=\"Range\"");
}

// Read barriers go to etcd's leader (it serves a ReadIndex without a follower's forward), while
// every other call keeps to the member this process prefers; when the leader dies, barriers
// follow the new one.
TEST(EtcdLogClusterTest, BarriersGoToTheLeaderAndFollowItWhenItChanges) {
  testing::EtcdCluster etcd(3);
  etcd.Start();
  ASSERT_TRUE(WaitReady(EndpointList(etcd))) << "cluster did not start";
  const int leader = etcd.LeaderIndex();
  const int follower = (leader + 1) % 3;
  // The follower first: the member this log prefers.
  std::vector<std::string> endpoints = {etcd.Endpoint(follower), etcd.Endpoint((leader + 2) % 3),
                                        etcd.Endpoint(leader)};
  EtcdLog log(Options(endpoints, "g"));
  auto appended = AppendSync(log, "a", Value("a"), 10s);
  ASSERT_TRUE(appended.ok()) << appended.error().message;
  ASSERT_TRUE(testing::WaitFor(
      [&] { return log.ClientStats().leader_endpoint == etcd.Endpoint(leader); }, 10s))
      << "leader endpoint learnt: '" << log.ClientStats().leader_endpoint << "'";

  const double leader_before = RangesServed(etcd, leader);
  const double follower_before = RangesServed(etcd, follower);
  ASSERT_GE(leader_before, 0) << "no grpc_server_handled_total for Range on the leader";
  for (int i = 0; i < 20; ++i) {
    auto index = CommittedIndexSync(log);
    ASSERT_TRUE(index.ok()) << index.error().message;
    EXPECT_EQ(*index, appended->first_index);
  }
  EXPECT_GE(RangesServed(etcd, leader) - leader_before, 20);
  EXPECT_EQ(RangesServed(etcd, follower) - std::max(follower_before, 0.0), 0);
  // The preference did not move to the leader: appends and reads of the log still go there.
  EXPECT_EQ(log.ClientStats().endpoint, etcd.Endpoint(follower));

  etcd.KillMember(leader);
  int new_leader = -1;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        new_leader = etcd.LeaderIndex(1s);
        return new_leader >= 0 && new_leader != leader &&
               log.ClientStats().leader_endpoint == etcd.Endpoint(new_leader);
      },
      20s))
      << "new leader " << new_leader << ", learnt '" << log.ClientStats().leader_endpoint << "'";
  const double new_leader_before = RangesServed(etcd, new_leader);
  for (int i = 0; i < 5; ++i) {
    auto index = CommittedIndexSync(log, 5s);
    ASSERT_TRUE(index.ok()) << index.error().message;
    EXPECT_EQ(*index, appended->first_index);
  }
  EXPECT_GE(RangesServed(etcd, new_leader) - new_leader_before, 5);
}

}  // namespace
}  // namespace k8shmir
