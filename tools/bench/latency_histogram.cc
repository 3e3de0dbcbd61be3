#include "tools/bench/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dpmfs::bench {

void LatencyHistogram::Reset() {
  counts_.fill(0);
  count_ = 0;
  sum_ = 0;
  min_ = std::numeric_limits<uint64_t>::max();
  max_ = 0;
}

uint64_t LatencyHistogram::BucketLower(size_t b) {
  if (b < kSubCount) return b;
  uint64_t shift = (b - kSubCount) / kSubCount;
  uint64_t sub = (b - kSubCount) % kSubCount;
  return (kSubCount + sub) << shift;
}

uint64_t LatencyHistogram::BucketWidth(size_t b) {
  if (b < kSubCount) return 1;
  return uint64_t{1} << ((b - kSubCount) / kSubCount);
}

double LatencyHistogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank: the smallest value with at least ceil(q * count) values at or below it.
  uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * count_)));
  uint64_t seen = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    seen += counts_[b];
    if (seen >= rank) {
      double lower = static_cast<double>(BucketLower(b));
      double mid = BucketWidth(b) == 1 ? lower : lower + BucketWidth(b) / 2.0;
      return std::clamp(mid, static_cast<double>(min_), static_cast<double>(max_));
    }
  }
  return static_cast<double>(max_);
}

Measurement Summarize(const LatencyHistogram& h, uint64_t ops, double seconds,
                      uint64_t bytes_per_op) {
  Measurement m;
  m.ops = ops;
  m.seconds = seconds;
  m.p50_us = h.Percentile(0.50) / 1000.0;
  m.p99_us = h.Percentile(0.99) / 1000.0;
  m.mean_us = h.mean() / 1000.0;
  m.max_us = static_cast<double>(h.max()) / 1000.0;
  m.ops_per_sec = seconds > 0 ? static_cast<double>(ops) / seconds : 0;
  m.mib_per_sec = m.ops_per_sec * static_cast<double>(bytes_per_op) / (1024.0 * 1024.0);
  return m;
}

}  // namespace dpmfs::bench
