// The retention soak of k8shmir-bench (issue 12; bench/README.md, "soak"): two replication groups,
// each on an etcd cluster of its own (3 members, etcd's periodic auto-compaction on, as the
// chart runs it), one with snapshots and retention on and one with them off, driven in
// alternating chunks by the same closed-loop clients. It reports each etcd's database size over
// time, the throughput of the two groups, the p99 latency of requests answered while a snapshot
// was being taken against the p99 of all, and how long a new replica takes to join each group
// (restoring the snapshot and the retained tail, or replaying the whole history).
#pragma once

#include <nlohmann/json.hpp>

#include "options.h"

namespace k8shmir::bench {

// Runs the soak and writes <results-dir>/soak.json; prints a Markdown table and one PASS/FAIL
// line per target. Returns the process exit code (0: every target met).
int RunSoak(const Options& options);

}  // namespace k8shmir::bench
