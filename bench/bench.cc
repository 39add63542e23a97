// k8shmir-bench: the run and its phases (see bench.h).
#include "bench.h"

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

}  // namespace k8shmir::bench
