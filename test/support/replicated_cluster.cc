#include "support/replicated_cluster.h"

#include <iostream>
#include <stdexcept>

#include "support/ports.h"
#include "support/util.h"

namespace k8shmir::testing {

ReplicatedCluster::ReplicatedCluster(ReplicatedClusterOptions options, EtcdCluster* shared_etcd)
    : options_(std::move(options)) {
  log_dir_ = MakeTempDir("k8shmir-" + CurrentTestName() + "-" + options_.group + "-");
  if (shared_etcd != nullptr) {
    etcd_ = shared_etcd;
  } else {
    own_etcd_ = std::make_unique<EtcdCluster>(options_.etcd_members, log_dir_);
    etcd_ = own_etcd_.get();
  }
  for (int i = 0; i < options_.replicas; ++i) AddReplica();
}

int ReplicatedCluster::AddReplica() {
  auto r = std::make_unique<Replica>();
  r->id = "replica-" + std::to_string(replicas_.size());
  r->proxy_port = FreePort();
  r->app_port = FreePort();
  r->admin_port = FreePort();
  replicas_.push_back(std::move(r));
  return size() - 1;
}

ReplicatedCluster::~ReplicatedCluster() {
  // How each process ended before the teardown kills it: a crash must not be mistaken for it.
  for (auto& r : replicas_) {
    r->proxy_exit = r->proxy.Running() ? "running at teardown" : r->proxy.DescribeExit();
    r->app_exit = r->app.Running() ? "running at teardown" : r->app.DescribeExit();
  }
  for (auto& r : replicas_) r->proxy.Kill();
  for (auto& r : replicas_) r->app.Kill();
  if (own_etcd_) own_etcd_->KillAll();
  if (ShouldKeepLogs()) {
    DumpLogs(std::cerr);
  } else {
    own_etcd_.reset();  // removes its data before the log directory goes
    RemoveTree(log_dir_);
  }
}

ReplicatedCluster::Replica& ReplicatedCluster::At(int i) {
  return *replicas_.at(static_cast<size_t>(i));
}
const ReplicatedCluster::Replica& ReplicatedCluster::At(int i) const {
  return *replicas_.at(static_cast<size_t>(i));
}

uint16_t ReplicatedCluster::ProxyPort(int i) const { return At(i).proxy_port; }
uint16_t ReplicatedCluster::AppPort(int i) const { return At(i).app_port; }
uint16_t ReplicatedCluster::AdminPort(int i) const { return At(i).admin_port; }

std::filesystem::path ReplicatedCluster::ProxyLog(int i) const {
  return log_dir_ / ("proxy-" + std::to_string(i) + ".log");
}
std::filesystem::path ReplicatedCluster::AppLog(int i) const {
  return log_dir_ / ("app-" + std::to_string(i) + ".log");
}

void ReplicatedCluster::StartAll() {
  if (own_etcd_) own_etcd_->Start();
  for (int i = 0; i < size(); ++i) {
    if (!AppRunning(i)) StartApp(i);
  }
  for (int i = 0; i < size(); ++i) {
    if (!ProxyRunning(i)) StartProxy(i);
  }
}

void ReplicatedCluster::SetProxyEtcdEndpoints(int i, std::vector<std::string> endpoints) {
  At(i).etcd_endpoints = std::move(endpoints);
}

std::string ReplicatedCluster::EndpointsOf(const Replica& r) const {
  if (r.etcd_endpoints.empty()) return etcd_->Endpoints();
  std::string joined;
  for (const auto& e : r.etcd_endpoints) joined += (joined.empty() ? "" : ",") + e;
  return joined;
}

std::vector<std::string> ReplicatedCluster::ProxyArgs(int i) const {
  const Replica& r = At(i);
  std::vector<std::string> args = {
      kProxyBin,
      "--listen-address",
      "127.0.0.1",
      "--listen-port",
      std::to_string(r.proxy_port),
      "--app-host",
      "127.0.0.1",
      "--app-port",
      std::to_string(r.app_port),
      "--admin-address",
      "127.0.0.1",
      "--admin-port",
      std::to_string(r.admin_port),
      "--etcd-endpoints",
      EndpointsOf(r),
      "--group",
      options_.group,
      "--replica-id",
      r.id,
      "--request-timeout-ms",
      std::to_string(options_.request_timeout.count()),
      "--body-limit",
      std::to_string(options_.body_limit),
      "--log-level",
      options_.log_level,
  };
  args.insert(args.end(), options_.extra_proxy_args.begin(), options_.extra_proxy_args.end());
  return args;
}

void ReplicatedCluster::StartApp(int i, std::chrono::milliseconds timeout) {
  StartAppWithArgs(i, {}, timeout);
}

void ReplicatedCluster::StartAppWithArgs(int i, const std::vector<std::string>& extra_args,
                                         std::chrono::milliseconds timeout) {
  Replica& r = At(i);
  const std::string port = std::to_string(r.app_port);
  std::vector<std::string> args = {kCounterBin, "--host", "127.0.0.1", "--port", port};
  if (!options_.app_command.empty()) {
    args.clear();
    for (std::string arg : options_.app_command) {
      for (auto pos = arg.find("{port}"); pos != std::string::npos; pos = arg.find("{port}", pos)) {
        arg.replace(pos, 6, port);
        pos += port.size();
      }
      args.push_back(std::move(arg));
    }
  }
  args.insert(args.end(), options_.extra_app_args.begin(), options_.extra_app_args.end());
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  r.app.Start(args, {}, AppLog(i));
  const bool up = WaitFor(
      [&] {
        if (!r.app.Running()) return true;  // reported below
        return Http(r.app_port, "GET", "/last-index", "", {}, std::chrono::seconds(1)).status ==
               200;
      },
      timeout, std::chrono::milliseconds(20));
  if (!up || !r.app.Running()) {
    throw std::runtime_error("app " + std::to_string(i) + " (" + args.front() +
                             ") did not come up (" + r.app.DescribeExit() + "); log " +
                             AppLog(i).string());
  }
}

void ReplicatedCluster::KillApp(int i) { At(i).app.Kill(); }

void ReplicatedCluster::StartProxy(int i) {
  At(i).proxy.Start(ProxyArgs(i), options_.proxy_env, ProxyLog(i));
}

void ReplicatedCluster::KillProxy(int i) { At(i).proxy.Kill(); }

bool ReplicatedCluster::TerminateProxy(int i, std::chrono::milliseconds timeout) {
  return At(i).proxy.Terminate(timeout);
}

bool ReplicatedCluster::AppRunning(int i) { return At(i).app.Running(); }
bool ReplicatedCluster::ProxyRunning(int i) { return At(i).proxy.Running(); }
pid_t ReplicatedCluster::AppPid(int i) const { return At(i).app.pid(); }
pid_t ReplicatedCluster::ProxyPid(int i) const { return At(i).proxy.pid(); }
std::string ReplicatedCluster::ProxyExit(int i) const { return At(i).proxy.DescribeExit(); }

bool ReplicatedCluster::WaitServing(int i, std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        return Http(AdminPort(i), "GET", "/readyz", "", {}, std::chrono::seconds(2)).status == 200;
      },
      timeout, std::chrono::milliseconds(50));
}

