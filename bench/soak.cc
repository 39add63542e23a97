#include "soak.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "stats.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::bench {
namespace {

using ojson = nlohmann::ordered_json;
using cjson = nlohmann::json;  // what the harness returns
using testing::EtcdCluster;
using testing::ReplicatedCluster;
using testing::ReplicatedClusterOptions;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void Say(const std::string& s) { std::cerr << "soak: " << s << std::endl; }

// Retention on: a snapshot every 10,000 entries (at most one per 5 s), 20,000 entries retained,
// entries younger than 15 s kept (the request timeout is 10 s).
const std::vector<std::string> kRetentionOn = {
    "--snapshot-every-entries", "10000", "--snapshot-min-interval-ms", "5000",
    "--retain-entries",         "20000", "--trim-min-age-ms",          "15000"};
const std::vector<std::string> kRetentionOff = {"--snapshot-every-entries", "0"};

// One etcd of its own per group, with the auto-compaction the chart configures (every 30 s
// instead of 5 min, so that a run of minutes sees several: the database holds the history of
// about one compaction period of writes, the trims' deletes included, on top of the live keys).
std::unique_ptr<EtcdCluster> MakeEtcd(const Options& o) {
  testing::EtcdClusterOptions etcd;
  etcd.binary = o.etcd_bin;
  etcd.log_level = "warn";
  etcd.extra_flags = {"--auto-compaction-mode=periodic", "--auto-compaction-retention=30s"};
  return std::make_unique<EtcdCluster>(3, std::filesystem::path(), testing::EtcdClusterTls{}, etcd);
}

struct Group {
  std::string name;
  std::unique_ptr<EtcdCluster> etcd;
  std::unique_ptr<ReplicatedCluster> cluster;
  int64_t requests = 0;
  double seconds = 0;
  uint64_t errors = 0;
};

std::unique_ptr<Group> MakeGroup(const Options& o, const std::string& name,
                                 const std::vector<std::string>& args) {
  auto g = std::make_unique<Group>();
  g->name = name;
  g->etcd = MakeEtcd(o);
  g->etcd->Start();
  ReplicatedClusterOptions co;
  co.group = name;
  co.etcd_members = 3;
  co.log_level = "warn";
  co.extra_proxy_args = args;
  // The counter's journal would make its state (and every snapshot) grow with the history.
  co.extra_app_args = {"--journal-keep", "1000"};
  g->cluster = std::make_unique<ReplicatedCluster>(co, g->etcd.get());
  g->cluster->StartAll();
  if (!g->cluster->WaitAllServing(std::chrono::seconds(60))) {
    throw std::runtime_error("group " + name + " did not serve");
  }
  return g;
}

struct Completion {
  int64_t unix_ms;
  double latency_us;
};

// `clients` closed-loop clients over the group's proxies until `count` requests were answered
// 2xx (a 128-byte journal append each, unique per client and k).
void RunChunk(Group& g, int clients, int64_t count, std::atomic<uint64_t>& seq,
              std::vector<Completion>* completions) {
  std::atomic<int64_t> left{count};
  std::atomic<uint64_t> errors{0};
  std::mutex mu;
  std::vector<std::thread> threads;
  const auto started = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      testing::HttpConnection conn(g.cluster->ProxyPort(c % g.cluster->size()));
      std::vector<Completion> mine;
      while (left.fetch_sub(1) > 0) {
        std::string body = "soak-" + std::to_string(seq.fetch_add(1)) + "-";
        body.resize(128, 'x');
        const auto t0 = Clock::now();
        for (;;) {
          auto r = conn.Request("POST", "/journal", body, {{"Content-Type", "text/plain"}},
                                std::chrono::seconds(30));
          if (r.status == 200) break;
          // Only the "not committed" refusals are retried (never sent twice otherwise).
          errors.fetch_add(1);
          if (r.Header("K8shmir-Outcome") != "not-committed") break;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        if (completions != nullptr) {
          mine.push_back(
              {NowUnixMs(), std::chrono::duration<double, std::micro>(Clock::now() - t0).count()});
        }
        CheckInterrupted();
      }
      if (completions != nullptr) {
        std::lock_guard<std::mutex> lock(mu);
        completions->insert(completions->end(), mine.begin(), mine.end());
      }
    });
  }
  for (auto& t : threads) t.join();
  g.seconds += SecondsSince(started);
  g.requests += count;
  g.errors += errors.load();
}

