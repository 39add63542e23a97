#include "reads.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cluster.h"
#include "common.h"
#include "load.h"
#include "log/etcd_log.h"
#include "stats.h"

namespace k8shmir::bench {
namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kRoutes = "GET /integer, GET /journal/digest local";
const std::vector<int> kClients = {1, 16, 64};

void Say(const std::string& s) { std::cerr << "reads: " << s << std::endl; }

MixRequest ReadOf(const std::string& path) {
  MixRequest m;
  m.target = path;
  m.method = "GET";
  m.kind = "read";
  return m;
}

// `read_percent` of the requests read `path`; the others are the bench's write mix (in its
// order: INC, MUL, journal append, DEC, SET). At 90 %, one write every 10 requests.
Mix ReadMix(const std::string& path, int read_percent) {
  return [path, read_percent](int client, uint64_t k) {
    if (static_cast<int>((k % 10) * 10) < read_percent) return ReadOf(path);
    return MixAt(client, read_percent == 0 ? k : k / 10);
  };
}

struct Measured {
  std::string name;
  int clients = 0;
  Point all;                             // every request of the point
  Point reads;                           // its reads only
  Point writes;                          // its writes only
  std::map<std::string, double> cpu_us;  // per request, by process kind
  // From the proxies' /metrics over the measured window (proxied points): reads per etcd round
  // trip (a barrier, or an append that carried reads), the share of reads that rode an append,
  // the barrier's and the read's mean latency as the proxies saw them.
  double reads_per_round_trip = 0;
  double append_read_share = 0;
  double barrier_mean_ms = 0;
  double proxy_read_mean_ms = 0;
};

// The proxies' read counters, summed over the three.
struct ReadMetrics {
  double barriers = 0, barrier_reads = 0;
  double read_appends = 0, append_reads = 0;  // appends that carried reads, and those reads
  std::pair<double, double> barrier_latency, read_latency;  // sum (s), count
};

Point PointOf(const std::string& name, int c, const RunResult& r, const std::vector<double>& lat) {
  RunResult copy = r;
  copy.latency_us = lat;
  return MakePoint(name, c, 0, copy);
}

class ReadsBench {
 public:
  explicit ReadsBench(Options o) : o_(std::move(o)) {}

