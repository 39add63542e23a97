// A single thread that runs tasks at (or after) a given time. EtcdLog uses it for retry backoff,
// the watch liveness checks, and for callbacks that must not run on the caller's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "common/mutex.h"

namespace k8shmir {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  TimerQueue();
  ~TimerQueue();  // Stop()
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `fn` on the timer thread at `when` or later. Tasks due at the same time run in the order
  // they were scheduled. After Stop(), tasks are dropped (destroyed without running).
  void Schedule(Clock::time_point when, std::function<void()> fn) K8SHMIR_EXCLUDES(mu_);
  void Post(std::function<void()> fn) { Schedule(Clock::now(), std::move(fn)); }

  // From now on every task (pending or new) is due immediately: used during shutdown so that
  // operations waiting in a backoff finish promptly instead of at their scheduled time.
  void RunEverythingNow() K8SHMIR_EXCLUDES(mu_);

  // Joins the thread; pending tasks are destroyed without running. Must not be called from a task.
  void Stop() K8SHMIR_EXCLUDES(mu_);

  bool InTimerThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run() K8SHMIR_EXCLUDES(mu_);

  Mutex mu_;
  std::condition_variable cv_;
  // Keyed by (due time, sequence number) so equal times keep their scheduling order.
  std::map<std::pair<Clock::time_point, uint64_t>, std::function<void()>> tasks_
      K8SHMIR_GUARDED_BY(mu_);
  uint64_t next_seq_ K8SHMIR_GUARDED_BY(mu_) = 0;
  bool immediate_ K8SHMIR_GUARDED_BY(mu_) = false;
  bool stopping_ K8SHMIR_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace k8shmir