bool ReplicatedCluster::WaitAllServing(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool all = true;
  for (int i = 0; i < size(); ++i) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!WaitServing(i, std::max(left, std::chrono::milliseconds(0)))) {
      all = false;
      break;
    }
  }
  if (!all) {
    std::cerr << "WaitAllServing: not every proxy of group " << group() << " is ready after "
              << timeout.count() << " ms\n";
    for (int i = 0; i < size(); ++i) {
      HttpResult s = Http(AdminPort(i), "GET", "/status", "", {}, std::chrono::seconds(2));
      std::cerr << "  proxy " << i << " (" << At(i).proxy.DescribeExit() << "): " << s.Describe()
                << "\n";
    }
  }
  return all;
}

bool ReplicatedCluster::WaitAppsApplied(int64_t index, std::chrono::milliseconds timeout) {
  const bool ok = WaitFor(
      [&] {
        for (int i = 0; i < size(); ++i) {
          json d = Digest(i);
          if (!d.is_object() || d.value("last_index", int64_t{-1}) < index) return false;
        }
        return true;
      },
      timeout, std::chrono::milliseconds(20));
  if (!ok) {
    std::cerr << "WaitAppsApplied(" << index << "): not every app of group " << group()
              << " applied it after " << timeout.count() << " ms\n";
    for (int i = 0; i < size(); ++i) {
      std::cerr << "  app " << i << " digest: " << Digest(i).dump()
                << "; proxy status: " << Status(i).dump() << "\n";
    }
  }
  return ok;
}

json ReplicatedCluster::Status(int i) {
  HttpResult r = Http(AdminPort(i), "GET", "/status", "", {}, std::chrono::seconds(5));
  if (r.status != 200) return json(json::value_t::discarded);
  return r.Json();
}

json ReplicatedCluster::Journal(int i) {
  HttpResult r = Http(AppPort(i), "GET", "/journal", "", {}, std::chrono::seconds(10));
  json j = r.Json();
  if (r.status != 200 || !j.is_object() || !j.contains("entries")) {
    return json(json::value_t::discarded);
  }
  return j["entries"];
}

json ReplicatedCluster::Digest(int i) {
  HttpResult r = Http(AppPort(i), "GET", "/journal/digest", "", {}, std::chrono::seconds(5));
  if (r.status != 200) return json(json::value_t::discarded);
  return r.Json();
}

int64_t ReplicatedCluster::AppLastIndex(int i) {
  HttpResult r = Http(AppPort(i), "GET", "/last-index", "", {}, std::chrono::seconds(5));
  json j = r.Json();
  if (r.status != 200 || !j.is_object() || !j.contains("index")) return -1;
  return j["index"].is_number_integer() ? j["index"].get<int64_t>() : -1;
}

void ReplicatedCluster::DumpLogs(std::ostream& out, size_t lines) const {
  out << "=== logs of group " << group() << " kept in " << log_dir_.string() << "\n";
  if (own_etcd_) own_etcd_->DumpLogs(out, lines);
  for (int i = 0; i < size(); ++i) {
    const Replica& r = At(i);
    out << "--- app " << i << " (" << (r.app_exit.empty() ? r.app.DescribeExit() : r.app_exit)
        << "), last " << lines << " lines of " << AppLog(i).string() << "\n"
        << TailFile(AppLog(i), lines);
    out << "--- proxy " << i << " ("
        << (r.proxy_exit.empty() ? r.proxy.DescribeExit() : r.proxy_exit) << "), last " << lines
        << " lines of " << ProxyLog(i).string() << "\n"
        << TailFile(ProxyLog(i), lines);
  }
  out.flush();
}

}  // namespace k8shmir::testing
