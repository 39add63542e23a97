#include "http/front_server.h"

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

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct FrontServer::State : std::enable_shared_from_this<FrontServer::State> {
  asio::io_context& ioc;
  FrontServerOptions options;
  std::shared_ptr<Replica> replica;
  tcp::acceptor acceptor;
  std::atomic<std::size_t> connections{0};
  std::atomic<bool> stopping{false};

  State(asio::io_context& io, FrontServerOptions o, std::shared_ptr<Replica> r)
      : ioc(io), options(std::move(o)), replica(std::move(r)), acceptor(asio::make_strand(io)) {}

  asio::awaitable<void> Accept() {
    auto self = shared_from_this();
    // Named locals only in the co_await (g++ 12 miscompiles temporaries there).
    std::string what = "client";
    std::function<bool()> stopping_now = [self] { return self->stopping.load(); };
    std::function<void(tcp::socket)> on_accept = [self](tcp::socket socket) {
      // The session's frame keeps the server state alive, whoever lets go of it first.
      auto executor = socket.get_executor();
      asio::co_spawn(
          executor,
          [self, socket = std::move(socket)]() mutable -> asio::awaitable<void> {
            auto session = self->Session(std::move(socket));
            co_await std::move(session);
          },
          asio::detached);
    };
    co_await AcceptLoop(acceptor, ioc, std::move(what), std::move(stopping_now),
                        std::move(on_accept));
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
    res.set("K8shmir-Outcome", OutcomeName(reply.outcome));
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

  asio::awaitable<void> Session(tcp::socket socket) {
    struct Count {
      std::atomic<std::size_t>& n;
      ~Count() { --n; }
    } count{connections};
    beast::tcp_stream stream(std::move(socket));
    if (++connections > options.max_connections) {
      auto error_response = ProxyError(503, 11, "too many connections");
      co_await WriteAndClose(stream, error_response);
      co_return;
    }
    beast::flat_buffer buffer;
    for (;;) {
      beast::error_code ec;
      if (buffer.size() == 0) {
        // Waiting for a request to begin: the idle timeout applies.
        stream.expires_after(options.idle_timeout);
        std::size_t n = co_await stream.async_read_some(
            buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
        buffer.commit(n);
      }
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
      parser.body_limit(options.body_limit);
      stream.expires_after(options.read_timeout);
      co_await http::async_read_header(stream, buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::header_limit) {
        auto error_response = ProxyError(431, 11, "request header fields too large");
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      if (ec == http::error::body_limit) {
        auto error_response = ProxyError(413, 11, BodyTooLarge());
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
          ec == asio::error::eof || ec == asio::error::connection_reset) {
        break;
      }
      if (ec) {
        auto error_response = ProxyError(400, 11, "malformed request: " + ec.message());
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      auto& head = parser.get();
      const unsigned version = head.version();
      if (version != 10 && version != 11) {
        auto error_response = ProxyError(505, 11, "HTTP version not supported");
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      if (version == 11 && head.find(http::field::host) == head.end()) {
        auto error_response = ProxyError(400, version, "HTTP/1.1 request without Host");
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      // RFC 9112 3.2: more than one Host is a 400 (apps route on it; a cache or balancer in front
      // may have picked the other one).
      if (head.count(http::field::host) > 1) {
        auto error_response = ProxyError(400, version, "more than one Host header");
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      // RFC 9112 6.3: a Transfer-Encoding whose last coding is not chunked leaves the body length
      // unknown, and the server must answer 400 and close. Beast reads such a request as having
      // no body, so without this check the body would be taken for the next request (request
      // smuggling) and an empty-bodied request would be committed in its place.
      if (head.find(http::field::transfer_encoding) != head.end() && !parser.chunked()) {
        auto error_response = ProxyError(400, version, "unsupported Transfer-Encoding");
        co_await WriteAndClose(stream, error_response);
        co_return;
      }
      auto expect = head.find(http::field::expect);
      if (expect != head.end()) {
        if (!beast::iequals(expect->value(), "100-continue")) {
          auto error_response = ProxyError(417, version, "unsupported Expect");
          co_await WriteAndClose(stream, error_response);
          co_return;
        }
        if (!parser.is_done()) {
          http::response<http::empty_body> cont{http::status::continue_, version};
          co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
          if (ec) break;
        }
      }
      if (!parser.is_done()) {
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::body_limit) {
          auto error_response = ProxyError(413, version, BodyTooLarge());
          co_await WriteAndClose(stream, error_response);
          co_return;
        }
        if (ec == beast::error::timeout) break;
        if (ec) {
          auto error_response = ProxyError(400, version, "malformed request body: " + ec.message());
          co_await WriteAndClose(stream, error_response);
          co_return;
        }
      }
      auto message = parser.release();
      const bool keep_alive = message.keep_alive() && !stopping;
      const bool is_head = message.method() == http::verb::head;
      HttpRequest request;
      request.method = std::string(message.method_string());
      request.target = std::string(message.target());
      request.version = version;
      std::vector<HttpHeader> all;
      for (const auto& f : message)
        all.push_back({std::string(f.name_string()), std::string(f.value())});
      request.headers = EndToEndHeaders(all, options.index_header);
      request.body = std::move(message.body());

      auto submit = [&](std::function<void(ClientReply)> done) {
        replica->Submit(std::move(request), std::move(done));
      };
      ClientReply reply = co_await AsyncFromCallback<ClientReply>(submit, asio::use_awaitable);

      auto res = ToResponse(std::move(reply), version, is_head, keep_alive);
      stream.expires_after(options.read_timeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }

  std::string BodyTooLarge() const {
    return "request body exceeds the limit of " + std::to_string(options.body_limit) + " bytes";
  }
};

FrontServer::FrontServer(asio::io_context& ioc, FrontServerOptions options,
                         std::shared_ptr<Replica> replica)
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
  state_->stopping = true;
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    beast::error_code ignored;
    s->acceptor.close(ignored);
  });
}

uint16_t FrontServer::port() const {
  beast::error_code ec;
  auto ep = state_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

}  // namespace k8shmir
