// k8shmir-bench: measures the replicated request path against its physical floor (issue 5).
//
// On loopback it starts a 3-member etcd (Debian's /usr/bin/etcd, data on /dev/shm), three counter
// apps behind three k8shmir proxies, and one more counter app that no proxy fronts (the "direct"
// baseline, so that direct requests never touch the replicated state). Then, in one run:
//   1. entry-size check: the raw-log client's entries have the proxy's encoded size;
//   2. replay: one app+proxy stopped, N entries written, the app restarted empty with its proxy,
//      time until the proxy's /status applied_index reaches the head;
//   3. the matrix: for each concurrency, `rounds` rounds alternating the three modes
//      direct (clients -> counter app), raw-log (EtcdLog::Append of the proxy's entry, same etcd),
//      replicated (clients -> the three proxies); closed-loop clients, warm-up excluded;
//   4. proxy RSS before and after M replicated requests;
//   5. failover (bench/failover.cc): the etcd leader SIGKILLed under load through the proxies,
//      clients' stall against etcd's own election time, in rounds;
//   6. the three replicas' digests compared (the run measured a correct replication);
// and prints a Markdown table and PASS/FAIL per target, writes <results-dir>/latest.json and
// <results-dir>/latest.png (gnuplot). Everything it started is stopped and its temporary
// directory removed, also on Ctrl-C. See bench/README.md.

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
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using k8shmir::testing::ChildProcess;
using std::chrono::milliseconds;

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
  bool plot = true;
};

[[noreturn]] void Usage(int code) {
  std::ostream& out = code == 0 ? std::cout : std::cerr;
  out << "usage: k8shmir-bench [options]\n"
         "  --results-dir DIR        where latest.json and latest.png go (bench/results)\n"
         "  --concurrency LIST       closed-loop clients per point (1,16,64)\n"
         "  --modes LIST             direct,raw-log,replicated\n"
         "  --warmup S               warm-up per point, excluded (1)\n"
         "  --duration S             measured time per point (4)\n"
         "  --rounds N               rounds per concurrency, modes alternating (3)\n"
         "  --rss-requests N         replicated requests between the two RSS readings (200000;\n"
         "                           0 skips the phase)\n"
         "  --rss-concurrency N      clients during the RSS phase (64)\n"
         "  --replay-entries N       entries a stopped replica replays (50000; 0 skips)\n"
         "  --etcd-timing T          fast (heartbeat 50 ms, election 500 ms) or default "
         "(100/1000)\n"
         "  --budget S               whole-run time budget in seconds (570)\n"
         "  --proxy-arg ARG          extra flag for every proxy (repeatable)\n"
         "  --proxy0-wrapper CMD     run proxy 0 under CMD (space-separated), e.g. valgrind\n"
         "  --tag TEXT               label stored in the JSON\n"
         "  --active-replicas N      experiment: start only N app+proxy pairs (3); below 3 the\n"
         "                           replay phase is skipped; shows the cost of the fan-out\n"
         "  --replicated-proxies N   spread replicated clients over proxies 0..N-1 only (3;\n"
         "                           1 with --proxy0-wrapper profiles the client path too)\n"
         "  --failover-rounds N      etcd leader SIGKILLs in the failover section (3; 0 skips)\n"
         "  --only-failover          run only the failover section (and the final check)\n"
         "  --no-plot                do not run gnuplot\n"
         "  --keep                   keep the temporary directory (process logs)\n"
         "  --proxy-bin / --counter-bin / --etcd-bin PATH\n";
  std::exit(code);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;  // --option=value
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg.resize(eq);
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) {
        std::cerr << "k8shmir-bench: " << arg << " needs a value\n";
        Usage(2);
      }
      return argv[++i];
    };
    try {
      if (arg == "--help" || arg == "-h") {
        Usage(0);
      } else if (arg == "--results-dir") {
        o.results_dir = value();
      } else if (arg == "--concurrency") {
        o.concurrency.clear();
        for (const auto& c : Split(value(), ',')) o.concurrency.push_back(std::stoi(c));
      } else if (arg == "--modes") {
        o.modes = Split(value(), ',');
        for (const auto& m : o.modes) {
          if (m != "direct" && m != "raw-log" && m != "replicated") Usage(2);
        }
      } else if (arg == "--warmup") {
        o.warmup_s = std::stod(value());
      } else if (arg == "--duration") {
        o.measure_s = std::stod(value());
      } else if (arg == "--rounds") {
        o.rounds = std::stoi(value());
      } else if (arg == "--rss-requests") {
        o.rss_requests = std::stoll(value());
      } else if (arg == "--rss-concurrency") {
        o.rss_concurrency = std::stoi(value());
      } else if (arg == "--replay-entries") {
        o.replay_entries = std::stoll(value());
      } else if (arg == "--etcd-timing") {
        o.etcd_timing = value();
        if (o.etcd_timing != "fast" && o.etcd_timing != "default") Usage(2);
      } else if (arg == "--budget") {
        o.budget_s = std::stod(value());
      } else if (arg == "--proxy-arg") {
        o.proxy_args.push_back(value());
      } else if (arg == "--proxy0-wrapper") {
        o.proxy0_wrapper = Split(value(), ' ');
      } else if (arg == "--active-replicas") {
        o.active_replicas = std::clamp(std::stoi(value()), 1, 3);
      } else if (arg == "--replicated-proxies") {
        o.replicated_proxies = std::clamp(std::stoi(value()), 1, 3);
      } else if (arg == "--tag") {
        o.tag = value();
      } else if (arg == "--failover-rounds") {
        o.failover_rounds = std::max(0, std::stoi(value()));
      } else if (arg == "--only-failover") {
        o.only_failover = true;
      } else if (arg == "--no-plot") {
        o.plot = false;
      } else if (arg == "--keep") {
        o.keep = true;
      } else if (arg == "--proxy-bin") {
        o.proxy_bin = value();
      } else if (arg == "--counter-bin") {
        o.counter_bin = value();
      } else if (arg == "--etcd-bin") {
        o.etcd_bin = value();
      } else {
        std::cerr << "k8shmir-bench: unknown option " << arg << "\n";
        Usage(2);
      }
    } catch (const std::logic_error&) {
      std::cerr << "k8shmir-bench: bad value for " << arg << "\n";
      Usage(2);
    }
  }
  std::sort(o.concurrency.begin(), o.concurrency.end());
  o.replicated_proxies = std::min(o.replicated_proxies, o.active_replicas);
  if (o.active_replicas < 3) o.replay_entries = 0;
  if (o.active_replicas < 3) o.failover_rounds = 0;  // it sends to every proxy
  if (o.concurrency.empty() || o.rounds < 1 || o.measure_s <= 0 || o.warmup_s < 0) Usage(2);
  return o;
}

// ---- Interruption and child processes ----------------------------------------------------------

// Process ids of every child, so that a signal handler can kill them (async-signal-safe kill()).
constexpr int kMaxChildren = 64;
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

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

void CheckInterrupted() {
  if (g_interrupted) throw Interrupted();
}

