// The exclusive lock a process holds on a pool while it serves or formats it, so that
// two data servers never serve one pool and mkfs never formats a pool being served
// (--force or not).
//
// The lock is flock(2) LOCK_EX on the pool file (or device-DAX character device): it
// belongs to the open file description, so the kernel drops it when the holder dies,
// also on kill -9, and two opens in one process conflict like two processes do. flock
// works on character devices (the lock is on the device node's inode); a second device
// node of the same device-DAX namespace made with mknod elsewhere would be a different
// inode and is not covered. Advisory: only dpmfs programs take it.
//
// Who holds it is found in /proc/locks (the pid that took the flock and its
// /proc/PID/comm), so a refusal can say "in use by pid 1234 (dpmfs-data)".
//
// Thread-safety: PoolLock is a value owned by one thread at a time; the free functions
// are safe to call concurrently.
#pragma once

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace dpmfs::pool {

class PoolLock {
 public:
  // Takes the exclusive lock on `path` without waiting. FailedPrecondition "PATH is in
  // use by pid N (prog); stop it first" when another open file description holds it;
  // NotFound/IOError when the path cannot be opened.
  static Result<PoolLock> Acquire(const std::string& path);
  // Takes the lock on an already open descriptor of `path` (FormatPool's own): the
  // caller keeps the descriptor; the lock lasts while it is open. Same errors.
  static Status LockDescriptor(int fd, const std::string& path);

  PoolLock() = default;
  PoolLock(PoolLock&&) noexcept = default;
  PoolLock& operator=(PoolLock&&) noexcept = default;

  bool held() const { return fd_.valid(); }

 private:
  explicit PoolLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // the lock lives as long as this descriptor
};

// OK when nobody holds the lock on `path` (or the path does not exist: nothing to be in
// use); FailedPrecondition naming the holder otherwise. The probe's own lock is dropped
// before it returns.
Status CheckPoolNotInUse(const std::string& path);

// "pid 1234 (dpmfs-data)" for the process holding a flock on `path`, from /proc/locks;
// "another process" when it cannot be told.
std::string DescribeLockHolder(const std::string& path);

}  // namespace dpmfs::pool