  int Run() {
    out_["schema"] = "k8shmir-bench-reads/1";
    out_["started_at"] = IsoNow();
    out_["machine"] = {{"nproc", std::thread::hardware_concurrency()},
                       {"cpu_model", CpuModel()},
                       {"loadavg_before", LoadAvg()}};
    out_["config"] = {{"routes", kRoutes},
                      {"mix",
                       "90 % reads, 10 % the bench's writes (INC, MUL, journal append, "
                       "DEC, SET), interleaved; closed-loop clients, keep-alive"},
                      {"warmup_s", o_.warmup_s},
                      {"measure_s", o_.measure_s}};
    tmp_ = std::make_unique<TempDir>(o_.keep);
    base_args_ = o_.proxy_args;
    o_.proxy_args.insert(o_.proxy_args.end(), {"--read-routes", kRoutes});
    cluster_ = std::make_unique<Cluster>(o_, tmp_->path());
    Say("starting 3 etcd members, 4 counter apps, 3 proxies with --read-routes \"" +
        std::string(kRoutes) + "\" in " + tmp_->path().string());
    cluster_->StartEtcd();
    cluster_->StartApp(-1);
    for (int i = 0; i < kReplicas; ++i) cluster_->StartApp(i);
    StartProxies();
    // The raw barrier, one client's linearizable Range of the committed head: on the leader,
    // where the proxies send theirs (a follower forwards a ReadIndex to it), and on a follower,
    // where a client that does not know the leader may send it. The target takes the leader's,
    // the faster of the two. Each log knows one member only: nothing to fail over to.
    const int leader = cluster_->Leader();
    if (leader < 0) throw std::runtime_error("no etcd leader");
    const auto endpoints = cluster_->EndpointList();
    EtcdLogOptions lo;
    lo.endpoints = {endpoints[leader]};
    lo.prefix = std::string("/k8shmir/") + kGroup + "/log/";
    group_log_ = std::make_unique<EtcdLog>(lo);
    lo.endpoints = {endpoints[(leader + 1) % endpoints.size()]};
    follower_log_ = std::make_unique<EtcdLog>(lo);
    out_["config"]["etcd"]["leader_member"] = leader;

    // Baselines.
    const Measured direct_int =
        Measure("direct GET /integer", Mode::kDirect, 1, ReadMix("/integer", 100));
    const Measured direct_digest =
        Measure("direct GET /journal/digest", Mode::kDirect, 1, ReadMix("/journal/digest", 100));
    const Measured barrier = Measure("raw read barrier (leader)", Mode::kBarrier, 1, nullptr);
    const Measured follower_barrier =
        Measure("raw read barrier (follower)", Mode::kBarrier, 1, nullptr, follower_log_.get());
    const Measured lin_alone =
        Measure("linearizable reads only", Mode::kReplicated, 1, ReadMix("/integer", 100));
    // Reads on routes.
    std::vector<Measured> linearizable, local, logged;
    for (int c : kClients) {
      linearizable.push_back(
          Measure("linearizable mix", Mode::kReplicated, c, ReadMix("/integer", 90)));
    }
    for (int c : kClients) {
      local.push_back(Measure("local mix", Mode::kReplicated, c, ReadMix("/journal/digest", 90)));
    }
    const Measured cpu_writes = Measure("writes only", Mode::kReplicated, 64, ReadMix("", 0));
    const Measured cpu_lin =
        Measure("linearizable reads only", Mode::kReplicated, 64, ReadMix("/integer", 100));
    const Measured cpu_local =
        Measure("local reads only", Mode::kReplicated, 64, ReadMix("/journal/digest", 100));
    // The same mix, fully logged.
    Say("restarting the proxies without read routes");
    o_.proxy_args = base_args_;
    for (int i = 0; i < kReplicas; ++i) cluster_->StopProxy(i);
    StartProxies();
    for (int c : kClients) {
      logged.push_back(Measure("logged mix", Mode::kReplicated, c, ReadMix("/integer", 90)));
    }
    const Measured cpu_logged =
        Measure("logged reads only", Mode::kReplicated, 64, ReadMix("/integer", 100));
    const bool identical = Identical();

    // Targets.
    const double thr_ratio = linearizable.back().all.throughput / logged.back().all.throughput;
    const double lin_limit = direct_int.all.p50 + 1.25 * barrier.all.p50;
    const double local_limit = direct_digest.all.p50 + 0.15;
    std::vector<ojson> targets = {
        Target("read-mix throughput at 64 clients", thr_ratio >= 3.0,
               Fmt("%.2f", thr_ratio) + "x the logged mix (" +
                   Fmt("%.0f", linearizable.back().all.throughput) + " vs " +
                   Fmt("%.0f", logged.back().all.throughput) + " req/s)",
               ">= 3x"),
        Target("linearizable read p50 at 1 client", linearizable.front().reads.p50 <= lin_limit,
               Fmt("%.3f", linearizable.front().reads.p50) + " ms",
               "<= direct " + Fmt("%.3f", direct_int.all.p50) + " + 1.25 x barrier " +
                   Fmt("%.3f", barrier.all.p50) + " = " + Fmt("%.3f", lin_limit) + " ms"),
        Target("local read p50 at 1 client", local.front().reads.p50 <= local_limit,
               Fmt("%.3f", local.front().reads.p50) + " ms",
               "<= direct " + Fmt("%.3f", direct_digest.all.p50) +
                   " + 0.15 = " + Fmt("%.3f", local_limit) + " ms"),
        Target("replicas identical", identical, identical ? "yes" : "no", "yes"),
    };
    const double proxy_write_us =
        cpu_writes.cpu_us.count("proxies") != 0U ? cpu_writes.cpu_us.at("proxies") : 0;

    // Report.
    std::printf("\n## Reads that skip the log\n\n");
    std::printf(
        "| point | clients | req/s | p50 ms | p99 ms | read p50 ms | write p50 ms | "
        "reads per etcd round trip | errors |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (const auto* group : {&linearizable, &local, &logged}) {
      for (const auto& m : *group) Row(m);
    }
    for (const auto* m : {&lin_alone, &direct_int, &direct_digest, &barrier, &follower_barrier}) {
      Row(*m);
    }
    std::printf(
        "\nCPU time per request at 64 clients (µs, all processes of a kind):\n\n"
        "| load | etcd | proxies | apps | bench |\n| --- | --- | --- | --- | --- |\n");
    for (const auto* m : {&cpu_writes, &cpu_lin, &cpu_local, &cpu_logged}) {
      std::printf("| %s | %s | %s | %s | %s |\n", m->name.c_str(), Us(*m, "etcd").c_str(),
                  Us(*m, "proxies").c_str(), Us(*m, "apps").c_str(), Us(*m, "bench").c_str());
    }
    std::printf(
        "\nThe proxies' CPU per replicated write: %.0f µs for the three (%.0f µs each), "
        "against 100 µs per proxy.\n\n",
        proxy_write_us, proxy_write_us / kReplicas);
    int failed = 0;
    for (const auto& t : targets) {
      const bool pass = t["pass"].get<bool>();
      failed += pass ? 0 : 1;
      std::printf("%s %s: %s (%s)\n", pass ? "PASS" : "FAIL", t["name"].get<std::string>().c_str(),
                  t["value"].get<std::string>().c_str(), t["limit"].get<std::string>().c_str());
    }

    ojson points = ojson::array();
    for (const auto* group : {&linearizable, &local, &logged}) {
      for (const auto& m : *group) points.push_back(Json(m));
    }
    for (const auto* m : {&lin_alone, &direct_int, &direct_digest, &barrier, &follower_barrier}) {
      points.push_back(Json(*m));
    }
    out_["points"] = points;
    out_["cpu_us_per_request_at_64"] = {{"writes", cpu_writes.cpu_us},
                                        {"linearizable_reads", cpu_lin.cpu_us},
                                        {"local_reads", cpu_local.cpu_us},
                                        {"logged_reads", cpu_logged.cpu_us}};
    out_["proxy_cpu_us_per_write"] = {{"all_proxies", proxy_write_us},
                                      {"per_proxy", proxy_write_us / kReplicas},
                                      {"reference_per_proxy", 100}};
    out_["identical"] = identical;
    out_["targets"] = targets;
    out_["machine"]["loadavg_after"] = LoadAvg();
    std::filesystem::create_directories(o_.results_dir);
    std::ofstream(o_.results_dir / "reads.json") << out_.dump(2) << "\n";
    Say("wrote " + (o_.results_dir / "reads.json").string());
    if (o_.plot) Plot(linearizable, local, logged);

    group_log_.reset();
    follower_log_.reset();
    cluster_->StopAll();
    cluster_.reset();
    tmp_.reset();
    return failed == 0 ? 0 : 1;
  }