// A ChildProcess registered for the signal handler.
class Child {
 public:
  Child() = default;
  ~Child() { Kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  void Start(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    process_.Start(argv, {}, log);
    for (int i = 0; i < kMaxChildren; ++i) {
      pid_t expected = 0;
      if (g_children[i].compare_exchange_strong(expected, process_.pid())) {
        slot_ = i;
        break;
      }
    }
  }
  void Kill() {
    Unregister();
    process_.Kill();
  }
  bool Terminate(milliseconds timeout) {
    bool clean = process_.Terminate(timeout);
    Unregister();
    return clean;
  }
  bool Running() { return process_.Running(); }
  pid_t pid() const { return process_.pid(); }
  std::string DescribeExit() const { return process_.DescribeExit(); }

 private:
  void Unregister() {
    if (slot_ >= 0) g_children[slot_].store(0);
    slot_ = -1;
  }
  ChildProcess process_;
  int slot_ = -1;
};

// ---- Small blocking HTTP requests (admin endpoints, readiness): the harness's client ----------

// The body as the bench's (ordered) JSON; a discarded value when it is not JSON.
json BodyJson(const testing::HttpResult& r) { return json::parse(r.body, nullptr, false); }

testing::HttpResult Get(uint16_t port, const std::string& target,
                        milliseconds timeout = milliseconds(2000)) {
  return testing::Http(port, "GET", target, "", {}, timeout);
}

// The harness's WaitFor, ended by Ctrl-C too.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout,
             milliseconds interval = milliseconds(50)) {
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

// utime and stime of a whole process (all threads), in clock ticks.
struct CpuTicks {
  int64_t user = 0;
  int64_t sys = 0;
};
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

// ---- The cluster -------------------------------------------------------------------------------

class TempDir {
 public:
  explicit TempDir(bool keep)
      : path_(testing::MakeTempDir("k8shmir-bench-", testing::ScratchBase())), keep_(keep) {}
  ~TempDir() {
    if (keep_) {
      std::cerr << "bench: kept " << path_.string() << "\n";
      return;
    }
    testing::RemoveTree(path_);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  bool keep_;
};

constexpr int kReplicas = 3;
const char* const kGroup = "bench-rep";
// The raw-log client writes under a prefix of the same length that no proxy watches.
const char* const kRawPrefix = "/k8shmir/bench-raw/log/";

class Cluster {
 public:
  Cluster(const Options& o, const std::filesystem::path& dir) : o_(o), dir_(dir) {
    testing::EtcdClusterOptions etcd;
    etcd.binary = o_.etcd_bin;
    etcd.heartbeat_ms = o_.etcd_timing == "fast" ? 50 : 100;
    etcd.election_ms = o_.etcd_timing == "fast" ? 500 : 1000;
    etcd.log_level = "warn";
    etcd_ = std::make_unique<testing::EtcdCluster>(kReplicas, dir_, testing::EtcdClusterTls{},
                                                   std::move(etcd));
    for (int i = 0; i < kReplicas; ++i) {
      app_port_.push_back(testing::FreePort());
      proxy_port_.push_back(testing::FreePort());
      admin_port_.push_back(testing::FreePort());
    }
    direct_port_ = testing::FreePort();
    apps_.resize(kReplicas);
    proxies_.resize(kReplicas);
    for (int i = 0; i < kReplicas; ++i) {
      apps_[i] = std::make_unique<Child>();
      proxies_[i] = std::make_unique<Child>();
    }
    direct_ = std::make_unique<Child>();
  }

  ~Cluster() { StopAll(); }

  void StopAll() {
    // Proxies first (SIGTERM: a profiler wrapping one writes its output on a clean exit).
    for (int i = 0; i < kReplicas; ++i) {
      if (!proxies_[i]->Running()) continue;
      auto timeout =
          (i == 0 && !o_.proxy0_wrapper.empty()) ? milliseconds(60000) : milliseconds(5000);
      proxies_[i]->Terminate(g_interrupted ? milliseconds(0) : timeout);
    }
    for (auto& a : apps_) a->Kill();
    direct_->Kill();
    etcd_->KillAll();
  }

  std::string Endpoints() const { return etcd_->Endpoints(); }
  std::vector<std::string> EndpointList() const {
    std::vector<std::string> out;
    for (int i = 0; i < kReplicas; ++i) out.push_back(etcd_->Endpoint(i));
    return out;
  }

  void StartEtcd() { etcd_->Start(milliseconds(60000)); }
  bool WaitEtcdHealthy(milliseconds timeout) { return etcd_->WaitHealthy(timeout); }
  void KillEtcd(int i) { etcd_->KillMember(i); }
  // Starts member i again, on its data directory.
  void StartEtcdMember(int i) { etcd_->StartMember(i); }

  void StartApp(int i) {  // i == -1: the direct app
    Child& c = i < 0 ? *direct_ : *apps_[i];
    uint16_t port = i < 0 ? direct_port_ : app_port_[i];
    std::string name = i < 0 ? "app-direct" : "app-" + std::to_string(i);
    c.Start({o_.counter_bin, "--host", "127.0.0.1", "--port", std::to_string(port)},
            dir_ / (name + ".log"));
    bool ok = WaitFor([&] { return Get(port, "/last-index").status == 200; }, milliseconds(10000),
                      milliseconds(10));
    if (!ok) throw std::runtime_error(name + " did not come up; logs in " + dir_.string());
  }
  void KillApp(int i) { apps_[i]->Kill(); }

  void StartProxy(int i) {
    std::vector<std::string> args;
    if (i == 0) args = o_.proxy0_wrapper;
    std::vector<std::string> flags = {
        o_.proxy_bin, "--listen-address", "127.0.0.1", "--listen-port",
        std::to_string(proxy_port_[i]), "--app-host", "127.0.0.1", "--app-port",
        std::to_string(app_port_[i]), "--admin-address", "127.0.0.1", "--admin-port",
        std::to_string(admin_port_[i]), "--etcd-endpoints", Endpoints(),
        // Like the raw-log client: member 0 first, so that both
        // modes reach the leader the same way.
        "--etcd-endpoint-order", "as-listed", "--group", kGroup, "--replica-id",
        "replica-" + std::to_string(i)};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), o_.proxy_args.begin(), o_.proxy_args.end());
    proxies_[i]->Start(args, dir_ / ("proxy-" + std::to_string(i) + ".log"));
  }
  void StopProxy(int i) { proxies_[i]->Terminate(milliseconds(5000)); }

  bool WaitReady(int i, milliseconds timeout) {
    return WaitFor(
        [&] {
          if (!proxies_[i]->Running()) {
            throw std::runtime_error("proxy " + std::to_string(i) + " exited (" +
                                     proxies_[i]->DescribeExit() + "); logs in " + dir_.string());
          }
          return Get(admin_port_[i], "/readyz").status == 200;
        },
        timeout, milliseconds(20));
  }

  json Status(int i) {
    auto r = Get(admin_port_[i], "/status");
    if (r.status != 200) return json();
    return BodyJson(r);
  }

  // Waits until every running proxy's app applied `index`.
  bool WaitApplied(int64_t index, milliseconds timeout, std::vector<int> which = {0, 1, 2}) {
    return WaitFor(
        [&] {
          for (int i : which) {
            json s = Status(i);
            if (!s.is_object() || s.value("applied_index", int64_t{0}) < index) return false;
          }
          return true;
        },
        timeout, milliseconds(20));
  }

  json Digest(int i) {
    auto r = Get(app_port_[i], "/journal/digest");
    if (r.status != 200) return json();
    return BodyJson(r);
  }

  // The etcd member that leads, by the members' maintenance status; -1 when unknown.
  int Leader() {
    std::vector<std::string> ids;
    std::string leader;
    for (int i = 0; i < kReplicas; ++i) {
      auto r = testing::Http(etcd_->ClientPort(i), "POST", "/v3/maintenance/status", "{}",
                             {{"Content-Type", "application/json"}}, milliseconds(2000));
      json j = BodyJson(r);
      if (r.status != 200 || !j.is_object()) return -1;
      ids.push_back(j["header"].value("member_id", ""));
      leader = j.value("leader", "");
    }
    for (int i = 0; i < kReplicas; ++i) {
      if (!leader.empty() && ids[i] == leader) return i;
    }
    return -1;
  }

  // Every process whose CPU time is accounted, by component.
  std::map<std::string, std::vector<pid_t>> Pids() const {
    std::map<std::string, std::vector<pid_t>> out;
    for (int i = 0; i < kReplicas; ++i) out["etcd"].push_back(etcd_->MemberPid(i));
    for (auto& p : proxies_) out["proxies"].push_back(p->pid());
    for (auto& a : apps_) out["apps"].push_back(a->pid());
    out["apps"].push_back(direct_->pid());
    out["bench"].push_back(0);
    return out;
  }

  pid_t ProxyPid(int i) const { return proxies_[i]->pid(); }
  std::string Metrics(int i) { return Get(admin_port_[i], "/metrics", milliseconds(500)).body; }
  uint16_t ProxyPort(int i) const { return proxy_port_[i]; }
  std::vector<uint16_t> EtcdClientPorts() const {
    std::vector<uint16_t> out;
    for (int i = 0; i < kReplicas; ++i) out.push_back(etcd_->ClientPort(i));
    return out;
  }
  uint16_t DirectPort() const { return direct_port_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  const Options& o_;
  std::filesystem::path dir_;
  std::unique_ptr<testing::EtcdCluster> etcd_;
  std::vector<uint16_t> app_port_, proxy_port_, admin_port_;
  uint16_t direct_port_ = 0;
  std::vector<std::unique_ptr<Child>> apps_, proxies_;
  std::unique_ptr<Child> direct_;
};

// ---- The request mix ---------------------------------------------------------------------------

// Non-commutative counter operations and journal appends, the same sequence in every mode.
struct MixRequest {
  std::string target;
  std::string content_type;
  std::string body;
};

MixRequest MixAt(int client, uint64_t k) {
  char buf[96];
  switch (k % 5) {
    case 0:
      std::snprintf(buf, sizeof buf, R"({"op":"INC","value":%d})", static_cast<int>(k % 9) + 1);
      return {"/integer", "application/json", buf};
    case 1:
      return {"/integer", "application/json", R"({"op":"MUL","value":3})"};
    case 2:
      std::snprintf(buf, sizeof buf, "bench client %03d request %010llu", client,
                    static_cast<unsigned long long>(k));
      return {"/journal", "text/plain", buf};
    case 3:
      return {"/integer", "application/json", R"({"op":"DEC","value":2})"};
    default:
      std::snprintf(buf, sizeof buf, R"({"op":"SET","value":%d})", static_cast<int>(k % 1000));
      return {"/integer", "application/json", buf};
  }
}

// The headers the bench's HTTP client sends, in order (Content-Length comes from Beast).
std::vector<HttpHeader> MixHeaders(uint16_t port, const MixRequest& m) {
  return {{"Host", "127.0.0.1:" + std::to_string(port)},
          {"User-Agent", "k8shmir-bench"},
          {"Content-Type", m.content_type}};
}

// The log entry the proxy (replica `origin`, listening on `port`) appends for `m`.
Entry EntryFor(int origin, uint16_t port, const MixRequest& m) {
  Entry e;
  e.request_id = NewRequestId();
  e.origin = "replica-" + std::to_string(origin);
  e.appended_unix_ms = UnixMillis();
  e.request.method = "POST";
  e.request.target = m.target;
  e.request.version = 11;
  auto headers = MixHeaders(port, m);
  headers.push_back({"Content-Length", std::to_string(m.body.size())});
  e.request.headers = EndToEndHeaders(headers, "Log-Index");
  e.request.body = m.body;
  return e;
}

// ---- Closed-loop load --------------------------------------------------------------------------

enum class Mode { kDirect, kRaw, kReplicated };
Mode ParseMode(const std::string& m) {
  if (m == "direct") return Mode::kDirect;
  if (m == "raw-log") return Mode::kRaw;
  return Mode::kReplicated;
}
const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kDirect:
      return "direct";
    case Mode::kRaw:
      return "raw-log";
    case Mode::kReplicated:
      return "replicated";
  }
  return "?";
}