struct DbSample {
  double t = 0;
  int64_t requests_on = 0;
  int64_t on_size = 0, on_in_use = 0, off_size = 0, off_in_use = 0;
  int64_t on_log_keys = 0;
};

// dbSize and dbSizeInUse of member 0 (the other members hold the same keys).
std::pair<int64_t, int64_t> DbSize(EtcdCluster& etcd) {
  auto r = testing::Http(etcd.ClientPort(0), "POST", "/v3/maintenance/status", "{}",
                         {{"Content-Type", "application/json"}}, std::chrono::seconds(2));
  cjson j = cjson::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object()) return {-1, -1};
  auto num = [&](const char* k) -> int64_t {
    if (!j.contains(k)) return -1;
    return j[k].is_string() ? std::stoll(j[k].get<std::string>()) : j[k].get<int64_t>();
  };
  return {num("dbSize"), num("dbSizeInUse")};
}

struct SnapshotEvent {
  int64_t started_ms = 0;
  int64_t stored_ms = 0;
  int64_t read_ms = 0;
  int64_t bytes = 0;
};

// Time until replica `i` serves with its app at the group's newest index.
double JoinSeconds(Group& g, int* index_out) {
  const int i = g.cluster->AddReplica();
  *index_out = i;
  g.cluster->StartApp(i);
  const auto started = Clock::now();
  g.cluster->StartProxy(i);
  if (!g.cluster->WaitServing(i, std::chrono::seconds(600))) {
    throw std::runtime_error("the new replica of " + g.name + " did not serve");
  }
  return SecondsSince(started);
}

}  // namespace

