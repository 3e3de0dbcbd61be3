// The cluster map (metadata/cluster_map.h) alone: the moves a data server may make,
// degraded-write records, resync bookkeeping, where a dirty unit's copy lies, and the
// checkpoint encoding with its checks. Journal replay of the map's records through the
// namespace is in namespace_test.cc (ClusterMap* cases).
#include "metadata/cluster_map.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "metadata/placement.h"

namespace dpmfs::meta {
namespace {

constexpr uint64_t kUnit = 1 << 20;
constexpr uint64_t kRegion = 16 * kUnit;

using S = DataServerState;

TEST(ClusterMap, FreshMapIsEpochOneAllUp) {
  ClusterMap m(3, 2, kUnit, kRegion);
  EXPECT_EQ(m.epoch(), 1u);
  EXPECT_TRUE(m.all_up());
  for (uint32_t s = 0; s < 3; ++s) EXPECT_EQ(m.state(s), S::kUp);
}

TEST(ClusterMap, OnlyTheDesignedMovesAreAllowedAndEachRaisesTheEpoch) {
  ClusterMap m(3, 2, kUnit, kRegion);
  EXPECT_EQ(m.CheckTransition(0, S::kResyncing), EINVAL);  // up -> resyncing
  EXPECT_EQ(m.CheckTransition(0, S::kUp), EINVAL);         // no change
  EXPECT_EQ(m.CheckTransition(3, S::kDown), EINVAL);       // no such server
  ASSERT_EQ(m.CheckTransition(0, S::kDown), 0);
  m.SetState(0, S::kDown);
  EXPECT_EQ(m.epoch(), 2u);
  EXPECT_FALSE(m.all_up());
  EXPECT_EQ(m.CheckTransition(0, S::kUp), EINVAL);  // down -> up skips the resync
  ASSERT_EQ(m.CheckTransition(0, S::kResyncing), 0);
  m.SetState(0, S::kResyncing);
  EXPECT_EQ(m.epoch(), 3u);
  ASSERT_EQ(m.CheckTransition(0, S::kUp), 0);  // nothing dirty
  ASSERT_EQ(m.CheckTransition(0, S::kDown), 0);
  m.SetState(0, S::kUp);
  EXPECT_EQ(m.epoch(), 4u);
}

TEST(ClusterMap, WritesWhileACopyIsDownDirtyThatServerOnly) {
  ClusterMap m(3, 2, kUnit, kRegion);
  // All up: nothing is recorded.
  EXPECT_EQ(m.NoteWrite(0, 0, kUnit), 0u);
  m.SetState(1, S::kDown);
  // Primary 0's copy 1 is on server 1; primary 1's copies are on 1 and 2; primary 2's
  // on 2 and 0: only the first two touch server 1.
  EXPECT_EQ(m.NoteWrite(0, kUnit + 5, 2 * kUnit), 3u);  // units 1, 2, 3 of primary 0
  EXPECT_EQ(m.NoteWrite(0, kUnit, 1), 0u);              // already recorded
  EXPECT_EQ(m.NoteWrite(1, 0, 1), 1u);
  EXPECT_EQ(m.NoteWrite(2, 0, kRegion), 0u);
  EXPECT_EQ(m.dirty(1).size(), 4u);
  EXPECT_TRUE(m.dirty(0).empty());
  EXPECT_TRUE(m.dirty(2).empty());
  // Outside a primary region or an unknown server: refused, nothing recorded.
  EXPECT_FALSE(m.ValidPrimaryRange(0, kRegion, 1));
  EXPECT_FALSE(m.ValidPrimaryRange(0, kRegion - 1, 2));
  EXPECT_FALSE(m.ValidPrimaryRange(3, 0, 1));
  EXPECT_FALSE(m.ValidPrimaryRange(0, 0, 0));
  EXPECT_EQ(m.NoteWrite(0, kRegion, kUnit), 0u);
  // One copy only: a write with its copy down has nowhere else to go; nothing to record.
  ClusterMap one(3, 1, kUnit, kRegion);
  one.SetState(0, S::kDown);
  EXPECT_EQ(one.NoteWrite(0, 0, kUnit), 0u);
}

TEST(ClusterMap, ResyncCountsProgressAndEndsWhenTheDirtySetIsEmpty) {
  ClusterMap m(3, 2, kUnit, kRegion);
  m.SetState(1, S::kDown);
  m.NoteWrite(0, 0, 3 * kUnit);
  // Not resyncing yet: progress is refused.
  std::vector<DirtyUnit> first = m.NextDirty(1, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(m.CheckResyncDone(1, first), EINVAL);
  m.SetState(1, S::kResyncing);
  EXPECT_EQ(m.Snapshot().servers[1].resync_total_bytes, 3 * kUnit);
  EXPECT_EQ(m.CheckResyncDone(1, first), 0);
  m.ResyncDone(1, first);
  EXPECT_EQ(m.CheckResyncDone(1, first), EINVAL);  // not dirty any more
  EXPECT_EQ(m.CheckTransition(1, S::kUp), EINVAL);  // one unit left
  ClusterMapReply snap = m.Snapshot();
  EXPECT_EQ(snap.servers[1].state, S::kResyncing);
  EXPECT_EQ(snap.servers[1].resync_done_bytes, 2 * kUnit);
  EXPECT_EQ(snap.servers[1].dirty_bytes, kUnit);
  m.ResyncDone(1, m.NextDirty(1, 10));
  EXPECT_EQ(m.CheckTransition(1, S::kUp), 0);
}

TEST(ClusterMap, CopyOffsetIsThePlacementsReplica) {
  const uint32_t n = 3, r = 3;
  auto placement = Placement::Make(r, 4096, {3 * kRegion, 3 * kRegion, 3 * kRegion});
  ASSERT_TRUE(placement.ok()) << placement.status().ToString();
  ASSERT_EQ(placement->region(), kRegion);
  ClusterMap m(n, r, kUnit, placement->PrimaryCapacity(0));
  for (uint32_t p = 0; p < n; ++p) {
    for (uint32_t k = 0; k < r; ++k) {
      const DirtyUnit u{p, 5};
      const ReplicaLocation at = placement->Replica(p, 5 * kUnit, k);
      EXPECT_EQ(m.CopyIndex(at.server, u), k);
      EXPECT_EQ(m.CopyOffset(at.server, u), at.pool_offset) << p << " " << k;
    }
  }
  // The last unit of a region that is not a whole number of units is short.
  ClusterMap odd(3, 2, kUnit, kRegion + 4096);
  EXPECT_EQ(odd.UnitLength(DirtyUnit{0, 16}), 4096u);
  EXPECT_EQ(odd.UnitLength(DirtyUnit{0, 15}), kUnit);
}

TEST(ClusterMap, FullRebuildDirtiesEveryUnitTheServerHolds) {
  ClusterMap m(3, 2, kUnit, kRegion);
  m.SetState(2, S::kDown);
  m.SetState(2, S::kResyncing, /*full_rebuild=*/true);
  // Its own primaries (copy 0) and server 1's (copy 1): two regions of 16 units.
  EXPECT_EQ(m.dirty(2).size(), 32u);
  for (const DirtyUnit& u : m.dirty(2)) EXPECT_TRUE(u.primary == 2 || u.primary == 1);
  EXPECT_EQ(m.Snapshot().servers[2].resync_total_bytes, 32 * kUnit);
}

std::vector<uint8_t> Encode(const ClusterMap& m) {
  codec::ByteSizer sizer;
  m.WriteTo(sizer);
  std::vector<uint8_t> out(sizer.size());
  codec::ByteWriter w(out.data());
  m.WriteTo(w);
  return out;
}

TEST(ClusterMap, CheckpointEncodingRoundTripsAndRefusesDamage) {
  ClusterMap m(3, 2, kUnit, kRegion);
  m.SetState(1, S::kDown);
  m.NoteWrite(0, 0, 4 * kUnit);
  m.SetState(1, S::kResyncing);
  m.ResyncDone(1, m.NextDirty(1, 1));
  m.SetState(0, S::kDown);
  const std::vector<uint8_t> bytes = Encode(m);

  ClusterMap back(3, 2, kUnit, kRegion);
  codec::ByteReader r(bytes, "map");
  back.ReadFrom(r, true);
  ASSERT_TRUE(r.Finish().ok());
  EXPECT_EQ(back.Snapshot(), m.Snapshot());
  EXPECT_EQ(back.dirty(1), m.dirty(1));
  EXPECT_EQ(Encode(back), bytes);

  // Another server count, a bad state, a unit outside the region: refused, and the map
  // read into keeps what it had.
  ClusterMap four(4, 2, kUnit, kRegion);
  codec::ByteReader r4(bytes, "map");
  four.ReadFrom(r4, true);
  EXPECT_FALSE(r4.ok());
  EXPECT_EQ(four.epoch(), 1u);
  std::vector<uint8_t> bad_state = bytes;
  bad_state[12] = 7;  // epoch u64, count u32, then server 0's state
  ClusterMap b1(3, 2, kUnit, kRegion);
  codec::ByteReader rs(bad_state, "map");
  b1.ReadFrom(rs, true);
  EXPECT_FALSE(rs.ok());
  EXPECT_TRUE(b1.all_up());
  ClusterMap small(3, 2, kUnit, 2 * kUnit);  // units 2, 3 do not exist there
  codec::ByteReader ru(bytes, "map");
  small.ReadFrom(ru, true);
  EXPECT_FALSE(ru.ok());
}

TEST(ClusterMap, AFullRebuildDirtiesEveryCopyTheServerHoldsAndRecordsItsPool) {
  ClusterMap m(3, 2, kUnit, kRegion);
  EXPECT_EQ(m.pool_instance(1), 0u);  // not seen yet
  EXPECT_EQ(m.CheckSetPoolInstance(1, 0), EINVAL);
  EXPECT_EQ(m.CheckSetPoolInstance(3, 7), EINVAL);
  ASSERT_EQ(m.CheckSetPoolInstance(1, 7), 0);
  m.SetPoolInstance(1, 7);
  EXPECT_EQ(m.pool_instance(1), 7u);
  EXPECT_EQ(m.epoch(), 1u);  // no state change, no epoch
  m.SetState(1, S::kDown);
  m.NoteWrite(0, 0, kUnit);  // one recorded write
  // Same pool back: only the recorded unit; the instance stays.
  ClusterMap same = m;
  same.SetState(1, S::kResyncing);
  EXPECT_EQ(same.dirty(1).size(), 1u);
  EXPECT_EQ(same.pool_instance(1), 7u);
  // A new pool: every unit of both regions whose copies it holds (its own primaries,
  // copy 0, and server 0's, copy 1), and the new instance with it.
  m.SetState(1, S::kResyncing, /*full_rebuild=*/true, 9);
  EXPECT_EQ(m.pool_instance(1), 9u);
  EXPECT_EQ(m.dirty(1).size(), 2 * kRegion / kUnit);
  for (const DirtyUnit& u : m.dirty(1)) EXPECT_TRUE(u.primary == 1 || u.primary == 0);
  EXPECT_EQ(m.Snapshot().servers[1].resync_total_bytes, 2 * kRegion);

  // The instances are in the checkpoint form (version 3) ...
  const std::vector<uint8_t> bytes = Encode(m);
  ClusterMap back(3, 2, kUnit, kRegion);
  codec::ByteReader r(bytes, "map");
  back.ReadFrom(r, true);
  ASSERT_TRUE(r.Finish().ok());
  EXPECT_EQ(back.pool_instance(1), 9u);
  EXPECT_EQ(back.pool_instance(0), 0u);
  EXPECT_EQ(Encode(back), bytes);
  // ... and a version-2 map (no instances: 8 bytes fewer per server) loads with none.
  ClusterMap fresh(3, 2, kUnit, kRegion);
  std::vector<uint8_t> old = Encode(fresh);
  for (int s = 2; s >= 0; --s) {
    const size_t at = 12 + s * (1 + 8 + 8 + 8 + 8) + 1;  // after server s's state
    old.erase(old.begin() + at, old.begin() + at + 8);
  }
  ClusterMap v2(3, 2, kUnit, kRegion);
  v2.SetPoolInstance(0, 5);
  codec::ByteReader r2(old, "map");
  v2.ReadFrom(r2, false);
  ASSERT_TRUE(r2.Finish().ok()) << r2.Finish().ToString();
  EXPECT_EQ(v2.pool_instance(0), 0u);
  EXPECT_TRUE(v2.all_up());
}

}  // namespace
}  // namespace dpmfs::meta
