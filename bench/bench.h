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
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cluster.h"
#include "common.h"
#include "load.h"
#include "log/etcd_log.h"
#include "options.h"
#include "stats.h"

namespace k8shmir::bench {

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

  RunResult Load(RunSpec spec) { return RunLoad(ioc_, *cluster_, std::move(spec)); }

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

}  // namespace k8shmir::bench
