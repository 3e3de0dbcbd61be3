// Pool header format, FormatPool, ReadPoolHeader and MappedPool on real files (tmpfs when
// /dev/shm is there) mapped with the real libpmem.
#include "common/pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crc32c.h"
#include "common/pool_lock.h"

namespace dpmfs::pool {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string base = "/dev/shm";
  if (::access(base.c_str(), W_OK) != 0) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::string tmpl = base + "/dpmfs-pool-test-XXXXXX";
  char* dir = ::mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr) << std::strerror(errno);
  return tmpl;
}

std::vector<uint8_t> ReadFile(const std::string& path, size_t off, size_t n) {
  std::vector<uint8_t> buf(n);
  int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, buf.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
  ::close(fd);
  return buf;
}

void WriteFile(const std::string& path, size_t off, const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data, n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
  ::close(fd);
}

uint32_t Le32(const uint8_t* p) {
  return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
}
uint64_t Le64(const uint8_t* p) { return Le32(p) | static_cast<uint64_t>(Le32(p + 4)) << 32; }

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name = "pool") const { return dir_ + "/" + name; }

  FormatOptions Options(uint64_t size = 4u << 20) const {
    FormatOptions o;
    o.geometry.role = Role::kData;
    o.geometry.cluster = cluster_;
    o.geometry.index = 7;
    o.geometry.block_size = 4096;
    o.geometry.pool_size = size;
    return o;
  }

  PoolInfo Format(const std::string& path) {
    Result<PoolInfo> r = FormatPool(path, Options());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : PoolInfo{};
  }

  // Overwrites a u32 header field and re-seals the header with a valid CRC, the way a
  // newer (or buggy) mkfs would have written it.
  void PatchField32(const std::string& path, size_t offset, uint32_t value) {
    std::vector<uint8_t> h = ReadFile(path, 0, kHeaderSize);
    for (int i = 0; i < 4; ++i) h[offset + i] = static_cast<uint8_t>(value >> (8 * i));
    uint32_t crc = HeaderCrc(h.data());
    for (int i = 0; i < 4; ++i) {
      h[layout::kHeaderCrcOffset + i] = static_cast<uint8_t>(crc >> (8 * i));
    }
    WriteFile(path, 0, h.data(), h.size());
  }
  void PatchField64(const std::string& path, size_t offset, uint64_t value) {
    PatchField32(path, offset, static_cast<uint32_t>(value));
    PatchField32(path, offset + 4, static_cast<uint32_t>(value >> 32));
  }

  std::string dir_;
  ClusterUuid cluster_ = ClusterUuid::Generate();
};

TEST_F(PoolTest, FormatThenOpenFieldsMatch) {
  std::string path = Path();
  PoolInfo made = Format(path);
  EXPECT_EQ(made.role, Role::kData);
  EXPECT_EQ(made.cluster, cluster_);
  EXPECT_EQ(made.index, 7u);
  EXPECT_EQ(made.block_size, 4096u);
  EXPECT_EQ(made.pool_size, 4u << 20);
  EXPECT_EQ(made.data_offset, 2u << 20);
  EXPECT_EQ(made.data_size, 2u << 20);
  EXPECT_EQ(made.version, kFormatVersion);
  EXPECT_GT(made.created_unix_ns, 0u);
  EXPECT_EQ(std::filesystem::file_size(path), 4u << 20);

  OpenExpectations expect{Role::kData, cluster_, 7u};
  Result<MappedPool> pool = MappedPool::Open(path, expect);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  const PoolInfo& info = pool->info();
  EXPECT_EQ(info.role, made.role);
  EXPECT_EQ(info.cluster, made.cluster);
  EXPECT_EQ(info.index, made.index);
  EXPECT_EQ(info.block_size, made.block_size);
  EXPECT_EQ(info.pool_size, made.pool_size);
  EXPECT_EQ(info.data_offset, made.data_offset);
  EXPECT_EQ(info.data_size, made.data_size);
  EXPECT_EQ(info.version, made.version);
  EXPECT_EQ(info.created_unix_ns, made.created_unix_ns);
  EXPECT_EQ(pool->path(), path);
  EXPECT_EQ(pool->data(), pool->base() + info.data_offset);
  EXPECT_EQ(pool->data_size(), info.data_size);
  EXPECT_EQ(pool->mapped_size(), info.pool_size);
  EXPECT_EQ(std::memcmp(pool->base(), kMagic.data(), kMagic.size()), 0);

  Result<PoolInfo> read = ReadPoolHeader(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->created_unix_ns, made.created_unix_ns);
}

