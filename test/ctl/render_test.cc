#include "ctl/render.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ctl/assess.h"
#include "ctl/options.h"
#include "ctl_fixtures.h"

namespace k8shmir::ctl {
namespace {

using nlohmann::json;

const Thresholds kThresholds{1000, 6000};

json StatusJson(const GroupReport& r) {
  return json::parse(RenderStatusJson(r, Assess(r, kThresholds)));
}

TEST(RenderJson, StatusOfAHealthyGroup) {
  json j = StatusJson(HealthyReport());
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["verdict"], "healthy");
  EXPECT_EQ(j["problems"], json::array());
  EXPECT_EQ(j["k8shmirctl_version"], CtlVersionNumber());
  EXPECT_EQ(j["group"], "demo");
  EXPECT_EQ(j["time_unix_ms"], kNow);
  EXPECT_EQ(j["group_read"], true);
  EXPECT_EQ(j["group_error"], nullptr);
  EXPECT_EQ(j["serializable_read"], false);
  EXPECT_EQ(j["format"], 1);
  EXPECT_EQ(j["snapshot_taker"], "r-0");
  ASSERT_EQ(j["replicas"].size(), 3u);
  const json& r0 = j["replicas"][0];
  EXPECT_EQ(r0, json::parse(R"({"id":"r-0","state":"serving","serving":true,
      "applied_index":5120,"lag_entries":0,"behind_index":0,"last_error":null,
      "last_error_unix_ms":null,"last_error_age_ms":null,"app_pipelining":true,
      "app_snapshots":true,"last_snapshot_index":256,"snapshot_taker":true,
      "updated_unix_ms":1700000098500,"record_age_ms":1500})"));
  EXPECT_EQ(j["replicas"][1]["snapshot_taker"], false);
  EXPECT_EQ(j["log"], json::parse(R"({"prefix":"/k8shmir/demo/log/","revision":25,
      "last_index":5120,"first_index":1024,"committed_index":5120,"trimmed_index":300,
      "keys":17,"bytes":null})"));
  EXPECT_EQ(j["snapshots"], json::parse(R"([{"index":4096,"error":null,"size_bytes":1536,
      "chunks":1,"taker":"r-0","taken_unix_ms":1700000035000,"age_ms":65000}])"));
  const json& etcd = j["etcd"];
  EXPECT_EQ(etcd["leader_id"], "a1");
  EXPECT_EQ(etcd["quota_bytes"], int64_t{2} << 30);
  EXPECT_EQ(etcd["db_size_bytes"], 2 * 1024 * 1024);
  EXPECT_EQ(etcd["alarms"], json::array());
  ASSERT_EQ(etcd["members"].size(), 3u);
  EXPECT_EQ(etcd["members"][1], json::parse(R"({"id":"b2","name":"m1",
      "client_urls":["http://127.0.0.1:2381"],"is_learner":false})"));
  ASSERT_EQ(etcd["endpoints"].size(), 3u);
  EXPECT_EQ(etcd["endpoints"][0], json::parse(R"({"endpoint":"127.0.0.1:2379","reachable":true,
      "error":null,"member_id":"a1","leader_id":"a1","is_leader":true,"version":"3.4.23",
      "db_size_bytes":2097152,"db_size_in_use_bytes":1048576,"raft_term":2,"raft_index":100,
      "is_learner":false,"errors":[]})"));
  EXPECT_EQ(etcd["endpoints"][1]["is_leader"], false);
}