 private:
  void StartProxies() {
    for (int i = 0; i < kReplicas; ++i) cluster_->StartProxy(i);
    for (int i = 0; i < kReplicas; ++i) {
      if (!cluster_->WaitReady(i, milliseconds(60000))) {
        throw std::runtime_error("proxy " + std::to_string(i) + " not ready; logs in " +
                                 tmp_->path().string());
      }
    }
  }

  // `log`: the raw barrier's (kBarrier); the leader's when null.
  Measured Measure(const std::string& name, Mode mode, int clients, Mix mix,
                   EtcdLog* log = nullptr) {
    RunSpec spec;
    spec.mode = mode;
    spec.concurrency = clients;
    spec.warmup_s = o_.warmup_s;
    spec.measure_s = o_.measure_s;
    spec.mix = std::move(mix);
    spec.log = log != nullptr ? log : group_log_.get();
    std::vector<ReadMetrics> samples;
    if (mode == Mode::kReplicated) {
      spec.on_sample = [&] {
        ReadMetrics m;
        for (int i = 0; i < kReplicas; ++i) {
          const std::string text = cluster_->Metrics(i);
          m.barriers += CounterSum(text, "k8shmir_read_barriers_total");
          m.barrier_reads += CounterSum(text, "k8shmir_read_barrier_reads_total");
          m.read_appends += CounterSum(text, "k8shmir_read_appends_total");
          m.append_reads += CounterSum(text, "k8shmir_read_append_reads_total");
          auto b = HistogramSums(text, "k8shmir_read_barrier_latency_seconds");
          auto l = HistogramSums(text, "k8shmir_read_latency_seconds");
          m.barrier_latency = {m.barrier_latency.first + b.first,
                               m.barrier_latency.second + b.second};
          m.read_latency = {m.read_latency.first + l.first, m.read_latency.second + l.second};
        }
        samples.push_back(m);
      };
    }
    RunResult r = RunLoad(ioc_, *cluster_, spec);
    Measured m;
    m.name = name;
    m.clients = clients;
    m.all = MakePoint(name, clients, 0, r);
    m.reads = PointOf(name, clients, r, r.latency_us_by_kind["read"]);
    m.writes = PointOf(name, clients, r, r.latency_us_by_kind["write"]);
    if (samples.size() == 2) {
      const ReadMetrics& a = samples[0];
      const ReadMetrics& b = samples[1];
      const double round_trips = (b.barriers - a.barriers) + (b.read_appends - a.read_appends);
      const double append_reads = b.append_reads - a.append_reads;
      const double coalesced = (b.barrier_reads - a.barrier_reads) + append_reads;
      const double barrier_count = b.barrier_latency.second - a.barrier_latency.second;
      const double read_count = b.read_latency.second - a.read_latency.second;
      m.reads_per_round_trip = round_trips > 0 ? coalesced / round_trips : 0;
      m.append_read_share = coalesced > 0 ? append_reads / coalesced : 0;
      m.barrier_mean_ms =
          barrier_count > 0
              ? 1000 * (b.barrier_latency.first - a.barrier_latency.first) / barrier_count
              : 0;
      m.proxy_read_mean_ms =
          read_count > 0 ? 1000 * (b.read_latency.first - a.read_latency.first) / read_count : 0;
    }
    for (const auto& [kind, ms] : r.cpu_ms) {
      m.cpu_us[kind] = m.all.requests > 0 ? ms * 1000 / static_cast<double>(m.all.requests) : 0;
    }
    Say(name + ", " + std::to_string(clients) + " clients: " + Fmt("%.0f", m.all.throughput) +
        " req/s, p50 " + Fmt("%.3f", m.all.p50) + " ms, reads p50 " + Fmt("%.3f", m.reads.p50) +
        " ms, " + std::to_string(m.all.errors) + " errors" +
        (m.all.errors > 0 ? " (first: " + m.all.first_error + ")" : "") +
        (m.reads_per_round_trip > 0
             ? "; " + Coalescing(m) + " reads per etcd round trip, barrier mean " +
                   Fmt("%.3f", m.barrier_mean_ms) + " ms, proxy read mean " +
                   Fmt("%.3f", m.proxy_read_mean_ms) + " ms"
             : ""));
    if (mode == Mode::kReplicated && r.max_index > 0 &&
        !cluster_->WaitApplied(r.max_index, milliseconds(60000))) {
      throw std::runtime_error("replicas did not apply index " + std::to_string(r.max_index));
    }
    return m;
  }

