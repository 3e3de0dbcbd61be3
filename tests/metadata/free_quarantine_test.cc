// The free quarantine (metadata/free_quarantine.h): freed blocks go back to the
// allocators only after free_quarantine_ms, because clients may still WRITE them through
// cached layouts. Unit tests of FreeQuarantine on a driven clock, then MetaService in
// process on the real clock: an Allocate that needs quarantined space waits for it
// instead of failing, statfs counts quarantined blocks as used, and after a start
// nothing is allocated for one quarantine (the restart rule).
//
// Timing: assertions are one-sided so that a slow machine cannot fail them. "Not before
// X" is checked against the time the request was sent (the server acted later); "after"
// is checked by polling past X.
#include "metadata/free_quarantine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "common/pool.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"
#include "rpc/rpc_server.h"
#include "tests/metadata/meta_test_pool.h"

namespace dpmfs::meta {
namespace {

constexpr uint32_t kBlock = 4096;

// ---------------------------------------------------------------------------------------
// FreeQuarantine

TEST(FreeQuarantine, ReleasesInOrderAtTheirTime) {
  std::vector<BlockAllocator> alloc;
  alloc.emplace_back(0, 64 * kBlock, kBlock);
  alloc.emplace_back(1, 64 * kBlock, kBlock);
  std::vector<PoolRange> all;
  ASSERT_TRUE(alloc[0].Allocate(64 * kBlock, BlockAllocator::kNoHint, &all));
  ASSERT_TRUE(alloc[1].Allocate(64 * kBlock, BlockAllocator::kNoHint, &all));
  FreeQuarantine q(2);
  EXPECT_EQ(q.next_release_ms(), INT64_MAX);
  q.Add({0, 0, 2 * kBlock}, 100);
  q.Add({0, 2 * kBlock, kBlock}, 100);  // continues the previous range: merged
  q.Add({1, 8 * kBlock, kBlock}, 150);
  q.Add({0, 10 * kBlock, 4 * kBlock}, 200);
  q.Add({0, 20 * kBlock, kBlock}, 120);  // earlier than what is queued: held to 200
  EXPECT_EQ(q.bytes(0), 8u * kBlock);
  EXPECT_EQ(q.bytes(1), 1u * kBlock);
  EXPECT_EQ(q.bytes(), 9u * kBlock);
  EXPECT_EQ(q.next_release_ms(), 100);
  EXPECT_EQ(q.Release(99, alloc), 0u);
  EXPECT_EQ(alloc[0].free_bytes(), 0u);
  EXPECT_EQ(q.Release(100, alloc), 3u * kBlock);
  EXPECT_EQ(alloc[0].free_bytes(), 3u * kBlock);
  EXPECT_EQ(q.next_release_ms(), 150);
  EXPECT_EQ(q.Release(199, alloc), 1u * kBlock);
  EXPECT_EQ(alloc[1].free_bytes(), 1u * kBlock);
  EXPECT_EQ(q.bytes(0), 5u * kBlock);
  EXPECT_EQ(q.Release(200, alloc), 5u * kBlock);
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_EQ(alloc[0].free_bytes(), 8u * kBlock);
}

TEST(FreeQuarantine, SpaceAtAndTheHold) {
  FreeQuarantine q(2);
  q.Add({0, 0, 2 * kBlock}, 100);
  q.Add({0, 8 * kBlock, 3 * kBlock}, 130);
  // Enough free already: now (no hold).
  EXPECT_EQ(q.SpaceAt(0, kBlock, kBlock, 50), 50);
  // 1 free + 2 at 100 = 3; + 3 at 130 = 6; never 7.
  EXPECT_EQ(q.SpaceAt(0, 3 * kBlock, kBlock, 50), 100);
  EXPECT_EQ(q.SpaceAt(0, 4 * kBlock, kBlock, 50), 130);
  EXPECT_EQ(q.SpaceAt(0, 6 * kBlock, kBlock, 50), 130);
  EXPECT_EQ(q.SpaceAt(0, 7 * kBlock, kBlock, 50), -1);
  EXPECT_EQ(q.SpaceAt(1, kBlock, 0, 50), -1);  // nothing held on pool 1
  EXPECT_EQ(q.SpaceAt(7, kBlock, 0, 50), -1);  // no such pool
  q.HoldAllUntil(120);
  EXPECT_TRUE(q.Holding(119));
  EXPECT_FALSE(q.Holding(120));
  EXPECT_EQ(q.SpaceAt(0, kBlock, kBlock, 50), 120);
  EXPECT_EQ(q.SpaceAt(0, 3 * kBlock, kBlock, 50), 120);
  EXPECT_EQ(q.SpaceAt(0, 4 * kBlock, kBlock, 50), 130);
  q.Reset(2);
  EXPECT_FALSE(q.Holding(0));
  EXPECT_EQ(q.bytes(), 0u);
}

// ---------------------------------------------------------------------------------------
// MetaService in process, real clock

using Clock = std::chrono::steady_clock;
constexpr uint32_t kUnit = 16 * kBlock;
constexpr uint64_t kPoolBytes = 64 * kBlock;  // per data pool; two pools

class QuarantineServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("quarantine-test");
    pool_ = dir_ + "/meta.pool";
    TestMetaPool p;
    p.block_size = kBlock;
    p.pool_size = 8ull << 20;
    p.stripe_unit = kUnit;
    p.data_pool_bytes = kPoolBytes;
    ASSERT_NO_FATAL_FAILURE(FormatTestMetaPool(pool_, p));
  }
  void TearDown() override {
    if (svc_ != nullptr) {
      EXPECT_TRUE(svc_->Stop().ok());
      svc_.reset();
    }
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  void Open(uint32_t quarantine_ms, RangeZeroer* zeroer = nullptr) {
    if (svc_ != nullptr) {
      ASSERT_TRUE(svc_->Stop().ok());
      svc_.reset();
    }
    pool::OpenExpectations ex;
    ex.role = pool::Role::kMetadata;
    auto store = MetaStore::Open(pool_, ex);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    MetaServiceOptions so;
    so.data_endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
    // The lease thread (which also releases due ranges for statfs) runs every second;
    // the test's session must not lapse (its speculative blocks would be freed).
    so.lease_ms = 4000;
    so.free_quarantine_ms = quarantine_ms;
    so.checkpoint_on_stop = checkpoint_on_stop_;
    so.zeroer = zeroer;
    auto svc = MetaService::Open(std::move(*store), so, nullptr);
    ASSERT_TRUE(svc.ok()) << svc.status().ToString();
    svc_ = std::move(*svc);
    svc_->Start();
  }

  // One request through MetaService::Handle; the reply's errno, its body decoded.
  template <class Req, class Rep>
  int Call(Opcode op, const Req& req, Rep* rep) {
    std::vector<uint8_t> payload = EncodeCall(Credentials{}, Encode(req));
    rpc::RpcRequest r;
    r.opcode = static_cast<uint16_t>(op);
    r.session = 0x51;
    r.seq = ++seq_;
    r.payload = payload;
    auto reply = svc_->Handle(r);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    if (!reply.ok()) return -1;
    int err = 0;
    std::span<const uint8_t> body;
    EXPECT_TRUE(SplitReply(*reply, &err, &body).ok());
    if (err == 0 && rep != nullptr) {
      EXPECT_TRUE(Decode(body, rep).ok());
    }
    return err;
  }
  InodeId Create(const std::string& name) {
    CreateReply r;
    EXPECT_EQ(Call(Opcode::kCreate, CreateRequest{kRootInode, name, S_IFREG | 0644, 0, 0, 0}, &r),
              0);
    return r.attr.ino;
  }
  int Allocate(InodeId ino, uint64_t off, uint64_t len, std::vector<Extent>* out = nullptr) {
    AllocateReply r;
    int e = Call(Opcode::kAllocate, AllocateRequest{ino, off, len}, &r);
    if (out != nullptr) *out = r.extents;
    return e;
  }
  // Marks [0, size) written and sets the size (so that a truncate frees blocks).
  int Commit(InodeId ino, uint64_t size) {
    CommitRequest r;
    r.ino = ino;
    r.valid = CommitRequest::kSize;
    r.new_size = size;
    r.written = {{0, size}};
    AttrReply rep;
    return Call(Opcode::kCommit, r, &rep);
  }
  int Truncate(InodeId ino, uint64_t size) {
    SetattrRequest r;
    r.ino = ino;
    r.valid = SetattrRequest::kSize;
    r.size = size;
    AttrReply rep;
    return Call(Opcode::kSetattr, r, &rep);
  }
  uint64_t FreeBlocks() {
    StatfsReply s;
    EXPECT_EQ(Call(Opcode::kStatfs, StatfsRequest{}, &s), 0);
    return s.free_blocks;
  }
  static int64_t Ms(Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }

  std::string dir_, pool_;
  std::unique_ptr<MetaService> svc_;
  bool checkpoint_on_stop_ = true;  // for the next Open
  uint64_t seq_ = 0;
};

TEST_F(QuarantineServiceTest, NothingIsAllocatedForOneQuarantineAfterARestart) {
  constexpr uint32_t kQ = 400;
  // A new file system has never handed out a block: no hold.
  ASSERT_NO_FATAL_FAILURE(Open(kQ));
  const InodeId f = Create("f");
  ASSERT_EQ(Allocate(f, 0, kBlock), 0);
  // Restarted (recovering from the checkpoint Stop wrote): any free block may have been
  // freed just before, so nothing is allocated for one quarantine.
  auto opened = Clock::now();  // the server starts serving after this
  checkpoint_on_stop_ = false;
  ASSERT_NO_FATAL_FAILURE(Open(kQ));
  const InodeId g = Create("g");  // other mutations are not held
  EXPECT_EQ(FreeBlocks(), 2 * kPoolBytes / kBlock - kUnit / kBlock)
      << "the hold is not counted as used";
  ASSERT_EQ(Allocate(g, 0, kBlock), 0) << "waits for the hold, does not fail";
  EXPECT_GE(Ms(Clock::now() - opened), kQ);
  // The same after recovery by journal replay (no checkpoint on stop this time).
  opened = Clock::now();
  ASSERT_NO_FATAL_FAILURE(Open(kQ));
  ASSERT_EQ(Allocate(f, kUnit, kBlock), 0);
  EXPECT_GE(Ms(Clock::now() - opened), kQ);
}

// Zeroes nothing, counts what it was asked to zero (the data servers' side is tested in
// data_server_test; this is about when the metadata server may hand space out).
class CountingZeroer : public RangeZeroer {
 public:
  Status Zero(uint32_t /*server*/, uint64_t /*off*/, uint64_t length) override {
    bytes_ += length;
    return Status::OK();
  }
  uint64_t bytes() const { return bytes_.load(); }