// Pools hold file data and the namespace: readable by their owner only, whatever the
// umask, also an existing world-readable file formatted over.
TEST_F(PoolTest, PoolIsTheOwnersOnly) {
  const mode_t old_umask = ::umask(0);
  Format(Path("new"));
  struct stat st {};
  ASSERT_EQ(::stat(Path("new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  WriteFile(Path("old"), 0, "not a pool", 10);
  ASSERT_EQ(::chmod(Path("old").c_str(), 0644), 0);
  FormatOptions forced = Options();
  forced.force = true;  // "not a pool" is someone's file: only overwritten when forced
  ASSERT_TRUE(FormatPool(Path("old"), forced).ok());
  ASSERT_EQ(::stat(Path("old").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ::umask(old_umask);
}

TEST_F(PoolTest, MetadataRoleAndNoExpectations) {
  FormatOptions o = Options();
  o.geometry.role = Role::kMetadata;
  o.geometry.index = 0;
  ASSERT_TRUE(FormatPool(Path(), o).ok());
  Result<MappedPool> pool = MappedPool::Open(Path(), {});
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ(pool->info().role, Role::kMetadata);
  EXPECT_EQ(RoleName(Role::kMetadata), "metadata");
  EXPECT_EQ(RoleName(Role::kData), "data");
}

// Pins the on-media layout documented in mkfs/README.md, byte by byte.
TEST_F(PoolTest, HeaderLayoutIsLittleEndianAtDocumentedOffsets) {
  PoolInfo made = Format(Path());
  std::vector<uint8_t> h = ReadFile(Path(), 0, kHeaderSize);
  EXPECT_EQ(std::string(h.begin(), h.begin() + 8), "DPMFSPL1");
  EXPECT_EQ(Le32(&h[8]), 1u);
  EXPECT_EQ(Le32(&h[12]), 2u);
  EXPECT_EQ(std::memcmp(&h[16], cluster_.bytes.data(), 16), 0);
  EXPECT_EQ(Le32(&h[32]), 7u);
  EXPECT_EQ(Le32(&h[36]), 4096u);
  EXPECT_EQ(Le64(&h[40]), 4u << 20);
  EXPECT_EQ(Le64(&h[48]), 2u << 20);
  EXPECT_EQ(Le64(&h[56]), 2u << 20);
  EXPECT_EQ(Le64(&h[64]), made.created_unix_ns);
  uint32_t stored = Le32(&h[72]);
  std::memset(&h[72], 0, 4);
  EXPECT_EQ(stored, Crc32c(h.data(), h.size()));
  for (size_t i = layout::kUsedBytes; i < kHeaderSize; ++i) ASSERT_EQ(h[i], 0) << i;
}

TEST_F(PoolTest, RefusesToOverwritePoolWithoutForce) {
  std::string path = Path();
  Format(path);
  FormatOptions o = Options();
  o.geometry.cluster = ClusterUuid::Generate();
  Result<PoolInfo> r = FormatPool(path, o);
  ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("use --force"));
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  EXPECT_THAT(r.status().message(), HasSubstr(cluster_.ToString()));
  // The old pool is untouched.
  ASSERT_TRUE(ReadPoolHeader(path).ok());
  EXPECT_EQ(ReadPoolHeader(path)->cluster, cluster_);

  o.force = true;
  r = FormatPool(path, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ReadPoolHeader(path)->cluster, o.geometry.cluster);
}

TEST_F(PoolTest, RefusesFileWithOnlyOurMagic) {
  std::string path = Path();
  std::vector<uint8_t> junk(8192, 0x5a);
  std::memcpy(junk.data(), kMagic.data(), kMagic.size());
  WriteFile(path, 0, junk.data(), junk.size());
  Result<PoolInfo> r = FormatPool(path, Options());
  ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("damaged"));
  EXPECT_THAT(r.status().message(), HasSubstr("--force"));
  FormatOptions o = Options();
  o.force = true;
  EXPECT_TRUE(FormatPool(path, o).ok());
}

TEST_F(PoolTest, RefusesFileThatIsNotAPoolWithoutForce) {
  std::string path = Path();
  std::string text = "just some text, not a pool\n";
  WriteFile(path, 0, text.data(), text.size());
  Result<PoolInfo> r = FormatPool(path, Options());
  ASSERT_EQ(r.status().code(), StatusCode::kAlreadyExists) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(path + " exists and is not a dpmfs pool"));
  EXPECT_THAT(r.status().message(), HasSubstr("--force"));
  EXPECT_EQ(ReadFile(path, 0, text.size()), std::vector<uint8_t>(text.begin(), text.end()));
  FormatOptions o = Options();
  o.force = true;
  ASSERT_TRUE(FormatPool(path, o).ok());
  // An empty file holds nothing to lose: formatted without --force.
  std::string empty = Path("empty");
  std::ofstream(empty).close();
  EXPECT_TRUE(FormatPool(empty, Options()).ok());
}

// A pool whose lock another open file description holds (a running server) is refused
// even with --force; the refusal names the holder.
TEST_F(PoolTest, RefusesPoolInUseEvenWithForce) {
  std::string path = Path();
  Format(path);
  int holder = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(holder, 0);
  ASSERT_EQ(::flock(holder, LOCK_EX | LOCK_NB), 0);
  FormatOptions o = Options();
  o.force = true;
  o.geometry.cluster = ClusterUuid::Generate();
  Result<PoolInfo> r = FormatPool(path, o);
  ASSERT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(path + " is in use"));
  EXPECT_THAT(r.status().message(), HasSubstr("pid " + std::to_string(::getpid())));
  EXPECT_EQ(ReadPoolHeader(path)->cluster, cluster_);  // untouched
  EXPECT_EQ(CheckPoolNotInUse(path).code(), StatusCode::kFailedPrecondition);
  Result<PoolLock> second = PoolLock::Acquire(path);
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  ::close(holder);
  EXPECT_TRUE(CheckPoolNotInUse(path).ok());
  {
    Result<PoolLock> lock = PoolLock::Acquire(path);
    ASSERT_TRUE(lock.ok()) << lock.status().ToString();
    EXPECT_EQ(FormatPool(path, o).status().code(), StatusCode::kFailedPrecondition);
  }
  EXPECT_TRUE(FormatPool(path, o).ok());
}

TEST_F(PoolTest, ForceZeroesDataUnlessNoZero) {
  std::string path = Path();
  Format(path);
  {
    Result<MappedPool> pool = MappedPool::Open(path, {});
    ASSERT_TRUE(pool.ok());
    std::memset(pool->data(), 0xab, pool->data_size());
    ASSERT_TRUE(pool->Persist(pool->data(), pool->data_size()).ok());
  }
  FormatOptions o = Options();
  o.force = true;
  o.zero_data = false;
  ASSERT_TRUE(FormatPool(path, o).ok());
  {
    Result<MappedPool> pool = MappedPool::Open(path, {});
    ASSERT_TRUE(pool.ok());
    EXPECT_EQ(pool->data()[0], 0xab);
    EXPECT_EQ(pool->data()[pool->data_size() - 1], 0xab);
    // The reserved area between header and data is cleared even with --no-zero.
    EXPECT_EQ(pool->base()[kHeaderSize], 0);
  }
  o.zero_data = true;
  ASSERT_TRUE(FormatPool(path, o).ok());
  Result<MappedPool> pool = MappedPool::Open(path, {});
  ASSERT_TRUE(pool.ok());
  for (uint64_t i = 0; i < pool->data_size(); ++i) ASSERT_EQ(pool->data()[i], 0) << i;
}

// Crash safety: while a forced format is running there is no valid header on the file.
TEST_F(PoolTest, NoValidHeaderWhileFormatting) {
  std::string path = Path();
  Format(path);
  FormatOptions o = Options();
  o.force = true;
  int calls = 0;
  o.progress = [&](uint64_t done, uint64_t total) {
    ++calls;
    EXPECT_LE(done, total);
    EXPECT_EQ(total, o.geometry.pool_size);
    Result<PoolInfo> mid = ReadPoolHeader(path);
    EXPECT_FALSE(mid.ok()) << "valid header visible mid-format";
  };
  ASSERT_TRUE(FormatPool(path, o).ok());
  EXPECT_GE(calls, 2);
  EXPECT_TRUE(ReadPoolHeader(path).ok());
}

TEST_F(PoolTest, TruncatedFile) {
  std::string path = Path();
  Format(path);
  std::filesystem::resize_file(path, 3u << 20);
  Result<PoolInfo> r = ReadPoolHeader(path);
  ASSERT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("truncated"));
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  EXPECT_EQ(MappedPool::Open(path, {}).status().code(), StatusCode::kCorruption);

  std::filesystem::resize_file(path, 100);
  r = ReadPoolHeader(path);
  ASSERT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("too small to be a dpmfs pool"));

  std::filesystem::resize_file(path, 0);
  r = ReadPoolHeader(path);
  EXPECT_THAT(r.status().message(), HasSubstr("too small to be a dpmfs pool"));
}

