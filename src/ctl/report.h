// What k8shmirctl found, as plain data: collect.cc fills it from etcd, assess.cc judges it,
// render_*.cc print it. Unit tests build these by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "k8shmir/group_registry.h"

namespace k8shmir::ctl {

// One endpoint as given, and what its member said to Maintenance.Status.
struct EndpointHealth {
  std::string endpoint;
  bool reachable = false;
  std::string error;  // why not
  uint64_t member_id = 0;
  uint64_t leader = 0;  // 0: this member knows no leader
  std::string version;
  int64_t db_size = 0;         // bytes of the backend file
  int64_t db_size_in_use = 0;  // bytes of it in use (the rest is free pages until defragmented)
  uint64_t raft_term = 0;
  uint64_t raft_index = 0;
  bool is_learner = false;
  std::vector<std::string> errors;  // e.g. "memberID:... alarm:NOSPACE"
};

struct ClusterMember {
  uint64_t id = 0;
  std::string name;  // empty until the member started
  std::vector<std::string> client_urls;
  bool is_learner = false;
};

struct EtcdAlarm {
  uint64_t member_id = 0;
  std::string alarm;  // "NOSPACE", "CORRUPT"
};

struct EtcdHealth {
  std::vector<EndpointHealth> endpoints;
  bool members_known = false;
  std::vector<ClusterMember> members;
  bool alarms_known = false;
  std::vector<EtcdAlarm> alarms;
  int64_t quota_bytes = 0;  // 0: unknown (etcd 3.4 does not report it)
};

// The log under /k8shmir/<g>/log/, read in one transaction.
struct LogSummary {
  int64_t revision = 0;          // etcd's revision at the read
  int64_t last_index = 0;        // newest entry (0: empty)
  int64_t first_index = 0;       // first entry of the oldest batch kept (0: empty)
  int64_t committed_index = 0;   // the committed head key's (0: none written yet)
  int64_t trimmed_index = 0;     // the retention marker's (0: never trimmed)
  int64_t keys = 0;              // batches
  std::optional<int64_t> bytes;  // of their values, with --log-bytes
};

struct SnapshotSummary {
  int64_t index = 0;
  uint64_t size = 0;
  uint32_t chunks = 0;
  std::string taker;
  int64_t taken_unix_ms = 0;
  std::string error;  // its manifest does not parse (listed anyway)
};

struct GroupReport {
  std::string group;
  int64_t now_unix_ms = 0;
  EtcdHealth etcd;
  // The group's keys could be read (at least one member answered); when not, why.
  bool group_read = false;
  std::string group_error;
  bool serializable = false;  // read from one member's copy, no leader confirmed it
  std::optional<int> format;  // the format marker; empty: none
  std::string format_error;   // present but not a marker
  std::string snapshot_taker;
  std::vector<ReplicaRecord> replicas;  // by id
  std::vector<std::string> malformed_records;
  LogSummary log;
  std::vector<SnapshotSummary> snapshots;  // newest first
};

struct GroupListing {
  std::string name;
  std::optional<int> format;
  int64_t replicas = 0;
  int64_t last_index = 0;
  int64_t keys = 0;
};

struct GroupsReport {
  int64_t now_unix_ms = 0;
  EtcdHealth etcd;
  bool read = false;
  std::string error;
  std::vector<GroupListing> groups;
};

}  // namespace k8shmir::ctl
