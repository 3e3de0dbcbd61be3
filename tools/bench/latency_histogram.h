// Latency recording for the benchmarks: a log-linear histogram (HdrHistogram's idea)
// that records every operation in O(1) without allocating, with a relative error of at
// most 1/256 (< 0.4%) for the reported percentiles, plus the per-cell summary a
// benchmark reports.
//
// Thread-safety: a LatencyHistogram belongs to one thread; Measurement is a value.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace dpmfs::bench {

class LatencyHistogram {
 public:
  // 2^kSubBits sub-buckets per power of two: a bucket is at most 1/128 of its lower
  // bound wide, and reporting its midpoint halves that.
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSubCount = uint64_t{1} << kSubBits;
  static constexpr size_t kBuckets = kSubCount + (64 - kSubBits) * kSubCount;

  LatencyHistogram() { Reset(); }

  void Reset();
  // Hot path: a few instructions, no allocation, no branch on the value's magnitude
  // beyond the exact range.
  void Record(uint64_t ns) {
    size_t b = BucketOf(ns);
    ++counts_[b];
    ++count_;
    sum_ += ns;
    if (ns < min_) min_ = ns;
    if (ns > max_) max_ = ns;
  }

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0.0; }
  // The value at quantile q in [0, 1] (nearest rank), in ns; 0 when empty. Exact below
  // 128 ns, otherwise the midpoint of its bucket clamped to [min, max].
  double Percentile(double q) const;

  static size_t BucketOf(uint64_t v) {
    if (v < kSubCount) return static_cast<size_t>(v);
    int exp = 63 - std::countl_zero(v);  // >= kSubBits
    int shift = exp - kSubBits;
    uint64_t sub = (v >> shift) - kSubCount;  // 0 .. kSubCount-1
    return static_cast<size_t>(kSubCount + static_cast<uint64_t>(shift) * kSubCount + sub);
  }
  // [lower, lower + width) of bucket b.
  static uint64_t BucketLower(size_t b);
  static uint64_t BucketWidth(size_t b);

 private:
  std::array<uint64_t, kBuckets> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
};

// What one benchmark cell measured (one run of it; repeats are summarized in report.h).
struct Measurement {
  uint64_t ops = 0;        // operations completed in the measured window
  double seconds = 0;      // length of the measured window
  double p50_us = 0;
  double p99_us = 0;
  double mean_us = 0;
  double max_us = 0;
  double ops_per_sec = 0;
  double mib_per_sec = 0;  // ops_per_sec * bytes per op / 2^20
  // CPU time (user + system, all threads) per operation over the measured window, in µs,
  // of the server measured and of the benchmark process itself (`dpmfs-bench meta`);
  // NaN where not measured (other benchmarks, or a server whose pid is unknown).
  double server_cpu_us_per_op = std::numeric_limits<double>::quiet_NaN();
  double client_cpu_us_per_op = std::numeric_limits<double>::quiet_NaN();
  double cpu_window_seconds = 0;  // the window the two above were sampled over
};

Measurement Summarize(const LatencyHistogram& h, uint64_t ops, double seconds,
                      uint64_t bytes_per_op);

}  // namespace dpmfs::bench
