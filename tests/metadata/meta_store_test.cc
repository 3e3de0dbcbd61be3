// MetaStore on real pool files (tmpfs when /dev/shm is there) mapped with the real
// libpmem: format, append/recover, checkpoints, damage at every place recovery reads,
// crashes simulated by restoring parts of the pool file from a snapshot, and real
// kill -9s of a forked writer.
#include "metadata/meta_store.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/crc32c.h"
#include "common/pool.h"

namespace dpmfs::meta {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;
namespace L = store_layout;

const pool::ClusterUuid kCluster =
    *pool::ClusterUuid::Parse("1b4e28ba-2fa1-41d2-883f-0016d3cca427");

std::string MakeTempDir() {
  std::string base = "/dev/shm";
  if (::access(base.c_str(), W_OK) != 0) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::string tmpl = base + "/dpmfs-store-test-XXXXXX";
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
  return tmpl;
}

Bytes ReadAt(const std::string& path, uint64_t off, size_t n) {
  Bytes buf(n);
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, buf.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
  ::close(fd);
  return buf;
}

void WriteAt(const std::string& path, uint64_t off, const Bytes& data) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)),
            static_cast<ssize_t>(data.size()));
  ::close(fd);
}

void FlipByte(const std::string& path, uint64_t off) {
  Bytes b = ReadAt(path, off, 1);
  b[0] ^= 0x5a;
  WriteAt(path, off, b);
}

uint64_t ReadU64(const std::string& path, uint64_t off) {
  Bytes b = ReadAt(path, off, 8);
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | b[i];
  return v;
}

void WriteU64(const std::string& path, uint64_t off, uint64_t v) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  WriteAt(path, off, b);
}

// A record whose bytes follow from `key`: 0..300 bytes (some records are empty).
Bytes Payload(uint64_t key, size_t max = 300) {
  std::mt19937_64 rng(key * 0x9e3779b97f4a7c15ull + 1);
  Bytes b(rng() % (max + 1));
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

uint64_t RecordBytes(size_t payload) { return L::kRecordHeaderSize + (payload + 7) / 8 * 8; }

// What one Recover handed to its callbacks.
struct Recovered {
  Status status;
  std::optional<Bytes> blob;
  std::vector<std::pair<uint64_t, Bytes>> records;
  RecoveryStats stats;
};

Recovered RecoverAll(MetaStore& store) {
  Recovered r;
  r.status = store.Recover(
      [&](std::span<const uint8_t> blob) {
        EXPECT_FALSE(r.blob.has_value()) << "load called twice";
        r.blob = Bytes(blob.begin(), blob.end());
        return Status::OK();
      },
      [&](uint64_t lsn, std::span<const uint8_t> rec) {
        r.records.emplace_back(lsn, Bytes(rec.begin(), rec.end()));
        return Status::OK();
      },
      &r.stats);
  return r;
}

class MetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    path_ = dir_ + "/meta.pool";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::vector<DataPoolGeometry> TwoDataPools() {
    return {{0, 4096, 1ull << 30}, {1, 4096, 1ull << 30}};
  }

  // A metadata pool of `size` bytes with a journal of about `fraction` of it.
  void Format(uint64_t size = 8ull << 20, double fraction = 0.25, uint32_t replicas = 1) {
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kMetadata, kCluster, 0, 4096, size};
    fo.force = true;
    ASSERT_TRUE(pool::FormatPool(path_, fo).ok());
    auto mapped = pool::MappedPool::Open(path_, {});
    ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
    MetaFormatOptions mo;
    mo.data_pools = TwoDataPools();
    mo.journal_fraction = fraction;
    mo.replicas = replicas;
    Status st = MetaStore::Format(*mapped, mo);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  std::unique_ptr<MetaStore> Open(bool msync = false) {
    auto s = MetaStore::Open(path_, {pool::Role::kMetadata, kCluster, {}}, msync);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // Opens and recovers, expecting success.
  std::unique_ptr<MetaStore> OpenRecovered(Recovered* out = nullptr) {
    auto store = Open();
    if (!store) return nullptr;
    Recovered r = RecoverAll(*store);
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    if (out != nullptr) *out = std::move(r);
    return store;
  }

  // Appends Payload(key) for key in [from, to), expecting consecutive LSNs from `from`.
  static void AppendRange(MetaStore& store, uint64_t from, uint64_t to) {
    for (uint64_t k = from; k < to; ++k) {
      Bytes p = Payload(k);
      Result<uint64_t> lsn = store.Append(p);
      ASSERT_TRUE(lsn.ok()) << lsn.status().ToString();
      ASSERT_EQ(*lsn, k);
    }
  }

  // Expects records [from, to] with Payload(lsn) bytes.
  static void ExpectRecords(const Recovered& r, uint64_t from, uint64_t to) {
    ASSERT_EQ(r.records.size(), to + 1 - from);
    for (uint64_t lsn = from; lsn <= to; ++lsn) {
      const auto& [got_lsn, bytes] = r.records[lsn - from];
      ASSERT_EQ(got_lsn, lsn);
      ASSERT_EQ(bytes, Payload(lsn)) << "record " << lsn;
    }
  }

  // Pool offset of the record with LSN `lsn` of a journal generation starting at `base`
  // whose records are Payload(base), Payload(base+1), ...
  uint64_t RecordOffset(const Superblock& sb, uint64_t base, uint64_t lsn) const {
    uint64_t off = sb.journal_offset + L::kRecordAreaOffset;
    for (uint64_t k = base; k < lsn; ++k) off += RecordBytes(Payload(k).size());
    return off;
  }
  uint64_t DurableWordOffset(const Superblock& sb) const {
    return sb.journal_offset + L::kDurableLsnOffset;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(MetaStoreTest, FormatWritesSuperblock) {
  Format(8ull << 20, 0.25);
  auto store = Open();
  ASSERT_TRUE(store);
  // A copy: the store is closed below and its superblock compared with the one read.
  const Superblock sb = store->superblock();
  EXPECT_EQ(sb.version, 2u);
  EXPECT_EQ(sb.replicas, 1u);
  EXPECT_EQ(sb.stripe_unit, 1u << 20);
  ASSERT_EQ(sb.data_pools.size(), 2u);
  EXPECT_EQ(sb.data_pools[1].index, 1u);
  EXPECT_EQ(sb.data_pools[1].block_size, 4096u);
  EXPECT_EQ(sb.data_pools[1].data_size, 1ull << 30);
  const uint64_t data_offset = store->pool_info().data_offset;
  EXPECT_EQ(sb.journal_offset, data_offset + 4096);
  EXPECT_EQ(sb.checkpoint_offset[0], sb.journal_offset + sb.journal_size);
  EXPECT_EQ(sb.checkpoint_offset[1], sb.checkpoint_offset[0] + sb.checkpoint_slot_size);
  EXPECT_LE(sb.checkpoint_offset[1] + sb.checkpoint_slot_size,
            data_offset + store->pool_info().data_size);
  EXPECT_EQ(store->journal_capacity(), sb.journal_size - L::kRecordAreaOffset);
  EXPECT_EQ(store->checkpoint_capacity(), sb.checkpoint_slot_size - L::kSlotBlobOffset);
  EXPECT_NEAR(static_cast<double>(sb.journal_size),
              0.25 * static_cast<double>(store->pool_info().data_size), 8192);
  store.reset();

  Result<Superblock> read = ReadSuperblock(path_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->journal_size, sb.journal_size);
  EXPECT_EQ(read->data_pools.size(), 2u);
}

TEST_F(MetaStoreTest, FormatRejectsBadGeometry) {
  Format();
  auto mapped = pool::MappedPool::Open(path_, {});
  ASSERT_TRUE(mapped.ok());
  MetaFormatOptions mo;
  mo.data_pools = TwoDataPools();

  MetaFormatOptions bad = mo;
  bad.data_pools.clear();
  EXPECT_EQ(MetaStore::Format(*mapped, bad).code(), StatusCode::kInvalidArgument);
  bad = mo;
  bad.stripe_unit = 6144;
  Status st = MetaStore::Format(*mapped, bad);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("not a multiple of data pool 0's block size 4096"));
  bad = mo;
  bad.data_pools[1].index = 5;
  EXPECT_THAT(MetaStore::Format(*mapped, bad).message(), HasSubstr("index order"));
  bad = mo;
  bad.journal_fraction = 1.5;
  EXPECT_EQ(MetaStore::Format(*mapped, bad).code(), StatusCode::kInvalidArgument);
  bad = mo;
  bad.data_pools.assign(300, {0, 4096, 1 << 20});
  for (uint32_t i = 0; i < 300; ++i) bad.data_pools[i].index = i;
  EXPECT_THAT(MetaStore::Format(*mapped, bad).message(), HasSubstr("256"));

  st = ValidateFormatOptions(16 << 10, mo);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("too small"));
  EXPECT_THAT(st.message(), HasSubstr("28672"));
  EXPECT_TRUE(ValidateFormatOptions(28 << 10, mo).ok());

  // A data pool is not a metadata pool.
  std::string data_path = dir_ + "/data.pool";
  pool::FormatOptions fo;
  fo.geometry = {pool::Role::kData, kCluster, 0, 4096, 4ull << 20};
  ASSERT_TRUE(pool::FormatPool(data_path, fo).ok());
  auto data = pool::MappedPool::Open(data_path, {});
  ASSERT_TRUE(data.ok());
  st = MetaStore::Format(*data, mo);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("data pool"));
  auto opened = MetaStore::Open(data_path, {});
  EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(opened.status().message(), HasSubstr("expected a metadata pool"));
}

