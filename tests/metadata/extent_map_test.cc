// ExtentMap: hand-written edge cases, a 1 TiB sparse file, and a randomized property test
// that runs Insert/Remove/MarkWritten/TrimSpeculative/Find/Holes/FullyWritten/SeekData
// against a per-unit reference model and checks the whole map (canonical merging
// included) after every step.
#include "metadata/extent_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "common/logging.h"

namespace dpmfs::meta {

// Readable failure messages (gtest would dump the padded bytes otherwise).
void PrintTo(const PoolRange& r, std::ostream* os) {
  *os << "{server " << r.server << ", pool " << r.pool_offset << ", +" << r.length << "}";
}
void PrintTo(const Extent& e, std::ostream* os) {
  *os << "{file " << e.file_offset << ", +" << e.length << ", server " << e.server << ", pool "
      << e.pool_offset << ", flags " << e.flags << "}";
}

namespace {

// Death tests match the message on stderr, where InitLogging sends it (as in the
// daemons); the default spdlog logger would print to stdout.
void LogToStderr() {
  static const bool done = InitLogging("extent_map_test", "").ok();
  ASSERT_TRUE(done);
}

constexpr uint64_t K = 4096;
constexpr uint32_t kU = Extent::kUnwritten;
constexpr uint32_t kS = Extent::kSpeculative;
constexpr uint64_t kTiB = uint64_t{1} << 40;
constexpr uint64_t kAll = std::numeric_limits<uint64_t>::max();

Extent E(uint64_t file_offset, uint64_t length, uint64_t pool_offset, uint32_t server = 0,
         uint32_t flags = 0) {
  Extent e;
  e.file_offset = file_offset;
  e.length = length;
  e.pool_offset = pool_offset;
  e.server = server;
  e.flags = flags;
  return e;
}

std::vector<Extent> All(const ExtentMap& m) {
  std::vector<Extent> v;
  m.ForEach([&](const Extent& e) { v.push_back(e); });
  return v;
}

std::vector<std::pair<uint64_t, uint64_t>> Pairs(const std::vector<ByteRange>& v) {
  std::vector<std::pair<uint64_t, uint64_t>> r;
  for (const auto& b : v) r.emplace_back(b.offset, b.length);
  return r;
}

// --- Hand-written cases ---

TEST(ExtentMapTest, EmptyMap) {
  ExtentMap m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.end(), 0u);
  EXPECT_EQ(m.allocated_bytes(), 0u);
  std::vector<Extent> out;
  EXPECT_FALSE(m.Find(0, 0, 10, &out));
  EXPECT_TRUE(out.empty());
  std::vector<ByteRange> holes;
  m.Holes(0, 8 * K, &holes);
  EXPECT_EQ(Pairs(holes), (std::vector<std::pair<uint64_t, uint64_t>>{{0, 8 * K}}));
  EXPECT_EQ(m.SeekData(0, 100 * K), -1);
  EXPECT_FALSE(m.FullyWritten(0, K));
  EXPECT_TRUE(m.FullyWritten(5, 0));
  std::vector<PoolRange> freed;
  EXPECT_EQ(m.Remove(0, kAll, &freed), 0u);
  EXPECT_EQ(m.TrimSpeculative(0, &freed), 0u);
  EXPECT_TRUE(freed.empty());
}

TEST(ExtentMapTest, InsertMergesWithBothNeighbours) {
  ExtentMap m;
  m.Insert(E(0, K, 100 * K));
  m.Insert(E(2 * K, 2 * K, 102 * K));
  EXPECT_EQ(m.extent_count(), 2u);
  m.Insert(E(K, K, 101 * K));  // fills the gap, continuing both in file and pool
  EXPECT_EQ(All(m), std::vector<Extent>{E(0, 4 * K, 100 * K)});
  EXPECT_EQ(m.allocated_bytes(), 4 * K);
  EXPECT_EQ(m.end(), 4 * K);
  m.Insert(E(4 * K, K, 104 * K));  // appends
  m.Insert(E(10 * K, K, 90 * K));  // separate
  EXPECT_EQ(All(m), (std::vector<Extent>{E(0, 5 * K, 100 * K), E(10 * K, K, 90 * K)}));
  EXPECT_EQ(m.allocated_bytes(), 6 * K);
}

TEST(ExtentMapTest, InsertKeepsIncompatibleNeighboursApart) {
  ExtentMap m;
  m.Insert(E(0, K, 0, 0));
  m.Insert(E(K, K, K, 1));           // other server
  m.Insert(E(2 * K, K, 2 * K, 1, kU));  // other flags
  m.Insert(E(3 * K, K, 9 * K, 1, kU));  // pool not contiguous
  m.Insert(E(5 * K, K, 10 * K, 1, kU));  // file not contiguous (pool is)
  EXPECT_EQ(m.extent_count(), 5u);
  EXPECT_EQ(m.allocated_bytes(), 5 * K);
  EXPECT_EQ(m.end(), 6 * K);
}

TEST(ExtentMapTest, FindClipsAndMovesPoolOffset) {
  ExtentMap m;
  m.Insert(E(4 * K, 4 * K, 100 * K, 2, kU));
  m.Insert(E(10 * K, 2 * K, 50 * K, 1));
  std::vector<Extent> out;
  EXPECT_FALSE(m.Find(5 * K + 7, K, 10, &out));  // unaligned: clipped to the byte
  EXPECT_EQ(out, std::vector<Extent>{E(5 * K + 7, K, 101 * K + 7, 2, kU)});
  out.clear();
  EXPECT_FALSE(m.Find(6 * K, 5 * K, 10, &out));
  EXPECT_EQ(out, (std::vector<Extent>{E(6 * K, 2 * K, 102 * K, 2, kU), E(10 * K, K, 50 * K, 1)}));
  out.clear();
  EXPECT_FALSE(m.Find(0, 0, 10, &out));  // length 0: to the end
  EXPECT_EQ(out, (std::vector<Extent>{E(4 * K, 4 * K, 100 * K, 2, kU), E(10 * K, 2 * K, 50 * K, 1)}));
  out.clear();
  EXPECT_FALSE(m.Find(8 * K, 2 * K, 10, &out));  // a hole only
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(m.Find(12 * K, 0, 10, &out));  // past the end
  EXPECT_TRUE(out.empty());
}

TEST(ExtentMapTest, FindStopsAtMaxAndAppends) {
  ExtentMap m;
  for (uint64_t i = 0; i < 5; ++i) m.Insert(E(i * 2 * K, K, i * 2 * K));
  std::vector<Extent> out{E(1, 1, 1)};  // appended to, not cleared
  EXPECT_TRUE(m.Find(0, 0, 3, &out));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[3], E(4 * K, K, 4 * K));
  out.clear();
  EXPECT_FALSE(m.Find(0, 0, 5, &out));  // exactly max: not truncated
  EXPECT_EQ(out.size(), 5u);
  out.clear();
  EXPECT_FALSE(m.Find(0, 9 * K, 5, &out));
  EXPECT_EQ(out.size(), 5u);
  out.clear();
  EXPECT_TRUE(m.Find(0, K, 0, &out));  // max 0 with something there
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(m.Find(K, K, 0, &out));  // max 0 over a hole
}

