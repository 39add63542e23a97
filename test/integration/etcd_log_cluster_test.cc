// EtcdLog against real etcd (Debian's /usr/bin/etcd) on loopback: three members: failover, and the
// first endpoint the options name.
#include "integration/etcd_log_fixture.h"

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

}  // namespace
}  // namespace k8shmir
