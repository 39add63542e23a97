#include "app/http_app.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <optional>

#include "app/app_exchange.h"
#include "app/app_reader.h"
#include "app/app_snapshot.h"
#include "common/logging.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using Clock = std::chrono::steady_clock;
using RequestMessage = http::request<http::string_body>;
using ResponseParser = http::response_parser<http::string_body>;

}  // namespace

// Forwards written with one system call at most (pipelining).
constexpr std::size_t kMaxJobsPerWrite = 64;

// All connection state lives on one strand; every public call posts into it. Strand-owned (read
// and written only on `strand`): conn and what it points to, to_write, to_read, writer_running,
// reader_running, announced_pipelining. `strand` and `options` are set at construction and only
// read afterwards. (No mutex, so nothing for clang's thread-safety analysis to check: see
// common/thread_annotations.h.)
struct HttpApp::Impl : std::enable_shared_from_this<HttpApp::Impl> {
  asio::strand<asio::any_io_executor> strand;
  HttpAppOptions options;
  // The validated forwarding connection. Shared so that a coroutine using it stays safe when
  // Reset() drops it meanwhile: closing the socket makes that coroutine's operation fail.
  struct Connection {
    explicit Connection(asio::strand<asio::any_io_executor>& s) : stream(s) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    Clock::time_point last_used = Clock::now();
    // Index of the last entry written on this connection (at first: the validated index). The
    // next entry may be written only if it expects exactly this index to be applied.
    int64_t last_index = 0;
    // The app declared "pipelining": true when this connection was validated: entries are
    // written without waiting for the previous answer. Otherwise one at a time.
    bool pipelining = false;
  };
  // One Forward: written by the writer coroutine, answered by the reader coroutine, in order.
  struct Job {
    std::string wire;
    bool head = false;
    int64_t index = 0;
    int64_t expected = 0;
    ForwardCallback done;
  };
  std::shared_ptr<Connection> conn;
  std::deque<Job> to_write;  // not written yet
  std::deque<Job> to_read;   // written on `conn`, response not read yet
  bool writer_running = false;
  bool reader_running = false;
  std::optional<bool> announced_pipelining;  // logged when what the app declares changes

  Impl(asio::any_io_executor ex, HttpAppOptions o)
      : strand(asio::make_strand(ex)), options(std::move(o)) {}

  asio::awaitable<beast::error_code> Connect(beast::tcp_stream& stream) {
    auto connect = ConnectToApp(stream, options.host, options.port, options.timeout);
    co_return co_await std::move(connect);
  }

  asio::awaitable<Result<AppIndex>> QueryIndex(beast::tcp_stream& stream,
                                               beast::flat_buffer& buffer) {
    auto query = QueryAppLastIndex(stream, buffer, options);
    co_return co_await std::move(query);
  }

  asio::awaitable<Result<AppIndex>> DoLastIndex() {
    beast::tcp_stream stream(strand);
    beast::flat_buffer buffer;
    Result<AppIndex> result = AppIndex{};
    if (auto ec = co_await Connect(stream)) {
      result = Error{ErrorCode::kUnavailable, "app connect: " + ec.message()};
    } else {
      result = co_await QueryIndex(stream, buffer);
    }
    beast::error_code ignored;
    stream.socket().close(ignored);
    co_return result;
  }

  // Closes the forwarding connection. With entries written and unanswered it is reset (RST)
  // rather than closed: the kernel then drops what it has not yet sent to the app, which a
  // graceful close would still deliver, and the app would apply entries the proxy gave up on.
  // (What the app's own socket has already received it can still read: the app contract makes
  // it ignore an entry whose index is not above its last one.)
  void CloseConnection() {
    if (conn) {
      beast::error_code ignored;
      if (!to_read.empty()) {
        conn->stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
      }
      conn->stream.socket().close(ignored);
      conn.reset();
    }
  }

  // Ends every job still awaiting its response or queued, oldest first, with `error` (the
  // connection they were on, or would have used, is gone). The replica re-validates the app
  // before anything else.
  void FailAll(const Error& error) {
    std::deque<Job> jobs = std::move(to_read);
    to_read.clear();
    for (auto& job : to_write) jobs.push_back(std::move(job));
    to_write.clear();
    for (auto& job : jobs) job.done(error);
  }