  bool Identical() {
    json first;
    for (int i = 0; i < kReplicas; ++i) {
      json d = cluster_->Digest(i);
      if (!d.is_object() || d.value("violations", 1) != 0) return false;
      d.erase("duplicates");
      if (i == 0) {
        first = d;
      } else if (d["count"] != first["count"] || d["hash"] != first["hash"] ||
                 d["value"] != first["value"]) {
        return false;
      }
    }
    out_["digest"] = ojson::parse(first.dump());
    return true;
  }

  static ojson Target(const std::string& name, bool pass, const std::string& value,
                      const std::string& limit) {
    return {{"name", name}, {"pass", pass}, {"value", value}, {"limit", limit}};
  }

  static std::string Us(const Measured& m, const std::string& kind) {
    auto it = m.cpu_us.find(kind);
    return it == m.cpu_us.end() ? "-" : Fmt("%.0f", it->second);
  }

  // Linearizable reads per etcd round trip, and the share of them that rode an append.
  static std::string Coalescing(const Measured& m) {
    return Fmt("%.1f", m.reads_per_round_trip) + " (" + Fmt("%.0f", 100 * m.append_read_share) +
           " % on appends)";
  }

  static void Row(const Measured& m) {
    const std::string coalesced = m.reads_per_round_trip > 0 ? Coalescing(m) : "-";
    std::printf("| %s | %d | %.0f | %.3f | %.3f | %s | %s | %s | %llu |\n", m.name.c_str(),
                m.clients, m.all.throughput, m.all.p50, m.all.p99,
                m.reads.requests ? Fmt("%.3f", m.reads.p50).c_str() : "-",
                m.writes.requests ? Fmt("%.3f", m.writes.p50).c_str() : "-", coalesced.c_str(),
                static_cast<unsigned long long>(m.all.errors));
  }