struct RunSpec {
  Mode mode = Mode::kDirect;
  int concurrency = 1;
  // Duration mode: warm-up then a measured window. Count mode (total > 0): every request counts.
  double warmup_s = 0;
  double measure_s = 0;
  int64_t total = 0;
  EtcdLog* log = nullptr;    // raw-log mode
  double max_seconds = 1e9;  // count mode: stop issuing after this long
  int spread = kReplicas;    // replicated mode: clients over proxies 0..spread-1
  // Called at the start and at the end of the measured window (e.g. to scrape metrics).
  std::function<void()> on_sample;
  std::function<void()> tick;  // count mode: called about every second
};

struct RunResult {
  std::vector<double> latency_us;  // of measured requests
  uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;  // measured window
  int64_t max_index = 0;
  int64_t completed = 0;  // count mode
  bool truncated = false;
  std::map<std::string, double> cpu_ms;      // CPU time per component in the window
  std::map<std::string, double> cpu_sys_ms;  // of which in the kernel
  json metrics;                              // replicated: the proxies' own latency means
};

class LoadRun;

class HttpConn : public std::enable_shared_from_this<HttpConn> {
 public:
  HttpConn(LoadRun& run, int client, uint16_t port);
  void Start();
  void Close() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

 private:
  void Connect();
  void Next();
  void OnResponse(beast::error_code ec);
  void Fail(const std::string& what, beast::error_code ec);

  LoadRun& run_;
  int client_;
  uint16_t port_;
  uint64_t k_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  Clock::time_point start_;
};

// Deadline of one raw-log append (normally answered within milliseconds). It also bounds how
// long an interrupted run waits for the appends in flight before it can clean up.
constexpr std::chrono::seconds kAppendDeadline{4};

class RawClient {
 public:
  RawClient(LoadRun& run, int client, uint16_t port)
      : run_(run), client_(client), port_(port), k_(static_cast<uint64_t>(client)) {}
  void Next();

 private:
  LoadRun& run_;
  int client_;
  uint16_t port_;
  uint64_t k_;
};

class LoadRun {
 public:
  LoadRun(asio::io_context& ioc, Cluster& cluster, RunSpec spec)
      : ioc_(ioc), cluster_(cluster), spec_(std::move(spec)) {}

  RunResult Run() {
    ioc_.restart();
    auto guard = asio::make_work_guard(ioc_);
    begin_ = Clock::now();
    if (spec_.total > 0) {
      t0_ = begin_;
      t1_ = Clock::time_point::max();
    } else {
      t0_ = begin_ + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(spec_.warmup_s));
      t1_ = t0_ + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(spec_.measure_s));
    }
    deadline_ = begin_ + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(spec_.max_seconds));
    pids_ = cluster_.Pids();
    cpu_at_t0_.clear();
    cpu_at_t1_.clear();
    asio::steady_timer t0_timer(ioc_);
    asio::steady_timer t1_timer(ioc_);
    if (spec_.total == 0) {
      t0_timer.expires_at(t0_);
      t0_timer.async_wait([this](beast::error_code ec) {
        if (!ec) cpu_at_t0_ = SampleCpu();
      });
      t1_timer.expires_at(t1_);
      t1_timer.async_wait([this](beast::error_code ec) {
        if (!ec) cpu_at_t1_ = SampleCpu();
      });
    } else {
      cpu_at_t0_ = SampleCpu();
    }
    asio::steady_timer ticker(ioc_);
    std::function<void()> arm_tick = [&] {
      ticker.expires_after(std::chrono::seconds(1));
      ticker.async_wait([&](beast::error_code ec) {
        if (ec) return;
        if (spec_.tick) spec_.tick();
        arm_tick();
      });
    };
    if (spec_.total > 0) arm_tick();

    active_ = spec_.concurrency;
    for (int i = 0; i < spec_.concurrency; ++i) {
      if (spec_.mode == Mode::kRaw) {
        raw_.push_back(std::make_unique<RawClient>(*this, i, cluster_.ProxyPort(i % kReplicas)));
      } else {
        uint16_t port = spec_.mode == Mode::kDirect ? cluster_.DirectPort()
                                                    : cluster_.ProxyPort(i % spec_.spread);
        conns_.push_back(std::make_shared<HttpConn>(*this, i, port));
      }
    }
    for (auto& c : conns_) c->Start();
    for (auto& r : raw_) asio::post(ioc_, [r = r.get()] { r->Next(); });

    const auto hard_deadline = (spec_.total > 0 ? deadline_ : t1_) + std::chrono::seconds(30);
    while (active_ > 0) {
      ioc_.run_for(milliseconds(100));
      if (g_interrupted) {
        stopping_ = true;
        for (auto& c : conns_) c->Close();
      }
      if (Clock::now() > hard_deadline && !aborted_) {
        aborted_ = true;
        stopping_ = true;
        AddError("run did not finish 30 s after its end; connections closed");
        for (auto& c : conns_) c->Close();
      }
      if (ioc_.stopped()) ioc_.restart();
      // Raw clients wait for their Append callbacks (bounded by the append deadline).
    }
    // The clients stop at t1 and may all be done before the t1 timer's handler ran: sample now
    // (the same moment, give or take one handler), never a previous run's figures.
    if (spec_.total == 0 && cpu_at_t1_.empty() && !cpu_at_t0_.empty()) cpu_at_t1_ = SampleCpu();
    ticker.cancel();
    t0_timer.cancel();
    t1_timer.cancel();
    guard.reset();
    ioc_.restart();
    ioc_.run_for(milliseconds(2000));  // the cancelled handlers run now, not in the next run
    conns_.clear();
    CheckInterrupted();

    RunResult r = std::move(result_);
    if (spec_.total > 0) {
      auto end = Clock::now();
      r.seconds = std::chrono::duration<double>(end - begin_).count();
      cpu_at_t1_ = SampleCpu();
    } else {
      r.seconds = spec_.measure_s;
    }
    const double tick_ms = 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
    for (auto& [name, ticks] : cpu_at_t1_) {
      const CpuTicks& before = cpu_at_t0_[name];
      r.cpu_ms[name] =
          tick_ms * static_cast<double>(ticks.user + ticks.sys - before.user - before.sys);
      r.cpu_sys_ms[name] = tick_ms * static_cast<double>(ticks.sys - before.sys);
    }
    r.completed = completed_;
    return r;
  }

  // The next request for `client`, or false when the run stops issuing.
  bool MayIssue() {
    if (stopping_) return false;
    auto now = Clock::now();
    if (spec_.total > 0) {
      if (issued_ >= spec_.total) return false;
      if (now >= deadline_) {
        result_.truncated = true;
        return false;
      }
      ++issued_;
      return true;
    }
    return now < t1_;
  }

  void Record(Clock::time_point start, Clock::time_point end, bool ok, const std::string& error,
              int64_t index) {
    ++completed_;
    if (index > result_.max_index) result_.max_index = index;
    if (start < t0_ || end > t1_) return;
    if (!ok) {
      ++result_.errors;
      if (result_.first_error.empty()) result_.first_error = error;
      return;
    }
    result_.latency_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }

  void AddError(const std::string& e) {
    ++result_.errors;
    if (result_.first_error.empty()) result_.first_error = e;
  }

  void ClientDone() {
    if (--active_ == 0) ioc_.stop();
  }

  asio::io_context& ioc() { return ioc_; }
  Mode mode() const { return spec_.mode; }
  EtcdLog* log() const { return spec_.log; }
  bool stopping() const { return stopping_; }

 private:
  std::map<std::string, CpuTicks> SampleCpu() {
    std::map<std::string, CpuTicks> out;
    for (auto& [name, pids] : pids_) {
      for (pid_t p : pids) {
        CpuTicks t = ReadCpuTicks(p);
        out[name].user += t.user;
        out[name].sys += t.sys;
      }
    }
    if (spec_.on_sample) spec_.on_sample();
    return out;
  }

  asio::io_context& ioc_;
  Cluster& cluster_;
  RunSpec spec_;
  Clock::time_point begin_, t0_, t1_, deadline_;
  std::vector<std::shared_ptr<HttpConn>> conns_;
  std::vector<std::unique_ptr<RawClient>> raw_;
  int active_ = 0;
  int64_t issued_ = 0;
  int64_t completed_ = 0;
  bool stopping_ = false;
  bool aborted_ = false;
  RunResult result_;
  std::map<std::string, std::vector<pid_t>> pids_;
  std::map<std::string, CpuTicks> cpu_at_t0_, cpu_at_t1_;
};