  // Ends `job` with `result` and every other job with an error, in index order: jobs behind it
  // were sent (or queued) on the assumption that it applied. `job` is older than the jobs still
  // awaiting a response when it comes from the reader, newer when it comes from the writer.
  void Fail(Job job, ForwardResult result, bool oldest) {
    CloseConnection();
    Error broken{ErrorCode::kUnknown, "the app connection broke at index " +
                                          std::to_string(job.index) +
                                          "; the app must be re-validated"};
    std::deque<Job> older;
    if (!oldest) {
      older = std::move(to_read);
      to_read.clear();
    }
    for (auto& j : older) j.done(broken);
    job.done(std::move(result));
    FailAll(broken);
  }

  // Opens and validates a connection: the app must report exactly `expected`. Nullopt on
  // success; otherwise the result of the job that needed it (nothing was sent).
  asio::awaitable<std::optional<ForwardResult>> OpenValidated(int64_t expected) {
    auto fresh = std::make_shared<Connection>(strand);
    if (auto ec = co_await Connect(fresh->stream)) {
      co_return ForwardResult{Error{ErrorCode::kUnavailable, "app connect: " + ec.message()}};
    }
    auto answer = co_await QueryIndex(fresh->stream, fresh->buffer);
    if (!answer) co_return ForwardResult{answer.error()};
    if (answer->index != expected) co_return ForwardResult{AppIndexMismatch{answer->index}};
    if (!fresh->stream.socket().is_open()) {
      // The app closed after answering; validate a new connection next time. An app that always
      // does so never gets an entry: say what it must change.
      co_return ForwardResult{
          Error{ErrorCode::kUnavailable,
                "the app closed the connection after answering " + options.last_index_path +
                    ": entries are sent on the connection that was validated, so the app must "
                    "keep HTTP/1.1 connections alive"}};
    }
    fresh->last_index = expected;
    fresh->pipelining = answer->pipelining;
    // From here on entries are written and not abandoned at the timeout (see options.timeout):
    // only a dead peer ends a wait, and on loopback the kernel tells at once; keepalive finds
    // a remote app host that vanished.
    fresh->stream.expires_never();
    SetKeepalive(fresh->stream.socket());
    if (announced_pipelining != answer->pipelining) {
      announced_pipelining = answer->pipelining;
      if (answer->pipelining) {
        LogLine(spdlog::level::info,
                "the app declares \"pipelining\": true: entries are written without waiting for "
                "the previous answer (up to the pipeline depth)",
                {{"path", options.last_index_path}});
      } else {
        LogLine(spdlog::level::info,
                "the app does not declare \"pipelining\": true: one entry in flight at a time",
                {{"path", options.last_index_path}});
      }
    }
    conn = fresh;
    co_return std::nullopt;
  }

  // Writes queued jobs in order, each on the validated connection, and hands them to the reader.
  asio::awaitable<void> Writer() {
    while (!to_write.empty()) {
      if (conn && to_read.empty() && Clock::now() - conn->last_used > options.max_idle) {
        CloseConnection();
      }
      if (!conn && !to_read.empty()) {
        // The connection broke under jobs still awaiting responses: the reader fails them all.
        break;
      }
      if (!conn) {
        const int64_t expected = to_write.front().expected;
        std::optional<ForwardResult> refused = co_await OpenValidated(expected);
        if (refused) {
          Job job = std::move(to_write.front());
          to_write.pop_front();
          Fail(std::move(job), std::move(*refused), /*oldest=*/true);
          continue;
        }
      }
      std::shared_ptr<Connection> c = conn;
      // An app that did not declare pipelining gets the next entry once it answered the last;
      // the reader starts this loop again then.
      if (!c->pipelining && !to_read.empty()) break;
      // Every queued job that continues the connection's sequence goes out in one write: the
      // app then reads them with one system call, too.
      const std::size_t max_jobs = c->pipelining ? kMaxJobsPerWrite : 1;
      std::vector<Job> run;
      int64_t last = c->last_index;
      while (!to_write.empty() && run.size() < max_jobs && to_write.front().expected == last) {
        last = to_write.front().index;
        run.push_back(std::move(to_write.front()));
        to_write.pop_front();
      }
      if (run.empty()) {
        // Would skip or repeat an entry on this connection: never send it.
        Job job = std::move(to_write.front());
        to_write.pop_front();
        std::string why = "forward of index " + std::to_string(job.index) + " expects index " +
                          std::to_string(job.expected) + " applied, but the connection is at " +
                          std::to_string(c->last_index);
        Fail(std::move(job), Error{ErrorCode::kUnavailable, why}, /*oldest=*/false);
        continue;
      }
      std::vector<asio::const_buffer> buffers;
      buffers.reserve(run.size());
      for (const auto& job : run) buffers.push_back(asio::buffer(job.wire));
      beast::error_code ec;
      co_await asio::async_write(c->stream, buffers, asio::redirect_error(asio::use_awaitable, ec));
      c->last_used = Clock::now();
      const int64_t first_index = run.front().index;
      for (auto& job : run) {
        job.wire = std::string();
        to_read.push_back(std::move(job));
      }
      if (ec || conn != c) {
        // Written in part, or the connection broke meanwhile: every outcome is unknown.
        CloseConnection();
        FailAll(Error{ErrorCode::kUnknown,
                      "forward from index " + std::to_string(first_index) +
                          " failed: " + (ec ? ec.message() : std::string("connection closed"))});
        continue;
      }
      c->last_index = last;
      StartReader();
    }
  }

