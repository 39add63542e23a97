#include "k8shmir/config.h"

#include "config/read_routes.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>

namespace k8shmir {
namespace {

// One configurable setting: its flag, its environment variable, how to parse it.
struct Option {
  std::string flag;  // without the leading "--"
  std::string help;
  std::string default_text;
  std::function<Status(Config&, const std::string&)> apply;
};

std::string EnvName(const std::string& flag) {
  std::string env = "K8SHMIR_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

Error Invalid(const std::string& flag, const std::string& value, const std::string& why) {
  return Error{ErrorCode::kInvalid, "--" + flag + "=" + value + ": " + why};
}

template <class Int>
Result<Int> ParseInt(const std::string& flag, const std::string& s, Int min, Int max) {
  Int v{};
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) {
    return Invalid(flag, s, "not an integer");
  }
  if (v < min || v > max) {
    return Invalid(flag, s,
                   "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

Option PortOption(std::string flag, std::string help, uint16_t Config::*field, uint16_t def) {
  return {flag, std::move(help), std::to_string(def),
          [flag, field](Config& c, const std::string& v) -> Status {
            auto r = ParseInt<int>(flag, v, 1, 65535);
            if (!r) return r.error();
            c.*field = static_cast<uint16_t>(*r);
            return OkStatus();
          }};
}

// A duration in ms, from 1 (or 0 with `allow_zero`) to a day.
Option MillisOption(std::string flag, std::string help, std::chrono::milliseconds Config::*field,
                    std::chrono::milliseconds def, bool allow_zero = false) {
  return {flag, std::move(help), std::to_string(def.count()),
          [flag, field, allow_zero](Config& c, const std::string& v) -> Status {
            auto r = ParseInt<int64_t>(flag, v, allow_zero ? 0 : 1, 24LL * 3600 * 1000);
            if (!r) return r.error();
            c.*field = std::chrono::milliseconds(*r);
            return OkStatus();
          }};
}

Option SizeOption(std::string flag, std::string help, std::size_t Config::*field, std::size_t def,
                  std::size_t min, std::size_t max) {
  return {flag, std::move(help), std::to_string(def),
          [flag, field, min, max](Config& c, const std::string& v) -> Status {
            auto r = ParseInt<std::size_t>(flag, v, min, max);
            if (!r) return r.error();
            c.*field = *r;
            return OkStatus();
          }};
}

Option StringOption(std::string flag, std::string help, std::string Config::*field, std::string def,
                    std::function<Status(const std::string&)> check = nullptr) {
  return {flag, std::move(help), def.empty() ? "\"\"" : def,
          [field, check](Config& c, const std::string& v) -> Status {
            if (check) {
              Status s = check(v);
              if (!s) return s;
            }
            c.*field = v;
            return OkStatus();
          }};
}

Option BoolOption(std::string flag, std::string help, bool Config::*field, bool def) {
  return {flag, std::move(help), def ? "true" : "false",
          [flag, field](Config& c, const std::string& v) -> Status {
            if (v == "true" || v == "1") {
              c.*field = true;
            } else if (v == "false" || v == "0") {
              c.*field = false;
            } else {
              return Invalid(flag, v, "must be true or false");
            }
            return OkStatus();
          }};
}

bool IsToken(const std::string& s) {
  // RFC 9110 token characters: what a header name may contain.
  static const char* kExtra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr(kExtra, c) != nullptr;
  });
}

const std::vector<Option>& Options() {
  static const std::vector<Option> options = [] {
    Config d;
    std::vector<Option> o;
    o.push_back(StringOption("listen-address",
                             "address the proxy listens on for client traffic (:: = both families)",
                             &Config::listen_address, d.listen_address));
    o.push_back(PortOption("listen-port", "client traffic port (the iptables redirect target)",
                           &Config::listen_port, d.listen_port));
    o.push_back(StringOption("app-host", "host of the local app", &Config::app_host, d.app_host));
    o.push_back(PortOption("app-port", "port of the local app", &Config::app_port, d.app_port));
    o.push_back(StringOption("admin-address", "address of the admin server", &Config::admin_address,
                             d.admin_address));
    o.push_back(PortOption("admin-port", "admin port: /healthz /readyz /status /metrics",
                           &Config::admin_port, d.admin_port));
    o.push_back({"etcd-endpoints", "comma-separated etcd client endpoints [https://]host:port",
                 "127.0.0.1:2379", [](Config& c, const std::string& v) -> Status {
                   std::vector<std::string> eps;
                   std::stringstream ss(v);
                   std::string item;
                   while (std::getline(ss, item, ',')) {
                     // Accept and drop an http:// scheme: etcdctl users type it out of habit.
                     // Keep https://: the etcd log refuses it without TLS options instead of
                     // connecting in plaintext to a member that expects TLS.
                     if (item.rfind("http://", 0) == 0) item = item.substr(7);
                     const std::string endpoint = item;
                     if (item.rfind("https://", 0) == 0) item = item.substr(8);
                     if (item.empty()) continue;
                     auto colon = item.rfind(':');
                     if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) {
                       return Invalid("etcd-endpoints", v, "each endpoint must be host:port");
                     }
                     auto port = ParseInt<int>("etcd-endpoints", item.substr(colon + 1), 1, 65535);
                     if (!port) return port.error();
                     eps.push_back(endpoint);
                   }
                   if (eps.empty()) return Invalid("etcd-endpoints", v, "no endpoint given");
                   c.etcd_endpoints = std::move(eps);
                   return OkStatus();
                 }});
    o.push_back(StringOption("etcd-ca-file",
                             "PEM CA bundle verifying etcd's server certificate; turns TLS on",
                             &Config::etcd_ca_file, ""));
    o.push_back(StringOption("etcd-cert-file",
                             "PEM client certificate for etcd (with --etcd-key-file); turns TLS on",
                             &Config::etcd_cert_file, ""));
    o.push_back(StringOption("etcd-key-file", "PEM private key of --etcd-cert-file",
                             &Config::etcd_key_file, ""));
    o.push_back(StringOption("etcd-server-name",
                             "name to verify in etcd's certificate instead of the endpoint host",
                             &Config::etcd_server_name, ""));
    o.push_back(StringOption(
        "etcd-endpoint-order",
        "spread|as-listed: which endpoint a proxy tries first (spread: the "
        "one its replica id hashes to)",
        &Config::etcd_endpoint_order, d.etcd_endpoint_order, [](const std::string& v) -> Status {
          if (v != "spread" && v != "as-listed") {
            return Invalid("etcd-endpoint-order", v, "must be spread or as-listed");
          }
          return OkStatus();
        }));
    o.push_back(StringOption(
        "group", "replication group name (etcd key prefix /k8shmir/<group>/)", &Config::group,
        d.group, [](const std::string& v) -> Status {
          bool ok = !v.empty() && v.size() <= 128 && std::all_of(v.begin(), v.end(), [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
                   ch == '.';
          });
          if (!ok) {
            return Invalid("group", v, "use 1-128 characters of [A-Za-z0-9._-]");
          }
          return OkStatus();
        }));
    o.push_back(StringOption("last-index-path", "app path answering {\"index\": N}",
                             &Config::last_index_path, d.last_index_path,
                             [](const std::string& v) -> Status {
                               if (v.empty() || v[0] != '/') {
                                 return Invalid("last-index-path", v, "must start with /");
                               }
                               return OkStatus();
                             }));
    o.push_back(StringOption("snapshot-path",
                             "app path serving GET/PUT of its whole state (when it declares "
                             "\"snapshots\": true)",
                             &Config::snapshot_path, d.snapshot_path,
                             [](const std::string& v) -> Status {
                               if (v.empty() || v[0] != '/') {
                                 return Invalid("snapshot-path", v, "must start with /");
                               }
                               return OkStatus();
                             }));
    o.push_back(StringOption("index-header", "header carrying the log index to the app",
                             &Config::index_header, d.index_header,
                             [](const std::string& v) -> Status {
                               if (!IsToken(v)) {
                                 return Invalid("index-header", v, "not a valid header name");
                               }
                               return OkStatus();
                             }));
    o.push_back(StringOption(
        "read-routes",
        "requests the app promises never change its state, served by this replica without a "
        "log entry: \"METHOD /path [linearizable|local], ...\" ('*' matches any run of "
        "characters; default consistency linearizable; empty: every request is logged)",
        &Config::read_routes, "", [](const std::string& v) -> Status {
          Result<ReadRoutes> routes = ReadRoutes::Parse(v);
          if (!routes) return routes.error();
          return OkStatus();
        }));
    o.push_back(SizeOption("max-pending-reads", "reads on read routes waiting at once (else 503)",
                           &Config::max_pending_reads, d.max_pending_reads, 1, 1 << 20));
    o.push_back(SizeOption("max-read-connections",
                           "connections to the app for reads on read routes at once (more wait)",
                           &Config::max_read_connections, d.max_read_connections, 1, 4096));
    o.push_back(MillisOption("read-ride-append-ms",
                             "a linearizable read behind an append in flight younger than this "
                             "rides the next append instead of a read barrier (0: a barrier "
                             "at once)",
                             &Config::read_ride_append_window, d.read_ride_append_window,
                             /*allow_zero=*/true));
    o.push_back(StringOption("replica-id", "this replica's name (default: hostname)",
                             &Config::replica_id, ""));
    o.push_back(MillisOption("request-timeout-ms", "deadline of a client request, append to answer",
                             &Config::request_timeout, d.request_timeout));
    o.push_back(MillisOption("app-timeout-ms",
                             "timeout of one call to the app; an entry unanswered past it makes "
                             "the replica not ready until the app answers",
                             &Config::app_timeout, d.app_timeout));
    o.push_back(MillisOption("app-hang-timeout-ms",
                             "the app answered nothing asked of it for this long: GET "
                             "/app-healthz on the admin port fails (a liveness probe for the "
                             "app container); 0: never",
                             &Config::app_hang_timeout, d.app_hang_timeout, /*allow_zero=*/true));
    o.push_back(MillisOption("etcd-timeout-ms", "timeout of one call to etcd",
                             &Config::etcd_timeout, d.etcd_timeout));
    o.push_back(MillisOption("idle-timeout-ms", "close idle client connections after this",
                             &Config::idle_timeout, d.idle_timeout));
    o.push_back(MillisOption("read-timeout-ms",
                             "a started request's head and body must arrive within this",
                             &Config::read_timeout, d.read_timeout));
    o.push_back(MillisOption("heartbeat-interval-ms",
                             "how often the app's last index is checked while idle",
                             &Config::heartbeat_interval, d.heartbeat_interval));
    o.push_back(MillisOption("drain-delay-ms",
                             "on SIGTERM, how long the proxy keeps serving while /readyz fails, "
                             "before it stops accepting (SIGINT or a second signal skips it)",
                             &Config::drain_delay, d.drain_delay, /*allow_zero=*/true));
    o.push_back(MillisOption("shutdown-timeout-ms",
                             "on SIGTERM, how long in-flight requests may take to finish",
                             &Config::shutdown_timeout, d.shutdown_timeout));
    o.push_back(SizeOption("body-limit", "largest client request body in bytes (else 413)",
                           &Config::body_limit, d.body_limit, 0, kMaxEntryBytes));
    o.push_back(SizeOption("header-limit", "largest client request head in bytes (else 431)",
                           &Config::header_limit, d.header_limit, 1024, 1024 * 1024));
    o.push_back(SizeOption("response-limit", "largest app response in bytes",
                           &Config::response_limit, d.response_limit, 1024, std::size_t{1} << 30));
    o.push_back(SizeOption("max-pending-requests",
                           "client requests waiting for their entry at once (else 503)",
                           &Config::max_pending_requests, d.max_pending_requests, 1, 1 << 20));
    o.push_back(SizeOption("max-queued-entries",
                           "committed entries buffered before the watch is paused",
                           &Config::max_queued_entries, d.max_queued_entries, 16, 1 << 20));
    o.push_back(SizeOption(
        "max-queued-bytes", "bytes of committed entries buffered before the watch is paused",
        &Config::max_queued_bytes, d.max_queued_bytes, 2 * kMaxEntryBytes, std::size_t{1} << 40));
    o.push_back(SizeOption(
        "max-pending-bytes", "bytes of client requests waiting for their entry at once (else 503)",
        &Config::max_pending_bytes, d.max_pending_bytes, 2 * kMaxEntryBytes, std::size_t{1} << 40));
    o.push_back(MillisOption("liveness-timeout-ms",
                             "/healthz fails when the replica's loop has not run for this long",
                             &Config::liveness_timeout, d.liveness_timeout));
    o.push_back(SizeOption("max-appends-in-flight",
                           "log appends in flight at once; requests arriving meanwhile are "
                           "batched into the next append",
                           &Config::max_appends_in_flight, d.max_appends_in_flight, 1, 64));
    o.push_back(SizeOption("max-batch-bytes",
                           "encoded entries per log append before a batch is cut (a larger "
                           "single entry goes alone)",
                           &Config::max_batch_bytes, d.max_batch_bytes, 1, kMaxEntryBytes));
    o.push_back(SizeOption("app-pipeline-depth",
                           "entries in flight to an app that declares \"pipelining\": true in "
                           "its last-index answer (HTTP/1.1 pipelining; 1 = one at a time)",
                           &Config::app_pipeline_depth, d.app_pipeline_depth, 1, 256));
    o.push_back(SizeOption("snapshot-every-entries",
                           "the snapshot taker stores the app's state (if it declares "
                           "\"snapshots\": true) every this many applied entries; 0: never, "
                           "and the log is never trimmed",
                           &Config::snapshot_every_entries, d.snapshot_every_entries, 0,
                           std::size_t{1} << 40));
    o.push_back(MillisOption("snapshot-min-interval-ms", "at most one snapshot per this interval",
                             &Config::snapshot_min_interval, d.snapshot_min_interval));
    o.push_back(SizeOption("snapshot-max-bytes",
                           "largest app state stored as a snapshot; a larger one is refused "
                           "(error in /status and the log) and the log is not trimmed",
                           &Config::snapshot_max_bytes, d.snapshot_max_bytes, 1024,
                           std::size_t{1} << 34));
    o.push_back(MillisOption("snapshot-timeout-ms",
                             "to store, or to load and restore, one snapshot",
                             &Config::snapshot_timeout, d.snapshot_timeout));
    o.push_back(SizeOption("retain-entries",
                           "entries kept in the log below the newest snapshot, so that a "
                           "replica stopped for a while replays them instead of restoring",
                           &Config::retain_entries, d.retain_entries, 0, std::size_t{1} << 40));
    o.push_back(MillisOption("trim-min-age-ms",
                             "entries applied more recently are never trimmed; must exceed every "
                             "proxy's --request-timeout-ms (a retried append must find its batch)",
                             &Config::trim_min_age, d.trim_min_age));
    o.push_back(SizeOption("max-connections", "client connections at once (else refused)",
                           &Config::max_connections, d.max_connections, 1, 1 << 20));
    o.push_back(StringOption("log-level", "trace|debug|info|warn|error", &Config::log_level,
                             d.log_level, [](const std::string& v) -> Status {
                               static const char* kLevels[] = {"trace", "debug",    "info", "warn",
                                                               "error", "critical", "off"};
                               for (const char* l : kLevels) {
                                 if (v == l) return OkStatus();
                               }
                               return Invalid("log-level", v, "unknown level");
                             }));
    o.push_back(BoolOption("access-log",
                           "log one line per client request (method, target, status, outcome, "
                           "index, duration) at info level",
                           &Config::access_log, d.access_log));
    o.push_back(StringOption("log-format", "text|json", &Config::log_format, d.log_format,
                             [](const std::string& v) -> Status {
                               if (v != "text" && v != "json") {
                                 return Invalid("log-format", v, "must be text or json");
                               }
                               return OkStatus();
                             }));
    o.push_back(
        {"io-threads", "threads serving HTTP", "1", [](Config& c, const std::string& v) -> Status {
           auto r = ParseInt<int>("io-threads", v, 1, 64);
           if (!r) return r.error();
           c.io_threads = *r;
           return OkStatus();
         }});
    return o;
  }();
  return options;
}

const Option* FindOption(const std::string& flag) {
  for (const auto& o : Options()) {
    if (o.flag == flag) return &o;
  }
  return nullptr;
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "replica";
  return buf;
}

Status Validate(const Config& c) {
  if (c.body_limit + c.header_limit > kMaxEntryBytes) {
    return Error{ErrorCode::kInvalid, "--body-limit + --header-limit = " +
                                          std::to_string(c.body_limit + c.header_limit) +
                                          " bytes exceeds what one etcd request may carry (" +
                                          std::to_string(kMaxEntryBytes) + ")"};
  }
  // The replica's loop ticks once per heartbeat interval: a bound below two ticks would fail
  // /healthz on a healthy proxy.
  if (c.liveness_timeout < 2 * c.heartbeat_interval) {
    return Error{ErrorCode::kInvalid, "--liveness-timeout-ms (" +
                                          std::to_string(c.liveness_timeout.count()) +
                                          ") must be at least twice --heartbeat-interval-ms (" +
                                          std::to_string(c.heartbeat_interval.count()) + ")"};
  }
  if (c.trim_min_age <= c.request_timeout) {
    return Error{ErrorCode::kInvalid, "--trim-min-age-ms (" +
                                          std::to_string(c.trim_min_age.count()) +
                                          ") must exceed --request-timeout-ms (" +
                                          std::to_string(c.request_timeout.count()) +
                                          "): an append retried after its batch was trimmed "
                                          "would be appended twice"};
  }
  if (c.listen_port == c.admin_port && c.listen_address == c.admin_address) {
    return Error{ErrorCode::kInvalid, "--listen-port and --admin-port must differ"};
  }
  // A client certificate is useless without its key and the reverse; catching it here names the
  // flags before any file is read. (The files themselves are checked by the etcd log's
  // validation, which main runs before connecting.)
  if (c.etcd_cert_file.empty() != c.etcd_key_file.empty()) {
    return Error{
        ErrorCode::kInvalid,
        "--etcd-cert-file and --etcd-key-file must be given together (" +
            std::string(c.etcd_cert_file.empty() ? "--etcd-key-file" : "--etcd-cert-file") +
            " alone)"};
  }
  if (!c.etcd_server_name.empty() && c.etcd_ca_file.empty() && c.etcd_cert_file.empty()) {
    return Error{ErrorCode::kInvalid,
                 "--etcd-server-name needs TLS: give --etcd-ca-file (or --etcd-cert-file)"};
  }
  return OkStatus();
}

}  // namespace

Result<ParsedConfig> ParseConfig(int argc, const char* const* argv, const char* const* env) {
  ParsedConfig parsed;
  Config& config = parsed.config;

  // Environment first, so that flags override it.
  std::map<std::string, std::string> environment;
  for (const char* const* e = env; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) environment[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& o : Options()) {
    auto it = environment.find(EnvName(o.flag));
    if (it == environment.end()) continue;
    Status s = o.apply(config, it->second);
    if (!s) return Error{ErrorCode::kInvalid, EnvName(o.flag) + ": " + s.error().message};
  }

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      parsed.show_help = true;
      continue;
    }
    if (arg == "--version") {
      parsed.show_version = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return Error{ErrorCode::kInvalid, "unexpected argument '" + arg + "' (see --help)"};
    }
    std::string name = arg.substr(2), value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Error{ErrorCode::kInvalid, "--" + name + " needs a value"};
    }
    const Option* o = FindOption(name);
    if (o == nullptr) return Error{ErrorCode::kInvalid, "unknown flag --" + name + " (see --help)"};
    Status s = o->apply(config, value);
    if (!s) return s.error();
  }
  if (config.replica_id.empty()) config.replica_id = Hostname();
  Status s = Validate(config);
  if (!s) return s.error();
  return parsed;
}

std::string ConfigUsage() {
  std::ostringstream out;
  out << "Usage: k8shmir-proxy [--flag value | --flag=value]...\n\n"
         "State Machine Replication sidecar: appends every client request to an etcd log and\n"
         "replays the committed log, in order, to the local app.\n\n"
         "Every flag can also be set by its environment variable; flags win.\n\n";
  for (const auto& o : Options()) {
    std::string left = "  --" + o.flag;
    out << left << std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') << o.help
        << "\n                            env " << EnvName(o.flag) << ", default " << o.default_text
        << "\n";
  }
  return out.str();
}

}  // namespace k8shmir
