// The proxy's configuration: command-line flags, each also settable as a K8SHMIR_* environment
// variable (flags win). See `k8shmir-proxy --help`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "k8shmir/result.h"

namespace k8shmir {

struct Config {
  // "::": every address of both families (dual-stack; 0.0.0.0 where the kernel has no IPv6), as
  // k8shmir-init redirects IPv6 connections too.
  std::string listen_address = "::";
  uint16_t listen_port = 8080;
  std::string app_host = "127.0.0.1";
  uint16_t app_port = 3000;
  std::string admin_address = "::";  // probes come to the pod's address, IPv6 in IPv6 clusters
  uint16_t admin_port = 9901;
  std::vector<std::string> etcd_endpoints = {"127.0.0.1:2379"};
  // TLS to etcd, on when a CA file or a client certificate is given (see log/etcd_log.h,
  // EtcdTlsOptions). Without a CA file the system's trusted roots verify the server.
  std::string etcd_ca_file;
  std::string etcd_cert_file;  // with etcd_key_file: a client certificate for --client-cert-auth
  std::string etcd_key_file;
  std::string etcd_server_name;  // verify this name in the server certificate, not the host
  // "spread": each proxy starts with the endpoint its replica id hashes to, so the proxies of a
  // group spread their connections (watch streams included) over the members; "as-listed":
  // every proxy starts with the first. Either way a failing endpoint is left for the next.
  std::string etcd_endpoint_order = "spread";
  std::string group = "default";
  std::string last_index_path = "/last-index";
  // The app's snapshot endpoint (GET and PUT), used when it declares "snapshots": true.
  std::string snapshot_path = "/snapshot";
  std::string index_header = "Log-Index";
  // Reads that skip the log (ReadRoutes::Parse's syntax; empty: every request is logged).
  std::string read_routes;
  std::size_t max_pending_reads = 4096;
  std::size_t max_read_connections = 32;
  // A linearizable read behind a younger append in flight waits for the next append to carry
  // it, rather than a barrier of its own (ReplicaOptions::read_ride_append_window); 0: barriers.
  std::chrono::milliseconds read_ride_append_window{10};
  std::string replica_id;  // default: hostname
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds app_timeout{5000};
  // The app has answered nothing the proxy asked (entries, last-index queries) for this long:
  // the admin GET /app-healthz fails, which the chart makes the app container's liveness probe.
  // 0: never.
  std::chrono::milliseconds app_hang_timeout{30000};
  // One log line per client request, after its answer (off: a busy proxy would log thousands).
  bool access_log = false;
  std::chrono::milliseconds etcd_timeout{3000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds read_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds shutdown_timeout{10000};
  // On SIGTERM: not ready, still serving, for this long before the proxy stops accepting (so
  // that Service endpoints and load balancers stop sending it traffic first).
  std::chrono::milliseconds drain_delay{5000};
  std::size_t body_limit = 1024 * 1024;
  std::size_t header_limit = 64 * 1024;
  std::size_t response_limit = 16 * 1024 * 1024;
  std::size_t max_pending_requests = 4096;
  std::size_t max_queued_entries = 4096;
  // Memory bounds in bytes of encoded entries (see ReplicaOptions); the chart derives them from
  // the proxy's memory limit.
  std::size_t max_queued_bytes = 32 * 1024 * 1024;
  std::size_t max_pending_bytes = 32 * 1024 * 1024;
  // /healthz fails once the replica's loop has not ticked for this long (a wedged proxy).
  std::chrono::milliseconds liveness_timeout{10000};
  std::size_t max_connections = 4096;
  std::size_t max_appends_in_flight = 1;
  std::size_t max_batch_bytes = 512 * 1024;
  std::size_t app_pipeline_depth = 16;
  // Snapshots and retention (see ReplicaOptions and docs/design.md, "Retention").
  std::size_t snapshot_every_entries = 10000;
  std::chrono::milliseconds snapshot_min_interval{30000};
  std::size_t snapshot_max_bytes = 64 * 1024 * 1024;
  std::chrono::milliseconds snapshot_timeout{60000};
  std::size_t retain_entries = 300000;  // about a minute at the bench's peak rate
  std::chrono::milliseconds trim_min_age{60000};
  std::string log_level = "info";
  std::string log_format = "text";  // text | json
  int io_threads = 1;

  // The etcd key prefix of this group's log: /k8shmir/<group>/log/
  std::string LogPrefix() const { return "/k8shmir/" + group + "/log/"; }
};

// The largest encoded entry etcd accepts by default (--max-request-bytes 1.5 MiB) less room for
// the Txn envelope and key.
inline constexpr std::size_t kMaxEntryBytes = 1536 * 1024 - 8 * 1024;

// What ParseConfig decided.
struct ParsedConfig {
  Config config;
  bool show_help = false;
  bool show_version = false;
};

// Parses argv and the environment (`env` as from `environ`). Errors name the flag and the reason.
Result<ParsedConfig> ParseConfig(int argc, const char* const* argv, const char* const* env);

// The --help text: every flag, its variable, its default.
std::string ConfigUsage();

}  // namespace k8shmir
