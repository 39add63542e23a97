// A whole replication group for integration tests: an etcd cluster (its own or a shared one),
// N apps (counter-app unless the options name another) and N k8shmir proxies, each on free
// loopback ports, with per-process logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/process.h"

namespace k8shmir::testing {

#ifdef K8SHMIR_PROXY_BIN
inline constexpr const char* kProxyBin = K8SHMIR_PROXY_BIN;
#endif
#ifdef K8SHMIR_COUNTER_BIN
inline constexpr const char* kCounterBin = K8SHMIR_COUNTER_BIN;
#endif

struct ReplicatedClusterOptions {
  int replicas = 3;
  int etcd_members = 3;  // when the cluster starts its own etcd
  std::string group = "test";
  std::chrono::milliseconds request_timeout{10000};
  std::size_t body_limit = 1024 * 1024;
  std::string log_level = "info";
  // The app's command line, every "{port}" in it replaced by the replica's app port, to replicate
  // another app than counter-app (which serves on 127.0.0.1); empty: counter-app.
  std::vector<std::string> app_command;
  std::vector<std::string> extra_app_args;    // appended to every app's command line
  std::vector<std::string> extra_proxy_args;  // appended to every proxy's command line
  EnvVars proxy_env;                          // added to every proxy's environment
};

class ReplicatedCluster {
 public:
  // Picks ports and a log directory (printed, with the last 50 lines of every process's log, by
  // the destructor when the test failed; removed otherwise). With `shared_etcd`, the group uses
  // that etcd cluster (which the caller starts and owns, and which must outlive this object);
  // otherwise it creates its own, started by StartAll().
  explicit ReplicatedCluster(ReplicatedClusterOptions options = {},
                             EtcdCluster* shared_etcd = nullptr);
  ~ReplicatedCluster();  // kills proxies, then apps, then its own etcd
  ReplicatedCluster(const ReplicatedCluster&) = delete;
  ReplicatedCluster& operator=(const ReplicatedCluster&) = delete;

  // Starts its own etcd (waiting until healthy), every app (waiting until each answers), then
  // every proxy. Does not wait for the proxies: see WaitAllServing. Throws on failure.
  void StartAll();

  // Polls every proxy's admin GET /readyz until all answer 200, at most `timeout`. On timeout
  // prints each proxy's /status and returns false.
  bool WaitAllServing(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  bool WaitServing(int i, std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // Polls every app (directly) until its last_index >= index, at most `timeout`. On timeout
  // prints each app's digest and returns false.
  bool WaitAppsApplied(int64_t index, std::chrono::milliseconds timeout = std::chrono::seconds(30));

  int size() const { return static_cast<int>(replicas_.size()); }
  // A new replica (scale-up), with ports of its own and nothing started; returns its number.
  int AddReplica();
  const std::string& group() const { return options_.group; }
  uint16_t ProxyPort(int i) const;
  uint16_t AppPort(int i) const;
  uint16_t AdminPort(int i) const;

  // SIGKILL the app / start it again on the same port (empty state), waiting until it answers
  // GET /last-index (throws after `timeout`).
  void KillApp(int i);
  void StartApp(int i, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // StartApp with more app flags (e.g. counter-app's --garbage-last-index) for this start only.
  void StartAppWithArgs(int i, const std::vector<std::string>& extra_args,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SIGKILL the proxy / start it again on the same ports. StartProxy does not wait for readiness.
  void KillProxy(int i);
  void StartProxy(int i);
  // SIGTERM the proxy, SIGKILL after `timeout`; true when it exited by itself in time.
  bool TerminateProxy(int i, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool AppRunning(int i);
  bool ProxyRunning(int i);
  // Process ids (-1 when not running), e.g. to SIGSTOP / SIGCONT a process.
  pid_t AppPid(int i) const;
  pid_t ProxyPid(int i) const;
  // How the last proxy process of replica i ended ("exited 0", "killed by signal 9", "running").
  std::string ProxyExit(int i) const;

  EtcdCluster& Etcd() { return *etcd_; }

  // The proxy's admin GET /status as JSON; a discarded value when it did not answer 200 + JSON.
  json Status(int i);
  // Straight from the app (bypassing the proxy; reads carry no Log-Index, so they change nothing):
  // the journal's "entries" array, and GET /journal/digest. Discarded values on error.
  json Journal(int i);
  json Digest(int i);
  // The app's GET /last-index "index", -1 on error or when it is not a number.
  int64_t AppLastIndex(int i);

  // Replica i's proxy talks to etcd at these endpoints from its next start on (e.g. through a
  // TcpRelay the test can cut); empty: the cluster's own endpoints.
  void SetProxyEtcdEndpoints(int i, std::vector<std::string> endpoints);

  // The proxy's command line, for the record and for tests that start a proxy themselves.
  std::vector<std::string> ProxyArgs(int i) const;

  const std::filesystem::path& log_dir() const { return log_dir_; }
  std::filesystem::path ProxyLog(int i) const;
  std::filesystem::path AppLog(int i) const;
  // Prints the log directory and the last `lines` lines of every process's log.
  void DumpLogs(std::ostream& out, size_t lines = 50) const;

 private:
  struct Replica {
    std::string id;
    uint16_t proxy_port = 0;
    uint16_t app_port = 0;
    uint16_t admin_port = 0;
    ChildProcess app;
    ChildProcess proxy;
    std::vector<std::string> etcd_endpoints;  // empty: the cluster's
    std::string app_exit;  // how each ended, recorded by the destructor for DumpLogs
    std::string proxy_exit;
  };
  Replica& At(int i);
  std::string EndpointsOf(const Replica& r) const;
  const Replica& At(int i) const;

  ReplicatedClusterOptions options_;
  std::filesystem::path log_dir_;
  std::unique_ptr<EtcdCluster> own_etcd_;
  EtcdCluster* etcd_ = nullptr;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

}  // namespace k8shmir::testing
