// What every part of k8shmir-bench shares: Ctrl-C handling and the child processes it kills,
// small blocking HTTP requests and polling (the test harness's, support/), Prometheus text and
// /proc readings.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/http_client.h"
#include "support/process.h"

namespace k8shmir::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using k8shmir::testing::ChildProcess;
using std::chrono::milliseconds;

// Process ids of every child, so that a signal handler can kill them (async-signal-safe kill()).
inline constexpr int kMaxChildren = 64;
extern std::atomic<pid_t> g_children[kMaxChildren];
extern volatile sig_atomic_t g_interrupted;

// SIGINT/SIGTERM/SIGHUP: kills every registered child, then marks the run interrupted (a second
// signal exits at once).
void OnSignal(int sig);

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Throws Interrupted once a signal came.
void CheckInterrupted();

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

// ---- Small blocking HTTP requests: the harness's client ----------------------------------------

// The body as the bench's (ordered) JSON; a discarded value when it is not JSON.
json BodyJson(const testing::HttpResult& r);
testing::HttpResult Get(uint16_t port, const std::string& target,
                        milliseconds timeout = milliseconds(2000));
// The harness's WaitFor, ended by Ctrl-C too.
bool WaitFor(const std::function<bool()>& pred, milliseconds timeout,
             milliseconds interval = milliseconds(50));

// Sums of a Prometheus histogram (`<name>_sum` and `<name>_count`) over one text exposition.
std::pair<double, double> HistogramSums(const std::string& text, const std::string& name);
// Sum of a Prometheus counter over every series of one text exposition.
double CounterSum(const std::string& text, const std::string& name);

// ---- /proc readings ---------------------------------------------------------------------------

int64_t ReadRssKib(pid_t pid);
// utime and stime of a whole process (all threads), in clock ticks.
struct CpuTicks {
  int64_t user = 0;
  int64_t sys = 0;
};
CpuTicks ReadCpuTicks(pid_t pid);  // 0: this process
std::vector<double> LoadAvg();
std::string CpuModel();
std::string IsoNow();
int64_t UnixMillis();

}  // namespace k8shmir::bench
