#include "admin/process_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "admin/status_render.h"
#include "common/version.h"

namespace k8shmir {

namespace {

std::optional<std::string> ReadWhole(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<double> ParseNumber(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// `btime N` of /proc/stat.
std::optional<double> BootTime(std::string_view proc_stat) {
  constexpr std::string_view kKey = "\nbtime ";
  auto at = proc_stat.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  auto rest = proc_stat.substr(at + kKey.size());
  return ParseNumber(rest.substr(0, rest.find('\n')));
}

}  // namespace

std::optional<ProcessSample> ParseProcStat(std::string_view stat, long ticks_per_second,
                                           long page_size, double boot_time_seconds) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields start
  // after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0) return std::nullopt;
  std::vector<std::string_view> fields;  // fields[0] is field 3 (state)
  std::string_view rest = stat.substr(close + 1);
  while (!rest.empty()) {
    auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    auto end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  // Fields (1-based, proc(5)): 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss.
  auto field = [&](int n) -> std::optional<double> {
    const auto i = static_cast<std::size_t>(n - 3);
    if (i >= fields.size()) return std::nullopt;
    return ParseNumber(fields[i]);
  };
  auto utime = field(14), stime = field(15), start = field(22), vsize = field(23), rss = field(24);
  if (!utime || !stime || !start || !vsize || !rss) return std::nullopt;
  ProcessSample s;
  const double ticks = static_cast<double>(ticks_per_second);
  s.cpu_seconds = (*utime + *stime) / ticks;
  s.start_time_seconds = boot_time_seconds + *start / ticks;
  s.virtual_bytes = *vsize;
  s.resident_bytes = *rss * static_cast<double>(page_size);
  return s;
}

std::optional<ProcessSample> SampleThisProcess() {
  auto stat = ReadWhole("/proc/self/stat");
  auto system = ReadWhole("/proc/stat");
  if (!stat || !system) return std::nullopt;
  auto boot = BootTime(*system);
  if (!boot) return std::nullopt;
  auto sample = ParseProcStat(*stat, ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE), *boot);
  if (!sample) return std::nullopt;
  std::error_code ec;
  double fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++fds;
  }
  if (ec) return std::nullopt;
  // The iterator's own descriptor was open while it counted.
  sample->open_fds = fds > 0 ? fds - 1 : 0;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    sample->max_fds = static_cast<double>(limit.rlim_cur);
  }
  return sample;
}

std::string RenderProcessMetrics(const std::optional<ProcessSample>& sample) {
  std::ostringstream out;
  out << "# HELP k8shmir_build_info The proxy's version and git revision (value 1).\n"
      << "# TYPE k8shmir_build_info gauge\n"
      << "k8shmir_build_info{version=\"" << PrometheusLabelValue(kVersion) << "\",revision=\""
      << PrometheusLabelValue(kRevision) << "\"} 1\n";
  if (!sample) return out.str();
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
        << name << " " << PrometheusFloat(value) << "\n";
  };
  metric("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
         sample->cpu_seconds);
  metric("process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.", sample->start_time_seconds);
  metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         sample->resident_bytes);
  metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
         sample->virtual_bytes);
  metric("process_open_fds", "gauge", "Number of open file descriptors.", sample->open_fds);
  if (sample->max_fds) {
    metric("process_max_fds", "gauge", "Maximum number of open file descriptors.",
           *sample->max_fds);
  }
  return out.str();
}

}  // namespace k8shmir