TEST_F(PoolTest, FlippedHeaderByteIsChecksumCorruption) {
  std::string path = Path();
  Format(path);
  for (size_t off : {size_t{33}, size_t{2000}}) {
    std::vector<uint8_t> b = ReadFile(path, off, 1);
    b[0] ^= 0x01;
    WriteFile(path, off, b.data(), 1);
    Result<PoolInfo> r = ReadPoolHeader(path);
    ASSERT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
    EXPECT_THAT(r.status().message(), HasSubstr("checksum mismatch"));
    EXPECT_THAT(r.status().message(), HasSubstr("the header is corrupt"));
    EXPECT_THAT(r.status().message(), HasSubstr(path));
    Result<MappedPool> m = MappedPool::Open(path, {});
    EXPECT_EQ(m.status().code(), StatusCode::kCorruption);
    b[0] ^= 0x01;
    WriteFile(path, off, b.data(), 1);
    ASSERT_TRUE(ReadPoolHeader(path).ok());
  }
}

TEST_F(PoolTest, BadMagic) {
  std::string path = Path();
  Format(path);
  uint8_t x = 'X';
  WriteFile(path, 0, &x, 1);
  Result<PoolInfo> r = ReadPoolHeader(path);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("not a dpmfs pool (no dpmfs header)"));
  EXPECT_THAT(r.status().message(), HasSubstr("mkfs.dpmfs"));
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  // Without the magic the file is not ours: formatted only with --force.
  EXPECT_EQ(FormatPool(path, Options()).status().code(), StatusCode::kAlreadyExists);

  std::string zeros = Path("zeros");
  std::ofstream(zeros).close();
  std::filesystem::resize_file(zeros, 8u << 20);
  EXPECT_THAT(MappedPool::Open(zeros, {}).status().message(), HasSubstr("not a dpmfs pool"));
}