HttpConn::HttpConn(LoadRun& run, int client, uint16_t port)
    : run_(run),
      client_(client),
      port_(port),
      k_(static_cast<uint64_t>(client)),
      stream_(run.ioc()) {}

void HttpConn::Start() { Connect(); }

void HttpConn::Connect() {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port_);
  stream_.expires_after(std::chrono::seconds(10));
  stream_.async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
    if (ec) return self->Fail("connect", ec);
    beast::error_code ignored;
    self->stream_.socket().set_option(tcp::no_delay(true), ignored);
    self->Next();
  });
}

void HttpConn::Next() {
  if (!run_.MayIssue()) {
    Close();
    run_.ClientDone();
    return;
  }
  MixRequest m = MixAt(client_, k_);
  k_ += 1;
  req_ = {};
  req_.method(http::verb::post);
  req_.target(m.target);
  req_.version(11);
  for (const auto& h : MixHeaders(port_, m)) req_.insert(h.name, h.value);
  req_.body() = std::move(m.body);
  req_.prepare_payload();
  res_ = {};
  start_ = Clock::now();
  stream_.expires_after(std::chrono::seconds(30));
  http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) return self->Fail("write", ec);
    http::async_read(self->stream_, self->buffer_, self->res_,
                     [self](beast::error_code rec, std::size_t) { self->OnResponse(rec); });
  });
}

void HttpConn::OnResponse(beast::error_code ec) {
  if (ec) return Fail("read", ec);
  auto end = Clock::now();
  int64_t index = 0;
  auto it = res_.find("K8shmir-Log-Index");
  if (it != res_.end()) index = std::strtoll(std::string(it->value()).c_str(), nullptr, 10);
  const bool ok = res_.result_int() == 200;
  std::string error;
  if (!ok) {
    error = "HTTP " + std::to_string(res_.result_int()) + ": " + res_.body().substr(0, 200);
  }
  run_.Record(start_, end, ok, error, index);
  if (!res_.keep_alive()) {
    // The server closes: a new connection (the mix continues where it was).
    Close();
    buffer_.clear();
    return Connect();
  }
  Next();
}

void HttpConn::Fail(const std::string& what, beast::error_code ec) {
  if (!run_.stopping()) run_.AddError(what + ": " + ec.message());
  Close();
  run_.ClientDone();
}

void RawClient::Next() {
  if (!run_.MayIssue()) {
    run_.ClientDone();
    return;
  }
  const int origin = client_ % kReplicas;
  MixRequest m = MixAt(client_, k_);
  k_ += 1;
  auto start = Clock::now();
  Entry e = EntryFor(origin, port_, m);
  std::string value = EncodeEntry(e);
  run_.log()->Append(e.request_id, std::move(value), start + kAppendDeadline,
                     [this, start](Result<AppendResult> r) {
                       auto end = Clock::now();
                       asio::post(run_.ioc(), [this, start, end, r = std::move(r)] {
                         run_.Record(start, end, r.ok(), r.ok() ? "" : r.error().message,
                                     r.ok() ? r->first_index : 0);
                         Next();
                       });
                     });
}

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

// ---- The benchmark -----------------------------------------------------------------------------

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  int Run();

 private:
  void Log(const std::string& s) {
    double t = std::chrono::duration<double>(Clock::now() - started_).count();
    std::fprintf(stderr, "[bench %6.1fs] %s\n", t, s.c_str());
  }
  std::vector<int> Active() const {
    std::vector<int> out;
    for (int i = 0; i < o_.active_replicas; ++i) out.push_back(i);
    return out;
  }
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - started_).count(); }

  void CheckEntrySizes();
  void ReplayPhase();
  void Matrix();
  void RssPhase();
  void FailoverPhase();
  void ConsistencyCheck();
  void Report();
  void Plot();

  RunResult Load(RunSpec spec) {
    LoadRun run(ioc_, *cluster_, std::move(spec));
    return run.Run();
  }

  Options o_;
  Clock::time_point started_ = Clock::now();
  asio::io_context ioc_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<EtcdLog> raw_log_;    // the raw-log mode's client (its own prefix)
  std::unique_ptr<EtcdLog> group_log_;  // writes into the proxies' group (replay phase)
  json out_;
  std::vector<Point> points_;
  std::vector<Summary> summaries_;
  int64_t max_index_ = 0;
  bool consistent_ = true;
};

