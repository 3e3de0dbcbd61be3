// The full rebuild of a data server whose pool was deleted and formatted again
// (docs/replication.md, "Full rebuild"), from the metadata server's side: MetaService in
// process with a fake of the data servers that says which pool instance each serves
// and records every copy the resync makes. The same pool back after a failure gets its
// dirty set copied (nothing here: no writes); another pool gets every unit of every
// region whose copies it holds, whether it was seen down first or came back between two
// probes; and the pool the map recorded survives a restart of the metadata server.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "common/cluster_key.h"
#include "common/pool.h"
#include "metadata/data_server_access.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"
#include "tests/metadata/meta_test_pool.h"
#include "tests/metadata/service_over_fake_servers.h"

namespace dpmfs::meta {
namespace {

using namespace std::chrono_literals;
constexpr uint32_t kServers = 3;
constexpr uint64_t kUnitBytes = 64 << 10;
constexpr uint64_t kDataBytes = 16ull << 20;
// R = 2: each pool is two regions of kDataBytes / 2; a server holds copies of two of them.
constexpr uint64_t kUnitsHeld = 2 * (kDataBytes / 2) / kUnitBytes;

class InstanceAccess : public DataServerAccess {
 public:
  struct CopyDone {
    uint32_t from;
    uint32_t to;
    uint64_t to_offset;
    uint64_t length;
  };
  InstanceAccess() {
    for (uint32_t s = 0; s < kServers; ++s) instance[s] = 1000 + s;
  }
  Status Probe(uint32_t server) override {
    return down[server].load() ? Status::Unavailable("down (test)") : Status::OK();
  }
  uint64_t PoolInstance(uint32_t server) override {
    asked[server].fetch_add(1);
    return instance[server].load();
  }
  Status Copy(uint32_t from, uint64_t, uint32_t to, uint64_t to_offset,
              uint64_t length) override {
    std::lock_guard<std::mutex> lock(mu);
    copies.push_back({from, to, to_offset, length});
    return Status::OK();
  }
  Status InstallFence(uint32_t, uint64_t) override { return Status::OK(); }
  std::vector<CopyDone> Copies() {
    std::lock_guard<std::mutex> lock(mu);
    return copies;
  }

