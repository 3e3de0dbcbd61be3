#include "fs/client_metrics.h"

namespace dpmfs::fs {

ClientMetrics& ClientMetrics::Get() {
  static ClientMetrics metrics;
  return metrics;
}

metrics::StatsReport ClientMetrics::Report(std::string instance) const {
  metrics::StatsReport r;
  r.role = "client";
  r.instance = std::move(instance);
  r.Gauge("up", "", 1);
  for (size_t i = 0; i < kFuseOpCount; ++i) {
    r.Histogram("fuse_latency", std::string(kFuseOpNames[i]), fuse_ops_[i]);
  }
  for (const metrics::HistogramValue& h : r.histograms) r.Counter("fuse_requests", h.op, h.snapshot.count);
  const size_t fuse_histograms = r.histograms.size();
  r.Histogram("data_latency", "read", data_read_);
  r.Histogram("data_latency", "write", data_write_);
  for (size_t i = fuse_histograms; i < r.histograms.size(); ++i) {
    r.Counter("data_requests", r.histograms[i].op, r.histograms[i].snapshot.count);
  }
  r.Counter("data_bytes", "read", bytes_read_.load(std::memory_order_relaxed));
  r.Counter("data_bytes", "write", bytes_written_.load(std::memory_order_relaxed));
  r.Counter("data_errors", "read", read_errors_.load(std::memory_order_relaxed));
  r.Counter("data_errors", "write", write_errors_.load(std::memory_order_relaxed));
  return r;
}

}  // namespace dpmfs::fs
