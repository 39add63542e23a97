// k8shmir-proxy: the State Machine Replication sidecar. Wires the configuration, the etcd log,
// the local app, the replica and the two HTTP servers together, and runs them until a signal.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <csignal>
#include <functional>
#include <iostream>
#include <thread>
#include <vector>

#include "admin/admin_server.h"
#include "app/http_app.h"
#include "common/logging.h"
#include "common/version.h"
#include "http/front_server.h"
#include "k8shmir/config.h"
#include "log/etcd_credentials.h"
#include "log/etcd_log.h"
#include "replica/replica.h"

extern char** environ;

namespace {

// An io_context whose pending handlers can be destroyed before the objects they reference.
// ~io_context destroys them too, but only after every object declared after it is gone, and the
// handlers hold shared_ptrs to the servers' state and to the replica, which holds Log& and App&.
class ProxyIoContext : public boost::asio::io_context {
 public:
  using boost::asio::io_context::io_context;
  // After run() returned on every thread: destroys, without running them, every queued handler
  // and every pending operation (suspended sessions, timers), releasing what they hold. Safe to
  // call again; the io objects themselves stay usable until the io_context is destroyed.
  void DestroyPendingHandlers() { shutdown(); }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace k8shmir;
  auto parsed = ParseConfig(argc, argv, environ);
  if (!parsed) {
    std::cerr << "k8shmir-proxy: " << parsed.error().message << "\n";
    return 2;
  }
  if (parsed->show_help) {
    std::cout << ConfigUsage();
    return 0;
  }
  if (parsed->show_version) {
    std::cout << "k8shmir-proxy " << kVersion << " (" << kRevision << ")\n";
    return 0;
  }
  const Config& config = parsed->config;
  SetUpLogging(config.log_level, config.log_format,
               {{"replica", config.replica_id}, {"group", config.group}});
  std::signal(SIGPIPE, SIG_IGN);
  // Every client connection is a descriptor; the default soft limit (1024) is too low for a proxy.
  if (rlimit lim{}; getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }

  // Declared first so that it goes last: every io object below is destroyed before it.
  ProxyIoContext ioc(config.io_threads);

  EtcdLogOptions log_options;
  log_options.endpoints = config.etcd_endpoints;
  log_options.prefix = config.LogPrefix();
  log_options.rpc_timeout = config.etcd_timeout;
  log_options.tls.ca_file = config.etcd_ca_file;
  log_options.tls.cert_file = config.etcd_cert_file;
  log_options.tls.key_file = config.etcd_key_file;
  log_options.tls.server_name = config.etcd_server_name;
  if (config.etcd_endpoint_order == "spread") {
    log_options.first_endpoint = FirstEndpointFor(config.replica_id, config.etcd_endpoints.size());
  }
  if (Status s = ValidateEtcdLogOptions(log_options); !s) {
    std::cerr << "k8shmir-proxy: " << s.error().message << "\n";
    return 2;
  }
  // `log` and `app` must outlive the replica, which keeps references to them; the teardown at
  // the end destroys them only once nothing can hold the replica any more.
  auto log = std::make_unique<EtcdLog>(log_options);

  HttpAppOptions app_options;
  app_options.host = config.app_host;
  app_options.port = config.app_port;
  app_options.last_index_path = config.last_index_path;
  app_options.snapshot_path = config.snapshot_path;
  app_options.index_header = config.index_header;
  app_options.timeout = config.app_timeout;
  app_options.response_limit = config.response_limit;
  app_options.max_read_connections = config.max_read_connections;
  auto app = std::make_unique<HttpApp>(ioc.get_executor(), app_options);

  ReplicaOptions replica_options;
  replica_options.replica_id = config.replica_id;
  replica_options.group = config.group;
  replica_options.request_timeout = config.request_timeout;
  replica_options.etcd_timeout = config.etcd_timeout;
  replica_options.max_pending_requests = config.max_pending_requests;
  replica_options.max_queued_entries = config.max_queued_entries;
  replica_options.max_queued_bytes = config.max_queued_bytes;
  replica_options.max_pending_bytes = config.max_pending_bytes;
  replica_options.app_timeout = config.app_timeout;
  replica_options.app_hang_timeout = config.app_hang_timeout;
  replica_options.max_appends_in_flight = config.max_appends_in_flight;
  replica_options.max_batch_bytes = config.max_batch_bytes;
  replica_options.app_pipeline_depth = config.app_pipeline_depth;
  replica_options.heartbeat_interval = config.heartbeat_interval;
  replica_options.snapshot_every_entries = config.snapshot_every_entries;
  replica_options.snapshot_min_interval = config.snapshot_min_interval;
  replica_options.snapshot_max_bytes = config.snapshot_max_bytes;
  replica_options.snapshot_timeout = config.snapshot_timeout;
  replica_options.retain_entries = config.retain_entries;
  replica_options.trim_min_age = config.trim_min_age;
  // Validated by ParseConfig.
  replica_options.read_routes = ReadRoutes::Parse(config.read_routes).value();
  replica_options.max_pending_reads = config.max_pending_reads;
  replica_options.read_ride_append_window = config.read_ride_append_window;
  if (!replica_options.read_routes.empty()) {
    LogLine(spdlog::level::info,
            "read routes are served without a log entry (the app must leave its state and last "
            "index alone for requests without the index header)",
            {{"routes", replica_options.read_routes.ToString()},
             {"index_header", config.index_header}});
  }
  // The etcd log is also the group's snapshot store and registry.
  auto replica = std::make_shared<Replica>(ioc.get_executor(), *log, *app, replica_options,
                                           log.get(), log.get());