TEST(ExtentMapTest, HolesEdgeCases) {
  ExtentMap m;
  m.Insert(E(2 * K, 2 * K, 0));
  m.Insert(E(6 * K, K, 8 * K));
  std::vector<ByteRange> h;
  m.Holes(0, 10 * K, &h);
  EXPECT_EQ(Pairs(h), (std::vector<std::pair<uint64_t, uint64_t>>{
                          {0, 2 * K}, {4 * K, 2 * K}, {7 * K, 3 * K}}));
  h.clear();
  m.Holes(3 * K, 3 * K + 512, &h);  // starts inside an extent, ends inside the next
  EXPECT_EQ(Pairs(h), (std::vector<std::pair<uint64_t, uint64_t>>{{4 * K, 2 * K}}));
  h.clear();
  m.Holes(2 * K, 2 * K, &h);  // fully covered
  EXPECT_TRUE(h.empty());
  m.Holes(0, 0, &h);  // empty range
  EXPECT_TRUE(h.empty());
  m.Holes(6 * K, kAll, &h);  // saturates at 2^64
  EXPECT_EQ(Pairs(h), (std::vector<std::pair<uint64_t, uint64_t>>{{7 * K, kAll - 7 * K}}));
}

TEST(ExtentMapTest, RemoveSplitsInTheMiddle) {
  ExtentMap m;
  m.Insert(E(0, 8 * K, 100 * K, 3, kU));
  std::vector<PoolRange> freed;
  EXPECT_EQ(m.Remove(2 * K, 3 * K, &freed), 3 * K);
  EXPECT_EQ(freed, (std::vector<PoolRange>{{3, 102 * K, 3 * K}}));
  EXPECT_EQ(All(m), (std::vector<Extent>{E(0, 2 * K, 100 * K, 3, kU), E(5 * K, 3 * K, 105 * K, 3, kU)}));
  EXPECT_EQ(m.allocated_bytes(), 5 * K);
  // Across both remaining pieces and a hole; null `freed` is allowed.
  EXPECT_EQ(m.Remove(K, 5 * K, nullptr), 2 * K);
  EXPECT_EQ(All(m), (std::vector<Extent>{E(0, K, 100 * K, 3, kU), E(6 * K, 2 * K, 106 * K, 3, kU)}));
  EXPECT_EQ(m.Remove(3 * K, 0, &freed), 0u);  // length 0: nothing
  EXPECT_EQ(m.Remove(3 * K, kAll, &freed), 2 * K);  // to the end
  EXPECT_EQ(All(m), std::vector<Extent>{E(0, K, 100 * K, 3, kU)});
  EXPECT_EQ(m.end(), K);
}

