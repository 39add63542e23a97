// Fixed reports for k8shmirctl's unit tests: a healthy 3-replica group on a 3-member etcd, which
// each test then breaks in one way.
#pragma once

#include "ctl/report.h"

namespace k8shmir::ctl {

inline constexpr int64_t kNow = 1700000100000;

inline ReplicaRecord Serving(const std::string& id, int64_t applied) {
  ReplicaRecord r;
  r.replica_id = id;
  r.state = "serving";
  r.applied_index = applied;
  r.last_snapshot_index = 256;
  r.app_snapshots = true;
  r.updated_unix_ms = kNow - 1500;
  r.lag_entries = 0;
  r.app_pipelining = true;
  return r;
}

inline EndpointHealth Member(const std::string& endpoint, uint64_t id, uint64_t leader) {
  EndpointHealth e;
  e.endpoint = endpoint;
  e.reachable = true;
  e.member_id = id;
  e.leader = leader;
  e.version = "3.4.23";
  e.db_size = 2 * 1024 * 1024;
  e.db_size_in_use = 1024 * 1024;
  e.raft_term = 2;
  e.raft_index = 100;
  return e;
}

inline GroupReport HealthyReport() {
  GroupReport r;
  r.group = "demo";
  r.now_unix_ms = kNow;
  r.group_read = true;
  r.format = 1;
  r.snapshot_taker = "r-0";
  r.replicas = {Serving("r-0", 5120), Serving("r-1", 5120), Serving("r-2", 5120)};
  r.log.revision = 25;
  r.log.last_index = 5120;
  r.log.first_index = 1024;
  r.log.committed_index = 5120;
  r.log.trimmed_index = 300;
  r.log.keys = 17;
  SnapshotSummary s;
  s.index = 4096;
  s.size = 1536;
  s.chunks = 1;
  s.taker = "r-0";
  s.taken_unix_ms = kNow - 65000;
  r.snapshots = {s};
  r.etcd.endpoints = {Member("127.0.0.1:2379", 0xa1, 0xa1), Member("127.0.0.1:2381", 0xb2, 0xa1),
                      Member("127.0.0.1:2383", 0xc3, 0xa1)};
  r.etcd.members_known = true;
  r.etcd.members = {{0xa1, "m0", {"http://127.0.0.1:2379"}, false},
                    {0xb2, "m1", {"http://127.0.0.1:2381"}, false},
                    {0xc3, "m2", {"http://127.0.0.1:2383"}, false}};
  r.etcd.alarms_known = true;
  r.etcd.quota_bytes = int64_t{2} << 30;
  return r;
}

}  // namespace k8shmir::ctl
