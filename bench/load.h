// k8shmir-bench's load: the request mix (non-commutative counter operations and journal
// appends, the same sequence in every mode) and closed-loop clients in three modes: direct (to a
// counter app), raw-log (EtcdLog appends of the proxy's entry) and replicated (through proxies).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cluster.h"
#include "codec/entry_codec.h"
#include "codec/header_filter.h"
#include "common.h"
#include "log/etcd_log.h"

namespace k8shmir::bench {

struct MixRequest {
  std::string target;
  std::string content_type;
  std::string body;
  std::string method = "POST";
  // What the request is for the report ("write", "read"): RunResult keeps latencies per kind.
  std::string kind = "write";
};
using Mix = std::function<MixRequest(int client, uint64_t k)>;

MixRequest MixAt(int client, uint64_t k);
// The headers the bench's HTTP client sends, in order (Content-Length comes from Beast).
std::vector<HttpHeader> MixHeaders(uint16_t port, const MixRequest& m);
// The log entry the proxy (replica `origin`, listening on `port`) appends for `m`.
Entry EntryFor(int origin, uint16_t port, const MixRequest& m);

// kBarrier: the raw cost of a read barrier, EtcdLog::ReadCommittedIndex of the group's log (one
// linearizable etcd read), closed-loop like the raw-log appends.
enum class Mode { kDirect, kRaw, kReplicated, kBarrier };
Mode ParseMode(const std::string& m);
const char* ModeName(Mode m);

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
  Mix mix;                     // HTTP modes: the requests (MixAt when empty)
};

struct RunResult {
  std::vector<double> latency_us;                                 // of measured requests
  std::map<std::string, std::vector<double>> latency_us_by_kind;  // the same, by MixRequest::kind
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

// Runs one closed-loop load on `ioc` (restarted for it) against `cluster`.
RunResult RunLoad(asio::io_context& ioc, Cluster& cluster, RunSpec spec);

}  // namespace k8shmir::bench