  std::atomic<bool> down[kServers] = {};
  std::atomic<uint64_t> instance[kServers] = {};
  std::atomic<uint64_t> asked[kServers] = {};
  std::mutex mu;
  std::vector<CopyDone> copies;
};

class PoolRebuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("pool-rebuild");
    path_ = dir_ + "/meta.pool";
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kMetadata, pool::ClusterUuid::Generate(), 0, 4096, 8ull << 20};
    ASSERT_TRUE(pool::FormatPool(path_, fo).ok());
    {
      auto mapped = pool::MappedPool::Open(path_, {});
      ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
      MetaFormatOptions mo;
      mo.stripe_unit = kUnitBytes;
      mo.replicas = 2;
      for (uint32_t i = 0; i < kServers; ++i) mo.data_pools.push_back({i, 4096, kDataBytes});
      ASSERT_TRUE(MetaStore::Format(*mapped, mo).ok());
    }
    StartService();
  }
  void StartService() {
    ASSERT_NO_FATAL_FAILURE(
        test_support::OpenServiceOverFakeServers(path_, kServers, &access_, key_, &svc_));
    svc_->Start();
  }
  void StopService() {
    if (svc_ != nullptr) {
      EXPECT_TRUE(svc_->Stop().ok());
    }
    svc_.reset();
  }
  void TearDown() override {
    StopService();
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }
  // Waits (up to 10 s) until `done` holds of the map.
  bool WaitFor(const std::function<bool(const ClusterMapReply&)>& done) {
    for (int i = 0; i < 1000; ++i) {
      if (done(svc_->cluster_map())) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // Until every server's pool was looked at twice since `base`: the first answer is
  // recorded (a journaled record) before the health thread probes that server again.
  void WaitSeen(uint64_t base = 0) {
    for (int i = 0; i < 1000; ++i) {
      bool all = true;
      for (uint32_t s = 0; s < kServers; ++s) all &= access_.asked[s].load() >= base + 2;
      if (all) return;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "the pools were not probed";
  }
  uint64_t Asked() {
    uint64_t most = 0;
    for (uint32_t s = 0; s < kServers; ++s) most = std::max(most, access_.asked[s].load());
    return most;
  }
  bool Up(uint32_t s) {
    return WaitFor([s](const ClusterMapReply& m) { return m.servers[s].state == DataServerState::kUp; });
  }
  // Every unit of the two regions whose copies live on `server` was copied to it once,
  // from another server.
  void ExpectRebuiltInFull(uint32_t server, size_t copies_before) {
    const std::vector<InstanceAccess::CopyDone> copies = access_.Copies();
    std::set<uint64_t> offsets;
    for (size_t i = copies_before; i < copies.size(); ++i) {
      const auto& c = copies[i];
      EXPECT_EQ(c.to, server);
      EXPECT_NE(c.from, server);
      EXPECT_EQ(c.length, kUnitBytes);
      EXPECT_EQ(c.to_offset % kUnitBytes, 0u);
      offsets.insert(c.to_offset);
    }
    EXPECT_EQ(copies.size() - copies_before, kUnitsHeld);
    EXPECT_EQ(offsets.size(), kUnitsHeld) << "a unit copied twice or missed";
    if (!offsets.empty()) {
      EXPECT_EQ(*offsets.begin(), 0u);
      EXPECT_EQ(*offsets.rbegin(), kDataBytes - kUnitBytes);
    }
  }

  std::string dir_;
  std::string path_;
  std::shared_ptr<const ClusterKey> key_ =
      std::make_shared<const ClusterKey>(ClusterKey::Generate());
  InstanceAccess access_;
  std::unique_ptr<MetaService> svc_;
};

TEST_F(PoolRebuildTest, TheSamePoolBackResyncsOnlyWhatItMissed) {
  WaitSeen();
  access_.down[1] = true;
  ASSERT_TRUE(WaitFor([](const ClusterMapReply& m) { return m.servers[1].state == DataServerState::kDown; }));
  access_.down[1] = false;
  ASSERT_TRUE(Up(1));
  // Nothing was written while it was down: nothing to copy.
  EXPECT_EQ(svc_->cluster_map().servers[1].resync_total_bytes, 0u);
  EXPECT_TRUE(access_.Copies().empty());
}

TEST_F(PoolRebuildTest, AFormattedPoolSeenDownFirstIsRebuiltInFull) {
  WaitSeen();
  access_.down[1] = true;
  ASSERT_TRUE(WaitFor([](const ClusterMapReply& m) { return m.servers[1].state == DataServerState::kDown; }));
  const uint64_t down_epoch = svc_->cluster_map().epoch;
  access_.instance[1] = 2001;  // deleted, formatted again, started
  access_.down[1] = false;
  ASSERT_TRUE(Up(1));
  const ClusterMapReply map = svc_->cluster_map();
  EXPECT_EQ(map.servers[1].resync_total_bytes, kUnitsHeld * kUnitBytes);
  EXPECT_EQ(map.servers[1].resync_done_bytes, kUnitsHeld * kUnitBytes);
  EXPECT_EQ(map.epoch, down_epoch + 2);  // resyncing, then up
  ExpectRebuiltInFull(1, 0);
  // The new pool is the map's now: later probes see nothing new.
  const uint64_t epoch = map.epoch;
  WaitSeen(Asked());
  EXPECT_EQ(svc_->cluster_map().epoch, epoch);
  EXPECT_EQ(access_.Copies().size(), kUnitsHeld);
}

TEST_F(PoolRebuildTest, AFormattedPoolBackBetweenTwoProbesIsTakenDownAndRebuilt) {
  WaitSeen();
  const uint64_t epoch = svc_->cluster_map().epoch;
  // Stopped, formatted and started again faster than two probes: never seen down.
  access_.instance[2] = 3002;
  ASSERT_TRUE(WaitFor([&](const ClusterMapReply& m) { return m.epoch >= epoch + 3; }));
  ASSERT_TRUE(Up(2));
  EXPECT_EQ(svc_->cluster_map().epoch, epoch + 3);  // down, resyncing, up
  ExpectRebuiltInFull(2, 0);
}

TEST_F(PoolRebuildTest, TheRecordedPoolSurvivesARestartOfTheMetadataServer) {
  WaitSeen();
  access_.down[0] = true;
  ASSERT_TRUE(WaitFor([](const ClusterMapReply& m) { return m.servers[0].state == DataServerState::kDown; }));
  StopService();
  // Formatted again while the metadata server was away too.
  access_.instance[0] = 4000;
  access_.down[0] = false;
  StartService();
  ASSERT_TRUE(Up(0));
  ExpectRebuiltInFull(0, 0);
  // And the new pool is remembered across another restart: no second rebuild.
  StopService();
  const uint64_t asked = Asked();
  StartService();
  WaitSeen(asked);
  EXPECT_TRUE(Up(0));
  EXPECT_EQ(access_.Copies().size(), kUnitsHeld);
}

}  // namespace
}  // namespace dpmfs::meta