int Bench::Run() {
  out_["schema"] = "k8shmir-bench/1";
  out_["tag"] = o_.tag;
  out_["started_at"] = IsoNow();
  utsname u{};
  ::uname(&u);
  out_["machine"] = {{"nproc", std::thread::hardware_concurrency()},
                     {"cpu_model", CpuModel()},
                     {"kernel", std::string(u.release)},
                     {"loadavg_before", LoadAvg()}};
  out_["config"] = {{"etcd",
                     {{"members", kReplicas},
                      {"binary", o_.etcd_bin},
                      {"timing", o_.etcd_timing},
                      {"heartbeat_interval_ms", o_.etcd_timing == "fast" ? 50 : 100},
                      {"election_timeout_ms", o_.etcd_timing == "fast" ? 500 : 1000},
                      {"data_dir", "/dev/shm (tmpfs)"}}},
                    {"concurrency", o_.concurrency},
                    {"modes", o_.modes},
                    {"warmup_s", o_.warmup_s},
                    {"measure_s", o_.measure_s},
                    {"rounds", o_.rounds},
                    {"rss_requests", o_.rss_requests},
                    {"rss_concurrency", o_.rss_concurrency},
                    {"replay_entries", o_.replay_entries},
                    {"failover_rounds", o_.failover_rounds},
                    {"only_failover", o_.only_failover},
                    {"proxy_args", o_.proxy_args},
                    {"mix",
                     "cycle per client: INC k, MUL 3, journal append (36 bytes), DEC 2, SET k "
                     "(POST, keep-alive)"}};
  Log("load average before: " + out_["machine"]["loadavg_before"].dump() + ", " +
      std::to_string(std::thread::hardware_concurrency()) + " cpus");

  tmp_ = std::make_unique<TempDir>(o_.keep);
  cluster_ = std::make_unique<Cluster>(o_, tmp_->path());
  Log("starting 3 etcd members (" + o_.etcd_timing + " timing), 4 counter apps, 3 proxies in " +
      tmp_->path().string());
  cluster_->StartEtcd();
  cluster_->StartApp(-1);
  for (int i : Active()) cluster_->StartApp(i);
  for (int i : Active()) cluster_->StartProxy(i);
  auto ready_timeout = o_.proxy0_wrapper.empty() ? milliseconds(60000) : milliseconds(180000);
  for (int i : Active()) {
    if (!cluster_->WaitReady(i, ready_timeout)) {
      throw std::runtime_error("proxy " + std::to_string(i) + " not ready; logs in " +
                               tmp_->path().string());
    }
  }
  int leader = cluster_->Leader();
  out_["config"]["etcd"]["leader_member"] = leader;
  Log("cluster ready in " + Fmt("%.1f", Elapsed()) + " s; etcd leader is member " +
      std::to_string(leader) + " (every client sends to member 0 first)");

  EtcdLogOptions lo;
  lo.endpoints = cluster_->EndpointList();
  lo.prefix = kRawPrefix;
  raw_log_ = std::make_unique<EtcdLog>(lo);
  lo.prefix = std::string("/k8shmir/") + kGroup + "/log/";
  group_log_ = std::make_unique<EtcdLog>(lo);

  if (!o_.only_failover) {
    CheckEntrySizes();
    if (o_.replay_entries > 0) ReplayPhase();
    Matrix();
    if (o_.rss_requests > 0) RssPhase();
  }
  // Last before the check: it restarts etcd members, which the other phases do not expect.
  if (o_.failover_rounds > 0) FailoverPhase();
  ConsistencyCheck();
  out_["machine"]["loadavg_after"] = LoadAvg();
  Report();

  raw_log_.reset();
  group_log_.reset();
  Log("stopping everything");
  cluster_->StopAll();
  cluster_.reset();
  tmp_.reset();
  return 0;
}

void Bench::CheckEntrySizes() {
  // One request of each kind through proxy 0; read the appended entries back from etcd and
  // compare with what the raw-log client encodes for the same request.
  std::vector<std::pair<int64_t, size_t>> sent;  // index, raw-log size
  for (uint64_t k = 0; k < 5; ++k) {
    MixRequest m = MixAt(0, k);
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    http::request<http::string_body> req{http::verb::post, m.target, 11};
    for (const auto& h : MixHeaders(cluster_->ProxyPort(0), m)) req.insert(h.name, h.value);
    req.body() = m.body;
    req.prepare_payload();
    http::response<http::string_body> res;
    beast::flat_buffer buffer;
    beast::error_code ec;
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), cluster_->ProxyPort(0)), ec);
    if (!ec) http::write(stream, req, ec);
    if (!ec) http::read(stream, buffer, res, ec);
    if (ec || res.result_int() != 200) {
      throw std::runtime_error("calibration request failed: " +
                               (ec ? ec.message() : std::to_string(res.result_int())));
    }
    int64_t index = std::strtoll(std::string(res["K8shmir-Log-Index"]).c_str(), nullptr, 10);
    sent.push_back({index, EncodeEntry(EntryFor(0, cluster_->ProxyPort(0), m)).size()});
    max_index_ = std::max(max_index_, index);
  }
  std::mutex mu;
  std::condition_variable cv;
  std::map<int64_t, size_t> seen;
  auto sub = group_log_->Subscribe(sent.front().first, [&](LogEvent ev) {
    if (auto* b = std::get_if<LogBatch>(&ev)) {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& r : b->records) seen[r.index] = r.value.size();
      cv.notify_all();
    }
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return seen.size() >= sent.size(); });
  }
  sub.reset();
  json sizes = json::array();
  bool same = true;
  std::string line;
  for (auto& [index, raw] : sent) {
    size_t proxy = seen.count(index) ? seen[index] : 0;
    sizes.push_back({{"index", index}, {"proxy_bytes", proxy}, {"raw_log_bytes", raw}});
    if (proxy != raw) same = false;
    line += " " + std::to_string(proxy) + "/" + std::to_string(raw);
  }
  out_["entry_bytes"] = {{"samples", sizes}, {"identical", same}};
  Log("entry sizes proxy/raw-log:" + line + (same ? " (identical)" : " (DIFFERENT)"));
}

void Bench::ReplayPhase() {
  Log("replay: stopping app 2 and proxy 2, writing " + std::to_string(o_.replay_entries) +
      " entries (" + std::to_string(o_.write_concurrency) + " concurrent appends)");
  cluster_->StopProxy(2);
  cluster_->KillApp(2);
  RunSpec spec;
  spec.mode = Mode::kRaw;
  spec.concurrency = o_.write_concurrency;
  spec.total = o_.replay_entries;
  spec.log = group_log_.get();
  spec.max_seconds = 180;
  RunResult w = Load(spec);
  if (w.errors > 0 || w.truncated) {
    throw std::runtime_error("replay: writing failed (" + std::to_string(w.errors) +
                             " errors, first: " + w.first_error + ")");
  }
  const int64_t head = std::max(w.max_index, max_index_);
  max_index_ = head;
  Log("replay: wrote " + std::to_string(w.completed) + " entries in " + Fmt("%.1f", w.seconds) +
      " s (" + Fmt("%.0f", static_cast<double>(w.completed) / w.seconds) +
      " appends/s), head index " + std::to_string(head) + "; waiting for replicas 0 and 1");
  if (!cluster_->WaitApplied(head, milliseconds(180000), {0, 1})) {
    throw std::runtime_error("replay: replicas 0 and 1 did not apply the entries");
  }
  cluster_->StartApp(2);
  auto t_start = Clock::now();
  cluster_->StartProxy(2);
  json last;
  bool done = WaitFor(
      [&] {
        last = cluster_->Status(2);
        return last.is_object() && last.value("applied_index", int64_t{0}) >= head &&
               last.value("state", "") == "serving";
      },
      milliseconds(240000), milliseconds(10));
  auto seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  int64_t replayed = last.is_object() ? last.value("entries_replayed", int64_t{0}) : 0;
  int64_t recovery_ms = last.is_object() ? last.value("last_recovery_ms", int64_t{0}) : 0;
  double rate = seconds > 0 ? static_cast<double>(replayed) / seconds : 0;
  out_["replay"] = {
      {"entries_written", w.completed},
      {"write_seconds", w.seconds},
      {"write_rate_per_s", static_cast<double>(w.completed) / w.seconds},
      {"head_index", head},
      {"entries_replayed", replayed},
      {"seconds_from_proxy_start", seconds},
      {"entries_per_s", rate},
      {"catch_up_ms_reported", recovery_ms},
      {"entries_per_s_catch_up_only",
       recovery_ms > 0 ? 1000.0 * static_cast<double>(replayed) / static_cast<double>(recovery_ms)
                       : 0},
      {"completed", done}};
  Log("replay: proxy 2 replayed " + std::to_string(replayed) + " entries in " +
      Fmt("%.2f", seconds) + " s from its start = " + Fmt("%.0f", rate) + " entries/s" +
      (done ? "" : " (DID NOT FINISH)"));
  if (!cluster_->WaitReady(2, milliseconds(30000))) {
    throw std::runtime_error("replay: proxy 2 not ready after the replay");
  }
}

