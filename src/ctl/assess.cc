#include "ctl/assess.h"

#include <algorithm>
#include <cstdio>

#include "k8shmir/group_registry.h"

namespace k8shmir::ctl {
namespace {

std::string Hex(uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(id));
  return buf;
}

// Degraded at 80%, where the chart's K8shmirEtcdDatabaseNearQuota alert fires: etcd refuses every
// write (NOSPACE) at 100%, and compaction frees history only after the fact.
constexpr double kQuotaWarning = 0.8;

Verdict Unreachable(const EtcdHealth& etcd, const std::string& why) {
  Verdict v{kExitUnreachable, "unreachable", {}};
  for (const auto& e : etcd.endpoints) {
    if (!e.reachable) v.problems.push_back(e.error);
  }
  if (v.problems.empty()) v.problems.push_back(why);
  return v;
}

}  // namespace

Thresholds ThresholdsOf(const CtlOptions& options) {
  return Thresholds{options.max_lag_entries, options.stale_after.count()};
}

int64_t AgeMs(int64_t now_unix_ms, int64_t unix_ms) {
  return std::max<int64_t>(0, now_unix_ms - unix_ms);
}

bool AnyEndpointReachable(const EtcdHealth& etcd) {
  return std::any_of(etcd.endpoints.begin(), etcd.endpoints.end(),
                     [](const EndpointHealth& e) { return e.reachable; });
}

uint64_t AgreedLeader(const EtcdHealth& etcd) {
  uint64_t leader = 0;
  for (const auto& e : etcd.endpoints) {
    if (!e.reachable) continue;
    if (e.leader == 0 || (leader != 0 && e.leader != leader)) return 0;
    leader = e.leader;
  }
  return leader;
}

std::vector<std::string> EtcdProblems(const EtcdHealth& etcd) {
  std::vector<std::string> out;
  uint64_t leader = 0;
  bool disagree = false;
  for (const auto& e : etcd.endpoints) {
    if (!e.reachable) {
      out.push_back(e.error);
      continue;
    }
    if (e.leader == 0) {
      out.push_back("etcd member " + Hex(e.member_id) + " (" + e.endpoint + ") has no leader");
    } else if (leader != 0 && e.leader != leader) {
      disagree = true;
    } else {
      leader = e.leader;
    }
  }
  if (disagree) out.push_back("etcd members disagree on the leader (an election in progress?)");
  for (const auto& a : etcd.alarms) {
    out.push_back("etcd alarm " + a.alarm + " on member " + Hex(a.member_id));
  }
  if (etcd.quota_bytes > 0) {
    for (const auto& e : etcd.endpoints) {
      if (!e.reachable || static_cast<double>(e.db_size) < kQuotaWarning * etcd.quota_bytes) {
        continue;
      }
      out.push_back("etcd member " + Hex(e.member_id) + " database is " +
                    std::to_string(e.db_size) + " bytes, " +
                    std::to_string(e.db_size * 100 / etcd.quota_bytes) +
                    "% of the quota (compact and defragment, or raise --quota-backend-bytes)");
    }
  }
  return out;
}

Verdict Assess(const GroupReport& report, const Thresholds& thresholds) {
  if (!AnyEndpointReachable(report.etcd)) {
    return Unreachable(report.etcd, report.group_error);
  }
  if (report.group_read && !report.format && report.format_error.empty() &&
      report.replicas.empty() && report.malformed_records.empty()) {
    return Verdict{kExitUnknownGroup,
                   "unknown-group",
                   {"group '" + report.group + "' not found: no /k8shmir/" + report.group +
                    "/format marker and no replica registered"}};
  }
  Verdict v{kExitHealthy, "healthy", {}};
  // The group first: it is what the operator asked about.
  if (!report.group_read) {
    v.problems.push_back("the group's keys could not be read: " + report.group_error);
  } else {
    if (report.replicas.empty()) {
      v.problems.push_back(
          "no replica registered (every proxy stopped, or none refreshed its "
          "record within its 10 s lease)");
    }
    for (const auto& r : report.replicas) {
      const std::string who = "replica " + r.replica_id;
      if (r.state != "serving") {
        std::string line = who + " is " + r.state;
        if (!r.last_error.empty()) line += ": " + r.last_error;
        v.problems.push_back(line);
      }
      if (r.lag_entries && *r.lag_entries > thresholds.max_lag_entries) {
        v.problems.push_back(who + " lags " + std::to_string(*r.lag_entries) +
                             " entries (more than " + std::to_string(thresholds.max_lag_entries) +
                             ")");
      }
      const int64_t age = AgeMs(report.now_unix_ms, r.updated_unix_ms);
      if (age > thresholds.stale_after_ms) {
        v.problems.push_back(who + "'s record is " + std::to_string(age / 1000) +
                             " s old (its proxy stopped refreshing it, or clocks differ)");
      }
    }
    for (const auto& m : report.malformed_records) {
      v.problems.push_back("malformed replica record " + m);
    }
    if (!report.format_error.empty()) v.problems.push_back(report.format_error);
    if (report.format && *report.format != kGroupFormat) {
      v.problems.push_back("the group is in format " + std::to_string(*report.format) +
                           ", this k8shmirctl knows format " + std::to_string(kGroupFormat));
    }
    if (report.serializable) {
      v.problems.push_back("read from one member's copy: no leader confirmed it (may be stale)");
    }
  }
  for (auto& p : EtcdProblems(report.etcd)) v.problems.push_back(std::move(p));
  if (!v.problems.empty()) {
    v.exit_code = kExitDegraded;
    v.name = "degraded";
  }
  return v;
}

Verdict AssessGroups(const GroupsReport& report) {
  if (!AnyEndpointReachable(report.etcd)) return Unreachable(report.etcd, report.error);
  Verdict v{kExitHealthy, "healthy", {}};
  if (!report.read) v.problems.push_back("the groups could not be listed: " + report.error);
  for (auto& p : EtcdProblems(report.etcd)) v.problems.push_back(std::move(p));
  if (!v.problems.empty()) {
    v.exit_code = kExitDegraded;
    v.name = "degraded";
  }
  return v;
}

}  // namespace k8shmir::ctl
