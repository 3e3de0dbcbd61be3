// The striped I/O engine (fs/file_io.h) against two real dpmfs-data processes (pools
// in /dev/shm, soft transport), with the metadata server replaced by an in-memory
// extent service whose extents the tests build by hand.
#include "fs/file_io.h"
#include "tests/support/test_cluster_key.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <utility>

#include "common/pool.h"
#include "datapath/data_admin_client.h"
#include "datapath/data_client.h"
#include "datapath/session_token.h"
#include "datapath/transfer.h"
#include "metadata/placement.h"
#include "fs/inode_table.h"
#include "tests/fs/fs_test_util.h"
#include "tests/support/allocation_counter.h"

// Allocation counting (WarmOverwriteAndReadAddNoAllocationToTheTransfers).
using dpmfs::test_support::t_allocations;
using dpmfs::test_support::t_counting;

namespace dpmfs::fs {
namespace {

using meta::Extent;
using testing::Process;
using testing::ScratchDir;

constexpr uint32_t kBlock = 4096;
constexpr uint32_t kStripe = 64 << 10;  // small, so that a few hundred KiB stripe over both
constexpr uint64_t kPoolSize = 64ull << 20;

// Extent maps in memory with the metadata server's semantics for the three calls the
// engine makes. Allocate stripes new blocks over the servers by stripe unit.
class FakeExtentService : public ExtentService {
 public:
  explicit FakeExtentService(uint32_t servers) : next_pool_(servers, 0) {}

  Status Layout(const meta::LayoutRequest& req, meta::LayoutReply* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++layouts;
    File& f = files_[req.ino];
    reply->attr = f.attr;
    reply->attr.ino = req.ino;
    reply->extents.clear();
    reply->truncated = false;
    uint64_t end = req.length == 0 ? UINT64_MAX : req.offset + req.length;
    for (const auto& [off, e] : f.extents) {
      if (off + e.length <= req.offset || off >= end) continue;
      if (reply->extents.size() == max_extents_per_reply) {
        reply->truncated = true;
        break;
      }
      reply->extents.push_back(e);
    }
    return Status::OK();
  }

  Status Allocate(const meta::AllocateRequest& req, meta::AllocateReply* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++allocates;
    if (!fail_next_allocate.ok()) return std::exchange(fail_next_allocate, Status::OK());
    File& f = files_[req.ino];
    reply->extents.clear();
    for (uint64_t b = req.offset; b < req.offset + req.length; b += kBlock) {
      const Extent* have = Find(f, b);
      if (have == nullptr) {
        uint32_t server = static_cast<uint32_t>((b / kStripe) % next_pool_.size());
        Extent e{b, kBlock, next_pool_[server], server, Extent::kUnwritten};
        next_pool_[server] += kBlock;
        f.extents[b] = e;
      }
      reply->extents.push_back(*Find(f, b));
    }
    return Status::OK();
  }

  Status Commit(const meta::CommitRequest& req, meta::InodeAttr* attr) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++commits;
    File& f = files_[req.ino];
    if (req.valid & meta::CommitRequest::kSize) f.attr.size = std::max(f.attr.size, req.new_size);
    f.attr.mtime = req.mtime;
    for (const auto& r : req.written) {
      for (auto& [off, e] : f.extents) {
        if (off >= r.offset && off + e.length <= r.offset + r.length) e.flags = 0;
      }
      committed_ranges.push_back(r);
    }
    *attr = f.attr;
    attr->ino = req.ino;
    return Status::OK();
  }

  // Hand-made extent (any length), replacing nothing: tests do not overlap them.
  void AddExtent(meta::InodeId ino, const Extent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    files_[ino].extents[e.file_offset] = e;
  }
  void SetSize(meta::InodeId ino, uint64_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    files_[ino].attr.size = size;
  }
  meta::InodeAttr attr(meta::InodeId ino) {
    std::lock_guard<std::mutex> lock(mu_);
    meta::InodeAttr a = files_[ino].attr;
    a.ino = ino;
    return a;
  }
  std::vector<Extent> extents(meta::InodeId ino) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Extent> out;
    for (const auto& [off, e] : files_[ino].extents) out.push_back(e);
    return out;
  }
  // Pool space of `server` no allocation has handed out yet (for hand-made extents).
  uint64_t ReservePool(uint32_t server, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t at = next_pool_[server];
    next_pool_[server] += bytes;
    return at;
  }

  std::atomic<int> layouts{0}, allocates{0}, commits{0};
  size_t max_extents_per_reply = 4096;
  Status fail_next_allocate;  // returned (once) by the next Allocate instead of blocks
  std::vector<meta::ByteRange> committed_ranges;

 private:
  struct File {
    meta::InodeAttr attr;
    std::map<uint64_t, Extent> extents;
  };
  const Extent* Find(File& f, uint64_t off) {
    auto it = f.extents.upper_bound(off);
    if (it == f.extents.begin()) return nullptr;
    --it;
    if (it->first + it->second.length <= off) return nullptr;
    return &it->second;
  }
  std::mutex mu_;
  std::map<meta::InodeId, File> files_;
  std::vector<uint64_t> next_pool_;
};

