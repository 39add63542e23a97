// k8shmir-bench: the Markdown report, PASS/FAIL per target, latest.json and the plot.
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

}  // namespace k8shmir::bench
