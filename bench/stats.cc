// k8shmir-bench: statistics (see stats.h).
#include "stats.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "codec/entry_codec.h"
#include "codec/header_filter.h"
#include "failover.h"
#include "log/etcd_log.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/ports.h"
#include "support/process.h"
#include "support/util.h"

namespace k8shmir::bench {

// ---- Statistics --------------------------------------------------------------------------------

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Point MakePoint(const std::string& mode, int c, int round, RunResult r) {
  Point p;
  p.mode = mode;
  p.concurrency = c;
  p.round = round;
  std::sort(r.latency_us.begin(), r.latency_us.end());
  p.requests = r.latency_us.size();
  p.errors = r.errors;
  p.first_error = r.first_error;
  p.seconds = r.seconds;
  p.throughput = r.seconds > 0 ? static_cast<double>(p.requests) / r.seconds : 0;
  p.p50 = Percentile(r.latency_us, 50) / 1000;
  p.p90 = Percentile(r.latency_us, 90) / 1000;
  p.p99 = Percentile(r.latency_us, 99) / 1000;
  double sum = 0;
  for (double v : r.latency_us) sum += v;
  p.mean = r.latency_us.empty() ? 0 : sum / static_cast<double>(r.latency_us.size()) / 1000;
  p.max = r.latency_us.empty() ? 0 : r.latency_us.back() / 1000;
  double cpu_ms = 0;
  for (auto& [name, ms] : r.cpu_ms) {
    cpu_ms += ms;
    p.cpu_us_per_request[name] = p.requests ? ms * 1000 / static_cast<double>(p.requests) : 0;
    p.cpu_sys_us_per_request[name] =
        p.requests ? r.cpu_sys_ms[name] * 1000 / static_cast<double>(p.requests) : 0;
  }
  p.cpus_busy = r.seconds > 0 ? cpu_ms / 1000 / r.seconds : 0;
  p.metrics = r.metrics;
  p.latency_us = std::move(r.latency_us);
  return p;
}

// All rounds of one (mode, concurrency) pooled.

Summary Summarize(const std::vector<Point>& points, const std::string& mode, int c) {
  Summary s;
  s.mode = mode;
  s.concurrency = c;
  std::vector<double> all, thr, p50s;
  std::map<std::string, std::vector<double>> cpu, sys;
  std::vector<double> append, apply, batch, busy;
  for (const auto& p : points) {
    if (p.mode != mode || p.concurrency != c) continue;
    all.insert(all.end(), p.latency_us.begin(), p.latency_us.end());
    thr.push_back(p.throughput);
    p50s.push_back(p.p50);
    s.requests += p.requests;
    s.errors += p.errors;
    for (auto& [n, v] : p.cpu_us_per_request) cpu[n].push_back(v);
    for (auto& [n, v] : p.cpu_sys_us_per_request) sys[n].push_back(v);
    busy.push_back(p.cpus_busy);
    if (p.metrics.is_object()) {
      append.push_back(p.metrics["append_mean_ms"].get<double>());
      apply.push_back(p.metrics["apply_mean_ms"].get<double>());
      batch.push_back(p.metrics.value("entries_per_append", 0.0));
    }
  }
  if (thr.empty()) return s;
  std::sort(all.begin(), all.end());
  s.p50 = Percentile(all, 50) / 1000;
  s.p90 = Percentile(all, 90) / 1000;
  s.p99 = Percentile(all, 99) / 1000;
  double sum = 0;
  for (double v : all) sum += v;
  s.mean = all.empty() ? 0 : sum / static_cast<double>(all.size()) / 1000;
  s.thr_median = Median(thr);
  s.thr_min = *std::min_element(thr.begin(), thr.end());
  s.thr_max = *std::max_element(thr.begin(), thr.end());
  s.p50_min = *std::min_element(p50s.begin(), p50s.end());
  s.p50_max = *std::max_element(p50s.begin(), p50s.end());
  for (auto& [n, v] : cpu) s.cpu_us_per_request[n] = Median(v);
  for (auto& [n, v] : sys) s.cpu_sys_us_per_request[n] = Median(v);
  s.append_mean_ms = Median(append);
  s.apply_mean_ms = Median(apply);
  s.entries_per_append = Median(batch);
  s.cpus_busy = Median(busy);
  return s;
}

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace k8shmir::bench