TEST_F(MetaStoreTest, OpenIsExclusive) {
  Format();
  auto first = Open();
  ASSERT_TRUE(first);
  auto second = MetaStore::Open(path_, {});
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
  first.reset();
  EXPECT_TRUE(MetaStore::Open(path_, {}).ok());
}

TEST_F(MetaStoreTest, OpenChecksClusterAndSuperblock) {
  Format();
  pool::ClusterUuid other = pool::ClusterUuid::Generate();
  auto s = MetaStore::Open(path_, {std::nullopt, other, {}});
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("belongs to cluster"));

  // A metadata pool whose superblock was never written (mkfs interrupted).
  std::string bare = dir_ + "/bare.pool";
  pool::FormatOptions fo;
  fo.geometry = {pool::Role::kMetadata, kCluster, 0, 4096, 4ull << 20};
  ASSERT_TRUE(pool::FormatPool(bare, fo).ok());
  s = MetaStore::Open(bare, {});
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("missing"));
  EXPECT_THAT(s.status().message(), HasSubstr("offset 2097152"));
}

TEST_F(MetaStoreTest, FlippedSuperblockByteIsCorruption) {
  Format();
  const uint64_t sb_off = pool::DataOffsetFor(4096);
  FlipByte(path_, sb_off + 13);  // inside the stripe unit
  auto s = MetaStore::Open(path_, {});
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr("superblock"));
  EXPECT_THAT(s.status().message(), HasSubstr("pool offset " + std::to_string(sb_off)));
  EXPECT_THAT(s.status().message(), HasSubstr("checksum mismatch"));
  EXPECT_EQ(ReadSuperblock(path_).status().code(), StatusCode::kCorruption);
  FlipByte(path_, sb_off + 13);
  EXPECT_TRUE(MetaStore::Open(path_, {}).ok());

  FlipByte(path_, sb_off + 3000);  // reserved bytes are covered by the CRC too
  EXPECT_EQ(MetaStore::Open(path_, {}).status().code(), StatusCode::kCorruption);
}

TEST_F(MetaStoreTest, NewerSuperblockVersionIsNotSupported) {
  Format();
  const uint64_t sb_off = pool::DataOffsetFor(4096);
  Bytes sb = ReadAt(path_, sb_off, 4096);
  sb[8] = 3;                                       // version
  std::fill(sb.begin() + 60, sb.begin() + 64, 0);  // CRC field
  uint32_t crc = Crc32c(sb.data(), sb.size());
  for (int i = 0; i < 4; ++i) sb[60 + i] = static_cast<uint8_t>(crc >> (8 * i));
  WriteAt(path_, sb_off, sb);
  auto s = MetaStore::Open(path_, {});
  EXPECT_EQ(s.status().code(), StatusCode::kNotSupported);
  EXPECT_THAT(s.status().message(), HasSubstr("version 3 is newer"));
}

// Rewrites the superblock's bytes [at, at+bytes.size()) and its CRC.
void PatchSuperblock(const std::string& path, size_t at, const Bytes& bytes) {
  const uint64_t sb_off = pool::DataOffsetFor(4096);
  Bytes sb = ReadAt(path, sb_off, 4096);
  std::copy(bytes.begin(), bytes.end(), sb.begin() + at);
  std::fill(sb.begin() + 60, sb.begin() + 64, 0);  // CRC field
  uint32_t crc = Crc32c(sb.data(), sb.size());
  for (int i = 0; i < 4; ++i) sb[60 + i] = static_cast<uint8_t>(crc >> (8 * i));
  WriteAt(path, sb_off, sb);
}

