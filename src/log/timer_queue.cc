#include "log/timer_queue.h"

namespace k8shmir {

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() { Stop(); }

void TimerQueue::Schedule(Clock::time_point when, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    tasks_.emplace(std::make_pair(immediate_ ? Clock::time_point::min() : when, next_seq_++),
                   std::move(fn));
  }
  cv_.notify_one();
}

void TimerQueue::RunEverythingNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    immediate_ = true;
    // Re-key pending tasks as due now, keeping their relative order.
    decltype(tasks_) now_due;
    for (auto& [key, fn] : tasks_) {
      now_due.emplace(std::make_pair(Clock::time_point::min(), key.second), std::move(fn));
    }
    tasks_.swap(now_due);
  }
  cv_.notify_one();
}

void TimerQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  // Destroy leftovers outside the lock: a task's destructor may release objects that schedule.
  decltype(tasks_) leftovers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leftovers.swap(tasks_);
  }
}

void TimerQueue::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (tasks_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto due = tasks_.begin()->first.first;
    if (due > Clock::now()) {
      cv_.wait_until(lock, due);
      continue;
    }
    auto node = tasks_.extract(tasks_.begin());
    lock.unlock();
    node.mapped()();
    // The task (and whatever it captured) is destroyed before taking the lock again.
    node = {};
    lock.lock();
  }
}

}  // namespace k8shmir
