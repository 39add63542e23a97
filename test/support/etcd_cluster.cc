#include "support/etcd_cluster.h"

#include <unistd.h>

#include <iostream>
#include <stdexcept>

#include "log/batch_format.h"
#include "support/ports.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

std::string Url(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

// The gateway renders 64-bit integers as JSON strings; absent means 0.
int64_t JsonInt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_string()) return std::stoll(it->get<std::string>());
  return it->get<int64_t>();
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

}  // namespace

EtcdCluster::EtcdCluster(int members, std::filesystem::path log_dir, EtcdClusterTls tls,
                         EtcdClusterOptions options)
    : tls_(std::move(tls)), options_(std::move(options)), log_dir_(std::move(log_dir)) {
  static int counter = 0;
  token_ = "k8shmir-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  data_root_ = MakeTempDir("k8shmir-etcd-", ScratchBase());
  if (log_dir_.empty()) {
    log_dir_ = MakeTempDir("k8shmir-etcd-logs-" + CurrentTestName() + "-");
    own_log_dir_ = true;
  } else {
    std::filesystem::create_directories(log_dir_);
  }
  for (int i = 0; i < members; ++i) {
    auto m = std::make_unique<Member>();
    m->name = "etcd" + std::to_string(i);
    m->client_port = FreePort();
    m->peer_port = FreePort();
    if (this->tls()) m->metrics_port = FreePort();
    m->data_dir = data_root_ / m->name;
    members_.push_back(std::move(m));
  }
}

EtcdCluster::~EtcdCluster() {
  KillAll();
  RemoveTree(data_root_);
  if (own_log_dir_) {
    if (ShouldKeepLogs()) {
      DumpLogs(std::cerr);
    } else {
      RemoveTree(log_dir_);
    }
  }
}

std::vector<std::string> EtcdCluster::MemberArgs(int i) const {
  const Member& m = *members_.at(static_cast<size_t>(i));
  std::string initial_cluster;
  for (const auto& other : members_) {
    if (!initial_cluster.empty()) initial_cluster += ",";
    initial_cluster += other->name + "=" + Url(other->peer_port);
  }
  std::vector<std::string> args = {options_.binary,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   m.data_dir.string(),
                                   "--listen-client-urls",
                                   ClientUrl(i),
                                   "--advertise-client-urls",
                                   ClientUrl(i),
                                   "--listen-peer-urls",
                                   Url(m.peer_port),
                                   "--initial-advertise-peer-urls",
                                   Url(m.peer_port),
                                   "--initial-cluster",
                                   initial_cluster,
                                   "--initial-cluster-state",
                                   "new",
                                   "--initial-cluster-token",
                                   token_,
                                   "--heartbeat-interval",
                                   std::to_string(options_.heartbeat_ms),
                                   "--election-timeout",
                                   std::to_string(options_.election_ms),
                                   "--experimental-watch-progress-notify-interval",
                                   "1s",
                                   "--logger",
                                   "zap",
                                   "--log-outputs",
                                   "stderr",
                                   "--log-level",
                                   options_.log_level};
  if (tls()) {
    args.insert(args.end(), {"--cert-file", tls_.cert_file.string(), "--key-file",
                             tls_.key_file.string(), "--listen-metrics-urls", Url(m.metrics_port)});
    if (!tls_.ca_file.empty()) {
      args.insert(args.end(), {"--trusted-ca-file", tls_.ca_file.string()});
    }
    if (tls_.client_cert_auth) args.push_back("--client-cert-auth");
  }
  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  return args;
}

