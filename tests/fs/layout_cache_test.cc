// The client's layout cache (fs/layout_cache.h): known ranges, holes, splitting and
// coalescing, and the epoch that keeps stale replies out.
#include "fs/layout_cache.h"

#include <gtest/gtest.h>

namespace dpmfs::fs {
namespace {

using meta::Extent;
using Kind = Segment::Kind;

TEST(LayoutCache, UnknownUntilToldThenHolesAreReal) {
  LayoutCache c;
  std::vector<Segment> segs;
  EXPECT_FALSE(c.Map(0, 100, &segs));
  std::vector<Extent> ex = {{4096, 8192, 1000 * 4096, 1, 0}};
  ASSERT_TRUE(c.InsertFetched(c.epoch(), ex, 0, 1 << 20));
  ASSERT_TRUE(c.Map(0, 20000, &segs));
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].kind, Kind::kHole);
  EXPECT_EQ(segs[0].length, 4096u);
  EXPECT_EQ(segs[1].kind, Kind::kWritten);
  EXPECT_EQ(segs[1].server, 1u);
  EXPECT_EQ(segs[1].pool_offset, 1000u * 4096);
  EXPECT_EQ(segs[2].kind, Kind::kHole);
  EXPECT_EQ(segs[2].file_offset, 12288u);
  EXPECT_EQ(segs[2].length, 20000u - 12288);
  // Unaligned range inside the extent: pool offset follows.
  ASSERT_TRUE(c.Map(5000, 5100, &segs));
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].pool_offset, 1000u * 4096 + 904);
  EXPECT_FALSE(c.Map((1 << 20) - 1, (1 << 20) + 1, &segs)) << "beyond the known range";
}

TEST(LayoutCache, StaleReplyIsNotInserted) {
  LayoutCache c;
  uint64_t epoch = c.epoch();
  c.Clear();  // e.g. a truncate while the Layout reply was in flight
  std::vector<Extent> ex = {{0, 4096, 0, 0, 0}};
  EXPECT_FALSE(c.InsertFetched(epoch, ex, 0, 4096));
  EXPECT_FALSE(c.IsKnown(0, 4096));
}

TEST(LayoutCache, ExpiresAndAFreshInsertDropsTheExpiredExtents) {
  using Clock = LayoutCache::Clock;
  LayoutCache c;
  std::vector<Segment> segs;
  const Clock::time_point t0 = Clock::now();
  std::vector<Extent> old_ex = {{0, 4096, 7 * 4096, 0, 0}};
  ASSERT_TRUE(c.InsertFetched(c.epoch(), old_ex, 0, 1 << 20, t0 + std::chrono::seconds(1)));
  EXPECT_TRUE(c.Map(0, 4096, &segs, t0 + std::chrono::milliseconds(999)));
  EXPECT_FALSE(c.Map(0, 4096, &segs, t0 + std::chrono::seconds(1)));
  EXPECT_FALSE(c.IsKnown(0, 4096, t0 + std::chrono::seconds(2)));

  // Already expired now: the next insert replaces everything, the old extent included.
  LayoutCache d;
  ASSERT_TRUE(d.InsertFetched(d.epoch(), old_ex, 0, 1 << 20, Clock::now() - std::chrono::milliseconds(1)));
  std::vector<Extent> new_ex = {{8192, 4096, 9 * 4096, 1, 0}};
  ASSERT_TRUE(d.InsertFetched(d.epoch(), new_ex, 4096, 1 << 20, Clock::now() + std::chrono::hours(1)));
  EXPECT_FALSE(d.IsKnown(0, 4096)) << "the expired known range is gone";
  ASSERT_TRUE(d.Map(4096, 12288, &segs));
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[0].kind, Kind::kHole);
  EXPECT_EQ(segs[1].server, 1u);

  // Validity is the earliest of what the cache holds: a later fresh insert does not
  // extend older extents' trust.
  LayoutCache e;
  const Clock::time_point t1 = Clock::now();
  ASSERT_TRUE(e.InsertFetched(e.epoch(), old_ex, 0, 4096, t1 + std::chrono::hours(1)));
  e.Insert(new_ex, t1 + std::chrono::hours(2));
  EXPECT_TRUE(e.Map(0, 4096, &segs, t1 + std::chrono::minutes(59)));
  EXPECT_FALSE(e.Map(8192, 12288, &segs, t1 + std::chrono::minutes(61)));
}

TEST(LayoutCache, MarkWrittenSplitsAndCoalesces) {
  LayoutCache c;
  std::vector<Extent> ex = {{0, 4 * 4096, 0, 0, Extent::kUnwritten | Extent::kSpeculative}};
  c.Insert(ex);
  c.MarkWritten(4096, 2 * 4096);
  std::vector<Segment> segs;
  ASSERT_TRUE(c.Map(0, 4 * 4096, &segs));
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].kind, Kind::kUnwritten);
  EXPECT_EQ(segs[1].kind, Kind::kWritten);
  EXPECT_EQ(segs[1].pool_offset, 4096u);
  EXPECT_EQ(segs[2].kind, Kind::kUnwritten);
  EXPECT_EQ(c.extent_count(), 3u);
  // Writing the rest block by block ends as one extent again.
  c.MarkWritten(0, 4096);
  c.MarkWritten(2 * 4096, 3 * 4096);
  c.MarkWritten(3 * 4096, 4 * 4096);
  EXPECT_EQ(c.extent_count(), 1u);
  ASSERT_TRUE(c.Map(0, 4 * 4096, &segs));
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].kind, Kind::kWritten);
}

TEST(LayoutCache, InsertReplacesOverlapsAndKeepsNonContiguousApart) {
  LayoutCache c;
  c.Insert(std::vector<Extent>{{0, 8 * 4096, 0, 0, Extent::kUnwritten}});
  c.Insert(std::vector<Extent>{{2 * 4096, 2 * 4096, 50 * 4096, 1, 0}});  // another server
  std::vector<Segment> segs;
  ASSERT_TRUE(c.Map(0, 8 * 4096, &segs));
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(segs[0].length, 2u * 4096);
  EXPECT_EQ(segs[1].server, 1u);
  EXPECT_EQ(segs[2].file_offset, 4u * 4096);
  EXPECT_EQ(segs[2].pool_offset, 4u * 4096);
  EXPECT_EQ(segs[2].kind, Kind::kUnwritten);
}

}  // namespace
}  // namespace dpmfs::fs
