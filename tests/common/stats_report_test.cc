// The live histogram (buckets, merge, quantiles) and the stats report codec (bounded,
// versioned; bad and truncated bytes refused with the field named).
#include "common/stats_report.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/live_histogram.h"
#include "common/stats_prometheus.h"

namespace dpmfs::metrics {
namespace {

TEST(LiveHistogram, BucketsCoverEveryValueInOrder) {
  size_t prev = 0;
  for (uint64_t v : {0ull, 1ull, 15ull, 16ull, 17ull, 100ull, 1000ull, 123456ull, 1ull << 39,
                     (1ull << 40) - 1, 1ull << 40, ~0ull}) {
    const size_t b = HistogramBucketOf(v);
    ASSERT_LT(b, kHistogramBuckets) << v;
    EXPECT_GE(b, prev) << v;
    prev = b;
    if (v < (1ull << 40)) {
      EXPECT_LE(HistogramBucketLower(b), v) << v;
      EXPECT_LT(v, HistogramBucketLower(b) + HistogramBucketWidth(b)) << v;
    }
  }
  EXPECT_EQ(HistogramBucketOf(~0ull), kHistogramBuckets - 1);
}

TEST(LiveHistogram, QuantilesWithinTheBucketError) {
  LiveHistogram h;
  // 1..10000 µs: p50 = 5000 µs, p99 = 9900 µs, p999 = 9990 µs.
  for (uint64_t us = 1; us <= 10000; ++us) h.Record(us * 1000);
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 10000u);
  EXPECT_EQ(s.max_ns, 10000u * 1000);
  EXPECT_NEAR(s.Quantile(0.5), 5000e3, 5000e3 * 0.035);
  EXPECT_NEAR(s.Quantile(0.99), 9900e3, 9900e3 * 0.035);
  EXPECT_NEAR(s.Quantile(0.999), 9990e3, 9990e3 * 0.035);
  EXPECT_LE(s.Quantile(1.0), 10000e3);
  EXPECT_EQ(HistogramSnapshot{}.Quantile(0.5), 0);
}

TEST(LiveHistogram, MergeAddsCountsAndKeepsTheLargerMax) {
  LiveHistogram a, b;
  for (int i = 0; i < 900; ++i) a.Record(1000);
  for (int i = 0; i < 100; ++i) b.Record(1'000'000);
  HistogramSnapshot m = a.Snapshot();
  m.Merge(b.Snapshot());
  EXPECT_EQ(m.count, 1000u);
  EXPECT_EQ(m.sum_ns, 900u * 1000 + 100u * 1'000'000);
  EXPECT_EQ(m.max_ns, 1'000'000u);
  EXPECT_NEAR(m.Quantile(0.5), 1000, 1000 * 0.035);
  EXPECT_NEAR(m.Quantile(0.95), 1e6, 1e6 * 0.035);
}

TEST(LiveHistogram, ConcurrentRecordsAreAllCounted) {
  LiveHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 50000; ++i) h.Record(static_cast<uint64_t>(100 * (t + 1)));
    });
  }
  for (auto& t : threads) t.join();
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 200000u);
  EXPECT_EQ(s.sum_ns, 50000u * (100 + 200 + 300 + 400));
  EXPECT_EQ(s.max_ns, 400u);
}

StatsReport Sample() {
  StatsReport r;
  r.role = "meta";
  r.instance = "127.0.0.1:7000";
  r.Counter("requests", "lookup", 42);
  r.Gauge("sessions", "", 3);
  LiveHistogram h;
  h.Record(1500);
  h.Record(2500);
  h.Record(2'000'000);
  r.Histogram("op_latency", "lookup", h);
  LiveHistogram idle;
  r.Histogram("op_latency", "mkdir", idle);  // empty: left out
  return r;
}

TEST(StatsReport, RoundTrips) {
  const StatsReport r = Sample();
  ASSERT_EQ(r.histograms.size(), 1u);
  std::vector<uint8_t> bytes = EncodeStatsReport(r);
  StatsReport d;
  ASSERT_TRUE(DecodeStatsReport(bytes, &d).ok());
  EXPECT_EQ(d.role, "meta");
  EXPECT_EQ(d.instance, "127.0.0.1:7000");
  EXPECT_EQ(d.metrics, r.metrics);
  ASSERT_EQ(d.histograms.size(), 1u);
  EXPECT_EQ(d.histograms[0].snapshot.buckets, r.histograms[0].snapshot.buckets);
  EXPECT_EQ(d.histograms[0].snapshot.count, 3u);
  EXPECT_EQ(d.histograms[0].snapshot.sum_ns, 1500u + 2500 + 2'000'000);
  EXPECT_EQ(EncodeStatsReport(d), bytes);
  ASSERT_NE(d.Find("requests", "lookup"), nullptr);
  EXPECT_EQ(d.Find("requests", "lookup")->value, 42u);
}

