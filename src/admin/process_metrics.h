// The process's own metrics in the names every Prometheus client library uses (process_*), and
// k8shmir_build_info: what an SRE's standard dashboards and alerts expect of any server.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace k8shmir {

struct ProcessSample {
  double cpu_seconds = 0;         // user + system
  double start_time_seconds = 0;  // since the Unix epoch
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  std::optional<double> max_fds;  // the soft RLIMIT_NOFILE; none when unlimited
};

// Parses /proc/<pid>/stat's text (`stat`) with the clock tick rate, the page size and the
// system's boot time (`btime` of /proc/stat, seconds since the epoch). Empty on malformed text.
std::optional<ProcessSample> ParseProcStat(std::string_view stat, long ticks_per_second,
                                           long page_size, double boot_time_seconds);

// This process, now: /proc/self/stat, /proc/stat, /proc/self/fd, getrlimit. Empty when /proc
// cannot be read (the metrics are then left out, not made up). Reads /proc only: memory-backed,
// it does not block.
std::optional<ProcessSample> SampleThisProcess();

// The process_* series and k8shmir_build_info{version,revision}, in the text format.
std::string RenderProcessMetrics(const std::optional<ProcessSample>& sample);

}  // namespace k8shmir