TEST_F(MetaStoreTest, TheReplicationFactorIsRecorded) {
  Format(8ull << 20, 0.25, 2);
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->superblock().version, 2u);
  EXPECT_EQ(store->superblock().replicas, 2u);
  store.reset();
  Result<Superblock> read = ReadSuperblock(path_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->replicas, 2u);
}

TEST_F(MetaStoreTest, AVersion1PoolOpensWithOneCopy) {
  // A pool of the format before replication: version 1, byte 64 reserved (zero).
  Format(8ull << 20, 0.25, 2);
  PatchSuperblock(path_, 8, {1, 0, 0, 0});
  PatchSuperblock(path_, 64, {0, 0, 0, 0});
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->superblock().version, 1u);
  EXPECT_EQ(store->superblock().replicas, 1u);
}

TEST_F(MetaStoreTest, ABadReplicationFactorIsRefused) {
  Format(8ull << 20, 0.25, 2);
  for (uint8_t r : {0, 3, 4}) {  // two data pools: 3 copies do not fit
    SCOPED_TRACE(int(r));
    PatchSuperblock(path_, 64, {r, 0, 0, 0});
    auto s = MetaStore::Open(path_, {});
    EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
    EXPECT_THAT(s.status().message(), HasSubstr("replication factor"));
  }
  pool::FormatOptions fo;
  fo.geometry = {pool::Role::kMetadata, kCluster, 0, 4096, 8ull << 20};
  fo.force = true;
  ASSERT_TRUE(pool::FormatPool(path_, fo).ok());
  auto mapped = pool::MappedPool::Open(path_, {});
  ASSERT_TRUE(mapped.ok());
  MetaFormatOptions mo;
  mo.data_pools = TwoDataPools();
  mo.replicas = 3;
  Status st = MetaStore::Format(*mapped, mo);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("needs at least 3 data pools"));
  mo.replicas = 0;
  EXPECT_EQ(MetaStore::Format(*mapped, mo).code(), StatusCode::kInvalidArgument);
}

TEST_F(MetaStoreTest, AppendNeedsRecover) {
  Format();
  auto store = Open();
  ASSERT_TRUE(store);
  Bytes p = Payload(1);
  EXPECT_EQ(store->Append(p).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->WriteCheckpoint(0, p).code(), StatusCode::kFailedPrecondition);
}

TEST_F(MetaStoreTest, FreshPoolRecoversEmpty) {
  Format();
  Recovered r;
  auto store = OpenRecovered(&r);
  ASSERT_TRUE(store);
  EXPECT_FALSE(r.blob.has_value());
  EXPECT_TRUE(r.records.empty());
  EXPECT_EQ(r.stats.checkpoint_lsn, 0u);
  EXPECT_EQ(r.stats.last_lsn, 0u);
  EXPECT_FALSE(r.stats.dropped_torn_tail);
  EXPECT_EQ(store->last_lsn(), 0u);
  EXPECT_EQ(store->journal_fill(), 0.0);
}

TEST_F(MetaStoreTest, AppendRecoverRoundTrip) {
  Format();
  {
    auto store = OpenRecovered();
    ASSERT_TRUE(store);
    AppendRange(*store, 1, 201);
    EXPECT_EQ(store->last_lsn(), 200u);
    EXPECT_GT(store->journal_fill(), 0.0);
    // Recover again in the same process: the same records, and appends continue.
    Recovered again = RecoverAll(*store);
    ASSERT_TRUE(again.status.ok());
    ExpectRecords(again, 1, 200);
    AppendRange(*store, 201, 251);
  }
  Recovered r;
  auto store = OpenRecovered(&r);
  ASSERT_TRUE(store);
  EXPECT_FALSE(r.blob.has_value());
  ExpectRecords(r, 1, 250);
  EXPECT_EQ(r.stats.records_replayed, 250u);
  EXPECT_EQ(r.stats.last_lsn, 250u);
  EXPECT_FALSE(r.stats.dropped_torn_tail);
  // Appends continue after the last record; a further reopen sees everything.
  AppendRange(*store, 251, 301);
  store.reset();
  store = OpenRecovered(&r);
  ExpectRecords(r, 1, 300);
}

TEST_F(MetaStoreTest, MsyncModeRoundTrip) {
  Format();
  {
    auto store = Open(/*msync=*/true);
    ASSERT_TRUE(store);
    ASSERT_TRUE(RecoverAll(*store).status.ok());
    AppendRange(*store, 1, 21);
    Bytes blob = {1, 2, 3};
    ASSERT_TRUE(store->WriteCheckpoint(20, blob).ok());
    AppendRange(*store, 21, 31);
  }
  Recovered r;
  auto store = OpenRecovered(&r);
  ASSERT_TRUE(r.blob.has_value());
  EXPECT_EQ(*r.blob, (Bytes{1, 2, 3}));
  ExpectRecords(r, 21, 30);
}

