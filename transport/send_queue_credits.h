// Send-queue accounting for a QP, the standard verbs discipline: a posted request holds
// a send-queue entry until a signaled completion at or after it is polled (RC retires
// requests in order). Callers check CanPost before posting, signal often enough that
// credits keep coming back (ShouldSignal), and report each polled signaled completion.
//
// Thread-safety: none; owned by the thread that posts and polls the QP's send side.
#pragma once

#include <cstdint>
#include <deque>

namespace dpmfs::datapath {

class SendQueueCredits {
 public:
  explicit SendQueueCredits(uint32_t capacity) : capacity_(capacity) {}

  bool CanPost(uint32_t n) const { return used_ + n <= capacity_; }
  // Whether a chain of n about to be posted should end with a signaled request: once a
  // quarter of the queue would be held by unsignaled requests.
  bool ShouldSignal(uint32_t n) const { return unsignaled_ + n >= capacity_ / 4; }

  void Posted(uint32_t n, bool last_signaled) {
    used_ += n;
    unsignaled_ += n;
    if (last_signaled) {
      retire_.push_back(unsignaled_);
      unsignaled_ = 0;
    }
  }
  // A signaled send completion was polled: it retires itself and what came before it.
  void Completed() {
    if (retire_.empty()) return;
    used_ -= retire_.front();
    retire_.pop_front();
  }
  uint32_t used() const { return used_; }

 private:
  uint32_t capacity_;
  uint32_t used_ = 0;
  uint32_t unsignaled_ = 0;       // posted since the last signaled request
  std::deque<uint32_t> retire_;   // per outstanding signaled request: what it retires
};

}  // namespace dpmfs::datapath
