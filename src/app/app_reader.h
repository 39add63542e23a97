// Reads that skip the log (App::Read) on connections of their own, never the forwarding one: a
// bounded pool of kept-alive connections, each validated with the last-index endpoint when it is
// opened. Internal to src/app; the public face is HttpApp::Read.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>  // boost/asio/awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core.hpp>

#include "app/http_app.h"

namespace k8shmir {

// Strand-owned: every member below `options_` is read and written only on `strand_`.
class AppReader : public std::enable_shared_from_this<AppReader> {
 public:
  AppReader(boost::asio::any_io_executor executor, HttpAppOptions options);

  // Sends `wire` (a serialized request without the index header) and returns the answer, as
  // App::Read. At most options.max_read_connections reads run at once; the others wait.
  void Read(std::string wire, bool head, int64_t min_index, App::ReadCallback done);
  // Closes the idle connections; those in use close once their read ends.
  void Close();

 private:
  using Clock = std::chrono::steady_clock;
  struct Connection {
    explicit Connection(boost::asio::strand<boost::asio::any_io_executor>& s) : stream(s) {}
    boost::beast::tcp_stream stream;
    boost::beast::flat_buffer buffer;
    int64_t validated_index = 0;  // what the app reported when this connection was opened
    Clock::time_point last_used = Clock::now();
  };
  struct Job {
    std::string wire;
    bool head = false;
    int64_t min_index = 0;
    App::ReadCallback done;
  };

  void Start(Job job);
  boost::asio::awaitable<ReadResult> Run(Job& job);
  // A connection from the pool (the newest idle one not idle for too long), or nullptr.
  std::unique_ptr<Connection> TakeIdle();
  // Opens and validates a connection: the app must report at least `min_index`.
  boost::asio::awaitable<ReadResult> Open(int64_t min_index, std::unique_ptr<Connection>& out);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  const HttpAppOptions options_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t running_ = 0;
  std::deque<Job> waiting_;
  bool closed_ = false;
};

}  // namespace k8shmir
