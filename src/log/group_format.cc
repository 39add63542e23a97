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
  nlohmann::json json{
      {"replica_id", record.replica_id},       {"state", record.state},
      {"applied_index", record.applied_index}, {"last_snapshot_index", record.last_snapshot_index},
      {"app_snapshots", record.app_snapshots}, {"updated_unix_ms", record.updated_unix_ms},
      {"last_error", record.last_error},       {"last_error_unix_ms", record.last_error_unix_ms}};
  if (record.lag_entries) json["lag_entries"] = *record.lag_entries;
  if (record.app_pipelining) json["app_pipelining"] = *record.app_pipelining;
  return json.dump();
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
  // Fields added later are optional (older proxies do not write them), but a present one of the
  // wrong type makes the record malformed like any other field.
  if (auto it = json.find("lag_entries"); it != json.end()) {
    if (!it->is_number_unsigned()) return bad();
    record.lag_entries = it->get<uint64_t>();
  }
  if (auto it = json.find("last_error"); it != json.end()) {
    if (!it->is_string()) return bad();
    record.last_error = it->get<std::string>();
  }
  if (json.contains("last_error_unix_ms") &&
      !get_int("last_error_unix_ms", record.last_error_unix_ms)) {
    return bad();
  }
  if (auto it = json.find("app_pipelining"); it != json.end()) {
    if (!it->is_boolean()) return bad();
    record.app_pipelining = it->get<bool>();
  }
  return record;
}

}  // namespace k8shmir
