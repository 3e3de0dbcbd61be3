#include "common/live_histogram.h"

#include <algorithm>
#include <cmath>

namespace dpmfs::metrics {

void HistogramSnapshot::Merge(const HistogramSnapshot& other) {
  for (size_t b = 0; b < kHistogramBuckets; ++b) buckets[b] += other.buckets[b];
  count += other.count;
  sum_ns += other.sum_ns;
  max_ns = std::max(max_ns, other.max_ns);
}

double HistogramSnapshot::Quantile(double q) const {
  if (count == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank: the smallest value with at least ceil(q * count) values at or below it.
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count))));
  uint64_t seen = 0;
  for (size_t b = 0; b < kHistogramBuckets; ++b) {
    seen += buckets[b];
    if (seen >= rank) {
      const double lower = static_cast<double>(HistogramBucketLower(b));
      const uint64_t width = HistogramBucketWidth(b);
      const double mid = width == 1 ? lower : lower + static_cast<double>(width) / 2.0;
      return std::min(mid, static_cast<double>(max_ns));
    }
  }
  return static_cast<double>(max_ns);
}

HistogramSnapshot LiveHistogram::Snapshot() const {
  HistogramSnapshot s;
  for (size_t b = 0; b < kHistogramBuckets; ++b) {
    s.buckets[b] = buckets_[b].load(std::memory_order_relaxed);
    s.count += s.buckets[b];
  }
  s.sum_ns = sum_.load(std::memory_order_relaxed);
  s.max_ns = max_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace dpmfs::metrics
