#include "common/stats_report.h"

#include "common/byte_codec.h"

namespace dpmfs::metrics {
namespace {

using codec::ByteReader;
using codec::ByteSizer;
using codec::ByteWriter;

struct WireBucket {
  uint16_t index = 0;
  uint64_t count = 0;
};
struct WireHistogram {
  std::string name, op;
  uint64_t sum_ns = 0, max_ns = 0;
  std::vector<WireBucket> buckets;
};
struct WireReport {
  uint32_t magic = kStatsReportMagic;
  uint16_t version = kStatsVersion;
  std::string role, instance;
  std::vector<MetricValue> metrics;
  std::vector<WireHistogram> histograms;
};
struct WireBundle {
  uint32_t magic = kStatsBundleMagic;
  uint16_t version = kStatsVersion;
  std::vector<std::string> reports;
};

// Smallest encoded sizes, for the codec's count-versus-bytes-left check.
constexpr size_t kMinMetric = 4 + 4 + 1 + 8;
constexpr size_t kMinHistogram = 4 + 4 + 8 + 8 + 4;
constexpr size_t kBucketSize = 2 + 8;

template <class IO>
void Fields(IO& io, MetricValue& m) {
  io.Bytes("metric.name", m.name, kMaxStatsNameLength);
  io.Bytes("metric.op", m.op, kMaxStatsNameLength);
  uint8_t kind = static_cast<uint8_t>(m.kind);
  io.U8("metric.kind", kind);
  io.Require(kind <= 1, "metric.kind", "is neither 0 (counter) nor 1 (gauge)");
  m.kind = static_cast<MetricKind>(kind);
  io.U64("metric.value", m.value);
}

template <class IO>
void Fields(IO& io, WireHistogram& h) {
  io.Bytes("histogram.name", h.name, kMaxStatsNameLength);
  io.Bytes("histogram.op", h.op, kMaxStatsNameLength);
  io.U64("histogram.sum_ns", h.sum_ns);
  io.U64("histogram.max_ns", h.max_ns);
  int prev = -1;
  io.Vector("histogram.buckets", h.buckets, kHistogramBuckets, kBucketSize,
            [&prev](auto& sub, WireBucket& b) {
              sub.U16("bucket.index", b.index);
              sub.Require(b.index < kHistogramBuckets, "bucket.index",
                          "is past the last histogram bucket");
              sub.Require(static_cast<int>(b.index) > prev, "bucket.index",
                          "is not above the previous bucket's (buckets are listed once, in order)");
              prev = b.index;
              sub.U64("bucket.count", b.count);
              sub.Require(b.count > 0, "bucket.count", "is 0 (only non-empty buckets are listed)");
            });
}

template <class IO>
void Fields(IO& io, WireReport& r) {
  io.U32("magic", r.magic);
  io.Require(r.magic == kStatsReportMagic, "magic", "is not a dpmfs stats report's");
  io.U16("version", r.version);
  io.Require(r.version == kStatsVersion, "version", "is not a stats report version this dpmfs reads (1)");
  io.Bytes("role", r.role, kMaxStatsNameLength);
  io.Bytes("instance", r.instance, kMaxStatsNameLength);
  io.Vector("metrics", r.metrics, kMaxStatsMetrics, kMinMetric,
            [](auto& sub, MetricValue& m) { Fields(sub, m); });
  io.Vector("histograms", r.histograms, kMaxStatsHistograms, kMinHistogram,
            [](auto& sub, WireHistogram& h) { Fields(sub, h); });
}

template <class IO>
void Fields(IO& io, WireBundle& b) {
  io.U32("magic", b.magic);
  io.Require(b.magic == kStatsBundleMagic, "magic", "is not a dpmfs stats bundle's");
  io.U16("version", b.version);
  io.Require(b.version == kStatsVersion, "version", "is not a stats bundle version this dpmfs reads (1)");
  io.Vector("reports", b.reports, kMaxStatsReports, codec::kLengthPrefix,
            [](auto& sub, std::string& s) { sub.Bytes("report", s, kMaxStatsReportBytes); });
}

template <class T>
std::vector<uint8_t> EncodeWire(const T& m) {
  ByteSizer sizer;
  Fields(sizer, const_cast<T&>(m));
  std::vector<uint8_t> out(sizer.size());
  ByteWriter w(out.data());
  Fields(w, const_cast<T&>(m));
  return out;
}

}  // namespace

const MetricValue* StatsReport::Find(std::string_view name, std::string_view op) const {
  for (const MetricValue& m : metrics) {
    if (m.name == name && m.op == op) return &m;
  }
  return nullptr;
}

std::vector<uint8_t> EncodeStatsReport(const StatsReport& r) {
  WireReport w;
  w.role = r.role;
  w.instance = r.instance;
  w.metrics = r.metrics;
  for (const HistogramValue& h : r.histograms) {
    WireHistogram wh{h.name, h.op, h.snapshot.sum_ns, h.snapshot.max_ns, {}};
    for (size_t b = 0; b < h.snapshot.buckets.size() && b < kHistogramBuckets; ++b) {
      if (h.snapshot.buckets[b] != 0) {
        wh.buckets.push_back({static_cast<uint16_t>(b), h.snapshot.buckets[b]});
      }
    }
    w.histograms.push_back(std::move(wh));
  }
  return EncodeWire(w);
}

Status DecodeStatsReport(std::span<const uint8_t> bytes, StatsReport* r) {
  WireReport w;
  ByteReader reader(bytes, "StatsReport");
  Fields(reader, w);
  DPMFS_RETURN_IF_ERROR(reader.Finish());
  StatsReport out;
  out.role = std::move(w.role);
  out.instance = std::move(w.instance);
  out.metrics = std::move(w.metrics);
  for (WireHistogram& wh : w.histograms) {
    HistogramValue h{std::move(wh.name), std::move(wh.op), {}};
    h.snapshot.sum_ns = wh.sum_ns;
    h.snapshot.max_ns = wh.max_ns;
    for (const WireBucket& b : wh.buckets) {
      if (h.snapshot.count + b.count < h.snapshot.count) {
        return Status::InvalidArgument("StatsReport histogram '" + h.name +
                                       "': bucket counts overflow 64 bits");
      }
      h.snapshot.buckets[b.index] = b.count;
      h.snapshot.count += b.count;
    }
    out.histograms.push_back(std::move(h));
  }
  *r = std::move(out);
  return Status::OK();
}

std::vector<uint8_t> EncodeStatsBundle(std::span<const std::vector<uint8_t>> encoded_reports) {
  WireBundle b;
  for (const auto& r : encoded_reports) b.reports.emplace_back(r.begin(), r.end());
  return EncodeWire(b);
}

Status DecodeStatsBundle(std::span<const uint8_t> bytes, StatsBundle* b) {
  WireBundle w;
  ByteReader reader(bytes, "StatsBundle");
  Fields(reader, w);
  DPMFS_RETURN_IF_ERROR(reader.Finish());
  StatsBundle out;
  for (size_t i = 0; i < w.reports.size(); ++i) {
    StatsReport r;
    const std::string& s = w.reports[i];
    Status st = DecodeStatsReport({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, &r);
    if (!st.ok()) return st.WithContext("StatsBundle report " + std::to_string(i));
    out.reports.push_back(std::move(r));
  }
  *b = std::move(out);
  return Status::OK();
}

}  // namespace dpmfs::metrics
