#include "ctl/options.h"

#include <charconv>
#include <map>
#include <sstream>

#include "common/version.h"
#include "log/etcd_errors.h"

namespace k8shmir::ctl {
namespace {

Error Usage(const std::string& why) { return Error{ErrorCode::kInvalid, why}; }

Result<int64_t> ParseInteger(const std::string& flag, const std::string& text, int64_t min) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value < min) {
    return Usage("--" + flag + "=" + text + ": expected an integer >= " + std::to_string(min));
  }
  return value;
}

Result<std::vector<std::string>> ParseEndpoints(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    // The log's own check, so that both programs accept the same endpoints.
    auto normalized = NormalizeEndpoint(item);
    if (!normalized) return Usage(normalized.error().message);
    out.push_back(item);
  }
  if (out.empty()) return Usage("--etcd-endpoints: no endpoint given");
  return out;
}

bool ValidGroupName(const std::string& g) {
  if (g.empty() || g.size() > 128) return false;
  for (char c : g) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<std::chrono::milliseconds> ParseDuration(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  int64_t scale = 0;
  if (unit.empty() || unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60000;
  }
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (digits == 0 || scale == 0 || ec != std::errc() || ptr != text.data() + digits || value <= 0 ||
      value > 24 * 3600 * 1000 / scale) {
    return Usage("'" + text + "' is not a duration (e.g. 500ms, 2s, 1m)");
  }
  return std::chrono::milliseconds(value * scale);
}

Result<CtlOptions> ParseCtlArgs(const std::vector<std::string>& args, const char* const* env) {
  CtlOptions o;
  std::map<std::string, std::string> environment;
  for (const char* const* e = env; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) environment[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  // The proxy's variables, read by its container's `kubectl exec` sessions too (the chart sets
  // K8SHMIR_QUOTA_BACKEND_BYTES there from its etcd's quota; the proxy ignores it).
  std::map<std::string, std::string> flags;
  for (const auto& [flag, var] :
       std::map<std::string, std::string>{{"etcd-endpoints", "K8SHMIR_ETCD_ENDPOINTS"},
                                          {"etcd-ca-file", "K8SHMIR_ETCD_CA_FILE"},
                                          {"etcd-cert-file", "K8SHMIR_ETCD_CERT_FILE"},
                                          {"etcd-key-file", "K8SHMIR_ETCD_KEY_FILE"},
                                          {"etcd-server-name", "K8SHMIR_ETCD_SERVER_NAME"},
                                          {"quota-backend-bytes", "K8SHMIR_QUOTA_BACKEND_BYTES"}}) {
    if (auto it = environment.find(var); it != environment.end()) flags[flag] = it->second;
  }

  std::vector<std::string> positional;
  static const char* const kValueFlags[] = {
      "etcd-endpoints",      "etcd-ca-file",    "etcd-cert-file", "etcd-key-file",
      "etcd-server-name",    "timeout",         "output",         "interval",
      "quota-backend-bytes", "max-lag-entries", "stale-after"};
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h" || arg == "help") {
      o.command = Command::kHelp;
      return o;
    }
    if (arg == "--version" || arg == "version") {
      o.command = Command::kVersion;
      return o;
    }
    if (arg == "--watch" || arg == "-w") {
      o.watch = true;
      continue;
    }
    if (arg == "--log-bytes") {
      o.log_bytes = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    bool known = false;
    for (const char* f : kValueFlags) known = known || name == f;
    if (!known) return Usage("unknown flag --" + name + " (see --help)");
    if (eq == std::string::npos) {
      if (i + 1 >= args.size()) return Usage("--" + name + " needs a value");
      value = args[++i];
    }
    flags[name] = value;
  }

  if (positional.empty()) return Usage("no command given: status GROUP, or groups (see --help)");
  const std::string& command = positional[0];
  if (command == "status") {
    o.command = Command::kStatus;
    if (positional.size() > 2) return Usage("status takes one group, not '" + positional[2] + "'");
    if (positional.size() == 2) {
      o.group = positional[1];
    } else if (auto it = environment.find("K8SHMIR_GROUP"); it != environment.end()) {
      o.group = it->second;
    } else {
      return Usage("status needs a GROUP (or K8SHMIR_GROUP)");
    }
    if (!ValidGroupName(o.group)) {
      return Usage("group '" + o.group + "': use 1-128 characters of [A-Za-z0-9._-]");
    }
  } else if (command == "groups") {
    o.command = Command::kGroups;
    if (positional.size() > 1)
      return Usage("groups takes no argument, not '" + positional[1] + "'");
  } else {
    return Usage("unknown command '" + command + "' (status, groups; see --help)");
  }

  for (const auto& [name, value] : flags) {
    if (name == "etcd-endpoints") {
      auto eps = ParseEndpoints(value);
      if (!eps) return eps.error();
      o.endpoints = std::move(*eps);
    } else if (name == "etcd-ca-file") {
      o.tls.ca_file = value;
    } else if (name == "etcd-cert-file") {
      o.tls.cert_file = value;
    } else if (name == "etcd-key-file") {
      o.tls.key_file = value;
    } else if (name == "etcd-server-name") {
      o.tls.server_name = value;
    } else if (name == "timeout" || name == "interval" || name == "stale-after") {
      auto d = ParseDuration(value);
      if (!d) return Usage("--" + name + ": " + d.error().message);
      (name == "timeout" ? o.timeout : name == "interval" ? o.interval : o.stale_after) = *d;
    } else if (name == "output") {
      if (value == "text") {
        o.output = Output::kText;
      } else if (value == "json") {
        o.output = Output::kJson;
      } else {
        return Usage("--output=" + value + ": must be text or json");
      }
    } else if (name == "quota-backend-bytes") {
      auto v = ParseInteger(name, value, 0);
      if (!v) return v.error();
      o.quota_backend_bytes = *v;
    } else if (name == "max-lag-entries") {
      auto v = ParseInteger(name, value, 0);
      if (!v) return v.error();
      o.max_lag_entries = static_cast<uint64_t>(*v);
    }
  }
  if (o.endpoints.empty()) {
    return Usage("--etcd-endpoints is required (or K8SHMIR_ETCD_ENDPOINTS)");
  }
  if (o.watch && o.command != Command::kStatus) return Usage("--watch is for status only");
  return o;
}

const char* CtlVersionNumber() { return kVersion; }
std::string CtlVersion() {
  return std::string("k8shmirctl ") + kVersion + " (" + kRevision + ")\n";
}

std::string CtlUsage() {
  return R"(Usage:
  k8shmirctl status GROUP --etcd-endpoints HOST:PORT[,...] [flags]
  k8shmirctl groups --etcd-endpoints HOST:PORT[,...] [flags]
  k8shmirctl --help | --version

Reads a k8shmir replication group's state straight from etcd (nothing is written): its
replicas as they registered, the log, the stored snapshots and etcd's health.

Commands:
  status GROUP      every replica of GROUP, the log, snapshots, etcd members and alarms
  groups            the groups on this etcd (their format markers), replicas and last index

Flags (the etcd ones are the proxy's; when absent, the proxy's environment variables
K8SHMIR_ETCD_ENDPOINTS, K8SHMIR_ETCD_CA_FILE, ... and K8SHMIR_GROUP are used):
  --etcd-endpoints LIST      comma-separated [https://]host:port of etcd members
  --etcd-ca-file FILE        PEM CA bundle verifying etcd's server certificate; turns TLS on
  --etcd-cert-file FILE      PEM client certificate (with --etcd-key-file); turns TLS on
  --etcd-key-file FILE       PEM private key of --etcd-cert-file
  --etcd-server-name NAME    name to verify in etcd's certificate instead of the endpoint host
  --timeout DURATION         deadline of every call to etcd (default 5s)
  --output text|json         json: one object per refresh (fields in docs/kubernetes.md)
  --watch, -w                refresh until Ctrl-C (status only)
  --interval DURATION        between refreshes with --watch (default 2s)
  --quota-backend-bytes N    etcd's --quota-backend-bytes, which etcd 3.4 does not report
                             (default $K8SHMIR_QUOTA_BACKEND_BYTES, else 2147483648, etcd's
                             default; 0: unknown)
  --max-lag-entries N        degraded when a replica has more unapplied entries (default 1000)
  --stale-after DURATION     degraded when a replica's record is older (default 6s)
  --log-bytes                also sum the log's bytes (reads every value of the log)

Exit codes: 0 every replica serving and etcd healthy; 1 degraded; 2 etcd unreachable (no
endpoint answered, or TLS failed); 3 unknown group; 64 usage error.
)";
}

}  // namespace k8shmir::ctl