TEST(ExtentMapTest, MarkWrittenSplitsThenRemerges) {
  ExtentMap m;
  m.Insert(E(0, 8 * K, 0, 0, kU | kS));
  EXPECT_EQ(m.MarkWritten(2 * K, K), K);
  EXPECT_EQ(All(m), (std::vector<Extent>{E(0, 2 * K, 0, 0, kU | kS), E(2 * K, K, 2 * K),
                                         E(3 * K, 5 * K, 3 * K, 0, kU | kS)}));
  EXPECT_FALSE(m.FullyWritten(2 * K, 2 * K));
  EXPECT_TRUE(m.FullyWritten(2 * K, K));
  EXPECT_EQ(m.MarkWritten(2 * K, K), 0u);  // already written: no change, no split left
  EXPECT_EQ(m.extent_count(), 3u);
  EXPECT_EQ(m.MarkWritten(0, 2 * K), 2 * K);
  EXPECT_EQ(m.MarkWritten(3 * K, 100 * K), 5 * K);  // runs past the end: allocated part
  EXPECT_EQ(All(m), std::vector<Extent>{E(0, 8 * K, 0)});
  EXPECT_TRUE(m.FullyWritten(0, 8 * K));
  EXPECT_FALSE(m.FullyWritten(0, 8 * K + 1));
  EXPECT_EQ(m.allocated_bytes(), 8 * K);
}

TEST(ExtentMapTest, TrimSpeculativeKeepsWrittenAndFallocated) {
  ExtentMap m;
  m.Insert(E(0, 4 * K, 0, 0, kU | kS));
  m.Insert(E(4 * K, K, 4 * K, 0, kU));       // fallocated: not speculative
  m.Insert(E(5 * K, K, 5 * K, 0, kS));       // written (flag left over): kept
  m.Insert(E(6 * K, 2 * K, 6 * K, 0, kU | kS));
  std::vector<PoolRange> freed;
  EXPECT_EQ(m.TrimSpeculative(2 * K, &freed), 4 * K);  // splits the first one
  EXPECT_EQ(freed, (std::vector<PoolRange>{{0, 2 * K, 2 * K}, {0, 6 * K, 2 * K}}));
  EXPECT_EQ(All(m), (std::vector<Extent>{E(0, 2 * K, 0, 0, kU | kS), E(4 * K, K, 4 * K, 0, kU),
                                         E(5 * K, K, 5 * K, 0, kS)}));
  EXPECT_EQ(m.allocated_bytes(), 4 * K);
  EXPECT_EQ(m.TrimSpeculative(4 * K + 1, &freed), 0u);  // straddled extent not trimmable
  EXPECT_EQ(m.extent_count(), 3u);
}

