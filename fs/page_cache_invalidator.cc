#include "fs/page_cache_invalidator.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

namespace dpmfs::fs {

void PageCacheInvalidator::Start(fuse_session* se) {
  MutexLock lock(mu_);
  if (thread_.joinable() || se == nullptr) return;
  se_ = se;
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void PageCacheInvalidator::Stop() {
  MutexLock lock(mu_);
  if (!thread_.joinable()) return;
  stop_ = true;
  queue_.clear();  // nobody waits for them any more
  work_cv_.notify_all();
  done_cv_.notify_all();
  // A drop in progress may wait for a page whose READ will never be answered now (the
  // request loop has ended): give it a moment, then leave it to the exiting process.
  const bool ended = lock.WaitFor(done_cv_, std::chrono::seconds(2), [&]() REQUIRES(mu_) { return finished_; });
  lock.Unlock();
  if (ended) {
    thread_.join();
  } else {
    spdlog::warn("a page-cache drop is still waiting for the kernel at exit; leaving it");
    thread_.detach();
  }
}

bool PageCacheInvalidator::Drop(uint64_t ino, uint64_t off, uint64_t len,
                                std::chrono::milliseconds wait) {
  MutexLock lock(mu_);
  if (!thread_.joinable() || stop_) return false;
  const uint64_t seq = next_seq_++;
  queue_.push_back(Job{ino, off, len, seq});
  work_cv_.notify_one();
  if (lock.WaitFor(done_cv_, wait, [&]() REQUIRES(mu_) { return done_seq_ >= seq || stop_; })) {
    return done_seq_ >= seq;
  }
  ++late_;
  return false;
}

uint64_t PageCacheInvalidator::late_drops() const {
  MutexLock lock(mu_);
  return late_;
}

void PageCacheInvalidator::Run() {
  MutexLock lock(mu_);
  for (;;) {
    lock.Wait(work_cv_, [&]() REQUIRES(mu_) { return stop_ || !queue_.empty(); });
    if (stop_) {
      finished_ = true;
      done_cv_.notify_all();
      return;
    }
    const Job job = queue_.front();
    queue_.pop_front();
    lock.Unlock();
    int rc = fuse_lowlevel_notify_inval_inode(se_, job.ino, static_cast<off_t>(job.off),
                                              static_cast<off_t>(job.len));
    if (rc != 0 && rc != -ENOENT) {
      spdlog::debug("dropping [{}, +{}) of inode {} from the page cache: {}", job.off, job.len,
                    job.ino, std::strerror(-rc));
    }
    lock.Lock();
    done_seq_ = job.seq;
    done_cv_.notify_all();
  }
}

}  // namespace dpmfs::fs