void Bench::Matrix() {
  std::vector<Mode> modes;
  for (const auto& m : o_.modes) modes.push_back(ParseMode(m));
  for (int c : o_.concurrency) {
    for (int round = 0; round < o_.rounds; ++round) {
      for (size_t j = 0; j < modes.size(); ++j) {
        // Rotate the order per round so no mode always runs first after a change of load.
        Mode mode = modes[(j + static_cast<size_t>(round)) % modes.size()];
        RunSpec spec;
        spec.mode = mode;
        spec.concurrency = c;
        spec.warmup_s = o_.warmup_s;
        spec.measure_s = o_.measure_s;
        spec.log = raw_log_.get();
        spec.spread = o_.replicated_proxies;
        // The proxies' own view (replicated mode): mean append latency (client request to the
        // log's answer, at the origin) and mean apply latency (one forward to the app).
        std::vector<std::array<double, 6>> sums;
        if (mode == Mode::kReplicated) {
          spec.on_sample = [&] {
            std::array<double, 6> a{};
            for (int i : Active()) {
              std::string text = cluster_->Metrics(i);
              auto [as, ac] = HistogramSums(text, "k8shmir_append_latency_seconds");
              auto [ps, pc] = HistogramSums(text, "k8shmir_apply_latency_seconds");
              a[0] += as;
              a[1] += ac;
              a[2] += ps;
              a[3] += pc;
              a[4] += CounterSum(text, "k8shmir_log_appends_total");
              a[5] += CounterSum(text, "k8shmir_log_appended_entries_total");
            }
            sums.push_back(a);
          };
        }
        RunResult r = Load(spec);
        if (sums.size() >= 2) {
          const auto& b = sums.front();
          const auto& e = sums.back();
          auto mean_ms = [](double ds, double dc) { return dc > 0 ? 1000 * ds / dc : 0.0; };
          r.metrics = {{"append_mean_ms", mean_ms(e[0] - b[0], e[1] - b[1])},
                       {"appends", e[1] - b[1]},
                       {"apply_mean_ms", mean_ms(e[2] - b[2], e[3] - b[3])},
                       {"entries_per_append", e[4] > b[4] ? (e[5] - b[5]) / (e[4] - b[4]) : 0.0},
                       {"applies", e[3] - b[3]}};
        }
        if (mode == Mode::kReplicated) {
          max_index_ = std::max(max_index_, r.max_index);
          // No backlog of one point may spill into the next.
          if (!cluster_->WaitApplied(max_index_, milliseconds(60000), Active())) {
            throw std::runtime_error("replicas did not apply index " + std::to_string(max_index_));
          }
        }
        Point p = MakePoint(ModeName(mode), c, round, std::move(r));
        Log(std::string(ModeName(mode)) + " c=" + std::to_string(c) + " round " +
            std::to_string(round) + ": " + std::to_string(p.requests) + " req, " +
            Fmt("%.0f", p.throughput) + " req/s, p50 " + Fmt("%.3f", p.p50) + " p90 " +
            Fmt("%.3f", p.p90) + " p99 " + Fmt("%.3f", p.p99) + " ms" +
            (p.errors ? ", " + std::to_string(p.errors) + " errors: " + p.first_error : "") +
            (p.metrics.is_object()
                 ? "; proxies: append " + Fmt("%.3f", p.metrics["append_mean_ms"].get<double>()) +
                       " apply " + Fmt("%.3f", p.metrics["apply_mean_ms"].get<double>()) +
                       " ms mean"
                 : ""));
        points_.push_back(std::move(p));
      }
    }
  }
  for (int c : o_.concurrency) {
    for (const auto& m : o_.modes) summaries_.push_back(Summarize(points_, m, c));
  }
}

void Bench::RssPhase() {
  std::vector<int64_t> before;
  for (int i : Active()) before.push_back(ReadRssKib(cluster_->ProxyPid(i)));
  const double budget_left = o_.budget_s - Elapsed() - 20;
  std::string before_text;
  for (int64_t b : before) before_text += " " + std::to_string(b);
  Log("rss: " + std::to_string(o_.rss_requests) + " replicated requests, " +
      std::to_string(o_.rss_concurrency) + " clients; VmRSS before (KiB):" + before_text +
      "; at most " + Fmt("%.0f", budget_left) + " s");
  json samples = json::array();
  auto begin = Clock::now();
  RunSpec spec;
  spec.mode = Mode::kReplicated;
  spec.concurrency = o_.rss_concurrency;
  spec.total = o_.rss_requests;
  spec.max_seconds = std::max(10.0, budget_left);
  spec.spread = o_.replicated_proxies;
  int ticks = 0;
  spec.tick = [&] {
    if (++ticks % 5 != 0) return;
    json s = {{"t_s", std::chrono::duration<double>(Clock::now() - begin).count()}};
    json rss = json::array();
    for (int i : Active()) rss.push_back(ReadRssKib(cluster_->ProxyPid(i)));
    s["rss_kib"] = rss;
    samples.push_back(s);
  };
  RunResult r = Load(spec);
  max_index_ = std::max(max_index_, r.max_index);
  cluster_->WaitApplied(max_index_, milliseconds(60000), Active());
  std::vector<int64_t> after;
  json proxies = json::array();
  double worst = 0;
  std::string after_text;
  for (int i : Active()) {
    after.push_back(ReadRssKib(cluster_->ProxyPid(i)));
    double ratio =
        before[i] > 0 ? static_cast<double>(after[i]) / static_cast<double>(before[i]) : 0;
    worst = std::max(worst, ratio);
    proxies.push_back(
        {{"replica", i}, {"before_kib", before[i]}, {"after_kib", after[i]}, {"ratio", ratio}});
    after_text += " " + std::to_string(after[i]);
  }
  std::sort(r.latency_us.begin(), r.latency_us.end());
  out_["rss"] = {{"requests", r.completed},
                 {"requested", o_.rss_requests},
                 {"errors", r.errors},
                 {"first_error", r.first_error},
                 {"truncated_by_budget", r.truncated},
                 {"seconds", r.seconds},
                 {"throughput_rps", static_cast<double>(r.completed) / r.seconds},
                 {"p50_ms", Percentile(r.latency_us, 50) / 1000},
                 {"p99_ms", Percentile(r.latency_us, 99) / 1000},
                 {"proxies", proxies},
                 {"worst_ratio", worst},
                 {"samples", samples}};
  Log("rss: " + std::to_string(r.completed) + " requests in " + Fmt("%.1f", r.seconds) + " s (" +
      Fmt("%.0f", static_cast<double>(r.completed) / r.seconds) + " req/s, " +
      std::to_string(r.errors) + " errors); VmRSS after (KiB):" + after_text +
      (r.truncated ? " (TRUNCATED)" : ""));
}

void Bench::FailoverPhase() {
  FailoverOptions fo;
  fo.rounds = o_.failover_rounds;
  FailoverHooks hooks;
  for (int i : Active()) hooks.proxy_ports.push_back(cluster_->ProxyPort(i));
  hooks.etcd_client_ports = cluster_->EtcdClientPorts();
  hooks.kill_member = [this](int i) { cluster_->KillEtcd(i); };
  hooks.restart_member = [this](int i) {
    cluster_->StartEtcdMember(i);
    if (!cluster_->WaitEtcdHealthy(milliseconds(60000))) {
      throw std::runtime_error("etcd member " + std::to_string(i) + " did not come back");
    }
  };
  hooks.wait_proxies_ready = [this] {
    for (int i : Active()) {
      if (!cluster_->WaitReady(i, milliseconds(60000))) return false;
    }
    return true;
  };
  hooks.log = [this](const std::string& s) { Log(s); };
  Log("failover: " + std::to_string(fo.rounds) + " etcd leader SIGKILL(s) under " +
      std::to_string(fo.clients) + " closed-loop clients through the proxies");
  int64_t index = 0;
  out_["failover"] = RunFailover(fo, hooks, &index);
  max_index_ = std::max(max_index_, index);
  CheckInterrupted();
}

void Bench::ConsistencyCheck() {
  bool applied = cluster_->WaitApplied(max_index_, milliseconds(60000), Active());
  json digests = json::array();
  std::string first;
  consistent_ = applied;
  for (int i : Active()) {
    json d = cluster_->Digest(i);
    digests.push_back(d);
    std::string key = d.is_object() ? d["hash"].dump() + d["count"].dump() + d["value"].dump() +
                                          d["violations"].dump()
                                    : "?";
    if (i == 0) first = key;
    if (key != first || !d.is_object() || d.value("violations", 1) != 0) consistent_ = false;
  }
  out_["replicas"] = {{"identical", consistent_}, {"max_index", max_index_}, {"digests", digests}};
  Log(std::string("replicas ") + (consistent_ ? "agree" : "DISAGREE") + ": " + digests.dump());
}

