// The metadata server's side of fencing (docs/replication.md, "Fencing"), MetaService in
// process with a fake DataServerAccess that records every fence it is asked to install
// and what a client could see at that moment: the heartbeat's token carries the map's
// epoch; a change that adds a server to the write set installs its epoch on every
// server of the new write set (the returning one first) before the epoch is visible in
// the map, a heartbeat or a token; a change that shrinks it installs none; a server
// that cannot take the fence leaves the write set before the returning one enters it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "common/cluster_key.h"
#include "common/pool.h"
#include "datapath/session_token.h"
#include "metadata/data_server_access.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"
#include "tests/metadata/service_over_fake_servers.h"
#include "tests/metadata/meta_test_pool.h"

namespace dpmfs::meta {
namespace {

using namespace std::chrono_literals;
constexpr uint32_t kServers = 3;

// What a client could learn from the service: the map's epoch and a heartbeat's.
struct Visible {
  uint64_t map_epoch = 0;
  uint64_t heartbeat_epoch = 0;
  uint64_t token_epoch = 0;
};

class RecordingAccess : public DataServerAccess {
 public:
  struct Install {
    uint32_t server;
    uint64_t epoch;
    Visible seen;  // at the moment of the install
  };

  Status Probe(uint32_t server) override {
    return down[server].load() ? Status::Unavailable("down (test)") : Status::OK();
  }
  uint64_t PoolInstance(uint32_t) override { return 0; }  // not said: pool_rebuild_test's
  Status Copy(uint32_t, uint64_t, uint32_t, uint64_t, uint64_t) override { return Status::OK(); }
  Status InstallFence(uint32_t server, uint64_t epoch) override {
    Visible seen = look != nullptr ? look() : Visible{};
    std::lock_guard<std::mutex> lock(mu);
    installs.push_back({server, epoch, seen});
    if (refuse_fence.count(server)) return Status::Unavailable("fence refused (test)");
    return Status::OK();
  }
  std::vector<Install> Installs() {
    std::lock_guard<std::mutex> lock(mu);
    return installs;
  }

