// k8shmir-bench: Ctrl-C, children, HTTP helpers, /proc readings (see common.h).
#include "common.h"

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

// ---- Interruption and child processes ----------------------------------------------------------

std::atomic<pid_t> g_children[kMaxChildren];
volatile sig_atomic_t g_interrupted = 0;

void OnSignal(int sig) {
  for (auto& c : g_children) {
    pid_t pid = c.load();
    if (pid > 0) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
    }
  }
  if (g_interrupted) ::_exit(128 + sig);  // a second Ctrl-C: leave at once
  g_interrupted = sig;
}

void CheckInterrupted() {
  if (g_interrupted) throw Interrupted();
}

// ---- Small blocking HTTP requests (admin endpoints, readiness): the harness's client ----------

// The body as the bench's (ordered) JSON; a discarded value when it is not JSON.
json BodyJson(const testing::HttpResult& r) { return json::parse(r.body, nullptr, false); }

testing::HttpResult Get(uint16_t port, const std::string& target, milliseconds timeout) {
  return testing::Http(port, "GET", target, "", {}, timeout);
}

// The harness's WaitFor, ended by Ctrl-C too.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout, milliseconds interval) {
  return testing::WaitFor(
      [&] {
        CheckInterrupted();
        return pred();
      },
      timeout, interval);
}

// Sums of a Prometheus histogram (`<name>_sum` and `<name>_count`) over one text exposition.
std::pair<double, double> HistogramSums(const std::string& text, const std::string& name) {
  double sum = 0, count = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto value = [&] { return std::strtod(line.substr(line.rfind(' ') + 1).c_str(), nullptr); };
    if (line.rfind(name + "_sum{", 0) == 0) sum += value();
    if (line.rfind(name + "_count{", 0) == 0) count += value();
  }
  return {sum, count};
}

// Sum of a Prometheus counter over every series of one text exposition.
double CounterSum(const std::string& text, const std::string& name) {
  double sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) == 0) {
      sum += std::strtod(line.substr(line.rfind(' ') + 1).c_str(), nullptr);
    }
  }
  return sum;
}

// ---- /proc readings ----------------------------------------------------------------------------

int64_t ReadRssKib(pid_t pid) { return testing::ProcStatusKib(pid, "VmRSS"); }

CpuTicks ReadCpuTicks(pid_t pid) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/stat")
                            : "/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream fields(s.substr(close + 2));
  std::string f;
  int64_t utime = 0;
  int64_t stime = 0;
  // Fields after the command: state(3) ppid(4) ... utime(14) stime(15).
  for (int n = 3; n <= 15 && fields >> f; ++n) {
    if (n == 14) utime = std::stoll(f);
    if (n == 15) stime = std::stoll(f);
  }
  return {utime, stime};
}

std::vector<double> LoadAvg() {
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  in >> a >> b >> c;
  return {a, b, c};
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string IsoNow() {
  char buf[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t UnixMillis() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace k8shmir::bench