void Bench::Report() {
  std::ostringstream md;
  md << "\n### k8shmir bench — " << out_["started_at"].get<std::string>() << ", "
     << std::thread::hardware_concurrency() << " cpus (" << CpuModel() << "), load before "
     << out_["machine"]["loadavg_before"].dump() << ", after "
     << out_["machine"]["loadavg_after"].dump() << "\n\n";
  md << "Pooled over " << o_.rounds << " round(s) of " << o_.measure_s << " s per point ("
     << o_.warmup_s << " s warm-up excluded); throughput is the median of the rounds "
     << "[min–max]; p50 range = min–max of the per-round p50.\n\n";
  md << "| mode | clients | requests | errors | throughput req/s [min–max] | p50 ms | p90 ms "
        "| p99 ms | mean ms | p50 range ms |\n";
  md << "|---|---:|---:|---:|---|---:|---:|---:|---:|---|\n";
  json summary = json::array();
  for (const auto& s : summaries_) {
    md << "| " << s.mode << " | " << s.concurrency << " | " << s.requests << " | " << s.errors
       << " | " << Fmt("%.0f", s.thr_median) << " [" << Fmt("%.0f", s.thr_min) << "–"
       << Fmt("%.0f", s.thr_max) << "] | " << Fmt("%.3f", s.p50) << " | " << Fmt("%.3f", s.p90)
       << " | " << Fmt("%.3f", s.p99) << " | " << Fmt("%.3f", s.mean) << " | "
       << Fmt("%.3f", s.p50_min) << "–" << Fmt("%.3f", s.p50_max) << " |\n";
    summary.push_back(
        {{"mode", s.mode},
         {"concurrency", s.concurrency},
         {"requests", s.requests},
         {"errors", s.errors},
         {"throughput_rps", {{"median", s.thr_median}, {"min", s.thr_min}, {"max", s.thr_max}}},
         {"latency_ms",
          {{"p50", s.p50},
           {"p90", s.p90},
           {"p99", s.p99},
           {"mean", s.mean},
           {"p50_min", s.p50_min},
           {"p50_max", s.p50_max}}},
         {"cpu_us_per_request", s.cpu_us_per_request},
         {"cpu_sys_us_per_request", s.cpu_sys_us_per_request},
         {"proxy_append_mean_ms", s.append_mean_ms},
         {"proxy_apply_mean_ms", s.apply_mean_ms},
         {"proxy_entries_per_append", s.entries_per_append},
         {"cpus_busy", s.cpus_busy}});
  }
  json points = json::array();
  for (const auto& p : points_) {
    points.push_back(
        {{"mode", p.mode},
         {"concurrency", p.concurrency},
         {"round", p.round},
         {"requests", p.requests},
         {"errors", p.errors},
         {"first_error", p.first_error},
         {"seconds", p.seconds},
         {"throughput_rps", p.throughput},
         {"latency_ms",
          {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"mean", p.mean}, {"max", p.max}}},
         {"cpu_us_per_request", p.cpu_us_per_request},
         {"cpu_sys_us_per_request", p.cpu_sys_us_per_request},
         {"cpus_busy", p.cpus_busy},
         {"proxy_metrics", p.metrics}});
  }
  out_["points"] = points;
  out_["summary"] = summary;

  // Targets, as ratios inside this run.
  auto find = [&](const std::string& mode, int c) -> const Summary* {
    for (const auto& s : summaries_) {
      if (s.mode == mode && s.concurrency == c && s.requests > 0) return &s;
    }
    return nullptr;
  };
  auto round_point = [&](const std::string& mode, int c, int round) -> const Point* {
    for (const auto& p : points_) {
      if (p.mode == mode && p.concurrency == c && p.round == round && p.requests > 0) return &p;
    }
    return nullptr;
  };
  json targets = json::array();
  md << "\n| target | measured | limit | result |\n|---|---|---|---|\n";
  auto add = [&](const std::string& name, bool measured, bool pass, const std::string& value,
                 const std::string& limit, json extra) {
    std::string result = !measured ? "NOT MEASURED" : pass ? "PASS" : "FAIL";
    md << "| " << name << " | " << value << " | " << limit << " | **" << result << "** |\n";
    json t = {{"name", name},
              {"measured", measured},
              {"pass", measured && pass},
              {"value", value},
              {"limit", limit}};
    if (extra.is_object()) t.update(extra);
    targets.push_back(t);
  };
  {
    const Summary* d = find("direct", 1);
    const Summary* raw = find("raw-log", 1);
    const Summary* rep = find("replicated", 1);
    if (d && raw && rep) {
      double overhead = rep->p50 - d->p50;
      double ratio = overhead / raw->p50;
      json per_round = json::array();
      for (int r = 0; r < o_.rounds; ++r) {
        auto* a = round_point("direct", 1, r);
        auto* b = round_point("raw-log", 1, r);
        auto* c = round_point("replicated", 1, r);
        if (a && b && c) per_round.push_back((c->p50 - a->p50) / b->p50);
      }
      add("c=1: (replicated p50 − direct p50) / raw-log p50", true, ratio <= 1.25,
          Fmt("%.3f", ratio) + " (" + Fmt("%.3f", rep->p50) + " − " + Fmt("%.3f", d->p50) + ") / " +
              Fmt("%.3f", raw->p50) + " ms; rounds " + per_round.dump(),
          "≤ 1.25", {{"ratio", ratio}, {"per_round", per_round}});
    } else {
      add("c=1: (replicated p50 − direct p50) / raw-log p50", false, false, "-", "≤ 1.25", {});
    }
  }
  {
    const Summary* raw = find("raw-log", 64);
    const Summary* rep = find("replicated", 64);
    if (raw && rep) {
      double ratio = rep->thr_median / raw->thr_median;
      json per_round = json::array();
      for (int r = 0; r < o_.rounds; ++r) {
        auto* b = round_point("raw-log", 64, r);
        auto* c = round_point("replicated", 64, r);
        if (b && c) per_round.push_back(c->throughput / b->throughput);
      }
      add("c=64: replicated throughput / raw-log throughput", true, ratio >= 1.0,
          Fmt("%.3f", ratio) + " (" + Fmt("%.0f", rep->thr_median) + " / " +
              Fmt("%.0f", raw->thr_median) + " req/s); rounds " + per_round.dump(),
          "≥ 1.0", {{"ratio", ratio}, {"per_round", per_round}});
    } else {
      add("c=64: replicated throughput / raw-log throughput", false, false, "-", "≥ 1.0", {});
    }
  }
  if (out_.contains("replay")) {
    double rate = out_["replay"]["entries_per_s"].get<double>();
    add("replay rate into the counter app", out_["replay"]["completed"].get<bool>(), rate >= 5000,
        Fmt("%.0f", rate) + " entries/s (" + out_["replay"]["entries_replayed"].dump() +
            " entries in " + Fmt("%.2f", out_["replay"]["seconds_from_proxy_start"].get<double>()) +
            " s)",
        "≥ 5000 entries/s", {{"entries_per_s", rate}});
  } else {
    add("replay rate into the counter app", false, false, "-", "≥ 5000 entries/s", {});
  }
  if (out_.contains("rss")) {
    double worst = out_["rss"]["worst_ratio"].get<double>();
    std::string v;
    for (auto& p : out_["rss"]["proxies"]) {
      v += p["before_kib"].dump() + "→" + p["after_kib"].dump() + " ";
    }
    int64_t n = out_["rss"]["requests"].get<int64_t>();
    add("proxy RSS after/before " + std::to_string(n) + " requests", n >= o_.rss_requests,
        worst <= 1.10, Fmt("%.3f", worst) + " worst (KiB " + v + ")", "≤ 1.10",
        {{"worst_ratio", worst}});
  } else {
    add("proxy RSS after/before 200000 requests", false, false, "-", "≤ 1.10", {});
  }
  if (out_.contains("failover") && !out_["failover"]["rounds"].empty()) {
    const json& f = out_["failover"];
    std::string per_round;
    for (const auto& r : f["rounds"]) {
      per_round += (per_round.empty() ? "" : ", ") + Fmt("%.2f", r["stall_s"].get<double>()) +
                   " / " + Fmt("%.2f", r["election_s"].get<double>());
    }
    add("client stall after an etcd leader SIGKILL ≤ etcd's election time + 0.5 s", true,
        f["pass"].get<bool>(),
        "worst stall − election " + Fmt("%.2f", f["worst_stall_minus_election_s"].get<double>()) +
            " s; stall / election per round (s): " + per_round,
        "≤ +0.5 s every round",
        {{"worst_stall_minus_election_s", f["worst_stall_minus_election_s"]}});
  } else {
    add("client stall after an etcd leader SIGKILL ≤ etcd's election time + 0.5 s", false, false,
        "-", "≤ +0.5 s every round", {});
  }
  md << "\nreplicas identical after the run: " << (consistent_ ? "yes" : "NO") << "\n";
  if (out_.contains("failover")) {
    const json& f = out_["failover"];
    md << "\nFailover: the etcd leader SIGKILLed under " << f["clients"].dump()
       << " closed-loop clients through the proxies, then restarted, per round. Election = "
          "SIGKILL until a surviving member names a new leader (etcd's own time); stall = the "
          "longest time without a 2xx answer at any one proxy, around the kill.\n\n"
       << "| round | killed member | election s | stall s | stall − election s | answers after "
          "the kill (2xx / 503 / other) | result |\n|---:|---:|---:|---:|---:|---|---|\n";
    int n = 0;
    for (const auto& r : f["rounds"]) {
      const auto& a = r["answers_after_kill"];
      md << "| " << n++ << " | " << r["killed_member"].dump() << " | "
         << Fmt("%.3f", r["election_s"].get<double>()) << " | "
         << Fmt("%.3f", r["stall_s"].get<double>()) << " | "
         << Fmt("%.3f", r["stall_s"].get<double>() - r["election_s"].get<double>()) << " | "
         << a["2xx"].dump() << " / " << a["503"].dump() << " / " << a["other"].dump() << " | "
         << (r["pass"].get<bool>() ? "PASS" : "FAIL") << " |\n";
    }
  }
  if (!summaries_.empty()) {
    md << "\nWhere the time goes (medians over rounds): CPU µs per request of all processes of a "
          "kind (of which in the kernel); CPUs busy = CPU time of all of them per second (of "
       << std::thread::hardware_concurrency()
       << "; near that, latency is bound by CPU time, not by waiting); the proxies' own mean "
          "append latency (client request → log answer, at the origin) and apply latency (entry "
          "handed to the app connection → its response; with pipelining, behind the entries "
          "ahead of it).\n\n"
       << "| mode | clients | etcd | proxies | apps | bench | CPUs busy | proxy append ms | proxy "
          "apply ms | entries per append |\n"
       << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& s : summaries_) {
      auto cell = [&](const char* n) {
        auto a = s.cpu_us_per_request.find(n);
        auto b = s.cpu_sys_us_per_request.find(n);
        if (a == s.cpu_us_per_request.end()) return std::string("-");
        return Fmt("%.0f", a->second) + " (" +
               Fmt("%.0f", b == s.cpu_sys_us_per_request.end() ? 0.0 : b->second) + ")";
      };
      md << "| " << s.mode << " | " << s.concurrency << " | " << cell("etcd") << " | "
         << cell("proxies") << " | " << cell("apps") << " | " << cell("bench") << " | "
         << Fmt("%.2f", s.cpus_busy) << " | "
         << (s.mode == "replicated" ? Fmt("%.3f", s.append_mean_ms) : "-") << " | "
         << (s.mode == "replicated" ? Fmt("%.3f", s.apply_mean_ms) : "-") << " | "
         << (s.mode == "replicated" ? Fmt("%.1f", s.entries_per_append) : "-") << " |\n";
    }
  }
  out_["targets"] = targets;
  out_["duration_s"] = Elapsed();

  std::cout << md.str();
  for (auto& t : targets) {
    std::cout << (t["measured"].get<bool>() ? (t["pass"].get<bool>() ? "PASS" : "FAIL")
                                            : "NOT MEASURED")
              << "  " << t["name"].get<std::string>() << ": " << t["value"].get<std::string>()
              << " (limit " << t["limit"].get<std::string>() << ")\n";
  }
  std::cout.flush();

  std::filesystem::create_directories(o_.results_dir);
  {
    std::ofstream f(o_.results_dir / "latest.json");
    f << out_.dump(2) << "\n";
  }
  Log("wrote " + (o_.results_dir / "latest.json").string());
  // The plot draws the latency matrix, which --only-failover does not measure.
  if (o_.plot && !o_.only_failover) Plot();
}

