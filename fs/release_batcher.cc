#include "fs/release_batcher.h"

#include <spdlog/spdlog.h>

#include <cstring>

namespace dpmfs::fs {

ReleaseBatcher::ReleaseBatcher(Send send, std::chrono::milliseconds delay, size_t max_batch)
    : send_(std::move(send)), delay_(delay), max_batch_(std::max<size_t>(max_batch, 1)) {
  thread_ = std::thread([this] { Loop(); });
}

ReleaseBatcher::~ReleaseBatcher() {
  Flush();
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ReleaseBatcher::Add(meta::InodeId ino, uint64_t handle) {
  MutexLock lock(mu_);
  if (queue_.empty()) first_queued_ = std::chrono::steady_clock::now();
  queue_.push_back(meta::ReleaseRequest{ino, handle});
  ++added_;
  if (queue_.size() == 1 || queue_.size() >= max_batch_) cv_.notify_one();
}

void ReleaseBatcher::Flush() {
  MutexLock lock(mu_);
  const uint64_t target = added_;
  if (!sending_ && !queue_.empty()) SendQueuedLocked(lock);
  lock.Wait(sent_cv_, [&]() REQUIRES(mu_) { return sent_ >= target; });
}

uint64_t ReleaseBatcher::batches_sent() const {
  MutexLock lock(mu_);
  return batches_;
}

void ReleaseBatcher::SendQueuedLocked(MutexLock& lock) {
  while (!queue_.empty()) {
    sending_ = true;
    std::vector<meta::ReleaseRequest> batch;
    if (queue_.size() <= max_batch_) {
      batch.swap(queue_);
    } else {
      batch.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(max_batch_));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(max_batch_));
      first_queued_ = std::chrono::steady_clock::now();
    }
    {
      MutexUnlock unlocked(lock, mu_);
      int err = send_(batch);
      if (err != 0) {
        // The session's lease lapsing releases them in the end (and an unregister at once).
        spdlog::warn("releasing {} open handles failed: {}", batch.size(), std::strerror(err));
      }
    }
    sent_ += batch.size();
    ++batches_;
    sending_ = false;
    sent_cv_.notify_all();
  }
}

void ReleaseBatcher::Loop() {
  MutexLock lock(mu_);
  while (true) {
    lock.Wait(cv_, [&]() REQUIRES(mu_) { return stop_ || (!queue_.empty() && !sending_); });
    if (stop_ && queue_.empty()) return;
    if (!stop_ && queue_.size() < max_batch_) {
      // Wait out the delay from the oldest queued handle, unless the batch fills.
      auto due = first_queued_ + delay_;
      lock.WaitUntil(cv_, due, [&]() REQUIRES(mu_) { return stop_ || queue_.size() >= max_batch_; });
    }
    if (!sending_) SendQueuedLocked(lock);
  }
}

}  // namespace dpmfs::fs
