#include "log/timer_queue.h"

namespace k8shmir {

TimerQueue::TimerQueue() : thread_([this] { Run(); }) {}

TimerQueue::~TimerQueue() { Stop(); }

void TimerQueue::Schedule(Clock::time_point when, std::function<void()> fn) {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    tasks_.emplace(std::make_pair(immediate_ ? Clock::time_point::min() : when, next_seq_++),
                   std::move(fn));
  }
  cv_.notify_one();
}

void TimerQueue::RunEverythingNow() {
  {
    MutexLock lock(mu_);
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
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  // Destroy leftovers outside the lock: a task's destructor may release objects that schedule.
  decltype(tasks_) leftovers;
  {
    MutexLock lock(mu_);
    leftovers.swap(tasks_);
  }
}

void TimerQueue::Run() {
  // Explicit Lock/Unlock rather than a MutexLock: the lock is let go around each task.
  mu_.Lock();
  while (!stopping_) {
    if (tasks_.empty()) {
      mu_.Wait(cv_);
      continue;
    }
    auto due = tasks_.begin()->first.first;
    if (due > Clock::now()) {
      mu_.WaitUntil(cv_, due);
      continue;
    }
    auto node = tasks_.extract(tasks_.begin());
    mu_.Unlock();
    node.mapped()();
    // The task (and whatever it captured) is destroyed before taking the lock again.
    node = {};
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace k8shmir