TEST_F(PoolTest, NewerVersionIsNotSupported) {
  std::string path = Path();
  Format(path);
  PatchField32(path, layout::kVersionOffset, kFormatVersion + 1);
  Result<PoolInfo> r = ReadPoolHeader(path);
  ASSERT_EQ(r.status().code(), StatusCode::kNotSupported) << r.status().ToString();
  EXPECT_THAT(r.status().message(),
              HasSubstr("pool format version 2 is newer than this dpmfs supports (1)"));
  EXPECT_THAT(r.status().message(), HasSubstr("upgrade dpmfs"));
  EXPECT_EQ(MappedPool::Open(path, {}).status().code(), StatusCode::kNotSupported);

  PatchField32(path, layout::kVersionOffset, 0);
  EXPECT_EQ(ReadPoolHeader(path).status().code(), StatusCode::kCorruption);
}

TEST_F(PoolTest, InconsistentFieldsAreCorruption) {
  std::string path = Path();
  Format(path);
  struct Case {
    size_t offset;
    uint64_t value;
    bool wide;
    const char* expect;
  };
  const Case cases[] = {
      {layout::kRoleOffset, 9, false, "unknown pool role 9"},
      {layout::kBlockSizeOffset, 3000, false, "block size 3000"},
      {layout::kPoolSizeOffset, 8u << 20, true, "truncated or resized"},
      {layout::kDataOffsetOffset, 8u << 20, true, "beyond the pool size"},
      {layout::kDataOffsetOffset, 100, true, "data offset 100"},
      {layout::kDataSizeOffset, 4u << 20, true, "data size"},
      {layout::kDataSizeOffset, 0, true, "data size 0"},
  };
  std::vector<uint8_t> good = ReadFile(path, 0, kHeaderSize);
  for (const Case& c : cases) {
    WriteFile(path, 0, good.data(), good.size());
    if (c.wide) {
      PatchField64(path, c.offset, c.value);
    } else {
      PatchField32(path, c.offset, static_cast<uint32_t>(c.value));
    }
    Result<PoolInfo> r = ReadPoolHeader(path);
    ASSERT_EQ(r.status().code(), StatusCode::kCorruption) << c.expect;
    EXPECT_THAT(r.status().message(), HasSubstr(c.expect));
    EXPECT_THAT(r.status().message(), HasSubstr(path));
  }
}

