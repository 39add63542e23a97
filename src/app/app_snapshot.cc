#include "app/app_snapshot.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <utility>

#include "app/app_exchange.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

http::request<http::string_body> SnapshotRequest(const HttpAppOptions& options, http::verb verb) {
  auto req = AppRequest(verb, options.snapshot_path, options.host, options.port);
  req.keep_alive(false);
  return req;
}

// Snapshots can take much longer to produce or apply than one entry: several app timeouts.
std::chrono::milliseconds SnapshotTimeout(const HttpAppOptions& options) {
  return options.timeout * 6;
}

}  // namespace

Result<AppSnapshot> ParseSnapshotAnswer(unsigned status, const std::string* index_header,
                                        std::string body) {
  if (status != 200) {
    return Error{ErrorCode::kProtocol, "the app answered GET snapshot with HTTP " +
                                           std::to_string(status) + ": " + body.substr(0, 120)};
  }
  if (index_header == nullptr) {
    return Error{ErrorCode::kProtocol, "the app's snapshot has no index header"};
  }
  int64_t index = -1;
  const char* begin = index_header->data();
  const char* end = begin + index_header->size();
  auto [ptr, ec] = std::from_chars(begin, end, index);
  if (ec != std::errc() || ptr != end || index < 0) {
    return Error{ErrorCode::kProtocol, "the app's snapshot index header is not an integer >= 0: '" +
                                           index_header->substr(0, 40) + "'"};
  }
  return AppSnapshot{index, std::move(body)};
}

namespace {

// Connects, exchanges `req` (the answer's body bounded by `body_limit`), and closes.
asio::awaitable<AppExchange> SnapshotExchange(asio::any_io_executor executor,
                                              const HttpAppOptions& options,
                                              http::request<http::string_body>& req,
                                              std::size_t body_limit) {
  beast::tcp_stream stream(executor);
  beast::flat_buffer buffer;
  const auto timeout = SnapshotTimeout(options);
  auto connect = ConnectToApp(stream, options.host, options.port, timeout);
  AppExchange x;
  x.ec = co_await std::move(connect);
  if (x.ec) co_return x;
  auto exchange = ExchangeWithApp(stream, buffer, req, timeout, body_limit);
  x = co_await std::move(exchange);
  beast::error_code ignored;
  stream.socket().close(ignored);
  co_return x;
}

}  // namespace

asio::awaitable<Result<AppSnapshot>> FetchAppSnapshot(asio::any_io_executor executor,
                                                      HttpAppOptions options,
                                                      std::size_t max_bytes) {
  auto req = SnapshotRequest(options, http::verb::get);
  auto exchange = SnapshotExchange(executor, options, req, max_bytes);
  AppExchange x = co_await std::move(exchange);
  if (x.ec == http::error::body_limit) {
    co_return Error{ErrorCode::kInvalid, "the app's snapshot is larger than the limit of " +
                                             std::to_string(max_bytes) + " bytes"};
  }
  if (x.ec) co_return Error{ErrorCode::kUnavailable, "app GET snapshot: " + x.ec.message()};
  auto& res = *x.response;
  std::optional<std::string> header;
  if (auto it = res.find(options.index_header); it != res.end()) header = std::string(it->value());
  co_return ParseSnapshotAnswer(res.result_int(), header ? &*header : nullptr,
                                std::move(res.body()));
}

asio::awaitable<Status> StoreAppSnapshot(asio::any_io_executor executor, HttpAppOptions options,
                                         AppSnapshot snapshot) {
  auto req = SnapshotRequest(options, http::verb::put);
  req.set(options.index_header, std::to_string(snapshot.index));
  req.set(http::field::content_type, "application/octet-stream");
  req.body() = std::move(snapshot.data);
  req.prepare_payload();
  auto exchange = SnapshotExchange(executor, options, req, options.response_limit);
  AppExchange x = co_await std::move(exchange);
  if (x.ec) co_return Error{ErrorCode::kUnavailable, "app PUT snapshot: " + x.ec.message()};
  const unsigned status = x.response->result_int();
  if (status < 200 || status > 299) {
    co_return Error{ErrorCode::kProtocol, "the app answered PUT snapshot with HTTP " +
                                              std::to_string(status) + ": " +
                                              x.response->body().substr(0, 120)};
  }
  co_return OkStatus();
}

}  // namespace k8shmir