  FrontServerOptions front_options;
  front_options.address = config.listen_address;
  front_options.port = config.listen_port;
  front_options.index_header = config.index_header;
  front_options.body_limit = config.body_limit;
  front_options.header_limit = config.header_limit;
  front_options.max_connections = config.max_connections;
  front_options.idle_timeout = config.idle_timeout;
  front_options.read_timeout = config.read_timeout;
  front_options.access_log = config.access_log;
  auto front = std::make_unique<FrontServer>(ioc, front_options, replica);
  auto admin = std::make_unique<AdminServer>(ioc, config.admin_address, config.admin_port, replica,
                                             config.liveness_timeout);

  for (Status s : {front->Listen(), admin->Listen()}) {
    if (!s) {
      LogLine(spdlog::level::critical, "cannot start", {{"error", s.error().message}});
      return 1;
    }
  }
  LogLine(spdlog::level::info, "k8shmir-proxy started",
          {{"version", kVersion},
           {"listen_address", config.listen_address},
           {"listen_port", config.listen_port},
           {"app_host", config.app_host},
           {"app_port", config.app_port},
           {"admin_address", config.admin_address},
           {"admin_port", config.admin_port},
           {"etcd_endpoints", fmt::format("{}", fmt::join(config.etcd_endpoints, ","))},
           {"etcd_transport", EtcdTlsEnabled(log_options.tls) ? "tls" : "plaintext"},
           {"endpoint",
            config.etcd_endpoints[log_options.first_endpoint % config.etcd_endpoints.size()]}});

  replica->Start();
  front->Start();
  admin->Start();

  // SIGTERM: not ready (/readyz 503) but still serving for --drain-delay-ms, so that the
  // Service's endpoints and any load balancer stop sending traffic first; then (or at once on
  // SIGINT, or on a second signal) stop accepting, close idle connections, let in-flight requests
  // finish (bounded), and exit 0. The handlers capture main's locals by reference: they run only
  // inside ioc.run(), and are destroyed unrun by the teardown below.
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  boost::asio::steady_timer drain(ioc);
  boost::asio::steady_timer delay(ioc);
  bool stopping = false;
  bool admin_draining = false;
  const auto drain_deadline_after = config.shutdown_timeout;
  std::chrono::steady_clock::time_point drain_deadline;
  std::function<void()> poll_drain = [&] {
    replica->GetStatus([&](ReplicaStatus s) {
      boost::asio::post(ioc, [&, pending = s.pending_requests] {
        if (pending > 0 && std::chrono::steady_clock::now() < drain_deadline) {
          drain.expires_after(std::chrono::milliseconds(50));
          drain.async_wait([&](auto) { poll_drain(); });
          return;
        }
        if (pending > 0) {
          LogLine(spdlog::level::warn, "shutdown: requests still pending at the deadline; stopping",
                  {{"pending_requests", pending}});
        }
        replica->Stop();
        admin->Stop();
        // Let the replies of a stopping replica reach their connections.
        drain.expires_after(std::chrono::milliseconds(100));
        drain.async_wait([&](auto) { ioc.stop(); });
      });
    });
  };
  std::function<void()> stop_accepting = [&] {
    if (stopping) return;
    stopping = true;
    delay.cancel();
    LogLine(spdlog::level::info, "shutdown: no more connections accepted; draining",
            {{"timeout_ms", drain_deadline_after.count()}});
    drain_deadline = std::chrono::steady_clock::now() + drain_deadline_after;
    front->Stop();
    poll_drain();
  };
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        const bool draining_already = admin_draining;
        admin_draining = true;
        admin->SetDraining();
        if (sig == SIGTERM && !draining_already && config.drain_delay.count() > 0) {
          LogLine(spdlog::level::info, "signal: not ready; still serving before draining",
                  {{"signal", sig}, {"delay_ms", config.drain_delay.count()}});
          delay.expires_after(config.drain_delay);
          delay.async_wait([&](const boost::system::error_code& wait_ec) {
            if (!wait_ec) stop_accepting();
          });
        } else {
          LogLine(spdlog::level::info, "signal: draining now", {{"signal", sig}});
          stop_accepting();
        }
        signals.async_wait(on_signal);  // a second signal cuts the delay short
      };
  signals.async_wait(on_signal);

  std::vector<std::thread> threads;
  for (int i = 1; i < config.io_threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  // Teardown: nothing runs any more, but queued handlers and suspended sessions still hold the
  // servers' state and the replica. Destroy them first, while everything they use is alive.
  ioc.DestroyPendingHandlers();
  front.reset();
  admin.reset();
  replica.reset();
  // The log's destructor waits for gRPC callbacks, which only post to the stopped io_context;
  // what they post holds the last references to the replica (the replica's Stop dropped its
  // subscription, so ~Replica no longer touches the log), destroyed next, before the app goes.
  log.reset();
  ioc.DestroyPendingHandlers();
  app.reset();
  spdlog::info("k8shmir-proxy stopped");
  return 0;
}
