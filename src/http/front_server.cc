#include "http/front_server.h"

#include "common/logging.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>

#include "codec/header_filter.h"
#include "common/accept_loop.h"
#include "common/async_callback.h"
#include "common/listen.h"
#include "common/session_registry.h"
#include "http/request_head.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Shared by the server object, its accept loop and every session (each holds a shared_ptr), so
// it lives as long as the last of them.
struct FrontServer::State : std::enable_shared_from_this<FrontServer::State> {
  // Must outlive the state (and thus every session): see FrontServer's constructor.
  asio::io_context& ioc;
  FrontServerOptions options;
  std::shared_ptr<ReplicaService> replica;
  tcp::acceptor acceptor;
  std::atomic<std::size_t> connections{0};
  SessionRegistry sessions;

  State(asio::io_context& io, FrontServerOptions o, std::shared_ptr<ReplicaService> r)
      : ioc(io), options(std::move(o)), replica(std::move(r)), acceptor(asio::make_strand(io)) {}

  asio::awaitable<void> Accept() {
    auto self = shared_from_this();
    std::function<bool()> stopping_now = [self] { return self->sessions.stopping(); };
    auto accepting = AcceptSessions(self, "client", std::move(stopping_now));
    co_await std::move(accepting);
  }

  // A short error answer written by the proxy itself; the connection is closed after it.
  static http::response<http::string_body> ProxyError(unsigned status, unsigned version,
                                                      const std::string& why) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set("K8shmir-Outcome", "not-committed");
    res.body() = "k8shmir: " + why + "\n";
    res.keep_alive(false);
    res.prepare_payload();
    return res;
  }

  // Takes a reference to a named local: see AsyncFromCallback on temporaries in co_await.
  asio::awaitable<void> WriteAndClose(beast::tcp_stream& stream,
                                      http::response<http::string_body>& res) {
    beast::error_code ec;
    stream.expires_after(options.read_timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    // Lingering close: the client may still be sending the body we refused; closing with unread
    // data would reset the connection and could destroy our answer before the client reads it.
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 16384> sink;
    std::size_t drained = 0;
    stream.expires_after(std::chrono::seconds(1));
    while (!ec && drained < 4 * 1024 * 1024) {
      drained += co_await stream.async_read_some(asio::buffer(sink),
                                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    stream.close();
  }

  http::response<http::string_body> ToResponse(ClientReply reply, unsigned version, bool head,
                                               bool keep_alive) {
    http::response<http::string_body> res;
    res.result(reply.response.status);
    res.version(version);
    std::string content_length;
    for (const auto& h : reply.response.headers) {
      if (head && IEquals(h.name, "content-length")) content_length = h.value;
    }
    for (const auto& h : EndToEndHeaders(reply.response.headers, options.index_header)) {
      res.insert(h.name, h.value);
    }
    if (reply.outcome != Outcome::kNone) res.set("K8shmir-Outcome", OutcomeName(reply.outcome));
    if (reply.read) res.set("K8shmir-Read", ReadConsistencyName(*reply.read));
    if (reply.index != 0) res.set("K8shmir-Log-Index", std::to_string(reply.index));
    if (reply.retry_after > 0) res.set(http::field::retry_after, std::to_string(reply.retry_after));
    res.body() = std::move(reply.response.body);
    res.keep_alive(keep_alive);
    if (head) {
      // A HEAD answer keeps the length the app announced for the (absent) body.
      if (!content_length.empty()) res.set(http::field::content_length, content_length);
    } else {
      res.prepare_payload();
    }
    return res;
  }

  static void LogAccess(const std::string& method, const std::string& target,
                        const ClientReply& reply, std::chrono::steady_clock::time_point arrived) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - arrived)
                            .count();
    LogLine(spdlog::level::info, "access",
            {{"method", method},
             {"target", target},
             {"status", static_cast<int64_t>(reply.response.status)},
             {"outcome", reply.read ? "read" : OutcomeName(reply.outcome)},
             {"index", reply.index},
             {"duration_us", static_cast<int64_t>(micros)}});
  }

  // Rejects with the check's status and reason, then closes (lingering).
  asio::awaitable<void> Reject(beast::tcp_stream& stream, const HeadCheck& check) {
    replica->NoteRejected(check.status() == 413 ? Rejection::kTooLarge : Rejection::kBadRequest,
                          check.status());
    auto error_response = ProxyError(check.status(), check.version(), check.reason());
    co_await WriteAndClose(stream, error_response);
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    struct Count {
      std::atomic<std::size_t>& n;
      ~Count() { --n; }
    } count{connections};
    beast::tcp_stream stream(std::move(socket));
    // So that Stop() can close it while it waits for a request.
    SessionRegistry::Registration registration(sessions, stream);
    if (++connections > options.max_connections) {
      replica->NoteRejected(Rejection::kTooManyConnections, 503);
      auto error_response = ProxyError(503, 11, "too many connections");
      co_await WriteAndClose(stream, error_response);
      co_return;
    }
    beast::flat_buffer buffer;
    for (;;) {
      beast::error_code ec;
      if (buffer.size() == 0) {
        // Waiting for a request to begin: the idle timeout applies, and Stop() may close it.
        if (!registration.SetIdle(true)) break;
        stream.expires_after(options.idle_timeout);
        std::size_t n = co_await stream.async_read_some(
            buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
        registration.SetIdle(false);
        if (ec) break;
        buffer.commit(n);
      }
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
      parser.body_limit(options.body_limit);
      stream.expires_after(options.read_timeout);
      co_await http::async_read_header(stream, buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      HeadCheck check = CheckHeadRead(ec, options.body_limit);
      if (check.ok()) check = CheckRequestHead(parser.get(), parser.chunked(), !parser.is_done());
      if (check.action() == HeadCheck::Action::kClose) break;
      if (check.action() == HeadCheck::Action::kReject) {
        co_await Reject(stream, check);
        co_return;
      }
      const unsigned version = parser.get().version();
      const std::size_t head_fields = FieldCount(parser.get());
      if (check.send_continue()) {
        http::response<http::empty_body> cont{http::status::continue_, version};
        co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      if (!parser.is_done()) {
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        HeadCheck body =
            CheckBodyRead(ec, version, options.body_limit, head_fields, FieldCount(parser.get()));
        if (body.action() == HeadCheck::Action::kClose) break;
        if (body.action() == HeadCheck::Action::kReject) {
          co_await Reject(stream, body);
          co_return;
        }
      }
      auto message = parser.release();
      const bool client_keeps_alive = message.keep_alive();
      const bool is_head = message.method() == http::verb::head;
      HttpRequest request = ToReplicatedRequest(std::move(message), options.index_header);
      std::string access_method, access_target;
      const auto arrived = std::chrono::steady_clock::now();
      if (options.access_log) {
        access_method = request.method;
        access_target = request.target;
      }

      auto submit = [&](std::function<void(ClientReply)> done) {
        replica->Submit(std::move(request), std::move(done));
      };
      ClientReply reply = co_await AsyncFromCallback<ClientReply>(submit, asio::use_awaitable);
      if (options.access_log) LogAccess(access_method, access_target, reply, arrived);
      // Read after the answer: a Stop() meanwhile closes the connection, and says so.
      const bool keep_alive = client_keeps_alive && !sessions.stopping();

      auto res = ToResponse(std::move(reply), version, is_head, keep_alive);
      stream.expires_after(options.read_timeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
};

FrontServer::FrontServer(asio::io_context& ioc, FrontServerOptions options,
                         std::shared_ptr<ReplicaService> replica)
    : state_(std::make_shared<State>(ioc, std::move(options), std::move(replica))) {}

FrontServer::~FrontServer() = default;

Status FrontServer::Listen() {
  return ListenOn(state_->acceptor, state_->options.address, state_->options.port, "client");
}

void FrontServer::Start() {
  asio::co_spawn(
      state_->acceptor.get_executor(),
      [s = state_]() -> asio::awaitable<void> { co_await s->Accept(); }, asio::detached);
}

void FrontServer::Stop() {
  // The acceptor's close is posted before the sessions' closes: once a client sees its idle
  // connection closed, the close of the acceptor (whose handler holds the state) has run too, so
  // nothing queued still holds the replica when the io thread ends (see main's teardown).
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    beast::error_code ignored;
    s->acceptor.close(ignored);
  });
  state_->sessions.CloseIdle();
}

uint16_t FrontServer::port() const { return BoundPort(state_->acceptor); }

}  // namespace k8shmir
