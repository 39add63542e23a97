// The live sessions of a server, as its Stop() sees them (the client and admin servers share it).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <memory>
#include <unordered_set>

#include "common/mutex.h"

namespace k8shmir {

// A session registers for as long as it runs and marks itself idle while it waits for a request
// to begin; CloseIdle() (from Stop(), any thread) cancels the waits of the idle ones, each on its
// own strand, and the busy ones see stopping() once their request is answered. Without it an idle
// keep-alive connection would keep its session, and everything the session holds, suspended
// until the client or the idle timeout let go.
class SessionRegistry {
  struct Entry {
    // Both touched only on `executor` (the session's strand); `stream` is null once it ended.
    boost::beast::tcp_stream* stream = nullptr;
    bool idle = false;
    boost::asio::any_io_executor executor;
  };

 public:
  // Registers a session for its scope. `registry` and `stream` must outlive it; the session
  // creates it, and calls SetIdle, on the stream's strand.
  class Registration {
   public:
    Registration(SessionRegistry& registry, boost::beast::tcp_stream& stream);
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

    // Marks the session idle (about to wait for a request) or busy. Returns false when the
    // server is stopping and the session should end instead of waiting: CloseIdle() sets
    // stopping before it posts its close to this strand, so a session either is found idle or
    // sees stopping here.
    bool SetIdle(bool idle);

   private:
    SessionRegistry& registry_;
    std::shared_ptr<Entry> entry_;
  };

  bool stopping() const { return stopping_; }

  // Sets stopping, then cancels the idle sessions' reads.
  void CloseIdle();

 private:
  std::atomic<bool> stopping_{false};
  Mutex mutex_;
  std::unordered_set<std::shared_ptr<Entry>> entries_ K8SHMIR_GUARDED_BY(mutex_);
};

}  // namespace k8shmir
