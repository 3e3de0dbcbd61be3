// Latency histograms that a running daemon keeps per operation and answers a stats
// request with (docs/monitoring.md).
//
// LiveHistogram: log-linear buckets (the idea of tools/bench/latency_histogram.h and
// HdrHistogram, coarser: 16 sub-buckets per power of two, so a reported quantile is
// within ~3% of the true value) over [0, 2^40 ns) (~18 min; larger values land in the
// last bucket). Record() is a handful of relaxed atomic adds into a fixed array: no lock,
// no allocation, safe from any number of threads at once. 592 buckets, 4.7 KiB.
//
// HistogramSnapshot: a copy taken while others record (each bucket read once, so the
// copy is a consistent-enough cut: counts may be one operation apart from `sum`), that
// merges with others (a cluster total, or the same op over many clients) and answers
// quantiles. Its wire form (stats_report.h) lists the non-empty buckets only.
//
// Thread-safety: LiveHistogram::Record and Snapshot from any thread; a snapshot is a
// value used by one thread at a time.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dpmfs::metrics {

inline constexpr int kHistogramSubBits = 4;
inline constexpr uint64_t kHistogramSubCount = uint64_t{1} << kHistogramSubBits;
// Values of 2^kHistogramMaxExp ns and above share the last bucket.
inline constexpr int kHistogramMaxExp = 40;
inline constexpr size_t kHistogramBuckets =
    kHistogramSubCount + (kHistogramMaxExp - kHistogramSubBits) * kHistogramSubCount;

// The bucket of a value, in [0, kHistogramBuckets).
constexpr size_t HistogramBucketOf(uint64_t v) {
  if (v < kHistogramSubCount) return static_cast<size_t>(v);
  const int exp = 63 - std::countl_zero(v);  // >= kHistogramSubBits
  if (exp >= kHistogramMaxExp) return kHistogramBuckets - 1;
  const int shift = exp - kHistogramSubBits;
  const uint64_t sub = (v >> shift) - kHistogramSubCount;
  return static_cast<size_t>(kHistogramSubCount + static_cast<uint64_t>(shift) * kHistogramSubCount +
                             sub);
}
// [lower, lower + width) of bucket b.
constexpr uint64_t HistogramBucketLower(size_t b) {
  if (b < kHistogramSubCount) return b;
  const uint64_t shift = (b - kHistogramSubCount) / kHistogramSubCount;
  const uint64_t sub = (b - kHistogramSubCount) % kHistogramSubCount;
  return (kHistogramSubCount + sub) << shift;
}
constexpr uint64_t HistogramBucketWidth(size_t b) {
  if (b < kHistogramSubCount) return 1;
  return uint64_t{1} << ((b - kHistogramSubCount) / kHistogramSubCount);
}

struct HistogramSnapshot {
  std::vector<uint64_t> buckets = std::vector<uint64_t>(kHistogramBuckets, 0);
  uint64_t count = 0;
  uint64_t sum_ns = 0;
  uint64_t max_ns = 0;

  // Adds `other` into this one (counts and sums add, max is the larger).
  void Merge(const HistogramSnapshot& other);
  // The value at quantile q in [0, 1] (nearest rank), in ns: exact below 16 ns, else the
  // midpoint of its bucket, never above max_ns. 0 when empty.
  double Quantile(double q) const;
  double mean_ns() const { return count == 0 ? 0.0 : double(sum_ns) / double(count); }
};

class LiveHistogram {
 public:
  LiveHistogram() = default;
  LiveHistogram(const LiveHistogram&) = delete;
  LiveHistogram& operator=(const LiveHistogram&) = delete;

  // Hot path: three relaxed atomic adds and, when a new maximum, a compare-exchange.
  void Record(uint64_t ns) {
    buckets_[HistogramBucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
    uint64_t m = max_.load(std::memory_order_relaxed);
    while (ns > m && !max_.compare_exchange_weak(m, ns, std::memory_order_relaxed)) {
    }
  }
  HistogramSnapshot Snapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kHistogramBuckets> buckets_{};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
};

// Measures one operation into a histogram when it goes out of scope (steady clock: two
// vDSO reads, no system call).
class ScopedLatency {
 public:
  explicit ScopedLatency(LiveHistogram& h) : h_(&h), start_(std::chrono::steady_clock::now()) {}
  ~ScopedLatency() {
    if (h_ == nullptr) return;
    h_->Record(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now() - start_)
                                         .count()));
  }
  ScopedLatency(const ScopedLatency&) = delete;
  ScopedLatency& operator=(const ScopedLatency&) = delete;

 private:
  LiveHistogram* h_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dpmfs::metrics
