// dpmfs::SharedMutex with WriterLock and ReaderLock: std::shared_mutex, std::unique_lock
// and std::shared_lock with clang thread-safety annotations (common/thread_annotations.h),
// as common/mutex.h does for std::mutex. No cost over the std types: the same objects
// inside.
//
//   SharedMutex mu_;
//   int count_ GUARDED_BY(mu_);
//   int Get() const { ReaderLock lock(mu_); return count_; }
//   void Add() { WriterLock lock(mu_); ++count_; }
//
// Thread-safety: a SharedMutex is what makes others thread-safe; a WriterLock or
// ReaderLock belongs to the thread that made it.
#pragma once

#include <mutex>
#include <shared_mutex>

#include "common/thread_annotations.h"

namespace dpmfs {

// A reader-writer lock: std::shared_mutex with the annotations. Members GUARDED_BY it
// are read under a ReaderLock (or a WriterLock) and written under a WriterLock; a
// function that only reads them says REQUIRES_SHARED(mu).
class CAPABILITY("mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  void lock_shared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a SharedMutex exclusively from construction to destruction; may Unlock and Lock
// again in between (a stretch that must not hold up the others).
class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) ACQUIRE(mu) : lock_(mu) {}
  ~WriterLock() RELEASE() {}
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

  void Unlock() RELEASE() { lock_.unlock(); }
  void Lock() ACQUIRE() { lock_.lock(); }

 private:
  std::unique_lock<SharedMutex> lock_;
};

// Holds a SharedMutex shared (with other readers) from construction to destruction.
class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ACQUIRE_SHARED(mu) : lock_(mu) {}
  ~ReaderLock() RELEASE() {}
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  std::shared_lock<SharedMutex> lock_;
};

}  // namespace dpmfs