TEST_F(MetaStoreTest, CheckpointThenAppendsThenRecover) {
  Format();
  Bytes blob1(10000), blob2(3000), blob3(50000);
  for (size_t i = 0; i < blob1.size(); ++i) blob1[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < blob2.size(); ++i) blob2[i] = static_cast<uint8_t>(i * 13);
  for (size_t i = 0; i < blob3.size(); ++i) blob3[i] = static_cast<uint8_t>(i * 3 + 1);
  const uint64_t slot_a = ReadSuperblock(path_)->checkpoint_offset[0];
  const uint64_t slot_b = ReadSuperblock(path_)->checkpoint_offset[1];
  {
    auto store = OpenRecovered();
    ASSERT_TRUE(store);
    AppendRange(*store, 1, 51);
    double fill = store->journal_fill();
    ASSERT_TRUE(store->WriteCheckpoint(50, blob1).ok());
    EXPECT_EQ(store->journal_fill(), 0.0);
    EXPECT_GT(fill, 0.0);
    EXPECT_EQ(store->last_lsn(), 50u);
    AppendRange(*store, 51, 81);
  }
  // The first checkpoint went to slot A.
  EXPECT_EQ(ReadAt(path_, slot_a, 8), Bytes({'D', 'P', 'M', 'F', 'S', 'C', 'K', '1'}));
  Recovered r;
  {
    auto store = OpenRecovered(&r);
    ASSERT_TRUE(store);
    ASSERT_TRUE(r.blob.has_value());
    EXPECT_EQ(*r.blob, blob1);
    ExpectRecords(r, 51, 80);
    EXPECT_EQ(r.stats.checkpoint_lsn, 50u);
    EXPECT_EQ(r.stats.checkpoint_bytes, blob1.size());
    EXPECT_EQ(r.stats.last_lsn, 80u);
    EXPECT_FALSE(r.stats.dropped_torn_tail);
    // Second checkpoint: slot B; third: slot A again.
    ASSERT_TRUE(store->WriteCheckpoint(80, blob2).ok());
    EXPECT_EQ(ReadAt(path_, slot_b, 8), Bytes({'D', 'P', 'M', 'F', 'S', 'C', 'K', '1'}));
    AppendRange(*store, 81, 91);
  }
  {
    auto store = OpenRecovered(&r);
    ASSERT_TRUE(store);
    EXPECT_EQ(*r.blob, blob2);
    ExpectRecords(r, 81, 90);
    ASSERT_TRUE(store->WriteCheckpoint(90, blob3).ok());
    // A checkpoint without appends since the last one is fine too.
    ASSERT_TRUE(store->WriteCheckpoint(90, blob3).ok());
    ASSERT_TRUE(store->WriteCheckpoint(90, blob1).ok());
  }
  auto store = OpenRecovered(&r);
  ASSERT_TRUE(store);
  EXPECT_EQ(*r.blob, blob1);
  EXPECT_TRUE(r.records.empty());
  EXPECT_EQ(r.stats.last_lsn, 90u);
  EXPECT_FALSE(r.stats.dropped_torn_tail);
  AppendRange(*store, 91, 92);
}

TEST_F(MetaStoreTest, CheckpointPreconditions) {
  Format();
  auto store = OpenRecovered();
  ASSERT_TRUE(store);
  AppendRange(*store, 1, 11);
  Bytes blob(100);
  Status st = store->WriteCheckpoint(9, blob);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("last LSN is 10"));
  Bytes huge(store->checkpoint_capacity() + 1);
  st = store->WriteCheckpoint(10, huge);
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(st.message(), HasSubstr(std::to_string(huge.size())));
  EXPECT_THAT(st.message(), HasSubstr(std::to_string(store->checkpoint_capacity())));
  // Neither failure changed anything.
  Bytes exact(store->checkpoint_capacity(), 0xab);
  ASSERT_TRUE(store->WriteCheckpoint(10, exact).ok());
  store.reset();
  Recovered r;
  store = OpenRecovered(&r);
  ASSERT_TRUE(r.blob.has_value());
  EXPECT_EQ(*r.blob, exact);
}

TEST_F(MetaStoreTest, JournalFullIsResourceExhausted) {
  // The smallest journal: one page of records.
  Format(pool::DataOffsetFor(4096) + (64 << 10), 0.01);
  auto store = OpenRecovered();
  ASSERT_TRUE(store);
  ASSERT_EQ(store->journal_capacity(), 4096u);
  Bytes rec(100, 0x11);  // 128 bytes with its header: 32 fit
  uint64_t n = 0;
  Result<uint64_t> lsn = store->Append(rec);
  while (lsn.ok()) {
    ++n;
    lsn = store->Append(rec);
  }
  EXPECT_EQ(n, 32u);
  EXPECT_EQ(lsn.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(lsn.status().message(), HasSubstr("full"));
  EXPECT_THAT(lsn.status().message(), HasSubstr("checkpoint"));
  EXPECT_EQ(store->journal_fill(), 1.0);
  EXPECT_EQ(store->last_lsn(), 32u);
  // A record larger than the whole journal can never fit, whatever a checkpoint frees.
  Bytes too_big(4096);
  EXPECT_EQ(store->Append(too_big).status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(store->Append(too_big).status().message(), HasSubstr("can never fit"));
  // Checkpoint and retry.
  ASSERT_TRUE(store->WriteCheckpoint(32, Bytes{32}).ok());
  lsn = store->Append(rec);
  ASSERT_TRUE(lsn.ok());
  EXPECT_EQ(*lsn, 33u);
  store.reset();
  Recovered r;
  store = OpenRecovered(&r);
  EXPECT_EQ(*r.blob, Bytes{32});
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].first, 33u);
  EXPECT_EQ(r.records[0].second, rec);
}

TEST_F(MetaStoreTest, ConcurrentAppendsAreConsecutiveAndRecover) {
  Format(32ull << 20, 0.5);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<uint64_t>> lsns(kThreads);
  {
    auto store = OpenRecovered();
    ASSERT_TRUE(store);
    std::vector<std::thread> threads;
    std::atomic<bool> failed{false};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Bytes p = Payload(static_cast<uint64_t>(t) << 32 | static_cast<uint64_t>(i));
          Result<uint64_t> lsn = store->Append(p);
          if (!lsn.ok()) {
            failed = true;
            return;
          }
          lsns[t].push_back(*lsn);
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_FALSE(failed);
    EXPECT_EQ(store->last_lsn(), static_cast<uint64_t>(kThreads * kPerThread));
  }
  std::map<uint64_t, uint64_t> key_of;  // lsn -> payload key
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(std::is_sorted(lsns[t].begin(), lsns[t].end()));
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_TRUE(key_of.emplace(lsns[t][i], static_cast<uint64_t>(t) << 32 | i).second);
    }
  }
  ASSERT_EQ(key_of.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(key_of.begin()->first, 1u);
  EXPECT_EQ(key_of.rbegin()->first, static_cast<uint64_t>(kThreads * kPerThread));
  Recovered r;
  auto store = OpenRecovered(&r);
  ASSERT_EQ(r.records.size(), key_of.size());
  for (const auto& [lsn, bytes] : r.records) {
    ASSERT_EQ(bytes, Payload(key_of.at(lsn))) << "lsn " << lsn;
  }
  EXPECT_FALSE(r.stats.dropped_torn_tail);
}

