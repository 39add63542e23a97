#include "app/app_exchange.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

asio::awaitable<beast::error_code> ConnectToApp(beast::tcp_stream& stream, const std::string& host,
                                                uint16_t port, std::chrono::milliseconds timeout) {
  beast::error_code ec;
  tcp::resolver resolver(stream.get_executor());
  stream.expires_after(timeout);
  // Named locals, not temporaries, inside co_await (g++ 12 coroutine temporaries bug).
  const std::string service = std::to_string(port);
  auto results =
      co_await resolver.async_resolve(host, service, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return ec;
  co_await stream.async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) stream.socket().set_option(tcp::no_delay(true), ec);
  co_return ec;
}

http::request<http::string_body> AppRequest(http::verb verb, const std::string& target,
                                            const std::string& host, uint16_t port) {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, host + ":" + std::to_string(port));
  req.set(http::field::user_agent, "k8shmir-proxy");
  return req;
}

asio::awaitable<beast::error_code> ReadResponse(beast::tcp_stream& stream,
                                                beast::flat_buffer& buffer,
                                                http::response_parser<http::string_body>& parser,
                                                std::size_t body_limit, bool head) {
  beast::error_code ec;
  parser.header_limit(64 * 1024);
  parser.body_limit(body_limit);
  if (head) parser.skip(true);
  co_await http::async_read_header(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return ec;
  if (auto length = parser.content_length(); length && *length > body_limit) {
    co_return http::error::body_limit;
  }
  if (!parser.is_done()) {
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec && parser.get().body().size() > body_limit) ec = http::error::body_limit;
  co_return ec;
}

asio::awaitable<AppExchange> ExchangeWithApp(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                             http::request<http::string_body>& req,
                                             std::chrono::milliseconds timeout,
                                             std::size_t body_limit) {
  AppExchange x;
  stream.expires_after(timeout);
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, x.ec));
  if (x.ec) co_return x;
  http::response_parser<http::string_body> parser;
  auto read = ReadResponse(stream, buffer, parser, body_limit, req.method() == http::verb::head);
  x.ec = co_await std::move(read);
  if (x.ec) co_return x;
  x.response = parser.release();
  co_return x;
}

asio::awaitable<Result<AppIndex>> QueryAppLastIndex(beast::tcp_stream& stream,
                                                    beast::flat_buffer& buffer,
                                                    const HttpAppOptions& options) {
  http::request<http::string_body> req =
      AppRequest(http::verb::get, options.last_index_path, options.host, options.port);
  req.keep_alive(true);
  auto exchange = ExchangeWithApp(stream, buffer, req, options.timeout, options.response_limit);
  AppExchange x = co_await std::move(exchange);
  if (x.ec) {
    co_return Error{ErrorCode::kUnavailable, "app last-index: " + x.ec.message()};
  }
  auto r = ParseLastIndex(x.response->result_int(), x.response->body());
  if (r && !x.response->keep_alive()) {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
  co_return r;
}

}  // namespace k8shmir