  static ojson Json(const Measured& m) {
    auto lat = [](const Point& p) {
      return ojson{{"requests", p.requests},
                   {"p50", p.p50},
                   {"p90", p.p90},
                   {"p99", p.p99},
                   {"mean", p.mean}};
    };
    return {{"name", m.name},
            {"clients", m.clients},
            {"throughput_rps", m.all.throughput},
            {"errors", m.all.errors},
            {"first_error", m.all.first_error},
            {"latency_ms", lat(m.all)},
            {"read_latency_ms", lat(m.reads)},
            {"write_latency_ms", lat(m.writes)},
            {"cpu_us_per_request", m.cpu_us},
            {"proxy_metrics",
             {{"reads_per_round_trip", m.reads_per_round_trip},
              {"append_read_share", m.append_read_share},
              {"barrier_mean_ms", m.barrier_mean_ms},
              {"read_mean_ms", m.proxy_read_mean_ms}}}};
  }

  void Plot(const std::vector<Measured>& lin, const std::vector<Measured>& local,
            const std::vector<Measured>& logged) {
    auto data = tmp_->path() / "reads.dat";
    {
      std::ofstream f(data);
      bool first = true;
      for (const auto* group : {&lin, &local, &logged}) {
        if (!first) f << "\n\n";
        first = false;
        for (const auto& m : *group) {
          f << m.clients << " " << m.all.throughput << " " << m.reads.p50 << " " << m.reads.p99
            << "\n";
        }
      }
    }
    auto png = std::filesystem::absolute(o_.results_dir / "reads.png");
    auto script = tmp_->path() / "reads.gp";
    {
      std::ofstream f(script);
      f << "set terminal pngcairo size 1400,560 font 'sans,10'\n"
        << "set output '" << png.string() << "'\n"
        << "set multiplot layout 1,2 title 'k8shmir reads that skip the log, "
        << out_["started_at"].get<std::string>() << " (90 % reads, 10 % writes)'\n"
        << "set logscale x 2\nset xrange [0.7:90]\nset xtics (1, 16, 64)\nset grid\n"
        << "set key top left\nset xlabel 'concurrent closed-loop clients'\n"
        << "set ylabel 'throughput (requests/s)'\nset title 'throughput'\n";
      const std::string d = "'" + data.string() + "'";
      f << "plot " << d << " index 0 using 1:2 with linespoints lw 2 title 'linearizable reads', "
        << d << " index 1 using 1:2 with linespoints lw 2 title 'local reads', " << d
        << " index 2 using 1:2 with linespoints lw 2 title 'logged reads'\n"
        << "set logscale y\nset ylabel 'read latency (ms)'\n"
        << "set title 'read latency: p50 (solid), p99 (dashed)'\n"
        << "plot " << d << " index 0 using 1:3 with linespoints lw 2 lc 1 title 'linearizable "
        << "p50', " << d << " index 0 using 1:4 with linespoints dt 2 lc 1 title 'linearizable "
        << "p99', " << d << " index 1 using 1:3 with linespoints lw 2 lc 2 title 'local p50', " << d
        << " index 1 using 1:4 with linespoints dt 2 lc 2 title 'local p99', " << d
        << " index 2 using 1:3 with linespoints lw 2 lc 3 title 'logged p50', " << d
        << " index 2 using 1:4 with linespoints dt 2 lc 3 title 'logged p99'\n"
        << "unset multiplot\n";
    }
    const std::string cmd = "gnuplot '" + script.string() + "' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      Say("gnuplot failed; is gnuplot-nox installed?");
    } else {
      Say("wrote " + png.string());
    }
  }

  Options o_;
  std::vector<std::string> base_args_;
  asio::io_context ioc_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<EtcdLog> group_log_;     // on the leader alone
  std::unique_ptr<EtcdLog> follower_log_;  // on a follower alone
  ojson out_;
};

}  // namespace

int RunReads(Options options) {
  ReadsBench bench(std::move(options));
  return bench.Run();
}

}  // namespace k8shmir::bench