TEST_F(PoolTest, ExpectationMismatches) {
  std::string path = Path();
  Format(path);

  Result<MappedPool> r = MappedPool::Open(path, {.role = Role::kMetadata});
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("is a data pool, expected a metadata pool"));
  EXPECT_THAT(r.status().message(), HasSubstr(path));

  ClusterUuid other = ClusterUuid::Generate();
  r = MappedPool::Open(path, {.cluster = other});
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("belongs to cluster " + cluster_.ToString() +
                                              ", expected " + other.ToString()));

  r = MappedPool::Open(path, {.index = 3u});
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("index 7, expected index 3"));

  EXPECT_TRUE(MappedPool::Open(path, {Role::kData, cluster_, 7u}).ok());
}

TEST_F(PoolTest, TooSmallSizeNamesTheMinimum) {
  uint64_t min = MinPoolSize(4096);
  EXPECT_EQ(min, (2u << 20) + 4096);
  Result<PoolInfo> r = FormatPool(Path(), Options(min - 1));
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("too small"));
  EXPECT_THAT(r.status().message(), HasSubstr(std::to_string(min)));
  EXPECT_FALSE(std::filesystem::exists(Path()));

  r = FormatPool(Path(), Options(0));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  r = FormatPool(Path(), Options(min));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->data_size, 4096u);
}

TEST_F(PoolTest, PoolSizeNotAMultipleOfBlockSize) {
  Result<PoolInfo> r = FormatPool(Path(), Options(MinPoolSize(4096) + 4095));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->data_size, 4096u);
  EXPECT_EQ(r->pool_size, MinPoolSize(4096) + 4095);
  EXPECT_TRUE(MappedPool::Open(Path(), {}).ok());
}

TEST_F(PoolTest, BlockSizeMustBePowerOfTwoInRange) {
  for (uint32_t bs : {0u, 256u, 511u, 3000u, 4097u, 2u << 20}) {
    FormatOptions o = Options(8u << 20);
    o.geometry.block_size = bs;
    Result<PoolInfo> r = FormatPool(Path(), o);
    ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bs;
    EXPECT_THAT(r.status().message(), HasSubstr("power of two"));
  }
  for (uint32_t bs : {512u, 65536u, 1u << 20}) {
    FormatOptions o = Options(8u << 20);
    o.geometry.block_size = bs;
    o.force = true;
    Result<PoolInfo> r = FormatPool(Path(), o);
    ASSERT_TRUE(r.ok()) << bs << ": " << r.status().ToString();
    EXPECT_EQ(r->data_offset % bs, 0u);
    EXPECT_EQ(r->data_offset % kDataAlignment, 0u);
    EXPECT_EQ(r->data_size % bs, 0u);
  }
}