TEST(StatsReport, EveryTruncationIsRefusedWithTheFieldNamed) {
  const std::vector<uint8_t> bytes = EncodeStatsReport(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    StatsReport d;
    d.role = "untouched";
    Status st = DecodeStatsReport({bytes.data(), n}, &d);
    ASSERT_FALSE(st.ok()) << n;
    EXPECT_NE(st.message().find("StatsReport"), std::string::npos) << st.ToString();
    EXPECT_EQ(d.role, "untouched") << "a refused report changed the output";
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  StatsReport d;
  EXPECT_NE(DecodeStatsReport(longer, &d).message().find("trailing"), std::string::npos);
}

TEST(StatsReport, BadBytesAreRefused) {
  const std::vector<uint8_t> good = EncodeStatsReport(Sample());
  auto refused = [](std::vector<uint8_t> b, const char* why) {
    StatsReport d;
    Status st = DecodeStatsReport(b, &d);
    EXPECT_FALSE(st.ok()) << why;
    return st.message();
  };
  {
    auto b = good;
    b[0] ^= 1;
    EXPECT_NE(refused(b, "magic").find("magic"), std::string::npos);
  }
  {
    auto b = good;
    b[4] = 2;  // version 2
    EXPECT_NE(refused(b, "version").find("version"), std::string::npos);
  }
  // Find the bucket list: the last 4 + 3 * 10 bytes when three buckets (1500, 2500 and
  // 2 ms fall in three different ones).
  const size_t buckets_at = good.size() - 3 * 10;
  {
    auto b = good;
    b[buckets_at + 10] = b[buckets_at];  // second index == first
    b[buckets_at + 11] = b[buckets_at + 1];
    EXPECT_NE(refused(b, "order").find("bucket.index"), std::string::npos);
  }
  {
    auto b = good;
    b[buckets_at] = 0xff;  // index 0xffff-ish, past the last bucket
    b[buckets_at + 1] = 0xff;
    EXPECT_NE(refused(b, "index").find("bucket.index"), std::string::npos);
  }
  {
    auto b = good;
    for (int i = 2; i < 10; ++i) b[buckets_at + i] = 0;  // a count of 0
    EXPECT_NE(refused(b, "zero").find("bucket.count"), std::string::npos);
  }
  {
    auto b = good;
    // The bucket count claims 2^32-1 elements: refused before anything is allocated.
    for (int i = 0; i < 4; ++i) b[buckets_at - 4 + i] = 0xff;
    EXPECT_NE(refused(b, "count").find("buckets"), std::string::npos);
  }
}

TEST(StatsBundle, RoundTripsAndRefusesABadReportInside) {
  std::vector<std::vector<uint8_t>> reports = {EncodeStatsReport(Sample()),
                                               EncodeStatsReport(Sample())};
  std::vector<uint8_t> bytes = EncodeStatsBundle(reports);
  StatsBundle b;
  ASSERT_TRUE(DecodeStatsBundle(bytes, &b).ok());
  ASSERT_EQ(b.reports.size(), 2u);
  EXPECT_EQ(b.reports[1].instance, "127.0.0.1:7000");
  reports[1][0] ^= 1;
  Status st = DecodeStatsBundle(EncodeStatsBundle(reports), &b);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("report 1"), std::string::npos) << st.ToString();
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeStatsBundle({bytes.data(), n}, &b).ok()) << n;
  }
}

TEST(StatsPrometheus, OneTypeLinePerFamilyAndEscapedLabels) {
  StatsReport r = Sample();
  r.instance = "a\"b\\c";
  r.Counter("requests", "getattr", 7);
  const std::string text = RenderPrometheus(r);
  EXPECT_NE(text.find("# TYPE dpmfs_requests_total counter\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("# TYPE dpmfs_requests_total"), text.rfind("# TYPE dpmfs_requests_total"));
  EXPECT_NE(text.find("instance=\"a\\\"b\\\\c\""), std::string::npos) << text;
  EXPECT_NE(text.find("dpmfs_op_latency_seconds_count{role=\"meta\""), std::string::npos);
  EXPECT_NE(text.find("quantile=\"0.999\""), std::string::npos);
  EXPECT_NE(text.find("# TYPE dpmfs_sessions gauge\n"), std::string::npos);
}

}  // namespace
}  // namespace dpmfs::metrics