TEST(RenderJson, UnknownValuesAreNull) {
  GroupReport r = HealthyReport();
  r.replicas[0].lag_entries.reset();
  r.replicas[0].app_pipelining.reset();
  r.replicas[1].state = "app-not-answering";
  r.replicas[1].last_error = "app: timed out";
  r.replicas[1].last_error_unix_ms = kNow - 2500;
  r.replicas[1].applied_index = 4000;
  r.log.bytes = 123456;
  r.etcd.quota_bytes = 0;
  r.etcd.alarms_known = false;
  r.etcd.endpoints[2].reachable = false;
  r.etcd.endpoints[2].error = "etcd endpoint 127.0.0.1:2383: no answer within 5000 ms";
  json j = StatusJson(r);
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["verdict"], "degraded");
  EXPECT_EQ(j["problems"], json::parse(R"(["replica r-1 is app-not-answering: app: timed out",
      "etcd endpoint 127.0.0.1:2383: no answer within 5000 ms"])"));
  EXPECT_EQ(j["replicas"][0]["lag_entries"], nullptr);
  EXPECT_EQ(j["replicas"][0]["app_pipelining"], nullptr);
  EXPECT_EQ(j["replicas"][1]["serving"], false);
  EXPECT_EQ(j["replicas"][1]["behind_index"], 1120);
  EXPECT_EQ(j["replicas"][1]["last_error"], "app: timed out");
  EXPECT_EQ(j["replicas"][1]["last_error_unix_ms"], kNow - 2500);
  EXPECT_EQ(j["replicas"][1]["last_error_age_ms"], 2500);
  EXPECT_EQ(j["log"]["bytes"], 123456);
  EXPECT_EQ(j["etcd"]["quota_bytes"], nullptr);
  EXPECT_EQ(j["etcd"]["alarms"], nullptr);
  EXPECT_EQ(j["etcd"]["endpoints"][2],
            json::parse(R"({"endpoint":"127.0.0.1:2383","reachable":false,
                "error":"etcd endpoint 127.0.0.1:2383: no answer within 5000 ms"})"));
}

TEST(RenderJson, Groups) {
  GroupsReport g;
  g.read = true;
  g.now_unix_ms = kNow;
  g.etcd = HealthyReport().etcd;
  g.groups = {{"a", 1, 3, 5120, 17}, {"b", std::nullopt, 0, 0, 0}};
  json j = json::parse(RenderGroupsJson(g, AssessGroups(g)));
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["groups"], json::parse(R"([
      {"name":"a","format":1,"replicas":3,"log_keys":17,"last_index":5120},
      {"name":"b","format":null,"replicas":0,"log_keys":0,"last_index":0}])"));
  EXPECT_EQ(j["etcd"]["leader_id"], "a1");
}

TEST(RenderText, StatusShowsEveryPart) {
  GroupReport r = HealthyReport();
  r.replicas[2].state = "recovering";
  r.replicas[2].last_error = "app: Connection refused";
  r.replicas[2].last_error_unix_ms = kNow - 12000;
  r.replicas[2].lag_entries.reset();
  const std::string text = RenderStatusText(r, Assess(r, kThresholds));
  EXPECT_EQ(text.rfind("group demo: DEGRADED (exit 1)\n"
                       "  - replica r-2 is recovering: app: Connection refused\n",
                       0),
            0u)
      << text;
  EXPECT_NE(text.find("\n  r-0 *               serving               5120          0      0  "
                      "       yes        yes       1s         -\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  r-2                 recovering            5120          ?      0  "
                      "       yes        yes       1s         app: Connection refused (12s "
                      "ago)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  revision 25, last index 5120 (committed head 5120)\n"
                      "  retained: index 1024 to 5120, trimmed through 300; 17 keys, bytes not "
                      "measured (--log-bytes)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  index 4096          1.5 KiB    taken 1m05s ago by r-0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nETCD: 3 of 3 endpoints answered, leader a1, 3 members\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  127.0.0.1:2379          m0                self    3.4.23   2.0 MiB    "
                      "1.0 MiB    2/100\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  database: largest 2.0 MiB of 2.0 GiB quota (0%;"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  alarms: none\n"), std::string::npos) << text;
}

TEST(RenderText, Groups) {
  GroupsReport g;
  g.read = true;
  g.etcd = HealthyReport().etcd;
  g.groups = {{"demo", 1, 3, 5120, 17}};
  EXPECT_EQ(RenderGroupsText(g, AssessGroups(g)),
            "GROUP                         FORMAT  REPLICAS  LOG KEYS  LAST INDEX\n"
            "demo                          1       3         17        5120\n");
  g.groups.clear();
  EXPECT_EQ(RenderGroupsText(g, AssessGroups(g)), "no k8shmir groups on this etcd\n");
}

TEST(Human, BytesAndAges) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(int64_t{2} << 30), "2.0 GiB");
  EXPECT_EQ(HumanAge(850), "850ms");
  EXPECT_EQ(HumanAge(12000), "12s");
  EXPECT_EQ(HumanAge(185000), "3m05s");
  EXPECT_EQ(HumanAge(7800000), "2h10m");
  EXPECT_EQ(HumanAge(273600000), "3d4h");
  EXPECT_EQ(MemberIdHex(0x8e9e05c52164694dULL), "8e9e05c52164694d");
}

}  // namespace
}  // namespace k8shmir::ctl
