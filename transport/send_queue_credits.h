// Send-queue accounting for a QP, the standard verbs discipline: a posted request holds
// a send-queue entry until a signaled completion at or after it is polled (RC retires
// requests in order). Callers check CanPost before posting, signal often enough that
// credits keep coming back (ShouldSignal), and report each polled signaled completion.
//
// Thread-safety: none; owned by the thread that posts and polls the QP's send side.
#pragma once

#include <cstdint>
#include <cstddef>
#include <vector>

namespace dpmfs::datapath {

class SendQueueCredits {
 public:
  // Every outstanding signaled request holds at least one entry, so at most `capacity`
  // are outstanding: a ring of that size, allocated once (no allocation per post).
  explicit SendQueueCredits(uint32_t capacity)
      : capacity_(capacity), retire_(capacity > 0 ? capacity : 1) {}

  bool CanPost(uint32_t n) const { return used_ + n <= capacity_; }
  // Whether a chain of n about to be posted should end with a signaled request: once a
  // quarter of the queue would be held by unsignaled requests.
  bool ShouldSignal(uint32_t n) const { return unsignaled_ + n >= capacity_ / 4; }

  void Posted(uint32_t n, bool last_signaled) {
    used_ += n;
    unsignaled_ += n;
    if (last_signaled) {
      if (count_ == retire_.size()) Grow();  // a caller that posted past CanPost
      retire_[(head_ + count_) % retire_.size()] = unsignaled_;
      ++count_;
      unsignaled_ = 0;
    }
  }
  // A signaled send completion was polled: it retires itself and what came before it.
  void Completed() {
    if (count_ == 0) return;
    used_ -= retire_[head_];
    head_ = (head_ + 1) % retire_.size();
    --count_;
  }
  uint32_t used() const { return used_; }

 private:
  void Grow() {
    std::vector<uint32_t> bigger(retire_.size() * 2);
    for (size_t i = 0; i < count_; ++i) bigger[i] = retire_[(head_ + i) % retire_.size()];
    retire_.swap(bigger);
    head_ = 0;
  }

  uint32_t capacity_;
  uint32_t used_ = 0;
  uint32_t unsignaled_ = 0;       // posted since the last signaled request
  // Per outstanding signaled request, oldest at head_: what it retires.
  std::vector<uint32_t> retire_;
  size_t head_ = 0;
  size_t count_ = 0;
};

}  // namespace dpmfs::datapath
