// dpmfs::Mutex and dpmfs::MutexLock: std::mutex and std::unique_lock with clang
// thread-safety annotations (common/thread_annotations.h), so that members declared
// GUARDED_BY(mu_) are checked at compile time. No cost over the std types: the same
// objects inside.
//
//   Mutex mu_;
//   int count_ GUARDED_BY(mu_);
//   void Add() { MutexLock lock(mu_); ++count_; }
//   void Wait() { MutexLock lock(mu_); lock.Wait(cv_, [&]() REQUIRES(mu_) { return count_ > 0; }); }
//
// Condition variables stay std::condition_variable; waits go through MutexLock (a
// predicate touching guarded members says REQUIRES(mu) so the analysis knows it runs
// with the lock held).
//
// Thread-safety: a Mutex is what makes others thread-safe; a MutexLock belongs to the
// thread that made it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "common/thread_annotations.h"

namespace dpmfs {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // For code that knows (but cannot show the analysis) that the lock is held.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  // The std::mutex inside, for std::condition_variable through MutexLock.
  std::mutex& native() RETURN_CAPABILITY(this) { return mu_; }

 private:
  std::mutex mu_;
};

// Holds a Mutex from construction to destruction, like std::unique_lock: may Unlock and
// Lock again in between, and waits on condition variables.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.native()) {}
  // Takes over a mutex the caller already locked (mu.lock() or a successful try_lock()).
  MutexLock(Mutex& mu, std::adopt_lock_t) REQUIRES(mu) : lock_(mu.native(), std::adopt_lock) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() RELEASE() { lock_.unlock(); }
  void Lock() ACQUIRE() { lock_.lock(); }

  void Wait(std::condition_variable& cv) { cv.wait(lock_); }
  template <class Predicate>
  void Wait(std::condition_variable& cv, Predicate pred) {
    cv.wait(lock_, std::move(pred));
  }
  template <class Clock, class Duration, class Predicate>
  bool WaitUntil(std::condition_variable& cv,
                 const std::chrono::time_point<Clock, Duration>& deadline, Predicate pred) {
    return cv.wait_until(lock_, deadline, std::move(pred));
  }
  template <class Clock, class Duration>
  std::cv_status WaitUntil(std::condition_variable& cv,
                           const std::chrono::time_point<Clock, Duration>& deadline) {
    return cv.wait_until(lock_, deadline);
  }
  template <class Rep, class Period, class Predicate>
  bool WaitFor(std::condition_variable& cv, const std::chrono::duration<Rep, Period>& timeout,
               Predicate pred) {
    return cv.wait_for(lock_, timeout, std::move(pred));
  }
  template <class Rep, class Period>
  std::cv_status WaitFor(std::condition_variable& cv,
                         const std::chrono::duration<Rep, Period>& timeout) {
    return cv.wait_for(lock_, timeout);
  }

  // The std::unique_lock inside (for APIs that take one).
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

// Releases the mutex a MutexLock holds for its own lifetime and takes it back at the
// end: a stretch that must run unlocked inside a function that REQUIRES the mutex and
// was handed the caller's MutexLock (the analysis cannot follow a lock passed by
// reference through Unlock/Lock).
class SCOPED_CAPABILITY MutexUnlock {
 public:
  MutexUnlock(MutexLock& lock, [[maybe_unused]] Mutex& mu) RELEASE(mu) : lock_(lock) {
    lock_.native().unlock();
  }
  ~MutexUnlock() RELEASE() { lock_.native().lock(); }
  MutexUnlock(const MutexUnlock&) = delete;
  MutexUnlock& operator=(const MutexUnlock&) = delete;

 private:
  MutexLock& lock_;
};

}  // namespace dpmfs
