// libFuzzer target for the stats decoders (common/stats_report.h): a StatsReport comes
// from the wire twice (a data server's AdminReply, a client's PushStats to the metadata
// server) and a StatsBundle once (the metadata server's Stats reply to dpmfs-admin).
// The first input byte picks the decoder (even: report, odd: bundle). Properties:
//   - a refusal is a clean Status (fuzz_check.h);
//   - an accepted report re-encodes to exactly its bytes (the encoding is canonical:
//     buckets non-empty and strictly increasing), and its histograms' counts are the
//     sums of their buckets;
//   - an accepted bundle's reports re-encode and decode again to the same count.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "common/stats_report.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dpmfs;
  if (size == 0) return 0;
  const bool bundle = (data[0] & 1) != 0;
  // Exactly the input's size on the heap, so ASan sees a read past the end.
  auto buf = std::make_unique<uint8_t[]>(size - 1);
  if (size > 1) std::memcpy(buf.get(), data + 1, size - 1);
  const std::span<const uint8_t> in(buf.get(), size - 1);
  if (!bundle) {
    metrics::StatsReport r;
    Status st = metrics::DecodeStatsReport(in, &r);
    fuzz::CheckRefusal(st, "DecodeStatsReport");
    if (!st.ok()) return 0;
    const std::vector<uint8_t> again = metrics::EncodeStatsReport(r);
    FUZZ_CHECK(again.size() == in.size() && std::memcmp(again.data(), in.data(), in.size()) == 0,
               "an accepted report re-encodes to its bytes");
    for (const metrics::HistogramValue& h : r.histograms) {
      uint64_t sum = 0;
      for (uint64_t b : h.snapshot.buckets) sum += b;
      FUZZ_CHECK(sum == h.snapshot.count, "count is the sum of the buckets");
    }
    return 0;
  }
  metrics::StatsBundle b;
  Status st = metrics::DecodeStatsBundle(in, &b);
  fuzz::CheckRefusal(st, "DecodeStatsBundle");
  if (!st.ok()) return 0;
  std::vector<std::vector<uint8_t>> reports;
  for (const metrics::StatsReport& r : b.reports) reports.push_back(metrics::EncodeStatsReport(r));
  metrics::StatsBundle again;
  FUZZ_CHECK(metrics::DecodeStatsBundle(metrics::EncodeStatsBundle(reports), &again).ok(),
             "a re-encoded bundle decodes");
  FUZZ_CHECK(again.reports.size() == b.reports.size(), "same number of reports");
  return 0;
}
