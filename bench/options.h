// k8shmir-bench's command line (bench/README.md lists every option).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace k8shmir::bench {

// ---- Options -----------------------------------------------------------------------------------

struct Options {
  std::string proxy_bin = K8SHMIR_BENCH_PROXY_BIN;
  std::string counter_bin = K8SHMIR_BENCH_COUNTER_BIN;
  std::string etcd_bin = "/usr/bin/etcd";
  std::filesystem::path results_dir = "bench/results";
  std::vector<int> concurrency = {1, 16, 64};
  std::vector<std::string> modes = {"direct", "raw-log", "replicated"};
  double warmup_s = 1.0;
  double measure_s = 4.0;
  int rounds = 3;
  int64_t rss_requests = 200000;
  int rss_concurrency = 64;
  int64_t replay_entries = 50000;
  int write_concurrency = 64;
  // etcd timing: "fast" = --heartbeat-interval 50 --election-timeout 500 (as the tests);
  // "default" = etcd's own defaults (100 / 1000).
  std::string etcd_timing = "fast";
  // Whole-run budget: the RSS phase stops early (and says so) when it would overrun it.
  double budget_s = 570;
  bool keep = false;
  std::vector<std::string> proxy_args;      // extra flags for every proxy
  std::vector<std::string> proxy0_wrapper;  // e.g. valgrind --tool=callgrind ... (proxy 0 only)
  std::string tag;                          // free text stored in the JSON (e.g. "baseline")
  int replicated_proxies = 3;               // replicated clients spread over proxies 0..N-1
  int active_replicas = 3;  // experiment: only replicas 0..N-1 run (no replay, RSS on those)
  int failover_rounds = 3;  // etcd leader SIGKILLs (0 skips the failover section)
  bool only_failover = false;
  // The retention soak (bench/soak.h): its own run, `--only-soak`.
  bool only_soak = false;
  // Reads that skip the log (bench/reads.h): their own run, `--only-reads`.
  bool only_reads = false;
  int64_t soak_requests = 500000;
  int soak_clients = 32;
  bool plot = true;
};

// Parses argv; prints the usage and exits on --help (0) or a bad option (2).
Options ParseOptions(int argc, char** argv);

}  // namespace k8shmir::bench