 private:
  std::atomic<uint64_t> bytes_{0};
};

// After a restart every free block is scrubbed, and not before the hold ends (a stale
// client write could undo it); an allocation that came in at once must wait for the
// hold and then for the scrub, not fail. (It answered ENOSPC: its wait was bounded by
// one quarantine, which ends when the scrub only starts; e2e_crash_meta saw it.)
TEST_F(QuarantineServiceTest, AfterARestartAnAllocationWaitsForTheHoldAndTheScrub) {
  constexpr uint32_t kQ = 400;
  CountingZeroer zeroer;
  ASSERT_NO_FATAL_FAILURE(Open(kQ, &zeroer));
  const InodeId f = Create("f");
  ASSERT_EQ(Allocate(f, 0, kBlock), 0) << "a new file system is zero already";
  EXPECT_EQ(zeroer.bytes(), 0u);
  const auto opened = Clock::now();
  ASSERT_NO_FATAL_FAILURE(Open(kQ, &zeroer));
  ASSERT_EQ(Allocate(f, kUnit, kBlock), 0) << "waits for the hold and the scrub, does not fail";
  EXPECT_GE(Ms(Clock::now() - opened), kQ);
  EXPECT_GT(zeroer.bytes(), 0u) << "allocated from free space nobody zeroed";
}

// Every client unregistered before the stop (a clean unmount, then `dpmfs down`): no
// client can hold a layout, so the restart does not hold allocations back.
TEST_F(QuarantineServiceTest, NoHoldAfterARestartWithoutSessions) {
  constexpr uint32_t kQ = 2000;
  ASSERT_NO_FATAL_FAILURE(Open(kQ));
  const InodeId f = Create("f");
  ASSERT_EQ(Allocate(f, 0, kBlock), 0);
  EmptyReply none;
  ASSERT_EQ(Call(Opcode::kUnregister, UnregisterRequest{}, &none), 0);
  auto opened = Clock::now();
  ASSERT_NO_FATAL_FAILURE(Open(kQ));
  ASSERT_EQ(Allocate(f, kUnit, kBlock), 0);
  EXPECT_LT(Ms(Clock::now() - opened), kQ) << "held although no session survived";
}

TEST_F(QuarantineServiceTest, AllocateWaitsForQuarantinedSpaceAndStatfsCountsItUsed) {
  constexpr uint32_t kQ = 400;
  ASSERT_NO_FATAL_FAILURE(Open(kQ));
  // Fill both data pools with one file (waits out the start hold).
  const InodeId big = Create("big");
  std::vector<Extent> big_extents;
  ASSERT_EQ(Allocate(big, 0, 2 * kPoolBytes, &big_extents), 0);
  ASSERT_EQ(Commit(big, 2 * kPoolBytes), 0);
  ASSERT_EQ(FreeBlocks(), 0u);
  const InodeId other = Create("other");
  // Beyond what exists even with the quarantine: ENOSPC, and no waiting for it.
  ASSERT_EQ(Allocate(other, 0, kBlock), ENOSPC);

  // Free the second half of the file (one stripe unit per server and more).
  const auto sent = Clock::now();  // the server frees the blocks after this
  ASSERT_EQ(Truncate(big, kPoolBytes), 0);
  const uint64_t free_now = FreeBlocks();
  if (Ms(Clock::now() - sent) < kQ) {
    EXPECT_EQ(free_now, 0u) << "quarantined blocks must count as used";
  }
  // Needs a stripe unit of freed space: waits for the quarantine instead of ENOSPC.
  std::vector<Extent> got;
  ASSERT_EQ(Allocate(other, 0, kBlock, &got), 0);
  EXPECT_GE(Ms(Clock::now() - sent), kQ) << "freed blocks reallocated inside the quarantine";
  ASSERT_FALSE(got.empty());
  std::set<std::pair<uint32_t, uint64_t>> freed;
  for (const Extent& e : big_extents) {
    if (e.file_offset < kPoolBytes) continue;
    for (uint64_t b = 0; b < e.length; b += kBlock) freed.insert({e.server, e.pool_offset + b});
  }
  for (const Extent& e : got) {
    for (uint64_t b = 0; b < e.length; b += kBlock) {
      EXPECT_TRUE(freed.count({e.server, e.pool_offset + b})) << "block not from the freed half";
    }
  }
  // statfs sees the rest once it is released (by the lease thread, within a second).
  const uint64_t want = kPoolBytes / kBlock - kUnit / kBlock;
  uint64_t free_blocks = 0;
  for (int i = 0; i < 100 && (free_blocks = FreeBlocks()) != want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(free_blocks, want);
}

TEST_F(QuarantineServiceTest, ZeroTurnsItOff) {
  ASSERT_NO_FATAL_FAILURE(Open(0));
  const InodeId big = Create("big");
  ASSERT_EQ(Allocate(big, 0, 2 * kPoolBytes), 0);
  ASSERT_EQ(Commit(big, 2 * kPoolBytes), 0);
  ASSERT_EQ(Truncate(big, 0), 0);
  EXPECT_EQ(FreeBlocks(), 2 * kPoolBytes / kBlock);  // at once
  ASSERT_EQ(Allocate(Create("again"), 0, 2 * kPoolBytes), 0);
}

}  // namespace
}  // namespace dpmfs::meta