// An engine call that must succeed; on failure its Status's message is shown.
#define ASSERT_OK(expr)                               \
  do {                                                \
    const ::dpmfs::Status _st = (expr);               \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                               \
  do {                                                \
    const ::dpmfs::Status _st = (expr);               \
    EXPECT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class FileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto uuid = pool::ClusterUuid::Generate();
    for (uint32_t i = 0; i < 2; ++i) {
      pools_[i] = (dir_.path() / ("data" + std::to_string(i) + ".pool")).string();
      pool::FormatOptions fo;
      fo.geometry = {pool::Role::kData, uuid, i, kBlock, kPoolSize};
      ASSERT_TRUE(pool::FormatPool(pools_[i], fo).ok());
      ASSERT_NO_FATAL_FAILURE(StartServer(i, "127.0.0.1:0"));
    }
    transport::DeviceOptions dopt;
    dopt.backend = transport::Backend::kSoft;
    dopt.cluster_key = test_support::TestClusterKey();
    auto dev = transport::OpenDevice(dopt);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    device_ = std::move(dev).value();
    cluster_.block_size = kBlock;
    cluster_.stripe_unit = kStripe;
    std::vector<Endpoint> eps;
    for (uint32_t i = 0; i < 2; ++i) {
      auto ep = Endpoint::Parse(endpoints_[i]);
      ASSERT_TRUE(ep.ok());
      eps.push_back(*ep);
      cluster_.servers.push_back(meta::DataServerInfo{i, endpoints_[i], 0});
    }
    datapath::DataTransferOptions popt;
    popt.client.method = datapath::PersistMethod::kRead;
    popt.client.queue_depth = 2;
    popt.client.max_io_size = 256 << 10;  // smaller than some writes: exercises splitting
    popt.client.timeout = std::chrono::seconds(2);
    popt.client.token = datapath::SessionTokenSource::SelfIssued(
        test_support::TestClusterKey(), "file_io_test", datapath::kSelfIssuedTokenLifetime);
    pool_ = std::make_unique<datapath::DataTransfer>(*device_, eps, popt);
    io_ = std::make_unique<FileIo>(meta_, *pool_, cluster_);
  }

  void StartServer(uint32_t i, const std::string& listen) {
    servers_[i] = std::make_unique<Process>();
    ASSERT_TRUE(servers_[i]->Start(
        {DPMFS_DATA_BIN, "--pool", pools_[i], "--listen", listen, "--log-level", "warn"},
        dir_.path() / ("data" + std::to_string(i) + ".out"),
        dir_.path() / ("data" + std::to_string(i) + ".err")));
    auto ready = servers_[i]->WaitReady();
    ASSERT_TRUE(ready.has_value()) << servers_[i]->err_text();
    endpoints_[i] = *ready;
  }

  // Direct access to a data server's pool, bypassing the engine.
  void PoolWrite(uint32_t server, uint64_t off, const std::vector<uint8_t>& bytes) {
    datapath::WritePiece piece{{server, off}, bytes.size(), bytes.data()};
    Status st = pool_->Write({&piece, 1});
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  std::vector<uint8_t> PoolRead(uint32_t server, uint64_t off, size_t len) {
    std::vector<uint8_t> out(len);
    datapath::ReadPiece piece{{server, off}, len, out.data()};
    Status st = pool_->Read({&piece, 1});
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  std::vector<uint8_t> ReadAll(Inode& inode, uint64_t off, size_t len, int* err = nullptr) {
    std::vector<uint8_t> out(len, 0xEE);
    size_t n = 0;
    Status st = io_->Read(inode, off, len, out.data(), &n);
    if (err != nullptr) {
      *err = st.ToErrno();
    } else {
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    out.resize(n);
    return out;
  }

  ScratchDir dir_{"fileio"};
  std::string pools_[2];
  std::string endpoints_[2];
  std::unique_ptr<Process> servers_[2];
  std::unique_ptr<transport::Device> device_;
  meta::ClusterInfo cluster_;
  FakeExtentService meta_{2};
  std::unique_ptr<datapath::DataTransfer> pool_;
  std::unique_ptr<FileIo> io_;
};

TEST_F(FileIoTest, StripedWriteReadRoundTrip) {
  Inode inode(7);
  // 1 MiB + change at an unaligned offset: 17 stripe units over both servers, pieces
  // larger than max_io_size, partial blocks at both ends.
  const uint64_t off = 1000;
  auto data = RandomBytes((1 << 20) + 12345, 1);
  ASSERT_OK(io_->Write(inode, off, data.data(), data.size()));
  EXPECT_EQ(inode.size(), off + data.size());
  EXPECT_EQ(meta_.attr(7).size, off + data.size());

  auto back = ReadAll(inode, off, data.size());
  ASSERT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data);
  // The head of the first block was never written: zeros, not garbage.
  auto head = ReadAll(inode, 0, off);
  EXPECT_EQ(head, std::vector<uint8_t>(off, 0));

  // The bytes really are on the data servers, where the extents say.
  bool used[2] = {false, false};
  for (const Extent& e : meta_.extents(7)) {
    EXPECT_EQ(e.flags, 0u) << "committed blocks must not stay unwritten";
    used[e.server] = true;
    if (e.file_offset == 64 << 10) {
      auto raw = PoolRead(e.server, e.pool_offset, 100);
      EXPECT_TRUE(std::equal(raw.begin(), raw.end(), data.begin() + ((64 << 10) - off)));
    }
  }
  EXPECT_TRUE(used[0] && used[1]) << "the write should stripe over both servers";

  // A read past EOF is short; one at EOF is empty.
  EXPECT_EQ(ReadAll(inode, off + data.size() - 10, 4096).size(), 10u);
  EXPECT_TRUE(ReadAll(inode, off + data.size(), 4096).empty());
}

TEST_F(FileIoTest, HolesAndUnwrittenExtentsReadAsZeros) {
  const meta::InodeId ino = 8;
  // [0,4K) written with known bytes on server 0; [4K,8K) a hole; [8K,16K) unwritten on
  // server 1 whose pool bytes are garbage (they must never be shown); [16K,20K) written.
  uint64_t p0 = meta_.ReservePool(0, 2 * kBlock);
  uint64_t p1 = meta_.ReservePool(1, 2 * kBlock);
  auto a = RandomBytes(kBlock, 2), b = RandomBytes(kBlock, 3);
  PoolWrite(0, p0, a);
  PoolWrite(0, p0 + kBlock, b);
  PoolWrite(1, p1, std::vector<uint8_t>(2 * kBlock, 0xAB));
  meta_.AddExtent(ino, Extent{0, kBlock, p0, 0, 0});
  meta_.AddExtent(ino, Extent{8192, 2 * kBlock, p1, 1, Extent::kUnwritten});
  meta_.AddExtent(ino, Extent{16384, kBlock, p0 + kBlock, 0, 0});
  meta_.SetSize(ino, 18000);
  Inode inode(ino);
  inode.SetAttr(meta_.attr(ino));

  auto all = ReadAll(inode, 0, 1 << 20);
  ASSERT_EQ(all.size(), 18000u);  // clipped at the size
  EXPECT_TRUE(std::equal(a.begin(), a.end(), all.begin()));
  EXPECT_TRUE(
      std::all_of(all.begin() + 4096, all.begin() + 16384, [](uint8_t c) { return c == 0; }));
  EXPECT_TRUE(std::equal(all.begin() + 16384, all.end(), b.begin()));
  // An unaligned read inside the unwritten extent.
  EXPECT_EQ(ReadAll(inode, 9000, 300), std::vector<uint8_t>(300, 0));
}

// The metadata server hands out blocks that read as zeros and keeps bytes past EOF
// zero (metadata/ops_files.cc): a writer writes its own bytes and nothing else.
// What it does not know about (another client's bytes in the same block, written but
// not yet committed) must survive.
TEST_F(FileIoTest, WriteIntoUnwrittenBlockWritesOnlyItsBytesAndCommitsTheBlock) {
  const meta::InodeId ino = 9;
  uint64_t p = meta_.ReservePool(1, kBlock);
  meta_.AddExtent(ino, Extent{0, kBlock, p, 1, Extent::kUnwritten});
  meta_.SetSize(ino, 0);
  PoolWrite(1, p, std::vector<uint8_t>(50, 'o'));  // another client's uncommitted bytes
  Inode inode(ino);
  inode.SetAttr(meta_.attr(ino));

  std::vector<uint8_t> x(10, 'x');
  ASSERT_OK(io_->Write(inode, 100, x.data(), x.size()));
  EXPECT_EQ(meta_.allocates.load(), 0) << "the block was allocated already";
  ASSERT_EQ(meta_.committed_ranges.size(), 1u);
  EXPECT_EQ(meta_.committed_ranges[0].offset, 0u);
  EXPECT_EQ(meta_.committed_ranges[0].length, kBlock);
  EXPECT_EQ(meta_.attr(ino).size, 110u);
  auto raw = PoolRead(1, p, kBlock);
  for (size_t i = 0; i < kBlock; ++i) {
    ASSERT_EQ(raw[i], i < 50 ? 'o' : (i >= 100 && i < 110) ? 'x' : 0) << "at " << i;
  }
}

TEST_F(FileIoTest, ExtendingPastACachedEofWritesNothingButItsBytes) {
  // This client believes the size is 100; another client has meanwhile written (and
  // had acknowledged) bytes at [200, 300) of the same block. A write past a gap must
  // not zero them on the strength of the stale size.
  const meta::InodeId ino = 18;
  uint64_t p = meta_.ReservePool(0, kBlock);
  std::vector<uint8_t> block(kBlock, 0);
  std::fill(block.begin(), block.begin() + 100, 'a');
  std::fill(block.begin() + 200, block.begin() + 300, 'o');
  PoolWrite(0, p, block);
  meta_.AddExtent(ino, Extent{0, kBlock, p, 0, 0});
  meta_.SetSize(ino, 100);
  Inode inode(ino);
  inode.SetAttr(meta_.attr(ino));
  meta_.SetSize(ino, 300);  // the other client's commit, unseen here
  std::vector<uint8_t> x(10, 'x');
  ASSERT_OK(io_->Write(inode, 3 * kBlock + 7, x.data(), x.size()));
  EXPECT_EQ(PoolRead(0, p, kBlock), block) << "the write touched a block it was not asked to";
  auto back = ReadAll(inode, 0, 3 * kBlock + 17);
  ASSERT_EQ(back.size(), 3u * kBlock + 17);
  for (size_t i = 0; i < back.size(); ++i) {
    uint8_t want = i < kBlock ? block[i] : (i >= 3 * kBlock + 7 ? 'x' : 0);
    ASSERT_EQ(back[i], want) << "at " << i;
  }
}

TEST_F(FileIoTest, OverwriteOfWrittenBlocksNeedsNoMetadataCall) {
  Inode inode(10);
  auto data = RandomBytes(300 << 10, 4);
  ASSERT_OK(io_->Write(inode, 0, data.data(), data.size()));
  int layouts = meta_.layouts, allocates = meta_.allocates, commits = meta_.commits;
  auto patch = RandomBytes(70000, 5);  // crosses a stripe unit
  ASSERT_OK(io_->Write(inode, 50000, patch.data(), patch.size()));
  EXPECT_EQ(meta_.layouts.load(), layouts);
  EXPECT_EQ(meta_.allocates.load(), allocates);
  EXPECT_EQ(meta_.commits.load(), commits);
  std::copy(patch.begin(), patch.end(), data.begin() + 50000);
  EXPECT_TRUE(ReadAll(inode, 0, data.size()) == data);

  // The mtime is committed lazily, once, and shows in attr() meanwhile.
  meta::Timespec before = meta_.attr(10).mtime;
  EXPECT_TRUE(inode.attr().mtime.sec > before.sec ||
              (inode.attr().mtime.sec == before.sec && inode.attr().mtime.nsec > before.nsec));
  ASSERT_OK(io_->FlushMtime(inode));
  EXPECT_EQ(meta_.commits.load(), commits + 1);
  ASSERT_OK(io_->FlushMtime(inode));
  EXPECT_EQ(meta_.commits.load(), commits + 1) << "nothing pending any more";
}

// Another client truncates the file and the server hands its blocks to someone else:
// this client's cached layout must stop being used once the TTL has passed, or its
// reads and overwrites would touch blocks that are another file's by now.
TEST_F(FileIoTest, ExpiredLayoutIsFetchedAgainAndTheNewBlocksAreUsed) {
  FileIoOptions o;
  o.layout_ttl = std::chrono::milliseconds(200);
  FileIo io(meta_, *pool_, cluster_, o);
  constexpr meta::InodeId kIno = 12;
  const uint64_t old_at = meta_.ReservePool(0, 4096);
  const uint64_t new_at = meta_.ReservePool(0, 4096);
  PoolWrite(0, old_at, std::vector<uint8_t>(4096, 'o'));
  PoolWrite(0, new_at, std::vector<uint8_t>(4096, 'n'));
  meta_.AddExtent(kIno, Extent{0, 4096, old_at, 0, 0});
  meta_.SetSize(kIno, 4096);
  Inode inode(kIno);
  inode.SetAttr(meta_.attr(kIno));
  std::vector<uint8_t> buf(4096);
  size_t n = 0;
  ASSERT_OK(io.Read(inode, 0, 4096, buf.data(), &n));
  EXPECT_EQ(buf[0], 'o');
  const int layouts = meta_.layouts;

  // The "other client": the block moved (the fake's extent now points elsewhere).
  meta_.AddExtent(kIno, Extent{0, 4096, new_at, 0, 0});
  ASSERT_OK(io.Read(inode, 0, 4096, buf.data(), &n));
  EXPECT_EQ(meta_.layouts.load(), layouts) << "within the TTL the cached layout serves";
  std::this_thread::sleep_for(o.layout_ttl + std::chrono::milliseconds(50));
  ASSERT_OK(io.Read(inode, 0, 4096, buf.data(), &n));
  EXPECT_EQ(meta_.layouts.load(), layouts + 1) << "past the TTL the layout is fetched again";
  EXPECT_EQ(buf[0], 'n');

  // An overwrite past the TTL goes to the new block too, never the old one.
  std::this_thread::sleep_for(o.layout_ttl + std::chrono::milliseconds(50));
  std::vector<uint8_t> patch(100, 'w');
  ASSERT_OK(io.Write(inode, 0, patch.data(), patch.size()));
  EXPECT_EQ(PoolRead(0, new_at, 1)[0], 'w');
  EXPECT_EQ(PoolRead(0, old_at, 1)[0], 'o');
}

TEST_F(FileIoTest, LayoutFetchedInPiecesWhenTheReplyIsTruncated) {
  Inode inode(11);
  auto data = RandomBytes(256 << 10, 6);
  ASSERT_OK(io_->Write(inode, 0, data.data(), data.size()));
  Inode fresh(11);  // a new open: nothing cached
  fresh.SetAttr(meta_.attr(11));
  meta_.max_extents_per_reply = 5;  // the fake hands out 4 KiB extents: many replies
  int before = meta_.layouts;
  EXPECT_TRUE(ReadAll(fresh, 0, data.size()) == data);
  EXPECT_GT(meta_.layouts.load() - before, 1);
}

TEST_F(FileIoTest, ConcurrentWritersIntoOneUnwrittenBlockKeepEachOthersBytes) {
  const meta::InodeId ino = 12;
  uint64_t p = meta_.ReservePool(0, kBlock);
  meta_.AddExtent(ino, Extent{0, kBlock, p, 0, Extent::kUnwritten});
  meta_.SetSize(ino, kBlock);
  Inode inode(ino);
  inode.SetAttr(meta_.attr(ino));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> v(64, static_cast<uint8_t>('a' + t));
      if (!io_->Write(inode, 512 * t, v.data(), v.size()).ok()) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto back = ReadAll(inode, 0, kBlock);
  for (int t = 0; t < 8; ++t) {
    for (int i = 0; i < 64; ++i) ASSERT_EQ(back[512 * t + i], 'a' + t) << "writer " << t;
  }
}

TEST_F(FileIoTest, KilledDataServerFailsWritesWithEioUntilItIsBack) {
  Inode inode(13);
  // Stripe unit 0 lives on server 0, stripe unit 1 on server 1.
  auto first = RandomBytes(2 * kStripe, 7);
  ASSERT_OK(io_->Write(inode, 0, first.data(), first.size()));

  servers_[1]->Kill();
  auto second = RandomBytes(1000, 8);
  EXPECT_EQ(io_->Write(inode, kStripe + 100, second.data(), second.size()).ToErrno(), EIO);
  EXPECT_EQ(io_->Write(inode, kStripe + 100, second.data(), second.size()).ToErrno(), EIO)
      << "still down: still EIO, never a silent success";
  // The other server is unaffected.
  ASSERT_OK(io_->Write(inode, 100, second.data(), second.size()));
  int err = 0;
  ReadAll(inode, kStripe, 100, &err);
  EXPECT_EQ(err, EIO);

  ASSERT_NO_FATAL_FAILURE(StartServer(1, endpoints_[1]));  // same pool, same port
  ASSERT_OK(io_->Write(inode, kStripe + 100, second.data(), second.size()));
  std::copy(second.begin(), second.end(), first.begin() + 100);
  std::copy(second.begin(), second.end(), first.begin() + kStripe + 100);
  EXPECT_TRUE(ReadAll(inode, 0, first.size()) == first)
      << "acknowledged writes are durable across the data server's kill -9";
}

TEST_F(FileIoTest, IdleConnectionToARestartedServerIsReplacedTransparently) {
  Inode inode(14);
  auto data = RandomBytes(2 * kStripe, 9);
  ASSERT_OK(io_->Write(inode, 0, data.data(), data.size()));  // leaves idle connections
  uint64_t connects = pool_->connects();
  servers_[0]->Kill();
  ASSERT_NO_FATAL_FAILURE(StartServer(0, endpoints_[0]));
  auto patch = RandomBytes(5000, 10);
  EXPECT_OK(io_->Write(inode, 10, patch.data(), patch.size()));
  EXPECT_GT(pool_->connects(), connects);
  std::copy(patch.begin(), patch.end(), data.begin() + 10);
  EXPECT_TRUE(ReadAll(inode, 0, data.size()) == data);
}

TEST_F(FileIoTest, ZeroRangeAndSeek) {
  Inode inode(15);
  // Data in stripe units 0 and 2; unit 1 a hole; the file ends in unit 3.
  auto a = RandomBytes(kStripe, 11);
  ASSERT_OK(io_->Write(inode, 0, a.data(), a.size()));
  ASSERT_OK(io_->Write(inode, 2 * kStripe, a.data(), a.size()));
  std::vector<uint8_t> tail(10, 't');
  ASSERT_OK(io_->Write(inode, 3 * kStripe + 5000, tail.data(), tail.size()));
  const uint64_t size = 3 * kStripe + 5010;

  ASSERT_OK(io_->ZeroRange(inode, 100, 200));
  auto back = ReadAll(inode, 0, 400);
  for (int i = 0; i < 400; ++i) ASSERT_EQ(back[i], (i >= 100 && i < 300) ? 0 : a[i]) << i;

  uint64_t r = 0;
  ASSERT_OK(io_->Seek(inode, 0, true, &r));
  EXPECT_EQ(r, 0u);
  ASSERT_OK(io_->Seek(inode, 0, false, &r));
  EXPECT_EQ(r, uint64_t{kStripe});
  ASSERT_OK(io_->Seek(inode, kStripe + 10, true, &r));
  EXPECT_EQ(r, 2u * kStripe);
  ASSERT_OK(io_->Seek(inode, 2 * kStripe, false, &r));
  EXPECT_EQ(r, 3u * kStripe);
  // The last block has data; the hole after it is EOF.
  ASSERT_OK(io_->Seek(inode, 3 * kStripe + 1, true, &r));
  EXPECT_EQ(r, 3u * kStripe + 4096);
  ASSERT_OK(io_->Seek(inode, 3 * kStripe + 4096, false, &r));
  EXPECT_EQ(r, size);
  EXPECT_EQ(io_->Seek(inode, size, true, &r).ToErrno(), ENXIO);
  EXPECT_EQ(io_->Seek(inode, size, false, &r).ToErrno(), ENXIO);
}

TEST_F(FileIoTest, BadExtentsFromTheServerAreEioNotACrash) {
  const meta::InodeId ino = 16;
  meta_.AddExtent(ino, Extent{0, kBlock, kPoolSize * 4, 0, 0});  // outside the pool
  meta_.AddExtent(ino, Extent{kBlock, kBlock, 0, 9, 0});         // no server 9
  meta_.SetSize(ino, 2 * kBlock);
  Inode inode(ino);
  inode.SetAttr(meta_.attr(ino));
  int err = 0;
  ReadAll(inode, 0, 100, &err);
  EXPECT_EQ(err, EIO);
  std::vector<uint8_t> x(10, 1);
  EXPECT_EQ(io_->Write(inode, 0, x.data(), x.size()).ToErrno(), EIO);
}

// A device that refuses to register more than `limit` bytes at once, the way verbs does
// for an unprivileged process at its RLIMIT_MEMLOCK (ibv_reg_mr: ENOMEM).
class MemlockLimitedDevice : public transport::Device {
 public:
  MemlockLimitedDevice(transport::Device& real, uint64_t limit) : real_(real), limit_(limit) {}
  transport::Backend backend() const override { return real_.backend(); }
  Result<transport::MemoryRegion> RegisterMemory(void* addr, uint64_t length,
                                                 uint32_t access) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pinned_ + length > limit_) {
        ++refused;
        return Status::ResourceExhausted("registering " + std::to_string(length) +
                                         " bytes: over the memlock limit");
      }
      pinned_ += length;
    }
    auto mr = real_.RegisterMemory(addr, length, access);
    if (!mr.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      pinned_ -= length;
    }
    return mr;
  }
  Status DeregisterMemory(const transport::MemoryRegion& region) override {
    Status st = real_.DeregisterMemory(region);
    std::lock_guard<std::mutex> lock(mu_);
    pinned_ -= region.length;
    return st;
  }
  Result<std::unique_ptr<transport::Listener>> Listen(const Endpoint& local) override {
    return real_.Listen(local);
  }
  Result<std::unique_ptr<transport::QueuePair>> Connect(
      const Endpoint& peer, std::span<const uint8_t> private_data,
      const transport::QueuePairOptions& options, transport::Duration timeout) override {
    return real_.Connect(peer, private_data, options, timeout);
  }
  bool SupportsFlush() const override { return real_.SupportsFlush(); }
  std::atomic<int> refused{0};

 private:
  transport::Device& real_;
  const uint64_t limit_;
  std::mutex mu_;
  uint64_t pinned_ = 0;
};