std::string EtcdCluster::ClientUrl(int i) const {
  return (tls() ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(ClientPort(i));
}

void EtcdCluster::RequirePlaintext(const char* what) const {
  if (tls()) {
    throw std::logic_error(std::string("EtcdCluster::") + what +
                           " uses the plaintext v3 gateway, which a TLS cluster does not serve");
  }
}

void EtcdCluster::Start(std::chrono::milliseconds timeout) {
  for (int i = 0; i < size(); ++i) {
    if (!MemberRunning(i)) StartMember(i);
  }
  if (!WaitHealthy(timeout)) {
    throw std::runtime_error("etcd cluster not healthy after " + std::to_string(timeout.count()) +
                             " ms; logs in " + log_dir_.string());
  }
}

void EtcdCluster::StartMember(int i) {
  Member& m = *members_.at(static_cast<size_t>(i));
  m.process.Start(MemberArgs(i), {}, LogFile(i));
}

void EtcdCluster::KillMember(int i) { members_.at(static_cast<size_t>(i))->process.Kill(); }

void EtcdCluster::KillAll() {
  for (auto& m : members_) m->process.Kill();
}

void EtcdCluster::RestartMember(int i, std::chrono::milliseconds timeout) {
  if (!MemberRunning(i)) StartMember(i);
  if (!WaitHealthy(timeout)) {
    throw std::runtime_error("etcd not healthy after restarting member " + std::to_string(i) +
                             "; logs in " + log_dir_.string());
  }
}

void EtcdCluster::RestartAll(std::chrono::milliseconds timeout) { Start(timeout); }

bool EtcdCluster::MemberRunning(int i) {
  return members_.at(static_cast<size_t>(i))->process.Running();
}

pid_t EtcdCluster::MemberPid(int i) const {
  return members_.at(static_cast<size_t>(i))->process.pid();
}

bool EtcdCluster::MemberHealthy(int i, std::chrono::milliseconds timeout) const {
  HttpResult r = Http(HealthPort(i), "GET", "/health", "", {}, timeout);
  if (r.status != 200) return false;
  json j = r.Json();
  return j.is_object() && j.value("health", "") == "true";
}

bool EtcdCluster::WaitHealthy(std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        for (int i = 0; i < size(); ++i) {
          if (!MemberRunning(i)) continue;
          if (!MemberHealthy(i)) return false;
        }
        return true;
      },
      timeout, std::chrono::milliseconds(100));
}

std::string EtcdCluster::Endpoint(int i) const {
  return "127.0.0.1:" + std::to_string(ClientPort(i));
}

std::string EtcdCluster::Endpoints() const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (!out.empty()) out += ",";
    out += Endpoint(i);
  }
  return out;
}

uint16_t EtcdCluster::ClientPort(int i) const {
  return members_.at(static_cast<size_t>(i))->client_port;
}

uint16_t EtcdCluster::PeerPort(int i) const {
  return members_.at(static_cast<size_t>(i))->peer_port;
}

uint16_t EtcdCluster::HealthPort(int i) const {
  const Member& m = *members_.at(static_cast<size_t>(i));
  return tls() ? m.metrics_port : m.client_port;
}

std::string EtcdCluster::Urls() const {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (!out.empty()) out += ",";
    out += ClientUrl(i);
  }
  return out;
}

int EtcdCluster::LeaderIndex(std::chrono::milliseconds timeout) {
  RequirePlaintext("LeaderIndex");
  int leader = -1;
  WaitFor(
      [&] {
        std::vector<std::string> ids(members_.size());
        std::string agreed;
        int answered = 0;
        for (int i = 0; i < size(); ++i) {
          if (!MemberRunning(i)) continue;
          HttpResult r = Http(ClientPort(i), "POST", "/v3/maintenance/status", "{}", {},
                              std::chrono::seconds(2));
          json j = r.Json();
          if (r.status != 200 || !j.is_object() || !j.contains("header")) return false;
          ids[static_cast<size_t>(i)] = j["header"].value("member_id", "");
          std::string l = j.value("leader", "");
          if (l.empty() || l == "0" || (!agreed.empty() && agreed != l)) return false;
          agreed = l;
          ++answered;
        }
        if (answered == 0) return false;
        for (size_t i = 0; i < ids.size(); ++i) {
          if (!ids[i].empty() && ids[i] == agreed) {
            leader = static_cast<int>(i);
            return true;
          }
        }
        return false;
      },
      timeout, std::chrono::milliseconds(100));
  return leader;
}

json EtcdCluster::GatewayPost(const std::string& path, const json& body) {
  RequirePlaintext("GatewayPost");
  std::string last_error = "no running member";
  for (int i = 0; i < size(); ++i) {
    if (!MemberRunning(i)) continue;
    HttpResult r = Http(ClientPort(i), "POST", path, body.dump(), {}, std::chrono::seconds(5));
    json j = r.Json();
    if (r.status == 200 && j.is_object()) return j;
    last_error = "member " + std::to_string(i) + ": " + r.Describe();
  }
  throw std::runtime_error("etcd " + path + " failed: " + last_error);
}

int64_t EtcdCluster::Revision() {
  json j = GatewayPost("/v3/kv/range",
                       {{"key", Base64Encode("/k8shmir-test/probe")}, {"count_only", true}});
  return JsonInt(j.at("header"), "revision");
}

int64_t EtcdCluster::Put(const std::string& key, const std::string& value) {
  json j = GatewayPost("/v3/kv/put", {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}});
  return JsonInt(j.at("header"), "revision");
}

void EtcdCluster::Compact(int64_t revision) {
  GatewayPost("/v3/kv/compaction", {{"revision", std::to_string(revision)}, {"physical", true}});
}

void EtcdCluster::Delete(const std::string& key) {
  GatewayPost("/v3/kv/deleterange", {{"key", Base64Encode(key)}});
}

