#include <nlohmann/json.hpp>

#include "ctl/options.h"
#include "ctl/render.h"

namespace k8shmir::ctl {
namespace {

using nlohmann::json;

json Optional(const std::optional<uint64_t>& v) { return v ? json(*v) : json(nullptr); }
json Optional(const std::optional<bool>& v) { return v ? json(*v) : json(nullptr); }
json Optional(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }
json Optional(const std::optional<int>& v) { return v ? json(*v) : json(nullptr); }

json VerdictJson(const Verdict& v) {
  return {{"exit_code", v.exit_code}, {"verdict", v.name}, {"problems", v.problems}};
}

json EtcdJson(const EtcdHealth& etcd) {
  json endpoints = json::array();
  int64_t largest = 0;
  for (const auto& e : etcd.endpoints) {
    json j{{"endpoint", e.endpoint}, {"reachable", e.reachable}};
    if (!e.reachable) {
      j["error"] = e.error;
    } else {
      largest = std::max(largest, e.db_size);
      j.update({{"error", nullptr},
                {"member_id", MemberIdHex(e.member_id)},
                {"leader_id", e.leader == 0 ? json(nullptr) : json(MemberIdHex(e.leader))},
                {"is_leader", e.leader != 0 && e.leader == e.member_id},
                {"version", e.version},
                {"db_size_bytes", e.db_size},
                {"db_size_in_use_bytes", e.db_size_in_use},
                {"raft_term", e.raft_term},
                {"raft_index", e.raft_index},
                {"is_learner", e.is_learner},
                {"errors", e.errors}});
    }
    endpoints.push_back(std::move(j));
  }
  json members = nullptr;
  if (etcd.members_known) {
    members = json::array();
    for (const auto& m : etcd.members) {
      members.push_back({{"id", MemberIdHex(m.id)},
                         {"name", m.name},
                         {"client_urls", m.client_urls},
                         {"is_learner", m.is_learner}});
    }
  }
  json alarms = nullptr;
  if (etcd.alarms_known) {
    alarms = json::array();
    for (const auto& a : etcd.alarms) {
      alarms.push_back({{"member_id", MemberIdHex(a.member_id)}, {"alarm", a.alarm}});
    }
  }
  const uint64_t leader = AgreedLeader(etcd);
  return {{"endpoints", std::move(endpoints)},
          {"members", std::move(members)},
          {"leader_id", leader == 0 ? json(nullptr) : json(MemberIdHex(leader))},
          {"alarms", std::move(alarms)},
          {"db_size_bytes", largest},
          {"quota_bytes", etcd.quota_bytes > 0 ? json(etcd.quota_bytes) : json(nullptr)}};
}

}  // namespace

std::string RenderStatusJson(const GroupReport& r, const Verdict& v) {
  json out = VerdictJson(v);
  out["k8shmirctl_version"] = CtlVersionNumber();
  out["group"] = r.group;
  out["time_unix_ms"] = r.now_unix_ms;
  out["group_read"] = r.group_read;
  out["group_error"] = r.group_read ? json(nullptr) : json(r.group_error);
  out["serializable_read"] = r.serializable;
  out["format"] = Optional(r.format);
  json replicas = json::array();
  for (const auto& rep : r.replicas) {
    replicas.push_back(
        {{"id", rep.replica_id},
         {"state", rep.state},
         {"serving", rep.state == "serving"},
         {"applied_index", rep.applied_index},
         {"lag_entries", Optional(rep.lag_entries)},
         {"behind_index", std::max<int64_t>(0, r.log.last_index - rep.applied_index)},
         {"last_error", rep.last_error.empty() ? json(nullptr) : json(rep.last_error)},
         {"last_error_unix_ms",
          rep.last_error_unix_ms > 0 ? json(rep.last_error_unix_ms) : json(nullptr)},
         {"last_error_age_ms", rep.last_error_unix_ms > 0
                                   ? json(AgeMs(r.now_unix_ms, rep.last_error_unix_ms))
                                   : json(nullptr)},
         {"app_pipelining", Optional(rep.app_pipelining)},
         {"app_snapshots", rep.app_snapshots},
         {"last_snapshot_index", rep.last_snapshot_index},
         {"snapshot_taker", rep.replica_id == r.snapshot_taker},
         {"updated_unix_ms", rep.updated_unix_ms},
         {"record_age_ms", AgeMs(r.now_unix_ms, rep.updated_unix_ms)}});
  }
  out["replicas"] = std::move(replicas);
  out["malformed_records"] = r.malformed_records;
  out["snapshot_taker"] = r.snapshot_taker.empty() ? json(nullptr) : json(r.snapshot_taker);
  out["log"] = {{"prefix", "/k8shmir/" + r.group + "/log/"},
                {"revision", r.log.revision},
                {"last_index", r.log.last_index},
                {"first_index", r.log.first_index},
                {"committed_index", r.log.committed_index},
                {"trimmed_index", r.log.trimmed_index},
                {"keys", r.log.keys},
                {"bytes", Optional(r.log.bytes)}};
  json snapshots = json::array();
  for (const auto& s : r.snapshots) {
    json j{{"index", s.index}, {"error", s.error.empty() ? json(nullptr) : json(s.error)}};
    if (s.error.empty()) {
      j.update({{"size_bytes", s.size},
                {"chunks", s.chunks},
                {"taker", s.taker},
                {"taken_unix_ms", s.taken_unix_ms},
                {"age_ms", AgeMs(r.now_unix_ms, s.taken_unix_ms)}});
    }
    snapshots.push_back(std::move(j));
  }
  out["snapshots"] = std::move(snapshots);
  out["etcd"] = EtcdJson(r.etcd);
  return out.dump() + "\n";
}

std::string RenderGroupsJson(const GroupsReport& r, const Verdict& v) {
  json out = VerdictJson(v);
  out["time_unix_ms"] = r.now_unix_ms;
  json groups = json::array();
  for (const auto& g : r.groups) {
    groups.push_back({{"name", g.name},
                      {"format", Optional(g.format)},
                      {"replicas", g.replicas},
                      {"log_keys", g.keys},
                      {"last_index", g.last_index}});
  }
  out["groups"] = r.read ? std::move(groups) : json(nullptr);
  out["etcd"] = EtcdJson(r.etcd);
  return out.dump() + "\n";
}

}  // namespace k8shmir::ctl