void Bench::Plot() {
  auto data = tmp_->path() / "plot.dat";
  {
    std::ofstream f(data);
    bool first = true;
    for (const auto& m : o_.modes) {
      if (!first) f << "\n\n";
      first = false;
      f << "# " << m << ": clients p50 p90 p99 thr thr_min thr_max\n";
      for (const auto& s : summaries_) {
        if (s.mode != m || s.requests == 0) continue;
        f << s.concurrency << " " << s.p50 << " " << s.p90 << " " << s.p99 << " " << s.thr_median
          << " " << s.thr_min << " " << s.thr_max << "\n";
      }
    }
  }
  auto png = std::filesystem::absolute(o_.results_dir / "latest.png");
  auto script = tmp_->path() / "plot.gp";
  {
    std::ofstream f(script);
    std::string xt;
    for (int c : o_.concurrency) xt += (xt.empty() ? "" : ", ") + std::to_string(c);
    f << "set terminal pngcairo size 1400,560 font 'sans,10'\n"
      << "set output '" << png.string() << "'\n"
      << "set multiplot layout 1,2 title 'k8shmir bench " << out_["started_at"].get<std::string>()
      << " (" << std::thread::hardware_concurrency() << " cpus, load before "
      << Fmt("%.1f", out_["machine"]["loadavg_before"][0].get<double>()) << ")'\n"
      << "set logscale x 2\nset xrange [" << Fmt("%.2f", o_.concurrency.front() * 0.7) << ":"
      << Fmt("%.2f", o_.concurrency.back() * 1.4) << "]\nset xtics (" << xt
      << ")\nset grid\nset key top left\n"
      << "set xlabel 'concurrent closed-loop clients'\n"
      << "set logscale y\nset ylabel 'latency (ms)'\nset title 'latency: p50 (solid), p99 "
         "(dashed)'\n";
    const char* colors[] = {"#1b9e77", "#d95f02", "#7570b3"};
    std::string plot = "plot ";
    std::string plot2 = "plot ";
    for (size_t i = 0; i < o_.modes.size(); ++i) {
      std::string c = colors[i % 3];
      std::string sep = i ? ", " : "";
      plot += sep + "'" + data.string() + "' index " + std::to_string(i) +
              " using 1:2 with linespoints lw 2 lc rgb '" + c + "' title '" + o_.modes[i] +
              " p50', '' index " + std::to_string(i) + " using 1:4 with linespoints dt 2 lc rgb '" +
              c + "' title '" + o_.modes[i] + " p99'";
      plot2 += sep + "'" + data.string() + "' index " + std::to_string(i) +
               " using 1:5:6:7 with yerrorlines lw 2 lc rgb '" + c + "' title '" + o_.modes[i] +
               "'";
    }
    f << plot << "\n"
      << "set ylabel 'throughput (requests/s)'\nset title 'throughput: median of rounds "
         "[min-max]'\n"
      << plot2 << "\nunset multiplot\n";
  }
  std::string cmd = "gnuplot '" + script.string() + "' 2>&1";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    Log("gnuplot failed (" + std::to_string(rc) + "); is gnuplot-nox installed?");
  } else {
    Log("wrote " + png.string());
  }
}

}  // namespace
}  // namespace k8shmir::bench

int main(int argc, char** argv) {
  using namespace k8shmir::bench;
  Options o = ParseOptions(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Quiet gRPC/spdlog output of the in-process etcd clients.
  ::setenv("GRPC_VERBOSITY", "ERROR", 0);
  int rc = 0;
  try {
    Bench bench(std::move(o));
    rc = bench.Run();
  } catch (const Interrupted&) {
    std::cerr << "k8shmir-bench: interrupted; everything it started was stopped\n";
    rc = 130;
  } catch (const std::exception& e) {
    std::cerr << "k8shmir-bench: " << e.what() << "\n";
    rc = 1;
  }
  return rc;
}
