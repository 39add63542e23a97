// The verdict a script reads from k8shmirctl's exit code, and the reasons a person reads: pure
// functions of a report and the thresholds, so that unit tests pin every rule.
#pragma once

#include <string>
#include <vector>

#include "ctl/options.h"
#include "ctl/report.h"

namespace k8shmir::ctl {

struct Verdict {
  int exit_code = kExitHealthy;
  std::string name;                   // "healthy", "degraded", "unreachable", "unknown-group"
  std::vector<std::string> problems;  // one line each, worst first; empty when healthy
};

struct Thresholds {
  uint64_t max_lag_entries = 1000;
  int64_t stale_after_ms = 6000;
};
Thresholds ThresholdsOf(const CtlOptions& options);

// Problems with etcd alone (also `groups`): unreachable endpoints, members without a leader,
// members that disagree on it, alarms, a database near its quota.
std::vector<std::string> EtcdProblems(const EtcdHealth& etcd);
bool AnyEndpointReachable(const EtcdHealth& etcd);
// The leader the reachable members agree on; 0 when none, or when they disagree.
uint64_t AgreedLeader(const EtcdHealth& etcd);

Verdict Assess(const GroupReport& report, const Thresholds& thresholds);
Verdict AssessGroups(const GroupsReport& report);

// Milliseconds from `unix_ms` to `now`, never negative (clocks of two machines).
int64_t AgeMs(int64_t now_unix_ms, int64_t unix_ms);

}  // namespace k8shmir::ctl
