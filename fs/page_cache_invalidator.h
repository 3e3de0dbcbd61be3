// Drops ranges of a file from the kernel's page cache after a direct write, on a thread
// of its own, with a bounded wait for the caller.
//
// Why (issue 15 item 3): the kernel drops the range of an O_DIRECT write before it sends
// the WRITE, but a buffered reader can cache that range again from the data servers
// while the write is in flight, and after an asynchronous direct write the kernel drops
// nothing: a buffered read after the write completed returned the replaced bytes. So the
// range is dropped once the data is durable, before the WRITE is answered.
//
// Why a thread and a bounded wait: invalidation waits for the lock of every cached page
// of the range, and a page under a READ stays locked until that READ is answered. Those
// READs can queue in the kernel behind the limit of background requests, which the
// asynchronous direct writes waiting for their answers fill; a worker invalidating
// itself deadlocked the mount so. Here the worker waits at most `wait`; if the drop is
// not done by then the worker answers anyway (the queue drains, the READs are served,
// the drop finishes). A page still locked then is under a READ that is answered after
// the write was durable, i.e. with the new bytes; only a range of several pages whose
// drop stalled on one of them can leave a later page stale for that long.
//
// Thread-safety: thread-safe. Start/Stop from the thread that owns the session.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "common/mutex.h"

namespace dpmfs::fs {

class PageCacheInvalidator {
 public:
  PageCacheInvalidator() = default;
  ~PageCacheInvalidator() { Stop(); }
  PageCacheInvalidator(const PageCacheInvalidator&) = delete;
  PageCacheInvalidator& operator=(const PageCacheInvalidator&) = delete;

  // Starts the thread; notices go to `se`, which must outlive Stop().
  void Start(fuse_session* se);
  // Forgets queued drops and ends the thread (after the request loop: nobody answers
  // READs any more, so a drop in progress is given 2 s, then left). Idempotent.
  void Stop();

  // Drops [off, off+len) of `ino` from the page cache; returns true once done, false
  // if `wait` passed first (it is still done later) or the invalidator is not running.
  bool Drop(uint64_t ino, uint64_t off, uint64_t len, std::chrono::milliseconds wait);

  uint64_t late_drops() const;  // drops that outlasted their wait (for the exit log)

 private:
  struct Job {
    uint64_t ino, off, len, seq;
  };
  void Run();

  fuse_session* se_ = nullptr;
  mutable Mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Job> queue_ GUARDED_BY(mu_);
  uint64_t next_seq_ GUARDED_BY(mu_) = 1;
  uint64_t done_seq_ GUARDED_BY(mu_) = 0;  // every job up to it is done (jobs run in order)
  uint64_t late_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  bool finished_ GUARDED_BY(mu_) = false;  // Run has returned (Stop waits for it, bounded)
  std::thread thread_;
};

}  // namespace dpmfs::fs
