// What a stats request answers (docs/monitoring.md): one StatsReport per process (a
// metadata server, a data server, a client) with its counters, gauges and latency
// histograms, and a StatsBundle of several (the metadata server answers its own and the
// last report each client pushed). Bounded and versioned; encoded and decoded through
// common/byte_codec.h, every count and length checked against its cap and against the
// bytes left before anything is allocated.
//
// Wire (little-endian):
//   report  = u32 magic "DPST" | u16 version (1) | str role | str instance
//             | vec<metric> | vec<histogram>
//   metric  = str name | str op | u8 kind (0 counter, 1 gauge) | u64 value
//   histogram = str name | str op | u64 sum_ns | u64 max_ns | vec<bucket>
//   bucket  = u16 index | u64 count      (non-empty buckets, strictly increasing index)
//   bundle  = u32 magic "DPSB" | u16 version (1) | vec<bytes of a report>
// A str is a u32 length and its bytes; a vec a u32 count and its elements.
//
// Thread-safety: values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/live_histogram.h"
#include "common/status.h"

namespace dpmfs::metrics {

inline constexpr uint32_t kStatsReportMagic = 0x54535044;  // "DPST"
inline constexpr uint32_t kStatsBundleMagic = 0x42535044;  // "DPSB"
inline constexpr uint16_t kStatsVersion = 1;
// Caps a decoder enforces (a report from the wire is not trusted).
inline constexpr size_t kMaxStatsNameLength = 128;  // role, instance, metric names, op labels
inline constexpr size_t kMaxStatsMetrics = 512;
inline constexpr size_t kMaxStatsHistograms = 256;
inline constexpr size_t kMaxStatsReports = 4096;
inline constexpr size_t kMaxStatsReportBytes = 128u << 10;

enum class MetricKind : uint8_t { kCounter = 0, kGauge = 1 };

struct MetricValue {
  std::string name;  // "requests", "journal_used_bytes" (a Prometheus-safe name)
  std::string op;    // the operation it is about ("lookup"), or "" for none
  MetricKind kind = MetricKind::kCounter;
  uint64_t value = 0;
  bool operator==(const MetricValue&) const = default;
};

struct HistogramValue {
  std::string name;  // "op_latency"
  std::string op;
  HistogramSnapshot snapshot;
};

struct StatsReport {
  std::string role;      // "meta", "data", "client"
  std::string instance;  // the server's endpoint, or the client's name ("host:pid /mnt")
  std::vector<MetricValue> metrics;
  std::vector<HistogramValue> histograms;

  void Counter(std::string name, std::string op, uint64_t value) {
    metrics.push_back({std::move(name), std::move(op), MetricKind::kCounter, value});
  }
  void Gauge(std::string name, std::string op, uint64_t value) {
    metrics.push_back({std::move(name), std::move(op), MetricKind::kGauge, value});
  }
  // Only histograms that recorded something: an idle op costs no bytes on the wire.
  void Histogram(std::string name, std::string op, const LiveHistogram& h) {
    HistogramSnapshot s = h.Snapshot();
    if (s.count == 0) return;
    histograms.push_back({std::move(name), std::move(op), std::move(s)});
  }
  // The value of metric `name` (and `op`), or nullptr.
  const MetricValue* Find(std::string_view name, std::string_view op = {}) const;
};

std::vector<uint8_t> EncodeStatsReport(const StatsReport& r);
// InvalidArgument naming the field and byte when the bytes are not a valid report.
Status DecodeStatsReport(std::span<const uint8_t> bytes, StatsReport* r);

struct StatsBundle {
  std::vector<StatsReport> reports;
};
// `encoded_reports`: reports already encoded (a client's pushed bytes are passed on as
// they came, after they were checked once).
std::vector<uint8_t> EncodeStatsBundle(std::span<const std::vector<uint8_t>> encoded_reports);
Status DecodeStatsBundle(std::span<const uint8_t> bytes, StatsBundle* b);

}  // namespace dpmfs::metrics