int RunSoak(const Options& o) {
  const auto run_started = Clock::now();
  const int64_t total_on = o.soak_requests;
  const int chunks = 10;
  const int64_t chunk_on = total_on / chunks;
  const int64_t chunk_off = std::max<int64_t>(1, chunk_on / 5);
  Say("starting two groups (retention on / off), each with its own 3-member etcd");
  auto on = MakeGroup(o, "soak-on", kRetentionOn);
  auto off = MakeGroup(o, "soak-off", kRetentionOff);

  std::atomic<uint64_t> seq{0};
  std::vector<Completion> on_completions;
  std::vector<DbSample> samples;
  std::vector<SnapshotEvent> snapshots;
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> on_done{0};
  // Sampler: every second, both databases and the on-group's snapshot events.
  std::thread sampler([&] {
    int64_t seen_taken = 0;
    while (!stop) {
      DbSample s;
      s.t = SecondsSince(run_started);
      s.requests_on = on_done.load();
      std::tie(s.on_size, s.on_in_use) = DbSize(*on->etcd);
      std::tie(s.off_size, s.off_in_use) = DbSize(*off->etcd);
      try {
        s.on_log_keys = on->etcd->CountPrefix("/k8shmir/soak-on/log/");
      } catch (const std::exception&) {
        s.on_log_keys = -1;
      }
      for (int i = 0; i < on->cluster->size(); ++i) {
        cjson st = on->cluster->Status(i);
        if (!st.is_object() || !st.contains("retention")) continue;
        const cjson& r = st["retention"];
        const int64_t taken = r.value("snapshots_taken", int64_t{0});
        if (r.value("snapshot_taker", false) && taken > seen_taken) {
          seen_taken = taken;
          SnapshotEvent e;
          e.started_ms = r.value("last_snapshot_started_unix_ms", int64_t{0});
          e.stored_ms = r.value("last_snapshot_unix_ms", int64_t{0});
          e.read_ms = r.value("last_snapshot_ms", int64_t{0});
          e.bytes = r.value("last_snapshot_bytes", int64_t{0});
          std::lock_guard<std::mutex> lock(mu);
          snapshots.push_back(e);
        }
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        samples.push_back(s);
      }
      for (int k = 0; k < 10 && !stop; ++k) std::this_thread::sleep_for(milliseconds(100));
    }
  });

  const int clients = o.soak_clients;
  try {
    // The order alternates, so that neither group always runs on a machine the other just
    // warmed (or loaded: its etcd's compactions and the trims' deletes run in the background).
    for (int c = 0; c < chunks; ++c) {
      if (c % 2 == 1) RunChunk(*off, clients, chunk_off, seq, nullptr);
      RunChunk(*on, clients, chunk_on, seq, &on_completions);
      on_done += chunk_on;
      if (c % 2 == 0) RunChunk(*off, clients, chunk_off, seq, nullptr);
      Say("chunk " + std::to_string(c + 1) + "/" + std::to_string(chunks) + ": on " +
          Fmt("%.0f", on->requests / on->seconds) + " req/s, off " +
          Fmt("%.0f", off->requests / off->seconds) + " req/s, " +
          Fmt("%.0f", SecondsSince(run_started)) + " s");
    }
  } catch (...) {
    stop = true;
    sampler.join();
    throw;
  }
  // A minute more of samples: the history of the last trims is compacted.
  Say("load done; sampling the databases for another 70 s (auto-compaction)");
  std::this_thread::sleep_for(std::chrono::seconds(70));
  stop = true;
  sampler.join();

  // A new replica joins each group: snapshot + tail, or the whole history.
  Say("a 4th replica joins each group");
  int on_new = 0, off_new = 0;
  const double on_join_s = JoinSeconds(*on, &on_new);
  const cjson on_new_status = on->cluster->Status(on_new);
  const double off_join_s = JoinSeconds(*off, &off_new);
  const cjson off_new_status = off->cluster->Status(off_new);
  const int64_t on_replayed = on_new_status.value("entries_replayed", int64_t{0});
  const int64_t off_replayed = off_new_status.value("entries_replayed", int64_t{0});
  const int64_t restored = on_new_status.contains("retention")
                               ? on_new_status["retention"].value("snapshots_restored", int64_t{0})
                               : 0;

  // Every replica of each group holds the same state.
  bool identical = true;
  for (Group* g : {on.get(), off.get()}) {
    cjson first;
    for (int i = 0; i < g->cluster->size(); ++i) {
      cjson d;
      WaitFor(
          [&] {
            d = g->cluster->Digest(i);
            return d.is_object() && d.value("count", int64_t{-1}) == g->requests;
          },
          std::chrono::seconds(60), milliseconds(100));
      if (i == 0) first = d;
      if (!d.is_object() || d.value("count", int64_t{-1}) != g->requests ||
          d.value("hash", "") != first.value("hash", "") || d.value("violations", 1) != 0) {
        identical = false;
        Say("group " + g->name + " replica " + std::to_string(i) + " differs: " + d.dump());
      }
    }
  }

  // Latency: all on-group requests, and those answered while a snapshot was being read or stored.
  std::vector<double> all, around;
  for (const auto& c : on_completions) {
    all.push_back(c.latency_us);
    for (const auto& s : snapshots) {
      if (s.started_ms > 0 && c.unix_ms >= s.started_ms && c.unix_ms <= s.stored_ms + 500) {
        around.push_back(c.latency_us);
        break;
      }
    }
  }
  std::sort(all.begin(), all.end());
  std::sort(around.begin(), around.end());
  const double p99_all = all.empty() ? 0 : Percentile(all, 0.99) / 1000;
  const double p99_around = around.empty() ? 0 : Percentile(around, 0.99) / 1000;

  // Flat: the in-use size of the on-group's database at the end of the load is within 25 % of its
  // size at mid-run (trimming started long before), while the off group's grows.
  auto in_use_at = [&](int64_t requests) {
    int64_t best = -1;
    for (const auto& s : samples) {
      if (s.requests_on <= requests) best = std::max(best, s.on_in_use);
    }
    return best;
  };
  const int64_t mid = in_use_at(total_on / 2);
  const int64_t end = in_use_at(total_on);
  int64_t on_max = 0, off_end = 0, off_mid = 0, on_keys_max = 0;
  for (const auto& s : samples) {
    on_max = std::max(on_max, s.on_in_use);
    on_keys_max = std::max(on_keys_max, s.on_log_keys);
    if (s.requests_on <= total_on / 2) off_mid = std::max(off_mid, s.off_in_use);
    off_end = std::max(off_end, s.off_in_use);
  }
  const double thr_on = on->requests / on->seconds;
  const double thr_off = off->requests / off->seconds;
  const double ratio = thr_on / thr_off;
  const double on_rate = static_cast<double>(on->requests) / on_join_s;
  const double off_rate = static_cast<double>(off_replayed) / off_join_s;

  ojson out;
  out["config"] = {{"requests_on", on->requests},
                   {"requests_off", off->requests},
                   {"clients", clients},
                   {"body_bytes", 128},
                   {"retention_on_flags", kRetentionOn},
                   {"retention_off_flags", kRetentionOff},
                   {"etcd",
                    "3 members per group, --auto-compaction-mode=periodic "
                    "--auto-compaction-retention=30s"},
                   {"app", "counter-app --journal-keep 1000"}};
  out["throughput"] = {{"on_req_s", thr_on},
                       {"off_req_s", thr_off},
                       {"ratio", ratio},
                       {"errors_on", on->errors},
                       {"errors_off", off->errors}};
  out["latency_ms"] = {{"p99_all_on", p99_all},
                       {"p99_during_snapshots", p99_around},
                       {"requests_during_snapshots", around.size()}};
  out["db"] = {{"on_in_use_mid", mid},      {"on_in_use_end", end},
               {"on_in_use_max", on_max},   {"on_log_keys_max", on_keys_max},
               {"off_in_use_mid", off_mid}, {"off_in_use_end", off_end}};
  ojson series = ojson::array();
  for (const auto& s : samples) {
    series.push_back({{"t", s.t},
                      {"requests_on", s.requests_on},
                      {"on_db_size", s.on_size},
                      {"on_db_in_use", s.on_in_use},
                      {"on_log_keys", s.on_log_keys},
                      {"off_db_size", s.off_size},
                      {"off_db_in_use", s.off_in_use}});
  }
  out["db_series"] = series;
  ojson snaps = ojson::array();
  for (const auto& s : snapshots) {
    snaps.push_back({{"started_unix_ms", s.started_ms},
                     {"stored_unix_ms", s.stored_ms},
                     {"read_ms", s.read_ms},
                     {"bytes", s.bytes}});
  }
  out["snapshots"] = snaps;
  out["join"] = {{"on_seconds", on_join_s},
                 {"on_snapshots_restored", restored},
                 {"on_entries_replayed", on_replayed},
                 {"on_history_entries", on->requests},
                 {"on_history_per_s", on_rate},
                 {"off_seconds", off_join_s},
                 {"off_entries_replayed", off_replayed},
                 {"off_replay_per_s", off_rate},
                 {"on_speedup_vs_replaying_its_history", on_rate / off_rate}};
  out["identical"] = identical;
  out["seconds"] = SecondsSince(run_started);
  std::filesystem::create_directories(o.results_dir);
  std::ofstream(o.results_dir / "soak.json") << out.dump(2) << "\n";

  std::cout << "\n## Retention soak\n\n"
            << "| | retention on | retention off |\n| --- | --- | --- |\n"
            << "| requests | " << on->requests << " | " << off->requests << " |\n"
            << "| throughput (req/s, " << clients << " clients) | " << Fmt("%.0f", thr_on) << " | "
            << Fmt("%.0f", thr_off) << " |\n"
            << "| etcd db in use at mid-run / end (MB) | " << Fmt("%.1f", mid / 1e6) << " / "
            << Fmt("%.1f", end / 1e6) << " | " << Fmt("%.1f", off_mid / 1e6) << " / "
            << Fmt("%.1f", off_end / 1e6) << " |\n"
            << "| p99 all / during snapshots (ms) | " << Fmt("%.2f", p99_all) << " / "
            << Fmt("%.2f", p99_around) << " (" << around.size() << " requests, " << snapshots.size()
            << " snapshots) | |\n"
            << "| new replica serving after (s) | " << Fmt("%.1f", on_join_s) << " (snapshot + "
            << on_replayed << " entries) | " << Fmt("%.1f", off_join_s) << " (" << off_replayed
            << " entries replayed) |\n\n";
  int failed = 0;
  auto target = [&](bool ok, const std::string& what) {
    std::cout << (ok ? "PASS " : "FAIL ") << what << "\n";
    if (!ok) ++failed;
  };
  target(ratio >= 0.95,
         "soak throughput with retention on >= 95% of off: " + Fmt("%.1f", ratio * 100) + "%");
  target(mid > 0 && end <= mid * 5 / 4,
         "soak etcd db in use flat (end <= 1.25 x mid-run): " + Fmt("%.1f", mid / 1e6) + " -> " +
             Fmt("%.1f", end / 1e6) + " MB, at most " + std::to_string(on_keys_max) + " log keys");
  target(restored >= 1 && on_rate > off_rate,
         "soak new replica restores a snapshot and joins faster than replaying: " +
             Fmt("%.0f", on_rate) + " vs " + Fmt("%.0f", off_rate) + " history entries/s");
  target(identical, "soak replicas identical in each group");
  return failed == 0 ? 0 : 1;
}

}  // namespace k8shmir::bench
