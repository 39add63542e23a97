// k8shmir-bench's cluster on loopback: a 3-member etcd (the test harness's EtcdCluster), three
// counter apps behind three proxies, one more app that no proxy fronts (the "direct" baseline),
// and the temporary directory their data and logs go to.
#pragma once

#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"
#include "options.h"
#include "support/etcd_cluster.h"
#include "support/ports.h"
#include "support/util.h"

namespace k8shmir::bench {

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
        "replica-" + std::to_string(i),
        // The bench stops proxies (between phases, at the end) without a Service to drain.
        "--drain-delay-ms", "0"};
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

}  // namespace k8shmir::bench
