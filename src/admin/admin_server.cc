#include "admin/admin_server.h"

#include <atomic>

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "admin/process_metrics.h"
#include "admin/status_render.h"
#include "common/accept_loop.h"
#include "common/async_callback.h"
#include "common/listen.h"
#include "common/logging.h"
#include "common/session_registry.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Shared by the server object, its accept loop and every session (each holds a shared_ptr).
struct AdminServer::State : std::enable_shared_from_this<AdminServer::State> {
  // Must outlive the state (and thus every session): see AdminServer's constructor.
  asio::io_context& ioc;
  std::string address;
  uint16_t port;
  std::shared_ptr<ReplicaService> replica;
  std::chrono::milliseconds liveness_timeout;
  tcp::acceptor acceptor;
  SessionRegistry sessions;
  std::atomic<bool> draining{false};

  State(asio::io_context& io, std::string a, uint16_t p, std::shared_ptr<ReplicaService> r,
        std::chrono::milliseconds liveness)
      : ioc(io),
        address(std::move(a)),
        port(p),
        replica(std::move(r)),
        liveness_timeout(liveness),
        acceptor(asio::make_strand(io)) {}

  asio::awaitable<void> Accept() {
    auto self = shared_from_this();
    std::function<bool()> stopping_now = [self] { return self->sessions.stopping(); };
    auto accepting = AcceptSessions(self, "admin", std::move(stopping_now));
    co_await std::move(accepting);
  }

  asio::awaitable<http::response<http::string_body>> Handle(
      const http::request<http::string_body>& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    std::string path(req.target().substr(0, req.target().find('?')));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.body() = "only GET\n";
      co_return res;
    }
    if (path == "/healthz") {
      // Read without the replica's strand: a wedged strand would never answer GetStatus.
      const auto since =
          std::chrono::duration_cast<std::chrono::milliseconds>(replica->SinceLastTick());
      if (since > liveness_timeout) {
        res.result(http::status::service_unavailable);
        res.body() = "the replica's loop has not run for " + std::to_string(since.count()) +
                     " ms (liveness timeout " + std::to_string(liveness_timeout.count()) +
                     " ms): the proxy is wedged\n";
        LogLine(spdlog::level::err, "liveness check failed: the proxy is wedged",
                {{"path", path},
                 {"stalled_ms", since.count()},
                 {"timeout_ms", liveness_timeout.count()}});
      } else {
        res.body() = "ok\n";
      }
      co_return res;
    }
    if (path != "/readyz" && path != "/status" && path != "/metrics" && path != "/app-healthz") {
      res.result(http::status::not_found);
      res.body() = "unknown path; try /healthz /readyz /app-healthz /status /metrics\n";
      co_return res;
    }
    auto get_status = [&](std::function<void(ReplicaStatus)> done) {
      replica->GetStatus(std::move(done));
    };
    ReplicaStatus status =
        co_await AsyncFromCallback<ReplicaStatus>(get_status, asio::use_awaitable);
    if (path == "/readyz" && draining.load()) {
      res.result(http::status::service_unavailable);
      res.body() =
          "draining: the proxy is shutting down (it still serves, and stops accepting "
          "after its drain delay); replica " +
          std::string(ReplicaStateName(status.state)) + "\n";
    } else if (path == "/app-healthz") {
      // The app container's liveness: a hung app is restarted by the kubelet (the proxy cannot).
      if (status.AppHung()) {
        res.result(http::status::service_unavailable);
        res.body() = "the app has answered nothing for " +
                     std::to_string(static_cast<int64_t>(status.app_unanswered_seconds * 1000)) +
                     " ms (app hang timeout " + std::to_string(status.app_hang_timeout_ms) +
                     " ms); replica " + ReplicaStateName(status.state) + ": " +
                     status.state_reason + "\n";
        LogLine(spdlog::level::err, "app liveness check failed: the app answers nothing",
                {{"path", path},
                 {"unanswered_ms", static_cast<int64_t>(status.app_unanswered_seconds * 1000)},
                 {"timeout_ms", status.app_hang_timeout_ms},
                 {"state", ReplicaStateName(status.state)},
                 {"reason", status.state_reason}});
      } else {
        res.body() = "ok\n";
      }
    } else if (path == "/readyz") {
      if (!status.Ready()) res.result(http::status::service_unavailable);
      res.body() = std::string(ReplicaStateName(status.state)) + ": " + status.state_reason + "\n";
    } else if (path == "/status") {
      res.set(http::field::content_type, "application/json");
      res.body() = RenderStatusJson(status);
    } else {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = RenderPrometheus(status) + RenderProcessMetrics(SampleThisProcess());
    }
    co_return res;
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    // So that Stop() can close it while it waits for a request (a probe's keep-alive connection
    // would otherwise hold the replica for up to the idle timeout after Stop).
    SessionRegistry::Registration registration(sessions, stream);
    beast::flat_buffer buffer;
    for (;;) {
      beast::error_code ec;
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(16 * 1024);
      // Idle for the whole read: these requests are small GETs, and one cut short by Stop() is
      // answered by nobody, which a probe handles like any closed connection.
      if (!registration.SetIdle(true)) break;
      stream.expires_after(std::chrono::seconds(30));
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      registration.SetIdle(false);
      if (ec) break;
      auto req = parser.release();
      auto res = co_await Handle(req);
      res.keep_alive(req.keep_alive() && !sessions.stopping());
      res.prepare_payload();
      if (req.method() == http::verb::head) res.body().clear();
      stream.expires_after(std::chrono::seconds(10));
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !req.keep_alive()) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
};

AdminServer::AdminServer(asio::io_context& ioc, std::string address, uint16_t port,
                         std::shared_ptr<ReplicaService> replica,
                         std::chrono::milliseconds liveness_timeout)
    : state_(std::make_shared<State>(ioc, std::move(address), port, std::move(replica),
                                     liveness_timeout)) {}

AdminServer::~AdminServer() = default;

Status AdminServer::Listen() {
  return ListenOn(state_->acceptor, state_->address, state_->port, "admin");
}

void AdminServer::Start() {
  asio::co_spawn(
      state_->acceptor.get_executor(),
      [s = state_]() -> asio::awaitable<void> { co_await s->Accept(); }, asio::detached);
}

void AdminServer::SetDraining() { state_->draining = true; }

void AdminServer::Stop() {
  // In this order for the reason FrontServer::Stop gives.
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    beast::error_code ignored;
    s->acceptor.close(ignored);
  });
  state_->sessions.CloseIdle();
}

uint16_t AdminServer::port() const { return BoundPort(state_->acceptor); }

}  // namespace k8shmir