  // Reads the responses of written jobs, in order, and completes them.
  asio::awaitable<void> Reader() {
    while (!to_read.empty()) {
      std::shared_ptr<Connection> c = conn;
      if (!c) {
        FailAll(Error{ErrorCode::kUnknown, "the app connection closed before answering index " +
                                               std::to_string(to_read.front().index)});
        break;
      }
      beast::error_code ec;
      ResponseParser parser;
      // Acknowledge at once what the app sends: an app with Nagle's algorithm on (the socket
      // default) holds a second pipelined response until the first is acknowledged, and a
      // delayed ACK would stall it for up to 40 ms. Linux clears the flag again on its own.
      int quickack = 1;
      ::setsockopt(c->stream.socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &quickack,
                   sizeof quickack);
      auto read =
          ReadResponse(c->stream, c->buffer, parser, options.response_limit, to_read.front().head);
      ec = co_await std::move(read);
      c->last_used = Clock::now();
      if (to_read.empty()) break;  // failed meanwhile by the writer
      Job job = std::move(to_read.front());
      to_read.pop_front();
      if (ec || conn != c) {
        Fail(std::move(job),
             Error{ErrorCode::kUnknown,
                   "forward of index " + std::to_string(job.index) +
                       " failed: " + (ec ? ec.message() : std::string("connection closed"))},
             /*oldest=*/true);
        continue;
      }
      auto response = parser.release();
      HttpResponse out;
      out.status = response.result_int();
      out.version = response.version();
      for (const auto& f : response) {
        out.headers.push_back({std::string(f.name_string()), std::string(f.value())});
      }
      out.body = std::move(response.body());
      const bool closing = !response.keep_alive();
      if (closing) CloseConnection();
      job.done(std::move(out));
      if (closing) {
        // Anything written after this request will never be answered.
        FailAll(Error{ErrorCode::kUnknown,
                      "the app closed the connection after index " + std::to_string(job.index)});
      }
      // One at a time: the writer waits for this answer before it sends the next entry.
      if (to_read.empty() && !to_write.empty()) StartWriter();
    }
  }

  void SetKeepalive(tcp::socket& socket) const {
    const int fd = socket.native_handle();
    const int on = 1;
    const int idle = static_cast<int>(std::max<int64_t>(options.timeout.count() / 1000, 1));
    const int interval = 1;
    const int count = 3;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  }

  void StartWriter() {
    if (writer_running) return;
    writer_running = true;
    Spawn(&Impl::Writer, &Impl::writer_running);
  }

  void StartReader() {
    if (reader_running) return;
    reader_running = true;
    Spawn(&Impl::Reader, &Impl::reader_running);
  }