// The reserve mark bounds where a crashed run can have written, so Recover scans and
// zeroes only up to it instead of the whole journal.
TEST_F(MetaStoreTest, ReserveMarkStaysAheadOfTheRecords) {
  Format(16ull << 20, 0.5);
  const Superblock sb = *ReadSuperblock(path_);
  const uint64_t mark_at = sb.journal_offset + L::kReserveMarkOffset;
  uint64_t bytes = 0;
  {
    auto store = OpenRecovered();
    EXPECT_EQ(ReadU64(path_, mark_at), 0u);
    for (uint64_t k = 1; k <= 6000; ++k) {
      Bytes p = Payload(k);
      ASSERT_TRUE(store->Append(p).ok());
      bytes += RecordBytes(p.size());
      uint64_t mark = ReadU64(path_, mark_at);
      ASSERT_GE(mark, bytes);
      ASSERT_EQ(mark % L::kReserveStep, 0u);
      ASSERT_LE(mark - bytes, L::kReserveStep);
    }
    ASSERT_GT(bytes, L::kReserveStep);  // the mark moved more than once
  }
  // Garbage of a crashed run just below the mark is found and wiped.
  const uint64_t mark = ReadU64(path_, mark_at);
  const uint64_t records = sb.journal_offset + L::kRecordAreaOffset;
  WriteAt(path_, records + mark - 100, Bytes(50, 0xee));
  Recovered r;
  {
    auto store = OpenRecovered(&r);
    ExpectRecords(r, 1, 6000);
    EXPECT_EQ(ReadU64(path_, mark_at), bytes);  // down to the end of the last record
    EXPECT_EQ(ReadAt(path_, records + mark - 100, 50), Bytes(50, 0));
    ASSERT_TRUE(store->WriteCheckpoint(6000, Bytes{1}).ok());
    EXPECT_EQ(ReadU64(path_, mark_at), 0u);
    EXPECT_EQ(ReadAt(path_, records, 64), Bytes(64, 0));
  }
  auto store = OpenRecovered(&r);
  EXPECT_TRUE(r.records.empty());
  EXPECT_FALSE(r.stats.dropped_torn_tail);
}

TEST_F(MetaStoreTest, TornTailBeyondDurableIsDropped) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 11);
  }
  // Record 10 was written but never acknowledged (durable word 9), and only half of it
  // made it: its second half is zero.
  WriteU64(path_, DurableWordOffset(sb), 9);
  uint64_t off10 = RecordOffset(sb, 1, 10);
  uint64_t size10 = RecordBytes(Payload(10).size());
  ASSERT_GT(size10, 32u);
  WriteAt(path_, off10 + size10 / 2, Bytes(size10 - size10 / 2, 0));
  Recovered r;
  {
    auto store = OpenRecovered(&r);
    ExpectRecords(r, 1, 9);
    EXPECT_TRUE(r.stats.dropped_torn_tail);
    EXPECT_EQ(r.stats.last_lsn, 9u);
    // The next append takes LSN 10 and overwrites the torn record.
    AppendRange(*store, 10, 13);
  }
  auto store = OpenRecovered(&r);
  ExpectRecords(r, 1, 12);
  EXPECT_FALSE(r.stats.dropped_torn_tail);
}

TEST_F(MetaStoreTest, GarbledTailBeyondDurableIsDropped) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 6);
  }
  WriteU64(path_, DurableWordOffset(sb), 4);
  FlipByte(path_, RecordOffset(sb, 1, 5) + 10);  // inside record 5's LSN
  Recovered r;
  auto store = OpenRecovered(&r);
  ExpectRecords(r, 1, 4);
  EXPECT_TRUE(r.stats.dropped_torn_tail);
}

TEST_F(MetaStoreTest, IntactUnacknowledgedRecordsAreKeptAndBecomeDurable) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 11);
  }
  WriteU64(path_, DurableWordOffset(sb), 5);
  Recovered r;
  {
    auto store = OpenRecovered(&r);
    ExpectRecords(r, 1, 10);
    EXPECT_FALSE(r.stats.dropped_torn_tail);
  }
  // The caller rebuilt its state from records 6..10, so they are acknowledged now.
  EXPECT_EQ(ReadU64(path_, DurableWordOffset(sb)), 10u);
}

// With group commit, record N+1 can be complete while record N is torn. Recovery ends at
// N; the leftover N+1 must not come back after a new, same-sized record N is appended.
TEST_F(MetaStoreTest, RecordAfterATornOneIsNotResurrected) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 8);  // 1..7
  }
  WriteU64(path_, DurableWordOffset(sb), 5);
  uint64_t off6 = RecordOffset(sb, 1, 6);
  FlipByte(path_, off6 + L::kRecordHeaderSize - 1);  // record 6's header padding
  Recovered r;
  {
    auto store = OpenRecovered(&r);
    ExpectRecords(r, 1, 5);
    EXPECT_TRUE(r.stats.dropped_torn_tail);
    Result<uint64_t> lsn = store->Append(Payload(6));  // same size as the old record 6
    ASSERT_TRUE(lsn.ok());
    EXPECT_EQ(*lsn, 6u);
  }
  // Simulate the crash right after the new record 6 was written, before the durable word.
  WriteU64(path_, DurableWordOffset(sb), 5);
  auto store = OpenRecovered(&r);
  ExpectRecords(r, 1, 6);  // not 7: the old record 7 was wiped
}

TEST_F(MetaStoreTest, FlippedByteInAcknowledgedRecordIsCorruption) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 11);
  }
  uint64_t off3 = RecordOffset(sb, 1, 3);
  ASSERT_FALSE(Payload(3).empty());
  FlipByte(path_, off3 + L::kRecordHeaderSize);
  auto store = Open();
  Recovered r = RecoverAll(*store);
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status.message(), HasSubstr("pool offset " + std::to_string(off3)));
  EXPECT_THAT(r.status.message(), HasSubstr("LSN 3"));
  EXPECT_THAT(r.status.message(), HasSubstr("checksum mismatch"));
  EXPECT_THAT(r.status.message(), HasSubstr("durable LSN 10"));
  // The store refuses appends after a failed recovery.
  EXPECT_EQ(store->Append(Payload(1)).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(MetaStoreTest, MissingAcknowledgedRecordIsCorruption) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 4);
  }
  // The durable word says 5 records were acknowledged; only 3 exist.
  WriteU64(path_, DurableWordOffset(sb), 5);
  auto store = Open();
  Recovered r = RecoverAll(*store);
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status.message(), HasSubstr("LSN 4 expected"));
  EXPECT_THAT(r.status.message(), HasSubstr("zero"));
}