  std::atomic<bool> down[kServers] = {};
  std::function<Visible()> look;
  std::mutex mu;
  std::vector<Install> installs;
  std::set<uint32_t> refuse_fence;
};

class ClusterFenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("cluster-fence");
    const std::string path = dir_ + "/meta.pool";
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kMetadata, pool::ClusterUuid::Generate(), 0, 4096, 8ull << 20};
    ASSERT_TRUE(pool::FormatPool(path, fo).ok());
    {
      auto mapped = pool::MappedPool::Open(path, {});
      ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
      MetaFormatOptions mo;
      mo.stripe_unit = 64 << 10;
      mo.replicas = 2;
      for (uint32_t i = 0; i < kServers; ++i) mo.data_pools.push_back({i, 4096, 16ull << 20});
      ASSERT_TRUE(MetaStore::Format(*mapped, mo).ok());
    }
    ASSERT_NO_FATAL_FAILURE(
        test_support::OpenServiceOverFakeServers(path, kServers, &access_, key_, &svc_));
    ASSERT_EQ(Call(Opcode::kRegister, Encode(RegisterRequest{"cluster_fence_test"}), nullptr), 0);
    access_.look = [this] { return Look(); };
    svc_->Start();
  }
  void TearDown() override {
    if (svc_ != nullptr) {
      EXPECT_TRUE(svc_->Stop().ok());
    }
    svc_.reset();
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  int Call(Opcode op, const std::vector<uint8_t>& request, std::vector<uint8_t>* body_out) {
    const std::vector<uint8_t> payload = EncodeCall(Credentials{}, request);
    rpc::RpcRequest r;
    r.opcode = static_cast<uint16_t>(op);
    r.session = 0x77;
    r.seq = ++seq_;
    r.payload = payload;
    auto reply = svc_->Handle(r);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    if (!reply.ok()) return -1;
    int err = -1;
    std::span<const uint8_t> body;
    EXPECT_TRUE(SplitReply(*reply, &err, &body).ok());
    if (body_out != nullptr) body_out->assign(body.begin(), body.end());
    return err;
  }
  HeartbeatReply Heartbeat() {
    std::vector<uint8_t> body;
    EXPECT_EQ(Call(Opcode::kHeartbeat, Encode(HeartbeatRequest{}), &body), 0);
    HeartbeatReply hb;
    EXPECT_TRUE(Decode(body, &hb).ok());
    return hb;
  }
  Visible Look() {
    Visible v;
    v.map_epoch = svc_->cluster_map().epoch;
    const HeartbeatReply hb = Heartbeat();
    v.heartbeat_epoch = hb.epoch;
    std::vector<uint8_t> bytes(hb.data_token.begin(), hb.data_token.end());
    auto t = datapath::VerifySessionToken(*key_, bytes, datapath::UnixMs());
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    v.token_epoch = t.ok() ? t->epoch : 0;
    return v;
  }
  // Waits (up to 10 s) until `done` holds of the map.
  bool WaitFor(const std::function<bool(const ClusterMapReply&)>& done) {
    for (int i = 0; i < 1000; ++i) {
      if (done(svc_->cluster_map())) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  DataServerState State(uint32_t s) { return svc_->cluster_map().servers[s].state; }

  std::string dir_;
  std::shared_ptr<const ClusterKey> key_ =
      std::make_shared<const ClusterKey>(ClusterKey::Generate());
  RecordingAccess access_;
  std::unique_ptr<MetaService> svc_;
  std::atomic<uint64_t> seq_{0};  // the health thread's fence installs heartbeat too
};

TEST_F(ClusterFenceTest, HeartbeatTokenCarriesTheMapsEpoch) {
  const Visible v = Look();
  EXPECT_EQ(v.token_epoch, v.map_epoch);
  EXPECT_EQ(v.heartbeat_epoch, v.map_epoch);
  EXPECT_GE(v.map_epoch, 1u);
}

TEST_F(ClusterFenceTest, FenceIsInstalledOnTheNewWriteSetBeforeItsEpochIsVisible) {
  // At start: the current epoch on every server (one may have restarted meanwhile).
  ASSERT_TRUE(WaitFor([&](const ClusterMapReply&) { return access_.Installs().size() >= kServers; }));
  for (const auto& in : access_.Installs()) EXPECT_EQ(in.epoch, 1u);

  // A server goes down: the write set shrinks, no fence.
  access_.down[1] = true;
  ASSERT_TRUE(WaitFor([](const ClusterMapReply& m) { return m.servers[1].state == DataServerState::kDown; }));
  const uint64_t down_epoch = svc_->cluster_map().epoch;
  EXPECT_EQ(access_.Installs().size(), kServers) << "a shrinking change installed a fence";

  // It answers again: down -> resyncing adds it to the write set.
  access_.down[1] = false;
  ASSERT_TRUE(WaitFor([&](const ClusterMapReply& m) { return m.epoch > down_epoch; }));
  const uint64_t grown = down_epoch + 1;
  std::vector<RecordingAccess::Install> fences;
  for (const auto& in : access_.Installs()) {
    if (in.epoch == grown) fences.push_back(in);
  }
  ASSERT_EQ(fences.size(), kServers) << "every server of the new write set takes the fence";
  EXPECT_EQ(fences[0].server, 1u) << "the returning server first";
  std::set<uint32_t> fenced;
  for (const auto& in : fences) {
    fenced.insert(in.server);
    // Nothing a client could see names the new epoch yet.
    EXPECT_EQ(in.seen.map_epoch, down_epoch) << "server " << in.server;
    EXPECT_EQ(in.seen.heartbeat_epoch, down_epoch) << "server " << in.server;
    EXPECT_EQ(in.seen.token_epoch, down_epoch) << "server " << in.server;
  }
  EXPECT_EQ(fenced, (std::set<uint32_t>{0, 1, 2}));
  // And once it is visible, tokens carry it.
  const Visible after = Look();
  EXPECT_GE(after.map_epoch, grown);
  EXPECT_EQ(after.token_epoch, after.map_epoch);
}

TEST_F(ClusterFenceTest, AServerThatCannotTakeTheFenceLeavesTheWriteSetFirst) {
  ASSERT_TRUE(WaitFor([&](const ClusterMapReply&) { return access_.Installs().size() >= kServers; }));
  access_.down[1] = true;
  ASSERT_TRUE(WaitFor([](const ClusterMapReply& m) { return m.servers[1].state == DataServerState::kDown; }));
  {
    std::lock_guard<std::mutex> lock(access_.mu);
    access_.refuse_fence = {2};
  }
  access_.down[1] = false;
  ASSERT_TRUE(WaitFor([](const ClusterMapReply& m) { return m.servers[1].state != DataServerState::kDown; }));
  // Server 2 refused: it is down, and the epoch that let server 1 back in was fenced on
  // every server not down in it (0 and 1), after server 2 had left.
  EXPECT_EQ(State(2), DataServerState::kDown);
  const ClusterMapReply map = svc_->cluster_map();
  uint64_t fenced_on_0 = 0, fenced_on_1 = 0;
  for (const auto& in : access_.Installs()) {
    if (in.server == 0) fenced_on_0 = std::max(fenced_on_0, in.epoch);
    if (in.server == 1) fenced_on_1 = std::max(fenced_on_1, in.epoch);
  }
  // Server 1 re-entered in the epoch right after server 2 went down; both fences are it.
  EXPECT_GE(fenced_on_0, 3u);
  EXPECT_EQ(fenced_on_0, fenced_on_1);
  EXPECT_LE(fenced_on_0, map.epoch);
  // While it refuses the fence, server 2 answers probes but is not let back in.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(State(2), DataServerState::kDown);
}

}  // namespace
}  // namespace dpmfs::meta
