#include "log/group_format.h"

#include <nlohmann/json.hpp>

namespace k8shmir {

std::string GroupRootOf(std::string_view log_prefix) {
  std::string_view p = log_prefix;
  if (!p.empty() && p.back() == '/') p.remove_suffix(1);
  const auto slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? std::string_view() : p.substr(0, slash + 1));
}

std::string GroupFormatKey(std::string_view log_prefix) {
  return GroupRootOf(log_prefix) + "format";
}

std::string ReplicaRegistryPrefix(std::string_view log_prefix) {
  return GroupRootOf(log_prefix) + "replicas/";
}

std::string SnapshotTakerKey(std::string_view log_prefix) {
  return GroupRootOf(log_prefix) + "snapshot-taker";
}

std::string EncodeGroupFormat(int format) { return nlohmann::json{{"format", format}}.dump(); }

Result<int> ParseGroupFormat(std::string_view value) {
  auto json = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (json.is_object()) {
    auto it = json.find("format");
    if (it != json.end() && it->is_number_integer() && it->get<int64_t>() > 0 &&
        it->get<int64_t>() < 1000000) {
      return static_cast<int>(it->get<int64_t>());
    }
  }
  return Error{ErrorCode::kProtocol, "the group's format marker is not {\"format\": N}: " +
                                         std::string(value.substr(0, 200))};
}

std::string EncodeReplicaRecord(const ReplicaRecord& record) {
  return nlohmann::json{
      {"replica_id", record.replica_id},       {"state", record.state},
      {"applied_index", record.applied_index}, {"last_snapshot_index", record.last_snapshot_index},
      {"app_snapshots", record.app_snapshots}, {"updated_unix_ms", record.updated_unix_ms}}
      .dump();
}

Result<ReplicaRecord> ParseReplicaRecord(std::string_view value) {
  auto json = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  auto bad = [&] {
    return Error{ErrorCode::kProtocol,
                 "not a replica record: " + std::string(value.substr(0, 200))};
  };
  if (!json.is_object()) return bad();
  ReplicaRecord record;
  auto get_int = [&](const char* name, int64_t& out) {
    auto it = json.find(name);
    if (it == json.end() || !it->is_number_integer()) return false;
    out = it->get<int64_t>();
    return true;
  };
  auto id = json.find("replica_id");
  auto state = json.find("state");
  auto snapshots = json.find("app_snapshots");
  if (id == json.end() || !id->is_string() || state == json.end() || !state->is_string() ||
      snapshots == json.end() || !snapshots->is_boolean() ||
      !get_int("applied_index", record.applied_index) ||
      !get_int("last_snapshot_index", record.last_snapshot_index) ||
      !get_int("updated_unix_ms", record.updated_unix_ms)) {
    return bad();
  }
  record.replica_id = id->get<std::string>();
  record.state = state->get<std::string>();
  record.app_snapshots = snapshots->get<bool>();
  return record;
}

}  // namespace k8shmir