TEST_F(MetaStoreTest, FlippedByteInCurrentCheckpointIsCorruption) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 6);
    ASSERT_TRUE(store->WriteCheckpoint(5, Bytes(1000, 0x42)).ok());  // slot A
    AppendRange(*store, 6, 9);
    ASSERT_TRUE(store->WriteCheckpoint(8, Bytes(2000, 0x43)).ok());  // slot B
    AppendRange(*store, 9, 11);
  }
  // Damage to the older checkpoint (slot A) does not matter.
  FlipByte(path_, sb.checkpoint_offset[0] + L::kSlotBlobOffset + 10);
  Recovered r;
  { auto store = OpenRecovered(&r); }
  EXPECT_EQ(*r.blob, Bytes(2000, 0x43));
  ExpectRecords(r, 9, 10);

  // Damage to the current one (slot B) is reported, not papered over with slot A.
  const uint64_t b = sb.checkpoint_offset[1];
  FlipByte(path_, b + L::kSlotBlobOffset + 1500);
  {
    auto store = Open();
    r = RecoverAll(*store);
    EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
    EXPECT_THAT(r.status.message(), HasSubstr("checkpoint slot B"));
    EXPECT_THAT(r.status.message(), HasSubstr("pool offset " + std::to_string(b)));
    EXPECT_THAT(r.status.message(), HasSubstr("blob checksum mismatch"));
    EXPECT_FALSE(r.blob.has_value());
  }
  FlipByte(path_, b + L::kSlotBlobOffset + 1500);
  // Same for the current slot's header: the journal needs the checkpoint it names (slot A
  // is intact again, and older).
  FlipByte(path_, sb.checkpoint_offset[0] + L::kSlotBlobOffset + 10);
  FlipByte(path_, b + 17);  // through_lsn
  {
    auto store = Open();
    r = RecoverAll(*store);
    EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
    EXPECT_THAT(r.status.message(), HasSubstr("checkpoint slot B"));
    EXPECT_THAT(r.status.message(), HasSubstr("pool offset " + std::to_string(b)));
    EXPECT_THAT(r.status.message(), HasSubstr("header checksum mismatch"));
    EXPECT_THAT(r.status.message(), HasSubstr("needs the checkpoint through LSN 8"));
  }
}

TEST_F(MetaStoreTest, JournalHeaderDamage) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 4);
    ASSERT_TRUE(store->WriteCheckpoint(3, Bytes{3}).ok());  // journal generation 2: copy 0
    AppendRange(*store, 4, 7);
  }
  // The older copy (generation 1, copy 1) damaged: harmless.
  FlipByte(path_, sb.journal_offset + L::kJournalHeaderCopy[1] + 9);
  Recovered r;
  { auto store = OpenRecovered(&r); }
  ExpectRecords(r, 4, 6);
  // The current copy damaged too: nothing valid is left.
  FlipByte(path_, sb.journal_offset + L::kJournalHeaderCopy[0] + 9);
  auto store = Open();
  r = RecoverAll(*store);
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status.message(), HasSubstr("journal header"));
  EXPECT_THAT(r.status.message(), HasSubstr("pool offset " + std::to_string(sb.journal_offset)));
}

TEST_F(MetaStoreTest, DamagedCurrentJournalHeaderWithAcknowledgedRecordsIsCorruption) {
  Format();
  const Superblock sb = *ReadSuperblock(path_);
  {
    auto store = OpenRecovered();
    AppendRange(*store, 1, 4);
    ASSERT_TRUE(store->WriteCheckpoint(3, Bytes{3}).ok());  // generation 2 in copy 0
    AppendRange(*store, 4, 7);
  }
  // Only the current copy damaged: copy 1 (generation 1) looks current, the checkpoint
  // looks one generation ahead, but records 4..6 were acknowledged after it.
  FlipByte(path_, sb.journal_offset + L::kJournalHeaderCopy[0] + 17);
  auto store = Open();
  Recovered r = RecoverAll(*store);
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status.message(), HasSubstr("durable LSN 6"));
}

// WriteCheckpoint's steps, each cut short by a crash, simulated by restoring parts of the
// pool file to what they held before the checkpoint.
class CheckpointCrashTest : public MetaStoreTest {
 protected:
  void SetUp() override {
    MetaStoreTest::SetUp();
    Format();
    sb_ = *ReadSuperblock(path_);
    auto store = OpenRecovered();
    ASSERT_TRUE(store);
    AppendRange(*store, 1, 21);
    ASSERT_TRUE(store->WriteCheckpoint(20, old_blob_).ok());  // slot A, generation 2
    AppendRange(*store, 21, 31);
    journal_before_ = ReadAt(path_, sb_.journal_offset, sb_.journal_size);
    slot_b_before_ = ReadAt(path_, sb_.checkpoint_offset[1], 4096);
    ASSERT_TRUE(store->WriteCheckpoint(30, new_blob_).ok());  // slot B, generation 3
  }

  // Checks that recovery gives exactly the state through LSN 30 (either checkpoint), that
  // appends continue at 31, and that a further recovery sees them.
  void ExpectExactRecovery(bool expect_new_checkpoint) {
    Recovered r;
    {
      auto store = OpenRecovered(&r);
      ASSERT_TRUE(store);
      ASSERT_TRUE(r.blob.has_value());
      if (expect_new_checkpoint) {
        EXPECT_EQ(*r.blob, new_blob_);
        EXPECT_TRUE(r.records.empty());
      } else {
        EXPECT_EQ(*r.blob, old_blob_);
        ExpectRecords(r, 21, 30);
      }
      EXPECT_EQ(r.stats.last_lsn, 30u);
      EXPECT_FALSE(r.stats.dropped_torn_tail);
      AppendRange(*store, 31, 36);
    }
    auto store = OpenRecovered(&r);
    ASSERT_TRUE(store);
    if (expect_new_checkpoint) {
      EXPECT_EQ(*r.blob, new_blob_);
      ExpectRecords(r, 31, 35);
    } else {
      EXPECT_EQ(*r.blob, old_blob_);
      ExpectRecords(r, 21, 35);
    }
    // And the next checkpoint still works.
    ASSERT_TRUE(store->WriteCheckpoint(35, Bytes{35}).ok());
    store.reset();
    store = OpenRecovered(&r);
    EXPECT_EQ(*r.blob, Bytes{35});
    EXPECT_TRUE(r.records.empty());
  }

  Superblock sb_;
  Bytes old_blob_ = Bytes(5000, 0x01);
  Bytes new_blob_ = Bytes(7000, 0x02);
  Bytes journal_before_;
  Bytes slot_b_before_;
};

TEST_F(CheckpointCrashTest, CompleteCheckpoint) { ExpectExactRecovery(true); }