TEST(ExtentMapTest, SeekDataEdgeCases) {
  ExtentMap m;
  m.Insert(E(4 * K, 2 * K, 0));
  m.Insert(E(10 * K, K, 2 * K, 0, kU));  // unwritten counts as data
  const uint64_t size = 20 * K;
  EXPECT_EQ(m.SeekData(0, size), int64_t(4 * K));
  EXPECT_EQ(m.SeekData(4 * K, size), int64_t(4 * K));
  EXPECT_EQ(m.SeekData(5 * K + 3, size), int64_t(5 * K + 3));  // inside: itself
  EXPECT_EQ(m.SeekData(6 * K, size), int64_t(10 * K));          // an extent's end is a hole
  EXPECT_EQ(m.SeekData(11 * K, size), -1);                      // only a hole to EOF
  EXPECT_EQ(m.SeekData(size, size), -1);                        // at EOF
  EXPECT_EQ(m.SeekData(size + K, size), -1);                    // past EOF
  EXPECT_EQ(m.SeekData(7 * K, 10 * K), -1);   // next data starts at EOF: none before it
  EXPECT_EQ(m.SeekData(7 * K, 10 * K + 1), int64_t(10 * K));
  EXPECT_EQ(m.SeekData(5 * K, 5 * K + 1), int64_t(5 * K));  // EOF inside the extent
}

// A sparse file of more than 1 TiB: a few extents around 2^40, everything else a hole.
TEST(ExtentMapTest, TebibyteSparseFile) {
  ExtentMap m;
  m.Insert(E(0, K, 0, 0));
  m.Insert(E(kTiB - K, K, 8 * K, 1, kU));
  m.Insert(E(kTiB, 4 * K, 9 * K, 1));            // continues in the pool, other flags
  m.Insert(E(kTiB + 1024 * K, K, 100 * K, 0, kU | kS));
  const uint64_t size = kTiB + 4 * K;
  EXPECT_EQ(m.end(), kTiB + 1025 * K);
  EXPECT_EQ(m.allocated_bytes(), 7 * K);
  EXPECT_EQ(m.extent_count(), 4u);

  std::vector<Extent> out;
  EXPECT_FALSE(m.Find(K, kTiB, 100, &out));
  EXPECT_EQ(out, (std::vector<Extent>{E(kTiB - K, K, 8 * K, 1, kU), E(kTiB, K, 9 * K, 1)}));
  std::vector<ByteRange> h;
  m.Holes(0, size, &h);
  EXPECT_EQ(Pairs(h), (std::vector<std::pair<uint64_t, uint64_t>>{{K, kTiB - 2 * K}}));
  EXPECT_EQ(m.SeekData(K, size), int64_t(kTiB - K));
  EXPECT_EQ(m.SeekData(kTiB + 4 * K, size), -1);  // speculative blocks past EOF

  // Writing the unwritten block makes it merge across 2^40 with its pool neighbour.
  EXPECT_EQ(m.MarkWritten(kTiB - K, K), K);
  EXPECT_EQ(m.extent_count(), 3u);
  EXPECT_TRUE(m.FullyWritten(kTiB - K, 5 * K));
  std::vector<PoolRange> freed;
  EXPECT_EQ(m.TrimSpeculative(size, &freed), K);
  EXPECT_EQ(freed, (std::vector<PoolRange>{{0, 100 * K, K}}));
  freed.clear();
  // Truncate to 2 KiB... past 2^40 - 2 KiB: splits the merged extent.
  EXPECT_EQ(m.Remove(kTiB - K / 2, kAll, &freed), 4 * K + K / 2);
  EXPECT_EQ(freed, (std::vector<PoolRange>{{1, 8 * K + K / 2, 4 * K + K / 2}}));
  EXPECT_EQ(m.end(), kTiB - K / 2);
  EXPECT_EQ(m.allocated_bytes(), K + K / 2);
}

TEST(ExtentMapDeathTest, InsertOverlapAborts) {
  LogToStderr();
  ExtentMap m;
  m.Insert(E(4 * K, 4 * K, 0));
  EXPECT_DEATH(m.Insert(E(7 * K, 2 * K, 100 * K)), "overlaps");
  EXPECT_DEATH(m.Insert(E(2 * K, 3 * K, 100 * K)), "overlaps");
  EXPECT_DEATH(m.Insert(E(0, 16 * K, 100 * K)), "overlaps");
  EXPECT_DEATH(m.Insert(E(5 * K, K, 100 * K)), "overlaps");
  EXPECT_DEATH(m.Insert(E(0, 0, 0)), "empty extent");
}

// --- Randomized property test against a per-unit model ---