  // Runs one of the two loops. Any exception becomes failed jobs: co_spawn(detached) would
  // swallow it, and the replica would wait for these forwards for ever.
  void Spawn(asio::awaitable<void> (Impl::*loop)(), bool Impl::*running) {
    asio::co_spawn(
        strand,
        [self = shared_from_this(), loop, running]() -> asio::awaitable<void> {
          try {
            co_await (self.get()->*loop)();
          } catch (const std::exception& e) {
            self->CloseConnection();
            self->FailAll(Error{ErrorCode::kUnknown, std::string("forward failed: ") + e.what()});
          }
          self.get()->*running = false;
          // Jobs queued while a loop was ending, or left when the writer stopped for a broken
          // connection, start a new round once the reader has failed what was in flight.
          if (!self->to_write.empty() && !self->reader_running) self->StartWriter();
        },
        asio::detached);
  }
};

HttpApp::HttpApp(asio::any_io_executor executor, HttpAppOptions options)
    : impl_(std::make_shared<Impl>(executor, options)),
      reader_(std::make_shared<AppReader>(executor, std::move(options))) {}

HttpApp::~HttpApp() {
  // Outstanding coroutines hold their own reference to impl_ (and reader_); closing the sockets
  // ends them.
  asio::post(impl_->strand, [impl = impl_] { impl->CloseConnection(); });
  reader_->Close();
}

void HttpApp::Read(const HttpRequest& request, int64_t min_index, ReadCallback done) {
  reader_->Read(SerializeReadRequest(request, impl_->options.index_header),
                request.method == "HEAD", min_index, std::move(done));
}

void HttpApp::LastIndex(IndexCallback done) {
  asio::co_spawn(
      impl_->strand,
      [impl = impl_, done = std::move(done)]() mutable -> asio::awaitable<void> {
        // co_spawn(detached) would swallow an exception, and `done` would never run: the
        // replica would wait for this answer for ever.
        Result<AppIndex> result = Error{ErrorCode::kUnknown, "app last-index: no answer"};
        try {
          auto query = impl->DoLastIndex();
          result = co_await std::move(query);
        } catch (const std::exception& e) {
          result = Error{ErrorCode::kUnknown, std::string("app last-index failed: ") + e.what()};
        }
        done(std::move(result));
      },
      asio::detached);
}

void HttpApp::Forward(const HttpRequest& request, int64_t index, int64_t expected_applied,
                      ForwardCallback done) {
  // Serialized here, once: the job keeps only the bytes, not a copy of the request.
  Impl::Job job;
  job.wire = SerializeForwardRequest(request, index, impl_->options.index_header);
  job.head = request.method == "HEAD";
  job.index = index;
  job.expected = expected_applied;
  job.done = std::move(done);
  asio::post(impl_->strand, [impl = impl_, job = std::move(job)]() mutable {
    impl->to_write.push_back(std::move(job));
    impl->StartWriter();
  });
}

void HttpApp::Reset() {
  asio::post(impl_->strand, [impl = impl_] { impl->CloseConnection(); });
}

void HttpApp::GetSnapshot(std::size_t max_bytes, SnapshotCallback done) {
  asio::co_spawn(
      impl_->strand,
      [impl = impl_, max_bytes, done = std::move(done)]() mutable -> asio::awaitable<void> {
        // As in LastIndex: an exception must not swallow the callback.
        Result<AppSnapshot> result = Error{ErrorCode::kUnknown, "app snapshot: no answer"};
        try {
          auto fetch = FetchAppSnapshot(impl->strand, impl->options, max_bytes);
          result = co_await std::move(fetch);
        } catch (const std::exception& e) {
          result = Error{ErrorCode::kUnknown, std::string("app GET snapshot failed: ") + e.what()};
        }
        done(std::move(result));
      },
      asio::detached);
}

void HttpApp::PutSnapshot(const AppSnapshot& snapshot, StatusCallback done) {
  asio::co_spawn(
      impl_->strand,
      [impl = impl_, snapshot, done = std::move(done)]() mutable -> asio::awaitable<void> {
        Status result = Error{ErrorCode::kUnknown, "app snapshot: no answer"};
        try {
          auto store = StoreAppSnapshot(impl->strand, impl->options, std::move(snapshot));
          result = co_await std::move(store);
        } catch (const std::exception& e) {
          result = Error{ErrorCode::kUnknown, std::string("app PUT snapshot failed: ") + e.what()};
        }
        done(std::move(result));
      },
      asio::detached);
}

}  // namespace k8shmir