TEST_F(CheckpointCrashTest, BlobAndHeaderWrittenJournalNotReset) {
  WriteAt(path_, sb_.journal_offset, journal_before_);
  ExpectExactRecovery(true);
}

TEST_F(CheckpointCrashTest, SlotHeaderTorn) {
  WriteAt(path_, sb_.journal_offset, journal_before_);
  // Half of the new header made it, over the zeroed old one.
  Bytes header = ReadAt(path_, sb_.checkpoint_offset[1], 64);
  std::fill(header.begin() + 24, header.end(), 0);
  WriteAt(path_, sb_.checkpoint_offset[1], header);
  ExpectExactRecovery(false);
}

TEST_F(CheckpointCrashTest, SlotHeaderInvalidatedBlobHalfWritten) {
  WriteAt(path_, sb_.journal_offset, journal_before_);
  WriteAt(path_, sb_.checkpoint_offset[1], Bytes(64, 0));
  ExpectExactRecovery(false);
}

TEST_F(CheckpointCrashTest, JournalHeaderTorn) {
  // The new journal header copy (generation 3 goes to copy 1) is torn; records and the
  // other copy are as before the checkpoint.
  Bytes journal = journal_before_;
  Bytes now = ReadAt(path_, sb_.journal_offset + L::kJournalHeaderCopy[1], 64);
  std::copy(now.begin(), now.begin() + 12, journal.begin() + L::kJournalHeaderCopy[1]);
  WriteAt(path_, sb_.journal_offset, journal);
  ExpectExactRecovery(true);
}

TEST_F(CheckpointCrashTest, OldRecordsNotYetZeroed) {
  // The new header is durable but the old generation's records are still there (and so
  // the reserve mark is still the old one, which comes down only after the zeroing).
  Bytes records(journal_before_.begin() + L::kRecordAreaOffset, journal_before_.end());
  WriteAt(path_, sb_.journal_offset + L::kRecordAreaOffset, records);
  Bytes mark(journal_before_.begin() + L::kReserveMarkOffset,
             journal_before_.begin() + L::kReserveMarkOffset + 8);
  WriteAt(path_, sb_.journal_offset + L::kReserveMarkOffset, mark);
  ExpectExactRecovery(true);
}

TEST_F(CheckpointCrashTest, OldRecordsHalfZeroed) {
  Bytes records(journal_before_.begin() + L::kRecordAreaOffset, journal_before_.end());
  std::fill(records.begin(), records.begin() + 700, 0);
  WriteAt(path_, sb_.journal_offset + L::kRecordAreaOffset, records);
  Bytes mark(journal_before_.begin() + L::kReserveMarkOffset,
             journal_before_.begin() + L::kReserveMarkOffset + 8);
  WriteAt(path_, sb_.journal_offset + L::kReserveMarkOffset, mark);
  ExpectExactRecovery(true);
}

// --- kill -9 of a writer ---

// Records of the crash test carry their identity, the rest follows from it.
struct RecordId {
  uint32_t trial = 0;
  uint32_t thread = 0;
  uint32_t seq = 0;
  bool operator==(const RecordId&) const = default;
};

Bytes CrashPayload(const RecordId& id) {
  uint64_t key =
      static_cast<uint64_t>(id.trial) << 40 ^ static_cast<uint64_t>(id.thread) << 32 ^ id.seq;
  Bytes b = Payload(key, 180);
  Bytes out(12 + b.size());
  std::memcpy(out.data(), &id.trial, 4);
  std::memcpy(out.data() + 4, &id.thread, 4);
  std::memcpy(out.data() + 8, &id.seq, 4);
  std::copy(b.begin(), b.end(), out.begin() + 12);
  return out;
}

std::optional<RecordId> DecodeCrashPayload(std::span<const uint8_t> rec) {
  if (rec.size() < 12) return std::nullopt;
  RecordId id;
  std::memcpy(&id.trial, rec.data(), 4);
  std::memcpy(&id.thread, rec.data() + 4, 4);
  std::memcpy(&id.seq, rec.data() + 8, 4);
  Bytes expected = CrashPayload(id);
  if (!std::equal(rec.begin(), rec.end(), expected.begin(), expected.end())) return std::nullopt;
  return id;
}

// The "state" of the crash test: which record each LSN holds. The checkpoint blob is this
// table, 12 bytes per LSN.
Status LoadTable(std::span<const uint8_t> blob, std::vector<RecordId>* table) {
  if (blob.size() % 12 != 0) return Status::Corruption("checkpoint blob size");
  table->resize(blob.size() / 12);
  std::memcpy(table->data(), blob.data(), blob.size());
  return Status::OK();
}

Status ReplayInto(uint64_t lsn, std::span<const uint8_t> rec, std::vector<RecordId>* table) {
  std::optional<RecordId> id = DecodeCrashPayload(rec);
  if (!id) return Status::Corruption("record " + std::to_string(lsn) + " has wrong bytes");
  if (lsn != table->size() + 1) return Status::Corruption("replay out of order");
  table->push_back(*id);
  return Status::OK();
}

struct AckMessage {
  uint64_t lsn;  // 0: "recovered, appending now"
  RecordId id;
};
static_assert(sizeof(AckMessage) == 24 && sizeof(AckMessage) <= PIPE_BUF);

// The child: recover, then append from 4 threads as fast as possible, checkpointing when
// the journal is half full, and report every acknowledged LSN. Never returns.
[[noreturn]] void CrashChild(const std::string& path, uint32_t trial, int out_fd) {
  auto opened = MetaStore::Open(path, {});
  if (!opened.ok()) ::_exit(10);
  std::unique_ptr<MetaStore> store = std::move(opened).value();
  std::vector<RecordId> table;
  Status st = store->Recover(
      [&](std::span<const uint8_t> b) { return LoadTable(b, &table); },
      [&](uint64_t lsn, std::span<const uint8_t> rec) { return ReplayInto(lsn, rec, &table); },
      nullptr);
  if (!st.ok()) ::_exit(11);
  AckMessage ready{0, {}};
  if (::write(out_fd, &ready, sizeof(ready)) != sizeof(ready)) ::_exit(12);
  std::shared_mutex checkpoint_mu;  // appends shared, checkpoints exclusive
  std::mutex table_mu;
  auto worker = [&](uint32_t thread) {
    for (uint32_t seq = 0;; ++seq) {
      RecordId id{trial, thread, seq};
      Bytes rec = CrashPayload(id);
      while (true) {
        Result<uint64_t> lsn = Status::Internal("unset");
        {
          std::shared_lock lock(checkpoint_mu);
          lsn = store->Append(rec);
          if (lsn.ok()) {
            std::lock_guard tl(table_mu);
            if (table.size() < *lsn) table.resize(*lsn);
            table[*lsn - 1] = id;
          }
        }
        if (lsn.ok()) {
          AckMessage m{*lsn, id};
          if (::write(out_fd, &m, sizeof(m)) != sizeof(m)) ::_exit(13);
        } else if (lsn.status().code() != StatusCode::kResourceExhausted) {
          ::_exit(14);
        }
        if (!lsn.ok() || store->journal_fill() > 0.5) {
          std::unique_lock lock(checkpoint_mu);
          if (store->journal_fill() > 0.5) {
            std::lock_guard tl(table_mu);
            std::span<const uint8_t> blob(reinterpret_cast<const uint8_t*>(table.data()),
                                          table.size() * sizeof(RecordId));
            if (!store->WriteCheckpoint(store->last_lsn(), blob).ok()) ::_exit(15);
          }
        }
        if (lsn.ok()) break;
      }
    }
  };
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  ::_exit(16);  // unreachable: workers never end
}

