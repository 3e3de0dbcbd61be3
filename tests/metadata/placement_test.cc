// The placement of a block's copies (metadata/placement.h): R = 1 is the identity over
// the whole pool; with R > 1 the copies of every block are on R distinct servers, in
// their own regions, and no two blocks' copies ever share a byte.
#include "metadata/placement.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <utility>

namespace dpmfs::meta {
namespace {

TEST(PlacementTest, OneCopyIsTheIdentityOverTheWholePool) {
  auto p = Placement::Make(1, 4096, {64 << 20, 32 << 20});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->PrimaryCapacity(0), 64u << 20);
  EXPECT_EQ(p->PrimaryCapacity(1), 32u << 20);
  EXPECT_EQ(p->Replica(1, 12345 * 4096, 0), (ReplicaLocation{1, 12345 * 4096}));
  EXPECT_TRUE(p->InPrimaryRegion(0, 0, 64 << 20));
  EXPECT_FALSE(p->InPrimaryRegion(1, 0, (32 << 20) + 4096));
}

TEST(PlacementTest, ChainedDeclusteringOverRegions) {
  // Three servers, the smallest pool decides the region: 30 MiB / 2 = 15 MiB.
  auto p = Placement::Make(2, 4096, {40 << 20, 30 << 20, 40 << 20});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->region(), 15u << 20);
  for (uint32_t s = 0; s < 3; ++s) EXPECT_EQ(p->PrimaryCapacity(s), 15u << 20);
  EXPECT_EQ(p->Replica(0, 4096, 0), (ReplicaLocation{0, 4096}));
  EXPECT_EQ(p->Replica(0, 4096, 1), (ReplicaLocation{1, (15 << 20) + 4096}));
  EXPECT_EQ(p->Replica(2, 0, 1), (ReplicaLocation{0, 15 << 20}));  // the chain wraps
  EXPECT_FALSE(p->InPrimaryRegion(1, 15 << 20, 4096));
}

TEST(PlacementTest, CopiesAreOnDistinctServersAndNeverOverlap) {
  for (uint32_t servers = 1; servers <= 5; ++servers) {
    for (uint32_t r = 1; r <= std::min(servers, kMaxReplicas); ++r) {
      SCOPED_TRACE(std::to_string(servers) + " servers, " + std::to_string(r) + " copies");
      constexpr uint64_t kBlock = 4096, kPool = 64 * kBlock;
      auto p = Placement::Make(r, kBlock, std::vector<uint64_t>(servers, kPool));
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      std::set<std::pair<uint32_t, uint64_t>> used;  // (server, block) of every copy
      for (uint32_t s = 0; s < servers; ++s) {
        for (uint64_t o = 0; o < p->PrimaryCapacity(s); o += kBlock) {
          std::set<uint32_t> holders;
          for (uint32_t k = 0; k < r; ++k) {
            ReplicaLocation at = p->Replica(s, o, k);
            ASSERT_LT(at.server, servers);
            ASSERT_LT(at.pool_offset, kPool);
            holders.insert(at.server);
            EXPECT_TRUE(used.insert({at.server, at.pool_offset}).second)
                << "two copies share server " << at.server << " offset " << at.pool_offset;
          }
          EXPECT_EQ(holders.size(), r);
        }
      }
    }
  }
}

TEST(PlacementTest, RefusesWhatCannotBePlaced) {
  EXPECT_FALSE(Placement::Make(0, 4096, {1 << 20}).ok());
  EXPECT_FALSE(Placement::Make(4, 4096, {1 << 20, 1 << 20, 1 << 20, 1 << 20}).ok());
  auto p = Placement::Make(2, 4096, {1 << 20});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("at least as many data servers"), std::string::npos);
  EXPECT_FALSE(Placement::Make(2, 4096, {4096, 1 << 20}).ok());  // a region of no block
  ClusterInfo c;
  c.block_size = 4096;
  c.replicas = 2;
  c.servers = {{0, "a:1", 8 << 20}, {1, "b:1", 8 << 20}};
  auto q = Placement::For(c);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->region(), 4u << 20);
}

}  // namespace
}  // namespace dpmfs::meta
