#include "log/group_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace k8shmir {
namespace {

TEST(GroupFormat, KeysOfAGroup) {
  EXPECT_EQ(GroupRootOf("/k8shmir/g/log/"), "/k8shmir/g/");
  EXPECT_EQ(GroupFormatKey("/k8shmir/g/log/"), "/k8shmir/g/format");
  EXPECT_EQ(ReplicaRegistryPrefix("/k8shmir/g/log/"), "/k8shmir/g/replicas/");
  EXPECT_EQ(SnapshotTakerKey("/k8shmir/g/log/"), "/k8shmir/g/snapshot-taker");
}

TEST(GroupFormat, FormatMarkerRoundTrip) {
  auto format = ParseGroupFormat(EncodeGroupFormat(1));
  ASSERT_TRUE(format) << format.error().message;
  EXPECT_EQ(*format, 1);
  EXPECT_EQ(ParseGroupFormat("{\"format\": 0}").error().code, ErrorCode::kProtocol);
  EXPECT_EQ(ParseGroupFormat("nope").error().code, ErrorCode::kProtocol);
}

TEST(GroupFormat, ReplicaRecordRoundTripWithEveryField) {
  ReplicaRecord in;
  in.replica_id = "r-1";
  in.state = "serving";
  in.applied_index = 1234567;
  in.last_snapshot_index = 1000;
  in.app_snapshots = true;
  in.updated_unix_ms = 1700000000123;
  in.lag_entries = 42;
  in.last_error = "app: connection refused";
  in.last_error_unix_ms = 1700000000001;
  in.app_pipelining = true;

  auto out = ParseReplicaRecord(EncodeReplicaRecord(in));
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->replica_id, "r-1");
  EXPECT_EQ(out->state, "serving");
  EXPECT_EQ(out->applied_index, 1234567);
  EXPECT_EQ(out->last_snapshot_index, 1000);
  EXPECT_TRUE(out->app_snapshots);
  EXPECT_EQ(out->updated_unix_ms, 1700000000123);
  EXPECT_EQ(out->lag_entries, std::optional<uint64_t>(42));
  EXPECT_EQ(out->last_error, "app: connection refused");
  EXPECT_EQ(out->last_error_unix_ms, 1700000000001);
  EXPECT_EQ(out->app_pipelining, std::optional<bool>(true));
}

TEST(GroupFormat, ZeroLagAndNoPipeliningAreKnownValues) {
  ReplicaRecord in;
  in.replica_id = "r";
  in.state = "catching-up";
  in.lag_entries = 0;
  in.app_pipelining = false;
  auto out = ParseReplicaRecord(EncodeReplicaRecord(in));
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->lag_entries, std::optional<uint64_t>(0));
  EXPECT_EQ(out->app_pipelining, std::optional<bool>(false));
  EXPECT_EQ(out->last_error, "");
  EXPECT_EQ(out->last_error_unix_ms, 0);
}

// Exactly what proxies before lag_entries, last_error and app_pipelining wrote.
TEST(GroupFormat, RecordOfAnOlderProxyParsesWithTheNewFieldsUnknown) {
  const char* old = R"({"app_snapshots":false,"applied_index":512,"last_snapshot_index":0,)"
                    R"("replica_id":"old-1","state":"serving","updated_unix_ms":1699999999999})";
  auto out = ParseReplicaRecord(old);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->replica_id, "old-1");
  EXPECT_EQ(out->state, "serving");
  EXPECT_EQ(out->applied_index, 512);
  EXPECT_FALSE(out->app_snapshots);
  EXPECT_EQ(out->updated_unix_ms, 1699999999999);
  EXPECT_EQ(out->lag_entries, std::nullopt);
  EXPECT_EQ(out->app_pipelining, std::nullopt);
  EXPECT_EQ(out->last_error, "");
  EXPECT_EQ(out->last_error_unix_ms, 0);
}

// An older proxy reads a newer record: the fields it knows are where they were.
TEST(GroupFormat, NewRecordKeepsTheOldFieldsForOlderProxies) {
  ReplicaRecord in;
  in.replica_id = "new-1";
  in.state = "serving";
  in.applied_index = 7;
  in.lag_entries = 3;
  auto json = nlohmann::json::parse(EncodeReplicaRecord(in));
  EXPECT_EQ(json["replica_id"], "new-1");
  EXPECT_EQ(json["state"], "serving");
  EXPECT_EQ(json["applied_index"], 7);
  EXPECT_EQ(json["last_snapshot_index"], 0);
  EXPECT_EQ(json["app_snapshots"], false);
  EXPECT_EQ(json["updated_unix_ms"], 0);
  EXPECT_EQ(json["lag_entries"], 3);
}

TEST(GroupFormat, MalformedRecordsAreRefused) {
  const std::string base = R"("app_snapshots":false,"applied_index":1,"last_snapshot_index":0,)"
                           R"("replica_id":"r","state":"serving","updated_unix_ms":1)";
  EXPECT_TRUE(ParseReplicaRecord("{" + base + "}"));
  for (const std::string extra :
       {R"("lag_entries":-1)", R"("lag_entries":"3")", R"("last_error":5)",
        R"("last_error_unix_ms":"x")", R"("app_pipelining":1)"}) {
    auto r = ParseReplicaRecord("{" + base + "," + extra + "}");
    ASSERT_FALSE(r) << extra;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << extra;
  }
  EXPECT_FALSE(ParseReplicaRecord(R"({"replica_id":"r","state":"serving"})"));
  EXPECT_FALSE(ParseReplicaRecord("[]"));
  EXPECT_FALSE(ParseReplicaRecord("not json"));
}

}  // namespace
}  // namespace k8shmir