TEST_F(PoolTest, NilClusterIsRefused) {
  FormatOptions o = Options();
  o.geometry.cluster = ClusterUuid{};
  Result<PoolInfo> r = FormatPool(Path(), o);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("nil"));
}

TEST_F(PoolTest, UnwritablePathIsIOError) {
  // A directory.
  Result<PoolInfo> r = FormatPool(dir_, Options());
  ASSERT_EQ(r.status().code(), StatusCode::kIOError) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(dir_));
  EXPECT_THAT(r.status().message(), HasSubstr(std::strerror(EISDIR)));
  // /proc refuses new files even for root.
  r = FormatPool("/proc/dpmfs-pool-test", Options());
  ASSERT_EQ(r.status().code(), StatusCode::kIOError) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("/proc/dpmfs-pool-test"));
  // A missing parent directory.
  std::string missing = dir_ + "/no/such/dir/pool";
  r = FormatPool(missing, Options());
  ASSERT_EQ(r.status().code(), StatusCode::kIOError) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(std::strerror(ENOENT)));
  EXPECT_THAT(r.status().message(), HasSubstr(missing));
  // Not a regular file: a character device that is not device DAX. Only while /dev/null
  // really is the device: on a machine where something replaced it by a plain file,
  // formatting it would "succeed" and make /dev/null a pool.
  struct stat null_st {};
  if (::stat("/dev/null", &null_st) == 0 && S_ISCHR(null_st.st_mode)) {
    r = FormatPool("/dev/null", Options());
    EXPECT_FALSE(r.ok());
  }
}

TEST_F(PoolTest, MissingOrDirectoryPoolOnOpen) {
  Result<PoolInfo> r = ReadPoolHeader(Path("missing"));
  ASSERT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(Path("missing")));
  EXPECT_EQ(MappedPool::Open(Path("missing"), {}).status().code(), StatusCode::kNotFound);

  r = ReadPoolHeader(dir_);
  ASSERT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_THAT(r.status().message(), HasSubstr(std::strerror(EISDIR)));
}

TEST_F(PoolTest, PersistDataRange) {
  std::string path = Path();
  Format(path);
  {
    Result<MappedPool> pool = MappedPool::Open(path, {});
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    uint8_t* d = pool->data();
    std::memset(d + 8192, 0x42, 4096);
    EXPECT_TRUE(pool->Persist(d + 8192, 4096).ok());
    std::memset(d + 100, 0x17, 10);  // unaligned range
    EXPECT_TRUE(pool->Persist(d + 100, 10).ok());
    d[pool->data_size() - 1] = 0x99;
    pool->PersistAfterCrash(d + pool->data_size() - 1, 1);
    EXPECT_TRUE(pool->Persist(d, 0).ok());
    EXPECT_TRUE(pool->Persist(pool->base(), pool->mapped_size()).ok());

    Status st = pool->Persist(d + pool->data_size() - 10, 11);
    EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
    EXPECT_THAT(st.message(), HasSubstr(path));
    uint8_t outside[16];
    EXPECT_EQ(pool->Persist(outside, sizeof(outside)).code(), StatusCode::kOutOfRange);
  }
  // The bytes reached the file.
  uint64_t data_off = 2u << 20;
  std::vector<uint8_t> got = ReadFile(path, data_off + 8192, 4096);
  EXPECT_EQ(got, std::vector<uint8_t>(4096, 0x42));
  EXPECT_EQ(ReadFile(path, data_off + 100, 10), std::vector<uint8_t>(10, 0x17));
  EXPECT_EQ(ReadFile(path, (4u << 20) - 1, 1)[0], 0x99);
  EXPECT_TRUE(ReadPoolHeader(path).ok());
}