struct Cell {
  bool present = false;
  uint32_t server = 0;
  uint64_t pool = 0;  // in units
  uint32_t flags = 0;
};

constexpr size_t kUnits = 64;        // file units that can hold data
constexpr size_t kModelUnits = 80;   // queries look a little past them
constexpr uint32_t kServers = 2;
constexpr size_t kPoolUnits = 4 * kUnits;

class ExtentModel {
 public:
  ExtentModel(uint64_t base, uint64_t unit)
      : base_(base), unit_(unit), cells_(kModelUnits), pool_used_(kServers, std::vector<bool>(kPoolUnits)) {}

  uint64_t Off(size_t i) const { return base_ + i * unit_; }
  uint64_t Len(size_t n) const { return n * unit_; }
  const Cell& cell(size_t i) const { return cells_[i]; }
  bool PoolFree(uint32_t server, uint64_t pool, size_t n) const {
    if (pool + n > kPoolUnits) return false;
    for (size_t i = 0; i < n; ++i)
      if (pool_used_[server][pool + i]) return false;
    return true;
  }
  void Insert(size_t i, size_t n, uint32_t server, uint64_t pool, uint32_t flags) {
    for (size_t k = 0; k < n; ++k) {
      cells_[i + k] = Cell{true, server, pool + k, flags};
      pool_used_[server][pool + k] = true;
    }
  }
  void Drop(size_t i) {
    pool_used_[cells_[i].server][cells_[i].pool] = false;
    cells_[i] = Cell{};
  }
  // Maximal runs of cells in [lo, hi) satisfying `pred` that form one extent, as the
  // canonical ExtentMap would hold them (clipped to [lo, hi)).
  template <typename Pred>
  std::vector<Extent> Runs(size_t lo, size_t hi, Pred pred) const {
    std::vector<Extent> v;
    hi = std::min(hi, kModelUnits);
    for (size_t i = lo; i < hi; ++i) {
      const Cell& c = cells_[i];
      if (!c.present || !pred(c)) continue;
      if (!v.empty()) {
        Extent& last = v.back();
        if (last.file_offset + last.length == Off(i) && last.server == c.server &&
            last.flags == c.flags && last.pool_offset + last.length == c.pool * unit_) {
          last.length += unit_;
          continue;
        }
      }
      v.push_back(E(Off(i), unit_, c.pool * unit_, c.server, c.flags));
    }
    return v;
  }
  std::vector<Extent> Runs(size_t lo, size_t hi) const {
    return Runs(lo, hi, [](const Cell&) { return true; });
  }
  size_t Present() const {
    size_t n = 0;
    for (const Cell& c : cells_) n += c.present;
    return n;
  }

 private:
  uint64_t base_, unit_;
  std::vector<Cell> cells_;
  std::vector<std::vector<bool>> pool_used_;
};

std::vector<PoolRange> ToPool(const std::vector<Extent>& v) {
  std::vector<PoolRange> r;
  for (const Extent& e : v) r.push_back({e.server, e.pool_offset, e.length});
  return r;
}

// (seed, unit bytes, base file offset)
class ExtentMapPropertyTest
    : public ::testing::TestWithParam<std::tuple<uint32_t, uint64_t, uint64_t>> {};

