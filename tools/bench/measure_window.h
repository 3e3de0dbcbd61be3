// The warm-up and measured window of one benchmark cell, shared by every loop that
// measures (persist cells, TCP ping-pong, TCP stream). Operations that finish during
// the warm-up are not recorded; the cell ends at the first check after the window.
//
// Use: Record() each finished operation's latency, then Advance(now) once per batch of
// completions; stop when it returns false; Finish() gives the cell's measurement.
// Thread-safety: none; one per measuring loop.
#pragma once

#include <chrono>
#include <cstdint>

#include "tools/bench/latency_histogram.h"
#include "tools/bench/tcp_baseline.h"

namespace dpmfs::bench {

using Clock = std::chrono::steady_clock;

inline uint64_t Nanos(Clock::duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

inline Clock::duration ToDuration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

class MeasureWindow {
 public:
  // Starts the warm-up now. Resets `hist`.
  MeasureWindow(const CellTiming& timing, LatencyHistogram* hist)
      : hist_(hist),
        warm_end_(Clock::now() + ToDuration(timing.warmup_seconds)),
        end_(warm_end_ + ToDuration(timing.seconds)),
        measure_start_(warm_end_),
        last_(Clock::now()) {
    hist_->Reset();
  }

  // One operation finished with this latency; counted only inside the window.
  void Record(Clock::duration latency) {
    if (!measuring_) return;
    hist_->Record(Nanos(latency));
    ++ops_;
  }

  // After a batch of completions seen at `now`: false once the window is over.
  bool Advance(Clock::time_point now) {
    last_ = now;
    if (measuring_) return now < end_;
    if (now >= warm_end_) {
      measuring_ = true;
      measure_start_ = now;
    }
    return true;
  }

  Measurement Finish(uint32_t size) const {
    return Summarize(*hist_, ops_, std::chrono::duration<double>(last_ - measure_start_).count(),
                     size);
  }

 private:
  LatencyHistogram* hist_;
  Clock::time_point warm_end_, end_, measure_start_, last_;
  bool measuring_ = false;
  uint64_t ops_ = 0;
};

}  // namespace dpmfs::bench
