// std::mutex with the capability attributes clang's thread-safety analysis needs (libstdc++'s
// has none; see common/thread_annotations.h), and its RAII lock. Same cost as std::mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/thread_annotations.h"

namespace k8shmir {

class K8SHMIR_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() K8SHMIR_ACQUIRE() { mu_.lock(); }
  void Unlock() K8SHMIR_RELEASE() { mu_.unlock(); }

  // Waits on `cv` with this mutex held (released while waiting, held again on return), until
  // notified or woken spuriously: callers loop on their condition.
  void Wait(std::condition_variable& cv) K8SHMIR_REQUIRES(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    cv.wait(lock);
    lock.release();  // still held: the caller unlocks it
  }

  // Waits on `cv` with this mutex held: released while waiting, held again on return. False when
  // `timeout` passed without a notification. (Spurious wake-ups return true: callers loop on
  // their condition, which reads guarded state here, where the analysis sees the mutex held, and
  // not in a lambda, where it could not.)
  template <class Rep, class Period>
  bool WaitFor(std::condition_variable& cv, std::chrono::duration<Rep, Period> timeout)
      K8SHMIR_REQUIRES(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    const bool notified = cv.wait_for(lock, timeout) == std::cv_status::no_timeout;
    lock.release();  // still held: the caller's MutexLock unlocks it
    return notified;
  }

  // As WaitFor, until `deadline`.
  template <class Clock, class Duration>
  bool WaitUntil(std::condition_variable& cv, std::chrono::time_point<Clock, Duration> deadline)
      K8SHMIR_REQUIRES(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    const bool notified = cv.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return notified;
  }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class K8SHMIR_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) K8SHMIR_ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() K8SHMIR_RELEASE() { mu_.Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace k8shmir
