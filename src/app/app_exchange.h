// One HTTP exchange with the local app on a connection of its own: shared by the forwarding
// connection's set-up and last-index queries (http_app.cc) and the snapshot calls
// (app_snapshot.cc). Internal to src/app.
#pragma once

#include <utility>  // boost/asio/awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "app/http_app.h"

namespace k8shmir {

struct AppExchange {
  boost::beast::error_code ec;
  std::optional<boost::beast::http::response<boost::beast::http::string_body>> response;
};

// Resolves and connects `stream` to host:port within `timeout` (TCP_NODELAY set).
boost::asio::awaitable<boost::beast::error_code> ConnectToApp(boost::beast::tcp_stream& stream,
                                                              const std::string& host,
                                                              uint16_t port,
                                                              std::chrono::milliseconds timeout);

// A request to the app from the proxy: HTTP/1.1, Host host:port, the proxy's User-Agent.
boost::beast::http::request<boost::beast::http::string_body> AppRequest(
    boost::beast::http::verb verb, const std::string& target, const std::string& host,
    uint16_t port);

// Reads one response into `parser`, its head bounded like a client's (64 KiB), its body at most
// `body_limit` bytes (http::error::body_limit beyond); the answer to a HEAD request (`head`) has
// no body to read. Beast 1.74's http::async_read of a whole message reads on past the body limit
// when the header and the body arrive together (the header's body_limit error is lost); reading the
// header first reports it, and the body's size is checked once read as well.
boost::asio::awaitable<boost::beast::error_code> ReadResponse(
    boost::beast::tcp_stream& stream, boost::beast::flat_buffer& buffer,
    boost::beast::http::response_parser<boost::beast::http::string_body>& parser,
    std::size_t body_limit, bool head);

// Writes `req` and reads one response within `timeout` (both), its body bounded by `body_limit`
// (a HEAD request's response has no body to read).
boost::asio::awaitable<AppExchange> ExchangeWithApp(
    boost::beast::tcp_stream& stream, boost::beast::flat_buffer& buffer,
    boost::beast::http::request<boost::beast::http::string_body>& req,
    std::chrono::milliseconds timeout, std::size_t body_limit);

// GET <last-index path> on `stream` (kept alive), parsed (ParseLastIndex); the exchange bounded
// by options.timeout. A valid answer that closes the connection leaves `stream` closed.
boost::asio::awaitable<Result<AppIndex>> QueryAppLastIndex(boost::beast::tcp_stream& stream,
                                                           boost::beast::flat_buffer& buffer,
                                                           const HttpAppOptions& options);

}  // namespace k8shmir