TEST_F(FileIoTest, ConnectionsBeyondTheMemlockLimitWaitForOneInUseInsteadOfEio) {
  // Room for one connection per server (plus change), as for an unprivileged verbs
  // client whose RLIMIT_MEMLOCK is nearly used up by its metadata connection.
  const uint64_t per_connection = datapath::DataClient::RegisteredBytes(pool_->options().client) /
                                  (pool_->options().client.queue_depth + 1);
  MemlockLimitedDevice limited(*device_, 2 * 3 * per_connection + per_connection / 2);
  std::vector<Endpoint> eps;
  for (const auto& e : endpoints_) eps.push_back(*Endpoint::Parse(e));
  datapath::DataTransfer pool(limited, eps, pool_->options());
  FileIo io(meta_, pool, cluster_);

  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      Inode inode(100 + t);
      auto data = RandomBytes(256 << 10, 100 + t);  // 4 stripe units: both servers
      for (int round = 0; round < 4; ++round) {
        if (!io.Write(inode, 0, data.data(), data.size()).ok()) ++failures;
        std::vector<uint8_t> back(data.size());
        size_t n = 0;
        if (!io.Read(inode, 0, back.size(), back.data(), &n).ok() || n != back.size() ||
            back != data) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(limited.refused.load(), 0) << "the limit was never reached: the test tests nothing";
}

TEST_F(FileIoTest, WritesBeyondTheLargestFileSizeAreEfbig) {
  Inode inode(17);
  std::vector<uint8_t> x(10, 1);
  EXPECT_EQ(io_->Write(inode, meta::kMaxFileSize - 5, x.data(), x.size()).ToErrno(), EFBIG);
}

// The metadata server's answer reaches the caller as it gave it (errno and message),
// through the engine's own Status; nothing was written into the file.
TEST_F(FileIoTest, AMetadataRefusalReachesTheCallerWithItsErrnoAndMessage) {
  Inode inode(19);
  meta_.fail_next_allocate = Status::Posix(ENOSPC, "no free blocks on data server 1");
  std::vector<uint8_t> x(10, 1);
  Status st = io_->Write(inode, 0, x.data(), x.size());
  EXPECT_EQ(st.ToErrno(), ENOSPC);
  EXPECT_NE(st.message().find("no free blocks on data server 1"), std::string::npos)
      << st.ToString();
  EXPECT_EQ(meta_.commits.load(), 0);
  EXPECT_EQ(meta_.attr(19).size, 0u);
  EXPECT_OK(io_->Write(inode, 0, x.data(), x.size()));  // the next allocation succeeds
  EXPECT_EQ(meta_.attr(19).size, 10u);
}

// A lost data server is ENOTCONN to the transfer, an I/O error to a file's writer: EIO,
// with the transfer's Status in the message for the log at the FUSE edge.
TEST_F(FileIoTest, DataPathFailuresAreEioWithTheTransfersMessage) {
  Inode inode(20);
  auto data = RandomBytes(2 * kStripe, 12);
  ASSERT_OK(io_->Write(inode, 0, data.data(), data.size()));
  servers_[0]->Kill();
  Status st = io_->Write(inode, 100, data.data(), 100);  // stripe unit 0: server 0
  EXPECT_EQ(st.ToErrno(), EIO);
  EXPECT_EQ(st.message().rfind("write: ", 0), 0u) << st.ToString();
  EXPECT_GT(st.message().size(), std::string("write: ").size()) << "the transfer's reason is lost";
  size_t n = 0;
  std::vector<uint8_t> back(100);
  st = io_->Read(inode, 0, back.size(), back.data(), &n);
  EXPECT_EQ(st.ToErrno(), EIO);
  EXPECT_EQ(st.message().rfind("read of 100 bytes at 0: ", 0), 0u) << st.ToString();
}

// A Status for OK allocates nothing (common/status.h: an empty message), so the
// engine's warm overwrite and read add no allocation to what their transfers make but
// the segment list each call maps its range into (as with the errnos before).
TEST_F(FileIoTest, WarmOverwriteAndReadAddNoAllocationToTheTransfers) {
#ifdef DPMFS_SANITIZED
  GTEST_SKIP() << "allocation counting needs the test's own operator new";
#endif
  FileIoOptions o;
  o.layout_ttl = std::chrono::hours(1);  // no layout fetch inside the count
  FileIo io(meta_, *pool_, cluster_, o);
  Inode inode(21);
  // One block: one segment, one piece per call.
  auto data = RandomBytes(kBlock, 13);
  ASSERT_OK(io.Write(inode, 0, data.data(), data.size()));
  std::vector<uint8_t> back(data.size());
  const std::vector<Extent> extents = meta_.extents(21);
  ASSERT_EQ(extents.size(), 1u);
  const Extent& e = extents[0];
  datapath::WritePiece w{{e.server, e.pool_offset}, e.length, data.data()};
  datapath::ReadPiece r{{e.server, e.pool_offset}, e.length, back.data()};
  constexpr int kCalls = 200;
  auto count = [&](auto&& call) {
    for (int i = 0; i < 3; ++i) call();  // warm: connections, per-thread scratch
    t_allocations = 0;
    t_counting = true;
    bool ok = true;
    for (int i = 0; i < kCalls; ++i) ok &= call();
    t_counting = false;
    EXPECT_TRUE(ok);
    return t_allocations;
  };
  size_t n = 0;
  const uint64_t engine = count([&] {
    return io.Write(inode, 0, data.data(), data.size()).ok() &&
           io.Read(inode, 0, back.size(), back.data(), &n).ok();
  });
  const uint64_t transfers = count([&] {
    return pool_->Write({&w, 1}).ok() && pool_->Read({&r, 1}).ok();
  });
  EXPECT_EQ(meta_.commits.load(), 1) << "the overwrites must not have gone to the server";
  std::printf("%d overwrites + reads: %llu allocations; their transfers alone: %llu\n", kCalls,
              static_cast<unsigned long long>(engine), static_cast<unsigned long long>(transfers));
  // Each call's segment list: one allocation (one segment). The soft transport's queues
  // allocate a block now and then (tens in these 400 transfers): a quarter of kCalls
  // covers their difference between the two counts. An OK Status that allocated would
  // add at least kCalls (one per call), and more for each Status passed up inside.
  EXPECT_LE(engine, transfers + 2 * kCalls + kCalls / 4)
      << "engine calls: " << engine << " allocations, their transfers alone: " << transfers;
}


// ---------------------------------------------------------------------------------------
// Fencing, from the client's side (docs/replication.md, "Fencing"): two copies of every
// block on the two servers, the metadata server's part (map, token renewal, degraded
// records) scripted, the fence installed on the real data servers through their admin
// channel.

// The map and the session token as a metadata server would hand them out. GetClusterMap
// answers `maps` in turn (the last one for ever); RenewDataToken feeds `token` a token
// of `renew_epoch`.
class FencedExtentService : public FakeExtentService {
 public:
  FencedExtentService(std::shared_ptr<datapath::SessionTokenSource> token)
      : FakeExtentService(2), token_(std::move(token)) {}

  Status GetClusterMap(meta::ClusterMapReply* reply) override {
    std::lock_guard<std::mutex> lock(map_mu_);
    *reply = maps.at(std::min(next_map_, maps.size() - 1));
    ++next_map_;
    return Status::OK();
  }
  Status ReportDataServer(const meta::ReportDataServerRequest&, meta::ClusterMapReply* reply) override {
    ++reports;
    return GetClusterMap(reply);
  }
  Status MarkDegraded(const meta::MarkDegradedRequest& req) override {
    marked_epoch = req.epoch;
    return Status::OK();
  }
  uint64_t latest_epoch() const override { return latest; }
  Status RenewDataToken() override {
    ++renewals;
    return token_->Set(Token(renew_epoch));
  }

  static std::vector<uint8_t> Token(uint64_t epoch) {
    datapath::SessionToken t;
    t.session = 0xfe;
    t.client = "file_io_test";
    t.issued_ms = datapath::UnixMs();
    t.expires_ms = t.issued_ms + 600'000;
    t.epoch = epoch;
    return datapath::IssueSessionToken(*test_support::TestClusterKey(), t);
  }
  static meta::ClusterMapReply Map(uint64_t epoch, meta::DataServerState server1) {
    meta::ClusterMapReply m;
    m.epoch = epoch;
    m.servers.resize(2);
    m.servers[1].state = server1;
    return m;
  }

  std::vector<meta::ClusterMapReply> maps;
  std::atomic<uint64_t> latest{0}, renew_epoch{0}, marked_epoch{0};
  std::atomic<int> reports{0}, renewals{0};

 private:
  std::shared_ptr<datapath::SessionTokenSource> token_;
  std::mutex map_mu_;
  size_t next_map_ = 0;
};

class FileIoFenceTest : public FileIoTest {
 protected:
  void SetUp() override {
    FileIoTest::SetUp();
    if (HasFatalFailure()) return;
    // Two copies: the placement needs each pool's data size.
    cluster_.replicas = 2;
    for (uint32_t i = 0; i < 2; ++i) {
      datapath::DataClientOptions o;
      o.token = datapath::SessionTokenSource::SelfIssued(test_support::TestClusterKey(), "size",
                                                         datapath::kSelfIssuedTokenLifetime);
      auto c = datapath::DataClient::Connect(*device_, *Endpoint::Parse(endpoints_[i]), o);
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      cluster_.servers[i].data_size = (*c)->data_size();
    }
    auto placement = meta::Placement::For(cluster_);
    ASSERT_TRUE(placement.ok()) << placement.status().ToString();
    region_ = placement->Replica(0, 0, 1).pool_offset;
    ASSERT_GT(region_, 0u);
    datapath::DataTransferOptions popt = pool_->options();
    popt.client.token = token_;
    std::vector<Endpoint> eps;
    for (const std::string& e : endpoints_) eps.push_back(*Endpoint::Parse(e));
    fenced_pool_ = std::make_unique<datapath::DataTransfer>(*device_, eps, popt);
    fenced_io_ = std::make_unique<FileIo>(fenced_meta_, *fenced_pool_, cluster_);
  }
  void TearDown() override {
    fenced_io_.reset();
    fenced_pool_.reset();
    FileIoTest::TearDown();
  }
  void Fence(uint64_t epoch) {
    for (const std::string& e : endpoints_) {
      auto f = datapath::InstallFence(*device_, *Endpoint::Parse(e), epoch, std::chrono::seconds(2));
      ASSERT_TRUE(f.ok()) << f.status().ToString();
    }
  }
  // `len` bytes of server `server`'s pool, through the fenced client's connections.
  std::vector<uint8_t> Raw(uint32_t server, uint64_t off, size_t len) {
    std::vector<uint8_t> out(len);
    datapath::ReadPiece piece{{server, off}, len, out.data()};
    Status st = fenced_pool_->Read({&piece, 1});
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  std::shared_ptr<datapath::SessionTokenSource> token_ =
      std::make_shared<datapath::SessionTokenSource>();
  FencedExtentService fenced_meta_{token_};
  std::unique_ptr<datapath::DataTransfer> fenced_pool_;
  std::unique_ptr<FileIo> fenced_io_;
  uint64_t region_ = 0;
};

// The fence rose under a writing client (its idle connections revoked, its token now
// refused): it renews the token at once and writes again, and reports no server.
TEST_F(FileIoFenceTest, StaleTokenIsRenewedAndTheWriteGoesAgainInsteadOfReportingAServer) {
  ASSERT_TRUE(token_->Set(FencedExtentService::Token(1)).ok());
  fenced_meta_.maps = {FencedExtentService::Map(1, meta::DataServerState::kUp)};
  fenced_meta_.latest = 1;
  Inode inode(31);
  auto data = RandomBytes(3 * kStripe, 31);
  ASSERT_OK(fenced_io_->Write(inode, 0, data.data(), data.size()));  // leaves idle connections

  ASSERT_NO_FATAL_FAILURE(Fence(2));
  fenced_meta_.maps = {FencedExtentService::Map(2, meta::DataServerState::kUp)};
  fenced_meta_.renew_epoch = 2;
  auto patch = RandomBytes(2 * kStripe, 32);
  ASSERT_OK(fenced_io_->Write(inode, 1000, patch.data(), patch.size()));
  EXPECT_GE(fenced_meta_.renewals.load(), 1);
  EXPECT_EQ(fenced_meta_.reports.load(), 0) << "a server that refused a stale token was reported";
  EXPECT_EQ(token_->epoch(), 2u);
  std::copy(patch.begin(), patch.end(), data.begin() + 1000);
  std::vector<uint8_t> back(data.size());
  size_t n = 0;
  ASSERT_OK(fenced_io_->Read(inode, 0, back.size(), back.data(), &n));
  EXPECT_EQ(n, back.size());
  EXPECT_TRUE(back == data);
}

// The race fencing leaves to the client: its copies were chosen from a map (epoch 2)
// with server 1 down, but its token, renewed meanwhile, is of epoch 3, in which server
// 1 is back in the write set (resyncing). The servers serve the token, so the write
// succeeds on server 0 alone; the client sees that its token moved past the map it
// chose from, and writes again to the new map's copies: server 1 gets the bytes too.
TEST_F(FileIoFenceTest, WriteChosenFromAnOlderMapThanItsTokenGoesAgainToTheNewCopies) {
  ASSERT_NO_FATAL_FAILURE(Fence(3));
  ASSERT_TRUE(token_->Set(FencedExtentService::Token(3)).ok());
  fenced_meta_.maps = {FencedExtentService::Map(2, meta::DataServerState::kDown),
                       FencedExtentService::Map(3, meta::DataServerState::kResyncing)};
  fenced_meta_.latest = 2;
  Inode inode(32);
  // Stripe unit 0: primary on server 0, its copy on server 1 at region + offset.
  auto data = RandomBytes(kStripe, 33);
  ASSERT_OK(fenced_io_->Write(inode, 0, data.data(), data.size()));
  EXPECT_EQ(fenced_meta_.marked_epoch.load(), 2u) << "the first choice had server 1 down";
  const std::vector<Extent> extents = fenced_meta_.extents(32);
  ASSERT_FALSE(extents.empty());
  ASSERT_EQ(extents[0].server, 0u);
  EXPECT_TRUE(Raw(0, extents[0].pool_offset, 4096) ==
              std::vector<uint8_t>(data.begin(), data.begin() + 4096));
  EXPECT_TRUE(Raw(1, region_ + extents[0].pool_offset, 4096) ==
              std::vector<uint8_t>(data.begin(), data.begin() + 4096))
      << "the write skipped server 1, which the token's epoch has in the write set";
}

}  // namespace
}  // namespace dpmfs::fs
