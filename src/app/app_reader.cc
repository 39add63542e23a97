#include "app/app_reader.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include "app/app_exchange.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

AppReader::AppReader(asio::any_io_executor executor, HttpAppOptions options)
    : strand_(asio::make_strand(executor)), options_(std::move(options)) {}

void AppReader::Read(std::string wire, bool head, int64_t min_index, App::ReadCallback done) {
  Job job{std::move(wire), head, min_index, std::move(done)};
  asio::post(strand_, [self = shared_from_this(), job = std::move(job)]() mutable {
    if (self->running_ >= std::max<std::size_t>(self->options_.max_read_connections, 1)) {
      self->waiting_.push_back(std::move(job));
      return;
    }
    self->Start(std::move(job));
  });
}

void AppReader::Close() {
  asio::post(strand_, [self = shared_from_this()] {
    self->closed_ = true;
    self->idle_.clear();
  });
}

void AppReader::Start(Job job) {
  ++running_;
  asio::co_spawn(
      strand_,
      [self = shared_from_this(), job = std::move(job)]() mutable -> asio::awaitable<void> {
        // co_spawn(detached) would swallow an exception, and the read would never be answered.
        ReadResult result = Error{ErrorCode::kUnavailable, "app read: no answer"};
        try {
          auto run = self->Run(job);
          result = co_await std::move(run);
        } catch (const std::exception& e) {
          result = Error{ErrorCode::kUnavailable, std::string("app read failed: ") + e.what()};
        }
        job.done(std::move(result));
        --self->running_;
        if (!self->waiting_.empty()) {
          Job next = std::move(self->waiting_.front());
          self->waiting_.pop_front();
          self->Start(std::move(next));
        }
      },
      asio::detached);
}

std::unique_ptr<AppReader::Connection> AppReader::TakeIdle() {
  while (!idle_.empty()) {
    std::unique_ptr<Connection> conn = std::move(idle_.back());
    idle_.pop_back();
    // An app may close connections idle for a while (Node: 5 s); one idle past max_idle is
    // replaced rather than raced.
    if (Clock::now() - conn->last_used <= options_.max_idle) return conn;
  }
  return nullptr;
}

asio::awaitable<ReadResult> AppReader::Open(int64_t min_index, std::unique_ptr<Connection>& out) {
  auto fresh = std::make_unique<Connection>(strand_);
  auto connect = ConnectToApp(fresh->stream, options_.host, options_.port, options_.timeout);
  beast::error_code ec = co_await std::move(connect);
  if (ec) co_return Error{ErrorCode::kUnavailable, "app connect: " + ec.message()};
  auto query = QueryAppLastIndex(fresh->stream, fresh->buffer, options_);
  Result<AppIndex> index = co_await std::move(query);
  if (!index) co_return index.error();
  if (index->index < min_index) co_return AppIndexMismatch{index->index};
  if (!fresh->stream.socket().is_open()) {
    co_return Error{ErrorCode::kUnavailable,
                    "the app closed the connection after answering " + options_.last_index_path +
                        ": reads are sent on the connection that was validated, so the app must "
                        "keep HTTP/1.1 connections alive"};
  }
  fresh->validated_index = index->index;
  out = std::move(fresh);
  co_return AppReadAnswer{};
}

asio::awaitable<ReadResult> AppReader::Run(Job& job) {
  // A kept-alive connection the app closed meanwhile fails at once: the read changes nothing (a
  // read route's promise), so it is sent again once, on a new connection.
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Connection> conn = attempt == 0 ? TakeIdle() : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      auto open = Open(job.min_index, conn);
      ReadResult opened = co_await std::move(open);
      if (!conn) co_return opened;
    }
    beast::error_code ec;
    conn->stream.expires_after(options_.timeout);
    auto buffer = asio::buffer(job.wire);
    co_await asio::async_write(conn->stream, buffer, asio::redirect_error(asio::use_awaitable, ec));
    http::response_parser<http::string_body> parser;
    if (!ec) {
      auto read =
          ReadResponse(conn->stream, conn->buffer, parser, options_.response_limit, job.head);
      ec = co_await std::move(read);
    }
    conn->last_used = Clock::now();
    if (ec) {
      beast::error_code ignored;
      conn->stream.socket().close(ignored);
      if (reused && attempt == 0 && ec != beast::error::timeout) continue;
      if (ec == beast::error::timeout) {
        co_return Error{ErrorCode::kUnknown,
                        "no answer within " + std::to_string(options_.timeout.count()) + " ms"};
      }
      co_return Error{ErrorCode::kUnavailable, ec.message()};
    }
    auto response = parser.release();
    AppReadAnswer answer;
    answer.validated_index = conn->validated_index;
    answer.response.status = response.result_int();
    answer.response.version = response.version();
    for (const auto& f : response) {
      answer.response.headers.push_back({std::string(f.name_string()), std::string(f.value())});
    }
    answer.response.body = std::move(response.body());
    if (response.keep_alive() && !closed_ &&
        idle_.size() < std::max<std::size_t>(options_.max_read_connections, 1)) {
      conn->stream.expires_never();
      idle_.push_back(std::move(conn));
    } else {
      beast::error_code ignored;
      conn->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      conn->stream.close();
    }
    co_return answer;
  }
}

}  // namespace k8shmir
