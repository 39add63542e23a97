#include "ctl/assess.h"

#include <gtest/gtest.h>

#include "ctl_fixtures.h"

namespace k8shmir::ctl {
namespace {

const Thresholds kThresholds{1000, 6000};

TEST(Assess, HealthyGroupExitsZero) {
  Verdict v = Assess(HealthyReport(), kThresholds);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.name, "healthy");
  EXPECT_TRUE(v.problems.empty());
}

TEST(Assess, ReplicaNotServingIsDegradedAndNamed) {
  GroupReport r = HealthyReport();
  r.replicas[1].state = "recovering";
  r.replicas[1].last_error = "app: Connection refused";
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.name, "degraded");
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0], "replica r-1 is recovering: app: Connection refused");
}

TEST(Assess, LagAboveTheThresholdIsDegraded) {
  GroupReport r = HealthyReport();
  r.replicas[2].lag_entries = 1000;
  EXPECT_EQ(Assess(r, kThresholds).exit_code, 0);  // at the threshold: fine
  r.replicas[2].lag_entries = 1001;
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0], "replica r-2 lags 1001 entries (more than 1000)");
}

TEST(Assess, OlderProxyWithoutLagIsNotDegraded) {
  GroupReport r = HealthyReport();
  r.replicas[0].lag_entries.reset();
  r.replicas[0].app_pipelining.reset();
  EXPECT_EQ(Assess(r, kThresholds).exit_code, 0);
}

TEST(Assess, StaleRecordIsDegraded) {
  GroupReport r = HealthyReport();
  r.replicas[0].updated_unix_ms = kNow - 6000;
  EXPECT_EQ(Assess(r, kThresholds).exit_code, 0);
  r.replicas[0].updated_unix_ms = kNow - 9500;
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0],
            "replica r-0's record is 9 s old (its proxy stopped refreshing it, or clocks differ)");
}

TEST(Assess, NoEndpointAnsweredIsUnreachableWithEachEndpointsError) {
  GroupReport r = HealthyReport();
  for (auto& e : r.etcd.endpoints) {
    e.reachable = false;
    e.error = "etcd endpoint " + e.endpoint + ": UNAVAILABLE: connection refused";
  }
  r.group_read = false;
  r.group_error = "no etcd endpoint answered";
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 2);
  EXPECT_EQ(v.name, "unreachable");
  ASSERT_EQ(v.problems.size(), 3u);
  EXPECT_EQ(v.problems[0], "etcd endpoint 127.0.0.1:2379: UNAVAILABLE: connection refused");
}

TEST(Assess, OneEndpointDownIsDegraded) {
  GroupReport r = HealthyReport();
  r.etcd.endpoints[2].reachable = false;
  r.etcd.endpoints[2].error = "etcd endpoint 127.0.0.1:2383: no answer within 5000 ms";
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0], "etcd endpoint 127.0.0.1:2383: no answer within 5000 ms");
}

TEST(Assess, UnknownGroupExitsThree) {
  GroupReport r = HealthyReport();
  r.format.reset();
  r.replicas.clear();
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 3);
  EXPECT_EQ(v.name, "unknown-group");
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0],
            "group 'demo' not found: no /k8shmir/demo/format marker and no replica registered");
}

TEST(Assess, GroupWithAMarkerButNoReplicaIsDegradedNotUnknown) {
  GroupReport r = HealthyReport();
  r.replicas.clear();
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0].rfind("no replica registered", 0), 0u);
}

TEST(Assess, ReplicasWithoutAMarkerAreAGroup) {
  GroupReport r = HealthyReport();
  r.format.reset();
  EXPECT_EQ(Assess(r, kThresholds).exit_code, 0);
}

TEST(Assess, AlarmsAndMissingLeaderAreDegraded) {
  GroupReport r = HealthyReport();
  r.etcd.alarms = {{0xb2, "NOSPACE"}};
  r.etcd.endpoints[2].leader = 0;
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 2u);
  EXPECT_EQ(v.problems[0], "etcd member c3 (127.0.0.1:2383) has no leader");
  EXPECT_EQ(v.problems[1], "etcd alarm NOSPACE on member b2");
}

TEST(Assess, MembersDisagreeingOnTheLeaderIsDegraded) {
  GroupReport r = HealthyReport();
  r.etcd.endpoints[1].leader = 0xb2;
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0], "etcd members disagree on the leader (an election in progress?)");
  EXPECT_EQ(AgreedLeader(r.etcd), 0u);
  EXPECT_EQ(AgreedLeader(HealthyReport().etcd), 0xa1u);
}

TEST(Assess, DatabaseNearItsQuotaIsDegraded) {
  GroupReport r = HealthyReport();
  r.etcd.quota_bytes = 100;
  r.etcd.endpoints[0].db_size = 79;
  r.etcd.endpoints[1].db_size = 79;
  r.etcd.endpoints[2].db_size = 80;
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0],
            "etcd member c3 database is 80 bytes, 80% of the quota (compact and defragment, or "
            "raise --quota-backend-bytes)");
  r.etcd.quota_bytes = 0;  // unknown: nothing to compare with
  EXPECT_EQ(Assess(r, kThresholds).exit_code, 0);
}

TEST(Assess, UnreadableGroupWithEtcdUpIsDegraded) {
  GroupReport r = HealthyReport();
  r.group_read = false;
  r.group_error = "etcd endpoint 127.0.0.1:2379: no answer within 5000 ms";
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0],
            "the group's keys could not be read: etcd endpoint 127.0.0.1:2379: no answer within "
            "5000 ms");
}

TEST(Assess, OtherFormatMalformedRecordsAndStaleReadsAreDegraded) {
  GroupReport r = HealthyReport();
  r.format = 2;
  r.malformed_records = {"/k8shmir/demo/replicas/x: not a replica record: {}"};
  r.serializable = true;
  Verdict v = Assess(r, kThresholds);
  EXPECT_EQ(v.exit_code, 1);
  ASSERT_EQ(v.problems.size(), 3u);
  EXPECT_EQ(v.problems[0],
            "malformed replica record /k8shmir/demo/replicas/x: not a replica record: {}");
  EXPECT_EQ(v.problems[1], "the group is in format 2, this k8shmirctl knows format 1");
  EXPECT_EQ(v.problems[2], "read from one member's copy: no leader confirmed it (may be stale)");
}

TEST(AssessGroups, HealthyUnreachableAndDegraded) {
  GroupsReport g;
  g.read = true;
  g.etcd = HealthyReport().etcd;
  EXPECT_EQ(AssessGroups(g).exit_code, 0);
  g.etcd.alarms = {{0xa1, "CORRUPT"}};
  EXPECT_EQ(AssessGroups(g).exit_code, 1);
  for (auto& e : g.etcd.endpoints) e.reachable = false;
  EXPECT_EQ(AssessGroups(g).exit_code, 2);
}

TEST(AgeMs, NeverNegative) {
  EXPECT_EQ(AgeMs(1000, 400), 600);
  EXPECT_EQ(AgeMs(1000, 1400), 0);
}

}  // namespace
}  // namespace k8shmir::ctl