void EtcdCluster::Defragment() {
  RequirePlaintext("Defragment");
  for (int i = 0; i < size(); ++i) {
    if (!MemberRunning(i)) continue;
    HttpResult r = Http(ClientPort(i), "POST", "/v3/maintenance/defragment", "{}", {},
                        std::chrono::seconds(30));
    if (r.status != 200) {
      throw std::runtime_error("etcd defragment of member " + std::to_string(i) +
                               " failed: " + r.Describe());
    }
  }
}

std::vector<std::string> EtcdCluster::Alarms() {
  json j = GatewayPost("/v3/maintenance/alarm", {{"action", "GET"}});
  std::vector<std::string> out;
  for (const auto& alarm : j.value("alarms", json::array())) {
    out.push_back(alarm.value("alarm", "NONE"));
  }
  return out;
}

void EtcdCluster::DisarmAlarms() {
  json j = GatewayPost("/v3/maintenance/alarm", {{"action", "GET"}});
  for (const auto& alarm : j.value("alarms", json::array())) {
    GatewayPost("/v3/maintenance/alarm", {{"action", "DEACTIVATE"},
                                          {"memberID", alarm.value("memberID", std::string("0"))},
                                          {"alarm", alarm.value("alarm", "NONE")}});
  }
}

int64_t EtcdCluster::CountPrefix(const std::string& prefix) {
  json j = GatewayPost("/v3/kv/range", {{"key", Base64Encode(prefix)},
                                        {"range_end", Base64Encode(PrefixEnd(prefix))},
                                        {"count_only", true}});
  return JsonInt(j, "count");
}

int64_t EtcdCluster::CountLogEntries(const std::string& prefix) {
  json j = GatewayPost("/v3/kv/range", {{"key", Base64Encode(prefix)},
                                        {"range_end", Base64Encode(PrefixEnd(prefix))},
                                        {"keys_only", true}});
  int64_t entries = 0;
  if (j.contains("kvs")) {
    for (const auto& kv : j.at("kvs")) {
      std::string key = Base64Decode(kv.at("key").get<std::string>());
      entries += static_cast<int64_t>(BatchCountOfKey(std::string_view(key).substr(prefix.size())));
    }
  }
  return entries;
}

std::vector<std::string> EtcdCluster::Keys(const std::string& prefix) {
  json j = GatewayPost("/v3/kv/range", {{"key", Base64Encode(prefix)},
                                        {"range_end", Base64Encode(PrefixEnd(prefix))},
                                        {"keys_only", true}});
  std::vector<std::string> keys;
  if (j.contains("kvs")) {
    for (const auto& kv : j.at("kvs"))
      keys.push_back(Base64Decode(kv.at("key").get<std::string>()));
  }
  return keys;
}

EtcdCluster::LogCount EtcdCluster::CountLogEntriesAbove(const std::string& prefix, int64_t above) {
  json j = GatewayPost("/v3/kv/range", {{"key", Base64Encode(prefix)},
                                        {"range_end", Base64Encode(PrefixEnd(prefix))},
                                        {"keys_only", true}});
  LogCount count;
  if (!j.contains("kvs")) return count;
  for (const auto& kv : j.at("kvs")) {
    const std::string key = Base64Decode(kv.at("key").get<std::string>());
    const int64_t revision = std::stoll(kv.at("create_revision").get<std::string>());
    const auto n =
        static_cast<int64_t>(BatchCountOfKey(std::string_view(key).substr(prefix.size())));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t index = IndexOf(revision, i);
      if (index > above) ++count.entries;
      count.last_index = std::max(count.last_index, index);
    }
  }
  return count;
}

int64_t EtcdCluster::TrimmedIndex(const std::string& prefix) {
  json j = GatewayPost("/v3/kv/range", {{"key", Base64Encode(TrimmedMarkerKey(prefix))}});
  if (!j.contains("kvs") || j.at("kvs").empty()) return 0;
  auto trimmed = ParseTrimmedMarker(Base64Decode(j.at("kvs")[0].at("value").get<std::string>()));
  if (!trimmed) throw std::runtime_error(trimmed.error().message);
  return *trimmed;
}

std::filesystem::path EtcdCluster::LogFile(int i) const {
  return log_dir_ / ("etcd-" + std::to_string(i) + ".log");
}

void EtcdCluster::DumpLogs(std::ostream& out, size_t lines) const {
  out << "=== etcd logs kept in " << log_dir_.string() << "\n";
  for (int i = 0; i < size(); ++i) {
    out << "--- last " << lines << " lines of " << LogFile(i).string() << "\n"
        << TailFile(LogFile(i), lines);
  }
  out.flush();
}

}  // namespace k8shmir::testing