TEST_F(MetaStoreTest, KillNineLosesNoAcknowledgedRecord) {
  // A 236 KiB journal: the child checkpoints about every 1000 records, so kills land in
  // and around checkpoints too. 15 MiB slots hold the whole table.
  Format(32ull << 20, 0.008);
  std::mt19937 rng(20240601);
  std::map<uint64_t, RecordId> acked;  // every acknowledged record of every trial
  uint64_t total_checkpoints = 0;
  int torn_tails = 0;
  for (uint32_t trial = 1; trial <= 20; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      CrashChild(path_, trial, fds[1]);
    }
    ::close(fds[1]);
    // Kill 5-50 ms after the child started appending; every fifth trial kills it early,
    // while it may still be recovering (which writes to the pool too).
    const bool early = trial % 5 == 0;
    const auto start = std::chrono::steady_clock::now();
    auto deadline = start + std::chrono::milliseconds(early ? 1 + rng() % 8 : 10000);
    bool killed = false;
    bool ready = false;
    std::vector<uint8_t> buf;
    while (true) {
      if (!killed && std::chrono::steady_clock::now() >= deadline) {
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        killed = true;
      }
      pollfd p{fds[0], POLLIN, 0};
      int timeout = killed ? 1000 : 1;
      if (::poll(&p, 1, timeout) > 0) {
        uint8_t chunk[4096];
        ssize_t n = ::read(fds[0], chunk, sizeof(chunk));
        if (n <= 0) break;  // EOF: the child is gone
        buf.insert(buf.end(), chunk, chunk + n);
        size_t whole = buf.size() / sizeof(AckMessage) * sizeof(AckMessage);
        for (size_t off = 0; off < whole; off += sizeof(AckMessage)) {
          AckMessage m;
          std::memcpy(&m, buf.data() + off, sizeof(m));
          if (m.lsn == 0) {
            if (!ready && !early) {
              deadline =
                  std::chrono::steady_clock::now() + std::chrono::milliseconds(5 + rng() % 46);
            }
            ready = true;
          } else {
            auto [it, fresh] = acked.emplace(m.lsn, m.id);
            // An LSN acknowledged in an earlier trial can only be acknowledged again if
            // the earlier ack was lost, which must never happen.
            ASSERT_TRUE(fresh) << "LSN " << m.lsn << " acknowledged twice";
          }
        }
        buf.erase(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(whole));
      } else if (killed) {
        break;
      }
      ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
    }
    ::close(fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child ended by itself: status " << status;

    auto store = Open();
    ASSERT_TRUE(store);
    std::vector<RecordId> table;
    RecoveryStats stats;
    Status st = store->Recover(
        [&](std::span<const uint8_t> b) { return LoadTable(b, &table); },
        [&](uint64_t lsn, std::span<const uint8_t> rec) { return ReplayInto(lsn, rec, &table); },
        &stats);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(table.size(), stats.last_lsn);
    if (stats.checkpoint_lsn > 0) ++total_checkpoints;
    if (stats.dropped_torn_tail) ++torn_tails;
    for (const auto& [lsn, id] : acked) {
      ASSERT_LE(lsn, table.size()) << "acknowledged LSN " << lsn << " lost";
      ASSERT_EQ(table[lsn - 1], id) << "LSN " << lsn << " holds another record";
    }
  }
  EXPECT_GT(acked.size(), 1000u);
  EXPECT_GT(total_checkpoints, 0u);
  RecordProperty("acknowledged_records", static_cast<int>(acked.size()));
  RecordProperty("recoveries_with_torn_tail", torn_tails);
}

// --- Latency (reported, loosely bounded: the machine is shared) ---

double MedianAppendMicros(MetaStore& store, int threads, int total) {
  std::vector<std::vector<double>> samples(threads);
  Bytes rec(200, 0x5c);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      samples[t].reserve(total / threads);
      for (int i = 0; i < total / threads; ++i) {
        auto a = std::chrono::steady_clock::now();
        Result<uint64_t> lsn = store.Append(rec);
        auto b = std::chrono::steady_clock::now();
        if (!lsn.ok()) return;
        samples[t].push_back(std::chrono::duration<double, std::micro>(b - a).count());
      }
    });
  }
  for (auto& th : ts) th.join();
  std::vector<double> all;
  for (auto& s : samples) all.insert(all.end(), s.begin(), s.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(total / threads * threads));
  std::nth_element(all.begin(), all.begin() + all.size() / 2, all.end());
  return all[all.size() / 2];
}

TEST_F(MetaStoreTest, AppendLatency) {
  Format(64ull << 20, 0.8);  // room for 2 x 100k records of 224 bytes
  auto store = OpenRecovered();
  ASSERT_TRUE(store);
  double one = MedianAppendMicros(*store, 1, 100000);
  ASSERT_TRUE(store->WriteCheckpoint(store->last_lsn(), Bytes{}).ok());
  double eight = MedianAppendMicros(*store, 8, 100000);
  std::cout << "[ METRIC   ] Append(200 B) median: " << one << " us (1 thread), " << eight
            << " us (8 threads)\n";
  RecordProperty("append_median_us_1_thread", std::to_string(one));
  RecordProperty("append_median_us_8_threads", std::to_string(eight));
  EXPECT_LT(one, 1000.0);
}

}  // namespace
}  // namespace dpmfs::meta
