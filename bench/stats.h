// k8shmir-bench's statistics: one measured point per (mode, concurrency, round), and their
// summary per (mode, concurrency).
#pragma once

#include <string>
#include <vector>

#include "common.h"
#include "load.h"

namespace k8shmir::bench {

double Percentile(const std::vector<double>& sorted, double p);
double Median(std::vector<double> v);

struct Point {
  std::string mode;
  int concurrency = 0;
  int round = 0;
  uint64_t requests = 0;
  uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double throughput = 0;
  double p50 = 0, p90 = 0, p99 = 0, mean = 0, max = 0;  // ms
  std::map<std::string, double> cpu_us_per_request;
  std::map<std::string, double> cpu_sys_us_per_request;
  // CPU time of every process we started (and the bench) per second of the window: how many of
  // the machine's CPUs the point kept busy. Near the CPU count, latency is bound by CPU time.
  double cpus_busy = 0;
  json metrics;                    // replicated: means from the proxies' /metrics
  std::vector<double> latency_us;  // sorted
};

Point MakePoint(const std::string& mode, int c, int round, RunResult r);

struct Summary {
  std::string mode;
  int concurrency = 0;
  uint64_t requests = 0, errors = 0;
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;  // pooled, ms
  double thr_median = 0, thr_min = 0, thr_max = 0;
  double p50_min = 0, p50_max = 0;
  std::map<std::string, double> cpu_us_per_request;      // median over rounds
  std::map<std::string, double> cpu_sys_us_per_request;  // median over rounds
  double append_mean_ms = 0, apply_mean_ms = 0;          // median over rounds (replicated)
  double entries_per_append = 0;                         // median over rounds (replicated)
  double cpus_busy = 0;                                  // median over rounds
};

Summary Summarize(const std::vector<Point>& points, const std::string& mode, int c);

// printf-style formatting of one number.
std::string Fmt(const char* fmt, double v);

}  // namespace k8shmir::bench