TEST_P(ExtentMapPropertyTest, MatchesModel) {
  // Named variables, not a structured binding: the lambdas below capture them, which
  // clang before 16 refuses for structured bindings (the fuzz and sanitizer builds).
  const uint32_t seed = std::get<0>(GetParam());
  const uint64_t unit = std::get<1>(GetParam());
  const uint64_t base = std::get<2>(GetParam());
  std::mt19937_64 rng(seed);
  auto rnd = [&](uint64_t lo, uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  ExtentModel model(base, unit);
  ExtentMap m;
  // Cells removed recently, re-inserted verbatim now and then to provoke double merges.
  std::vector<std::tuple<size_t, size_t, Cell>> removed;
  size_t inserts = 0, merges = 0;

  auto remember_removed = [&](const std::vector<Extent>& pieces) {
    for (const Extent& e : pieces) {
      Cell c{true, e.server, e.pool_offset / unit, e.flags};
      removed.emplace_back((e.file_offset - base) / unit, e.length / unit, c);
    }
    if (removed.size() > 16) removed.erase(removed.begin(), removed.end() - 16);
  };
  // A random query range [lo, hi) in units, sometimes empty or running past the model.
  auto query = [&]() -> std::pair<size_t, size_t> {
    const size_t lo = rnd(0, kModelUnits - 1);
    return {lo, rnd(lo, kModelUnits)};
  };

  for (int step = 0; step < 4000; ++step) {
    SCOPED_TRACE(testing::Message() << "step " << step);
    const uint64_t op = rnd(0, 99);
    if (op < 35) {  // Insert
      size_t i = 0, n = 0;
      uint32_t server = 0, flags = 0;
      uint64_t pool = 0;
      bool ok = false;
      if (!removed.empty() && rnd(0, 4) == 0) {  // put a removed piece back
        const size_t pick = rnd(0, removed.size() - 1);
        const auto [ri, rn, rc] = removed[pick];
        removed.erase(removed.begin() + pick);
        ok = model.PoolFree(rc.server, rc.pool, rn);
        for (size_t k = 0; ok && k < rn; ++k) ok = !model.cell(ri + k).present;
        i = ri, n = rn, server = rc.server, pool = rc.pool, flags = rc.flags;
      } else {
        size_t start = rnd(0, kUnits - 1);
        while (start < kUnits && model.cell(start).present) ++start;
        if (start == kUnits) continue;
        size_t hole_end = start;
        while (hole_end < kUnits && !model.cell(hole_end).present) ++hole_end;
        i = rnd(start, hole_end - 1);
        n = rnd(0, 1) ? rnd(1, hole_end - i) : std::min<size_t>(rnd(1, 4), hole_end - i);
        static constexpr uint32_t kFlagChoices[] = {0, kU, kU | kS, kS};
        flags = kFlagChoices[rnd(0, 9) < 9 ? rnd(0, 2) : 3];
        server = static_cast<uint32_t>(rnd(0, kServers - 1));
        const uint64_t how = rnd(0, 9);
        if (how < 4 && i > 0 && model.cell(i - 1).present) {  // continue the left one
          const Cell& l = model.cell(i - 1);
          server = l.server, flags = l.flags, pool = l.pool + 1;
          ok = model.PoolFree(server, pool, n);
        } else if (how < 7 && i + n < kModelUnits && model.cell(i + n).present &&
                   model.cell(i + n).pool >= n) {  // run into the right one
          const Cell& r = model.cell(i + n);
          server = r.server, flags = r.flags, pool = r.pool - n;
          ok = model.PoolFree(server, pool, n);
        }
        for (int tries = 0; !ok && tries < 20; ++tries) {
          pool = rnd(0, kPoolUnits - n);
          ok = model.PoolFree(server, pool, n);
        }
      }
      if (!ok) continue;
      const size_t before = m.extent_count();
      m.Insert(E(model.Off(i), model.Len(n), pool * unit, server, flags));
      model.Insert(i, n, server, pool, flags);
      ++inserts;
      if (m.extent_count() <= before) ++merges;
    } else if (op < 50) {  // Remove
      const size_t lo = rnd(0, kModelUnits - 1);
      const uint64_t kind = rnd(0, 9);
      const size_t hi = kind == 0 ? kModelUnits : rnd(lo, kModelUnits);
      const uint64_t length = kind == 0 ? kAll : model.Len(hi - lo);
      const std::vector<Extent> expect = model.Runs(lo, hi);
      std::vector<PoolRange> freed{{9, 9, 9}};
      const uint64_t got = m.Remove(model.Off(lo), length, &freed);
      ASSERT_EQ(freed.front(), (PoolRange{9, 9, 9}));  // appended
      freed.erase(freed.begin());
      uint64_t bytes = 0;
      for (const Extent& e : expect) bytes += e.length;
      ASSERT_EQ(got, bytes);
      ASSERT_EQ(freed, ToPool(expect));
      for (size_t k = lo; k < hi; ++k)
        if (model.cell(k).present) model.Drop(k);
      remember_removed(expect);
    } else if (op < 65) {  // MarkWritten
      auto [lo, hi] = query();
      uint64_t expect = 0;
      std::vector<std::tuple<size_t, Cell>> changed;
      for (size_t k = lo; k < hi; ++k) {
        const Cell& c = model.cell(k);
        if (c.present && (c.flags & (kU | kS)) != 0) changed.emplace_back(k, c);
      }
      for (auto& [k, c] : changed) {
        model.Drop(k);
        model.Insert(k, 1, c.server, c.pool, c.flags & ~(kU | kS));
        expect += unit;
      }
      ASSERT_EQ(m.MarkWritten(model.Off(lo), model.Len(hi - lo)), expect);
    } else if (op < 73) {  // TrimSpeculative
      const size_t lo = rnd(0, kModelUnits);
      auto trimmable = [](const Cell& c) { return (c.flags & (kU | kS)) == (kU | kS); };
      const std::vector<Extent> expect = model.Runs(lo, kModelUnits, trimmable);
      std::vector<PoolRange> freed;
      uint64_t bytes = 0;
      for (const Extent& e : expect) bytes += e.length;
      ASSERT_EQ(m.TrimSpeculative(model.Off(lo), &freed), bytes);
      ASSERT_EQ(freed, ToPool(expect));
      for (size_t k = lo; k < kModelUnits; ++k)
        if (model.cell(k).present && trimmable(model.cell(k))) model.Drop(k);
      remember_removed(expect);
    } else if (op < 83) {  // Find
      auto [lo, hi] = query();
      const bool to_end = rnd(0, 4) == 0 || hi == lo;  // length 0 means "to the end"
      if (to_end) hi = kModelUnits;
      const size_t max = rnd(0, 3) == 0 ? rnd(0, 3) : 1000;
      std::vector<Extent> expect = model.Runs(lo, hi);
      const bool expect_truncated = expect.size() > max;
      if (expect_truncated) expect.resize(max);
      std::vector<Extent> out;
      const bool truncated =
          m.Find(model.Off(lo), to_end ? 0 : model.Len(hi - lo), max, &out);
      ASSERT_EQ(truncated, expect_truncated);
      ASSERT_EQ(out, expect);
    } else if (op < 90) {  // Holes
      auto [lo, hi] = query();
      std::vector<std::pair<uint64_t, uint64_t>> expect;
      for (size_t k = lo; k < hi; ++k) {
        if (model.cell(k).present) continue;
        if (!expect.empty() && expect.back().first + expect.back().second == model.Off(k))
          expect.back().second += unit;
        else
          expect.emplace_back(model.Off(k), unit);
      }
      std::vector<ByteRange> out;
      m.Holes(model.Off(lo), model.Len(hi - lo), &out);
      ASSERT_EQ(Pairs(out), expect);
    } else if (op < 95) {  // FullyWritten
      auto [lo, hi] = query();
      bool expect = true;
      for (size_t k = lo; k < hi; ++k)
        expect = expect && model.cell(k).present && (model.cell(k).flags & kU) == 0;
      ASSERT_EQ(m.FullyWritten(model.Off(lo), model.Len(hi - lo)), expect);
    } else {  // SeekData, at byte granularity
      const uint64_t off = base + rnd(0, model.Len(kModelUnits));
      const uint64_t size = base + rnd(0, model.Len(kModelUnits));
      int64_t expect = -1;
      for (size_t k = (off - base) / unit; k < kModelUnits; ++k) {
        if (!model.cell(k).present) continue;
        const uint64_t pos = std::max(off, model.Off(k));
        if (pos < size) expect = static_cast<int64_t>(pos);
        break;
      }
      if (off >= size) expect = -1;
      ASSERT_EQ(m.SeekData(off, size), expect);
    }

    // The whole map, canonical (maximally merged), and its counters.
    const std::vector<Extent> want = model.Runs(0, kModelUnits);
    ASSERT_EQ(All(m), want);
    ASSERT_EQ(m.allocated_bytes(), model.Present() * unit);
    ASSERT_EQ(m.extent_count(), want.size());
    ASSERT_EQ(m.empty(), want.empty());
    ASSERT_EQ(m.end(), want.empty() ? 0 : want.back().file_offset + want.back().length);
  }
  // The run must have exercised what it claims to.
  EXPECT_GT(inserts, 500u);
  EXPECT_GT(merges, 50u);
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, ExtentMapPropertyTest,
    ::testing::Combine(::testing::Values(1u, 2u, 3u, 4u),
                       ::testing::Values(uint64_t{4096}, uint64_t{1}),
                       ::testing::Values(uint64_t{0}, kTiB - 32 * 4096)));

}  // namespace
}  // namespace dpmfs::meta