TEST_F(PoolTest, MappedPoolMoves) {
  Format(Path());
  Result<MappedPool> r = MappedPool::Open(Path(), {});
  ASSERT_TRUE(r.ok());
  MappedPool a = std::move(r).value();
  uint8_t* base = a.base();
  MappedPool b(std::move(a));
  EXPECT_EQ(b.base(), base);
  EXPECT_EQ(a.base(), nullptr);  // NOLINT(bugprone-use-after-move): documented state
  Format(Path("second"));
  Result<MappedPool> r2 = MappedPool::Open(Path("second"), {});
  ASSERT_TRUE(r2.ok());
  b = std::move(r2).value();
  EXPECT_EQ(b.path(), Path("second"));
  b.data()[0] = 1;
  EXPECT_TRUE(b.Persist(b.data(), 1).ok());
}

TEST(ClusterUuidTest, GenerateIsRandomV4) {
  ClusterUuid a = ClusterUuid::Generate();
  ClusterUuid b = ClusterUuid::Generate();
  EXPECT_NE(a, b);
  EXPECT_FALSE(a.IsNil());
  EXPECT_EQ(a.bytes[6] >> 4, 4);
  EXPECT_EQ(a.bytes[8] & 0xc0, 0x80);
  EXPECT_EQ(a.ToString()[14], '4');
}

TEST(ClusterUuidTest, ParseAndPrintRoundTrip) {
  Result<ClusterUuid> u = ClusterUuid::Parse("1B4E28BA-2fa1-41d2-883f-0016d3cca427");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->bytes[0], 0x1b);
  EXPECT_EQ(u->bytes[15], 0x27);
  EXPECT_EQ(u->ToString(), "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
  ClusterUuid g = ClusterUuid::Generate();
  EXPECT_EQ(*ClusterUuid::Parse(g.ToString()), g);
  EXPECT_TRUE(ClusterUuid::Parse("00000000-0000-0000-0000-000000000000")->IsNil());
}

TEST(ClusterUuidTest, ParseRejectsMalformed) {
  for (const char* bad :
       {"", "1b4e28ba", "1b4e28ba2fa141d2883f0016d3cca427", "1b4e28ba-2fa1-41d2-883f-0016d3cca42",
        "1b4e28ba-2fa1-41d2-883f-0016d3cca4277", "1b4e28ba_2fa1-41d2-883f-0016d3cca427",
        "1b4e28ba-2fa1-41d2-883f-0016d3cca42g"}) {
    Result<ClusterUuid> r = ClusterUuid::Parse(bad);
    ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("8-4-4-4-12"));
  }
}

TEST(SizeTest, ParseSize) {
  struct Case {
    const char* text;
    uint64_t want;
  };
  for (const Case& c :
       {Case{"0", 0}, Case{"4096", 4096}, Case{"4096B", 4096}, Case{"1K", 1024}, Case{"1k", 1024},
        Case{"64M", 64ull << 20}, Case{"1G", 1ull << 30}, Case{"1GiB", 1ull << 30},
        Case{"1gb", 1ull << 30}, Case{"2T", 2ull << 40}, Case{"16777215T", 16777215ull << 40},
        Case{"18446744073709551615", UINT64_MAX}}) {
    Result<uint64_t> r = ParseSize(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(*r, c.want) << c.text;
  }
  for (const char* bad : {"", "G", "-1", "1.5G", "1X", "1GX", "1 G", "1Gi", "1KiBs", "16777216T",
                          "18446744073709551616", " 1"}) {
    Result<uint64_t> r = ParseSize(bad);
    ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("invalid size"));
  }
}

TEST(SizeTest, FormatSize) {
  EXPECT_EQ(FormatSize(0), "0 B");
  EXPECT_EQ(FormatSize(4097), "4097 B");
  EXPECT_EQ(FormatSize(4096), "4 KiB");
  EXPECT_EQ(FormatSize(2u << 20), "2 MiB");
  EXPECT_EQ(FormatSize((2u << 20) + 4096), "2052 KiB");
  EXPECT_EQ(FormatSize(1ull << 30), "1 GiB");
  EXPECT_EQ(FormatSize((1ull << 30) + 1), "1.00 GiB");
}

}  // namespace
}  // namespace dpmfs::pool
