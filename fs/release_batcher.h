// Sends the releases of open handles in batches (ReleaseMany). Nothing waits for a
// release: the kernel sends RELEASE after close(2) has returned. One ReleaseMany is one
// RPC and one journaled mutation for up to `max_batch` handles, where each Release was
// one of each: creating and closing a file costs one RPC and one mutation instead of two.
//
// A handle is sent at most `delay` after it was added, at once when `max_batch` are
// waiting, and on Flush() (before anything that must see releases done: statfs, which
// counts the blocks of unlinked files until their last release, and unmount). Until it
// is sent, the server keeps the handle open: an unlinked file's blocks stay allocated
// and its unwritten speculative blocks stay reserved a few milliseconds longer.
//
// Thread-safety: thread-safe. The destructor flushes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

class ReleaseBatcher {
 public:
  // Sends one batch (at most max_batch handles); returns 0 or an errno (logged).
  using Send = std::function<int(const std::vector<meta::ReleaseRequest>&)>;
  ReleaseBatcher(Send send, std::chrono::milliseconds delay, size_t max_batch);
  ~ReleaseBatcher();
  ReleaseBatcher(const ReleaseBatcher&) = delete;
  ReleaseBatcher& operator=(const ReleaseBatcher&) = delete;

  void Add(meta::InodeId ino, uint64_t handle);
  // Returns once every handle added before the call has been sent.
  void Flush();

  uint64_t batches_sent() const;  // for tests

 private:
  void Loop();
  // Sends what is queued (mu_ held on entry and exit, released while sending).
  void SendQueuedLocked(MutexLock& lock) REQUIRES(mu_);

  const Send send_;
  const std::chrono::milliseconds delay_;
  const size_t max_batch_;
  mutable Mutex mu_;
  std::condition_variable cv_;       // the sender thread waits here
  std::condition_variable sent_cv_;  // Flush waits here
  std::vector<meta::ReleaseRequest> queue_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point first_queued_ GUARDED_BY(mu_);
  uint64_t added_ GUARDED_BY(mu_) = 0;  // handles added so far
  uint64_t sent_ GUARDED_BY(mu_) = 0;   // handles sent (or failed) so far
  uint64_t batches_ GUARDED_BY(mu_) = 0;
  bool sending_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace dpmfs::fs
