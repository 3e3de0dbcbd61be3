// Runs the real mkfs.dpmfs binary (MKFS_BIN, set by CMake) and checks exit codes, output
// and the pools it leaves behind.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/cluster_key.h"
#include "common/local_address.h"
#include "common/pool.h"
#include "metadata/meta_store.h"

#ifndef MKFS_BIN
#error "MKFS_BIN must name the mkfs.dpmfs binary"
#endif

namespace dpmfs::mkfs {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MkfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string base = "/dev/shm";
    if (::access(base.c_str(), W_OK) != 0) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
    std::string tmpl = base + "/dpmfs-mkfs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name = "pool") const { return dir_ + "/" + name; }

  // fork/exec of the binary with stdout/stderr captured in files; no shell involved.
  RunResult Run(const std::vector<std::string>& args) {
    std::string out_path = Path(".stdout");
    std::string err_path = Path(".stderr");
    std::vector<std::string> argv_s = {MKFS_BIN};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out < 0 || err < 0) ::_exit(126);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(err, STDERR_FILENO);
      ::unsetenv("DPMFS_LOG_LEVEL");
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    RunResult r;
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << "mkfs.dpmfs died: status " << status;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = Slurp(out_path);
    r.err = Slurp(err_path);
    return r;
  }

  std::string dir_;
};

constexpr char kUuid[] = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
constexpr char kOtherUuid[] = "2c5f39cb-3fb2-42e3-994f-1127e4ddb538";

TEST_F(MkfsTest, HelpExplainsEverything) {
  RunResult r = Run({"--help"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--force"));
  EXPECT_THAT(r.out, HasSubstr("data"));
  EXPECT_THAT(r.out, HasSubstr("show"));
  EXPECT_THAT(r.out, HasSubstr("--log-level"));

  r = Run({"data", "--help"});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* flag :
       {"--size", "--block-size", "--index", "--cluster", "--force", "--no-zero"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }

  r = Run({"--help"});
  EXPECT_THAT(r.out, HasSubstr("meta PATH"));
  EXPECT_THAT(r.out, HasSubstr("cluster CLUSTER_FILE"));
  EXPECT_THAT(r.out, HasSubstr("cluster_uuid"));
  r = Run({"meta", "--help"});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* flag : {"--size", "--data-pool", "--stripe-unit", "--force"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
  r = Run({"cluster", "--help"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--force"));
}

TEST_F(MkfsTest, UsageErrorsExitTwo) {
  RunResult r = Run({});
  EXPECT_EQ(r.code, 2);
  r = Run({"data", Path()});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--size"));
  r = Run({"data", Path(), "--size", "1X"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid size '1X'"));
  r = Run({"data", Path(), "--size", "4M", "--cluster", "not-a-uuid"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid cluster UUID"));
  r = Run({"data", Path(), "--size", "4M", "--bogus"});
  EXPECT_EQ(r.code, 2);
  r = Run({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_FALSE(std::filesystem::exists(Path()));
}

TEST_F(MkfsTest, FormatsAndPrintsWhatItCreated) {
  const std::string uuid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
  RunResult r = Run({"data", Path(), "--size", "4M", "--index", "2", "--cluster", uuid});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(Path()));
  EXPECT_THAT(r.out, HasSubstr("data"));
  EXPECT_THAT(r.out, HasSubstr(uuid));
  EXPECT_THAT(r.out, HasSubstr("index:          2"));
  EXPECT_THAT(r.out, HasSubstr("4194304"));
  EXPECT_THAT(r.out, Not(HasSubstr("new cluster")));

  Result<pool::PoolInfo> info = pool::ReadPoolHeader(Path());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->role, pool::Role::kData);
  EXPECT_EQ(info->cluster.ToString(), uuid);
  EXPECT_EQ(info->index, 2u);
  EXPECT_EQ(info->block_size, 4096u);
  EXPECT_EQ(info->pool_size, 4u << 20);
  EXPECT_TRUE(pool::MappedPool::Open(Path(), {pool::Role::kData, info->cluster, 2u}).ok());
}

// Device DAX (/dev/daxX.Y) is accepted as a pool path; this machine has none (the VM
// suite's NVDIMM does), so only the refusal of a missing one is checked: a clear error,
// and no regular file made in /dev in its place.
TEST_F(MkfsTest, MissingDeviceDaxIsRefusedClearly) {
  const std::string dax = "/dev/dax97.3";
  ASSERT_FALSE(std::filesystem::exists(dax));
  RunResult r = Run({"data", dax, "--size", "1G"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("device-DAX pool /dev/dax97.3 does not exist"));
  EXPECT_FALSE(std::filesystem::exists(dax));
  r = Run({"show", dax});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no such device"));
}

TEST_F(MkfsTest, GeneratesClusterWhenNotGiven) {
  RunResult r = Run({"data", Path(), "--size", "3M", "--block-size", "1K"});
  ASSERT_EQ(r.code, 0) << r.err;
  Result<pool::PoolInfo> info = pool::ReadPoolHeader(Path());
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->cluster.IsNil());
  EXPECT_EQ(info->block_size, 1024u);
  EXPECT_EQ(info->pool_size, 3u << 20);
  EXPECT_THAT(r.out, HasSubstr("new cluster " + info->cluster.ToString()));
  EXPECT_THAT(r.out, HasSubstr("--cluster " + info->cluster.ToString()));
}

TEST_F(MkfsTest, RefusesExistingPoolWithoutForce) {
  ASSERT_EQ(Run({"data", Path(), "--size", "4M"}).code, 0);
  auto before = pool::ReadPoolHeader(Path());
  ASSERT_TRUE(before.ok());

  RunResult r = Run({"data", Path(), "--size", "4M"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("mkfs.dpmfs: error:"));
  EXPECT_THAT(r.err, HasSubstr("already holds a dpmfs data pool"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  EXPECT_EQ(pool::ReadPoolHeader(Path())->cluster, before->cluster);

  r = Run({"data", Path(), "--size", "8M", "--force"});
  EXPECT_EQ(r.code, 0) << r.err;
  auto after = pool::ReadPoolHeader(Path());
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->cluster, before->cluster);
  EXPECT_EQ(after->pool_size, 8u << 20);
}

TEST_F(MkfsTest, RefusesFileThatIsNotAPoolWithoutForce) {
  std::ofstream(Path()) << "precious notes, not a pool\n";
  RunResult r = Run({"data", Path(), "--size", "4M"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(Path() + " exists and is not a dpmfs pool"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  EXPECT_EQ(Slurp(Path()), "precious notes, not a pool\n");
  r = Run({"data", Path(), "--size", "4M", "--force"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(pool::ReadPoolHeader(Path()).ok());
}

// A running server holds an exclusive flock on its pool (here the test holds it):
// formatting it is refused even with --force, by data, meta and cluster alike.
TEST_F(MkfsTest, RefusesPoolInUseEvenWithForce) {
  ASSERT_EQ(Run({"data", Path(), "--size", "4M"}).code, 0);
  auto before = pool::ReadPoolHeader(Path());
  ASSERT_TRUE(before.ok());
  int holder = ::open(Path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(holder, 0);
  ASSERT_EQ(::flock(holder, LOCK_EX | LOCK_NB), 0);
  RunResult r = Run({"data", Path(), "--size", "4M", "--force"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(Path() + " is in use"));
  EXPECT_THAT(r.err, HasSubstr("pid " + std::to_string(::getpid())));
  EXPECT_EQ(pool::ReadPoolHeader(Path())->cluster, before->cluster);

  std::string conf = Path("cluster.conf");
  std::ofstream(conf) << "meta 127.0.0.1:7100 " << Path("meta.pool") << " 4M\n"
                      << "data 127.0.0.1:7101 " << Path() << " 4M\n";
  r = Run({"cluster", conf, "--force"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(Path() + " is in use"));
  EXPECT_FALSE(std::filesystem::exists(Path("meta.pool")));
  ::close(holder);
  EXPECT_EQ(Run({"data", Path(), "--size", "4M", "--force"}).code, 0);
}

TEST_F(MkfsTest, InvalidGeometryIsUsageError) {
  RunResult r = Run({"data", Path(), "--size", "1M"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("mkfs.dpmfs: error:"));
  EXPECT_THAT(r.err, HasSubstr("too small"));
  EXPECT_THAT(r.err, HasSubstr(std::to_string(pool::MinPoolSize(4096))));

  r = Run({"data", Path(), "--size", "4M", "--block-size", "3000"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("power of two"));
  EXPECT_FALSE(std::filesystem::exists(Path()));
}

TEST_F(MkfsTest, UnwritablePathIsRuntimeError) {
  RunResult r = Run({"data", dir_, "--size", "4M"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("mkfs.dpmfs: error:"));
  EXPECT_THAT(r.err, HasSubstr(dir_));
  EXPECT_THAT(r.err, HasSubstr(std::strerror(EISDIR)));

  r = Run({"data", Path("missing-dir/pool"), "--size", "4M"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(std::strerror(ENOENT)));
}

TEST_F(MkfsTest, ShowPrintsHeader) {
  const std::string uuid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
  ASSERT_EQ(Run({"data", Path(), "--size", "4M", "--index", "5", "--cluster", uuid}).code, 0);
  RunResult r = Run({"show", Path()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("role:           data"));
  EXPECT_THAT(r.out, HasSubstr("cluster:        " + uuid));
  EXPECT_THAT(r.out, HasSubstr("index:          5"));
  EXPECT_THAT(r.out, HasSubstr("block size:     4096"));
  EXPECT_THAT(r.out, HasSubstr("format version: 1"));
  EXPECT_THAT(r.out, HasSubstr("data offset:    2097152"));
}

TEST_F(MkfsTest, ShowExplainsBadPools) {
  RunResult r = Run({"show", Path("missing")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));

  std::ofstream(Path("text")) << std::string(8192, 'x');
  r = Run({"show", Path("text")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("not a dpmfs pool"));

  ASSERT_EQ(Run({"data", Path(), "--size", "4M"}).code, 0);
  {
    std::fstream f(Path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  r = Run({"show", Path()});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("checksum mismatch"));
}

TEST_F(MkfsTest, NoZeroKeepsOldBytesAndZeroingClearsThem) {
  ASSERT_EQ(Run({"data", Path(), "--size", "4M"}).code, 0);
  {
    auto pool = pool::MappedPool::Open(Path(), {});
    ASSERT_TRUE(pool.ok());
    pool->data()[123] = 0xcd;
    ASSERT_TRUE(pool->Persist(pool->data() + 123, 1).ok());
  }
  ASSERT_EQ(Run({"data", Path(), "--size", "4M", "--force", "--no-zero"}).code, 0);
  {
    auto pool = pool::MappedPool::Open(Path(), {});
    ASSERT_TRUE(pool.ok());
    EXPECT_EQ(pool->data()[123], 0xcd);
  }
  ASSERT_EQ(Run({"data", Path(), "--size", "4M", "--force"}).code, 0);
  auto pool = pool::MappedPool::Open(Path(), {});
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ(pool->data()[123], 0);
}

TEST_F(MkfsTest, LargePoolShowsProgress) {
  RunResult r = Run({"data", Path(), "--size", "256M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("100%"));
  // Small pools on a non-terminal stay quiet.
  r = Run({"data", Path("small"), "--size", "4M"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("%")));
}

TEST_F(MkfsTest, LogLevelAfterSubcommand) {
  RunResult r = Run({"data", Path(), "--size", "4M", "--log-level", "debug"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("formatted data pool"));
  r = Run({"--log-level", "nonsense", "show", Path()});
  EXPECT_EQ(r.code, 2);
}

// --- meta ---

class MkfsMetaTest : public MkfsTest {
 protected:
  // Data pools 0..n-1 of cluster `uuid` (4 MiB each unless sized otherwise).
  void MakeDataPools(int n, const std::string& uuid = kUuid, const std::string& size = "4M",
                     const std::string& block_size = "4K") {
    for (int i = 0; i < n; ++i) {
      RunResult r = Run({"data", Data(i), "--size", size, "--index", std::to_string(i),
                         "--cluster", uuid, "--block-size", block_size});
      ASSERT_EQ(r.code, 0) << r.err;
    }
  }
  std::string Data(int i) const { return Path("data" + std::to_string(i)); }
};

TEST_F(MkfsMetaTest, FormatsFromDataPools) {
  MakeDataPools(2);
  // Data pools may be listed in any order; the superblock lists them by index.
  RunResult r = Run({"meta", Path("meta"), "--size", "8M", "--data-pool", Data(1),
                     "--data-pool", Data(0), "--stripe-unit", "256K"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("formatted metadata pool " + Path("meta")));
  EXPECT_THAT(r.out, HasSubstr("role:           metadata"));
  EXPECT_THAT(r.out, HasSubstr("cluster:        " + std::string(kUuid)));
  EXPECT_THAT(r.out, HasSubstr("stripe unit:  262144 (256 KiB)"));
  EXPECT_THAT(r.out, HasSubstr("data pools:   2"));
  EXPECT_THAT(r.out, HasSubstr("index 1: block size 4096, data size 2097152 (2 MiB), 512 blocks"));
  EXPECT_THAT(r.out, HasSubstr("journal:"));
  EXPECT_THAT(r.out, HasSubstr("checkpoints:  2 slots of"));

  Result<pool::PoolInfo> info = pool::ReadPoolHeader(Path("meta"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->role, pool::Role::kMetadata);
  EXPECT_EQ(info->cluster.ToString(), kUuid);
  Result<meta::Superblock> sb = meta::ReadSuperblock(Path("meta"));
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  EXPECT_EQ(sb->stripe_unit, 256u << 10);
  ASSERT_EQ(sb->data_pools.size(), 2u);
  EXPECT_EQ(sb->data_pools[0].index, 0u);
  EXPECT_EQ(sb->data_pools[1].data_size, 2u << 20);

  // The pool is ready for the metadata server: it opens and recovers empty.
  auto store = meta::MetaStore::Open(Path("meta"), {pool::Role::kMetadata, info->cluster, {}});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  meta::RecoveryStats stats;
  Status st = (*store)->Recover([](std::span<const uint8_t>) { return Status::OK(); },
                                [](uint64_t, std::span<const uint8_t>) { return Status::OK(); },
                                &stats);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(stats.last_lsn, 0u);
  store->reset();

  // show prints the superblock too.
  r = Run({"show", Path("meta")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("role:           metadata"));
  EXPECT_THAT(r.out, HasSubstr("metadata superblock:"));
  EXPECT_THAT(r.out, HasSubstr("stripe unit:  262144 (256 KiB)"));
  EXPECT_THAT(r.out, HasSubstr("index 0: block size 4096"));
  // ... and says so when it is damaged.
  {
    std::fstream f(Path("meta"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(pool::DataOffsetFor(4096) + 20));
    f.put('\x7f');
  }
  r = Run({"show", Path("meta")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("role:           metadata"));
  EXPECT_THAT(r.err, HasSubstr("metadata superblock of " + Path("meta")));
  EXPECT_THAT(r.err, HasSubstr("checksum mismatch"));
}

TEST_F(MkfsMetaTest, RefusesExistingPoolWithoutForce) {
  MakeDataPools(1);
  ASSERT_EQ(Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0)}).code, 0);
  auto before = pool::ReadPoolHeader(Path("meta"));
  RunResult r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0)});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("already holds a dpmfs metadata pool"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  EXPECT_EQ(pool::ReadPoolHeader(Path("meta"))->created_unix_ns, before->created_unix_ns);
  r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0), "--force"});
  EXPECT_EQ(r.code, 0) << r.err;
  // Not while a metadata server has it open, even with --force.
  {
    auto store = meta::MetaStore::Open(Path("meta"), {});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0), "--force"});
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.err, HasSubstr(Path("meta") + " is in use by pid " + std::to_string(::getpid())));
  }
  // A data pool is never taken for the metadata pool, forced or not.
  r = Run({"meta", Data(0), "--size", "4M", "--data-pool", Data(0), "--force"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot also be a --data-pool"));
  EXPECT_EQ(pool::ReadPoolHeader(Data(0))->role, pool::Role::kData);
}

TEST_F(MkfsMetaTest, RejectsMismatchedClusters) {
  MakeDataPools(1, kUuid);
  ASSERT_EQ(Run({"data", Data(1), "--size", "4M", "--index", "1", "--cluster", kOtherUuid}).code,
            0);
  RunResult r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0),
                     "--data-pool", Data(1)});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("different clusters"));
  EXPECT_THAT(r.err, HasSubstr(kUuid));
  EXPECT_THAT(r.err, HasSubstr(kOtherUuid));
  EXPECT_FALSE(std::filesystem::exists(Path("meta")));
}

TEST_F(MkfsMetaTest, RejectsBadIndexes) {
  MakeDataPools(1);
  ASSERT_EQ(Run({"data", Data(2), "--size", "4M", "--index", "2", "--cluster", kUuid}).code, 0);
  RunResult r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0),
                     "--data-pool", Data(2)});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("index 1 is missing"));
  ASSERT_EQ(Run({"data", Data(3), "--size", "4M", "--index", "0", "--cluster", kUuid}).code, 0);
  r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0), "--data-pool", Data(3)});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("are both data pool index 0"));
  EXPECT_FALSE(std::filesystem::exists(Path("meta")));
}

TEST_F(MkfsMetaTest, RejectsBadInputs) {
  MakeDataPools(1, kUuid, "4M", "64K");
  // The stripe unit must be a multiple of every data pool's block size.
  RunResult r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0),
                     "--stripe-unit", "32K"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("not a multiple of the block size 65536"));
  // Too small for the pool header area plus superblock, journal and checkpoints.
  r = Run({"meta", Path("meta"), "--size", "2060K", "--data-pool", Data(0)});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("too small"));
  // Missing data pool flag, missing data pool, a metadata pool as a data pool.
  EXPECT_EQ(Run({"meta", Path("meta"), "--size", "4M"}).code, 2);
  r = Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Path("nope")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
  EXPECT_FALSE(std::filesystem::exists(Path("meta")));
  ASSERT_EQ(Run({"meta", Path("meta"), "--size", "4M", "--data-pool", Data(0)}).code, 0);
  r = Run({"meta", Path("meta2"), "--size", "4M", "--data-pool", Path("meta")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("is a metadata pool, not a data pool"));
}

// --- cluster ---

class MkfsClusterTest : public MkfsTest {
 protected:
  std::string WriteClusterFile(const std::string& text) {
    std::string path = Path("cluster.conf");
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(MkfsClusterTest, FormatsEveryPool) {
  std::string conf = WriteClusterFile(std::string("# test cluster\n") +
                                      "cluster_uuid " + kUuid + "\n"
                                      "block_size 8K\n"
                                      "stripe_unit 512K\n"
                                      "meta 127.0.0.1:7100 pools/meta.pool 8M\n"
                                      "data 127.0.0.1:7101 pools/data0.pool 4M\n"
                                      "data 127.0.0.1:7102 " + Path("other/dir/data1.pool") +
                                      " 6M\n");
  RunResult r = Run({"cluster", conf});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("formatted cluster " + std::string(kUuid)));
  EXPECT_THAT(r.out, HasSubstr("ROLE"));
  EXPECT_THAT(r.out, HasSubstr("ENDPOINT"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("data +0 +" + Path("pools/data0.pool") +
                                              " +4 MiB +127.0.0.1:7101"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("data +1 +" + Path("other/dir/data1.pool") +
                                              " +6 MiB +127.0.0.1:7102"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("metadata +- +" + Path("pools/meta.pool") +
                                              " +8 MiB +127.0.0.1:7100"));
  EXPECT_THAT(r.out, Not(HasSubstr("new cluster")));

  for (int i = 0; i < 2; ++i) {
    std::string p = i == 0 ? Path("pools/data0.pool") : Path("other/dir/data1.pool");
    Result<pool::PoolInfo> info = pool::ReadPoolHeader(p);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->role, pool::Role::kData);
    EXPECT_EQ(info->index, static_cast<uint32_t>(i));
    EXPECT_EQ(info->block_size, 8192u);
    EXPECT_EQ(info->cluster.ToString(), kUuid);
  }
  Result<pool::PoolInfo> meta_info = pool::ReadPoolHeader(Path("pools/meta.pool"));
  ASSERT_TRUE(meta_info.ok());
  EXPECT_EQ(meta_info->role, pool::Role::kMetadata);
  EXPECT_EQ(meta_info->cluster.ToString(), kUuid);
  Result<meta::Superblock> sb = meta::ReadSuperblock(Path("pools/meta.pool"));
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  EXPECT_EQ(sb->stripe_unit, 512u << 10);
  ASSERT_EQ(sb->data_pools.size(), 2u);
  EXPECT_EQ(sb->data_pools[1].block_size, 8192u);
  EXPECT_EQ(sb->data_pools[1].data_size, pool::ReadPoolHeader(Path("other/dir/data1.pool"))->data_size);
}

TEST_F(MkfsClusterTest, GeneratesUuidWithoutTouchingTheFile) {
  std::string text =
      "meta 127.0.0.1:7100 " + Path("meta.pool") + " 4M\n"
      "data 127.0.0.1:7101 " + Path("data0.pool") + " 4M\n";
  std::string conf = WriteClusterFile(text);
  RunResult r = Run({"cluster", conf});
  ASSERT_EQ(r.code, 0) << r.err;
  Result<pool::PoolInfo> data = pool::ReadPoolHeader(Path("data0.pool"));
  Result<pool::PoolInfo> meta = pool::ReadPoolHeader(Path("meta.pool"));
  ASSERT_TRUE(data.ok() && meta.ok());
  EXPECT_EQ(data->cluster, meta->cluster);
  EXPECT_THAT(r.out, HasSubstr("formatted cluster " + data->cluster.ToString()));
  EXPECT_THAT(r.out, HasSubstr("new cluster UUID " + data->cluster.ToString()));
  EXPECT_EQ(Slurp(conf), text);
}

TEST_F(MkfsClusterTest, RefusesBeforeTouchingAnything) {
  std::string conf = WriteClusterFile(
      "meta 127.0.0.1:7100 " + Path("new/meta.pool") + " 4M\n"
      "data 127.0.0.1:7101 " + Path("new/data0.pool") + " 4M\n"
      "data 127.0.0.1:7102 " + Path("data1.pool") + " 4M\n");
  // The last data pool's path already holds a pool of another cluster.
  ASSERT_EQ(Run({"data", Path("data1.pool"), "--size", "4M", "--cluster", kOtherUuid}).code, 0);
  auto before = pool::ReadPoolHeader(Path("data1.pool"));
  RunResult r = Run({"cluster", conf});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(Path("data1.pool") + " already holds a dpmfs data pool"));
  EXPECT_THAT(r.err, HasSubstr(kOtherUuid));
  EXPECT_THAT(r.err, HasSubstr("Nothing was changed"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  EXPECT_FALSE(std::filesystem::exists(Path("new")));
  EXPECT_EQ(pool::ReadPoolHeader(Path("data1.pool"))->cluster, before->cluster);

  r = Run({"cluster", conf, "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto after = pool::ReadPoolHeader(Path("data1.pool"));
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->cluster, before->cluster);
  EXPECT_EQ(after->index, 1u);
  EXPECT_EQ(pool::ReadPoolHeader(Path("new/meta.pool"))->cluster, after->cluster);
}

// Several hosts share one cluster key. Only a run that formats the metadata line creates
// it; a host formatting only data lines must not make up a key of its own (it would
// differ from the metadata host's, and its data server would refuse every client), and
// says where the key must come from instead.
TEST_F(MkfsClusterTest, OnlyTheMetadataHostCreatesTheClusterKey) {
  std::string conf = WriteClusterFile(std::string("cluster_uuid ") + kUuid + "\n" +
                                      "meta 127.0.0.1:7100 meta.pool 8M\n"
                                      "data 127.0.0.1:7101 data0.pool 4M\n"
                                      "data 127.0.0.1:7102 data1.pool 4M\n");
  const std::string key = KeyFileBesideClusterFile(conf);
  ASSERT_FALSE(std::filesystem::exists(key));
  RunResult r = Run({"cluster", conf, "--only", "data:1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(key)) << "a data-only host made its own key";
  EXPECT_THAT(r.out, HasSubstr("no cluster key at " + key));
  EXPECT_THAT(r.out, HasSubstr("copy"));

  r = Run({"cluster", conf, "--only", "meta"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(std::filesystem::exists(key));
  EXPECT_THAT(r.out, HasSubstr("created cluster key " + key));
  Result<ClusterKey> made = LoadKeyFile(key);
  ASSERT_TRUE(made.ok()) << made.status().ToString();

  r = Run({"cluster", conf, "--only", "data:0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cluster key " + key + " kept"));
  Result<ClusterKey> kept = LoadKeyFile(key);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->bytes() == made->bytes()) << "a data host replaced the metadata host's key";
}

// One cluster file for every host: each formats the lines whose address is its own
// (loopback is; 203.0.113.0/24 is TEST-NET-3, documentation only), or those --only names.
// The metadata pool is made without the data pool files: their geometry is the file's.
TEST_F(MkfsClusterTest, FormatsOnlyThisHostsLines) {
  for (const char* host : {"203.0.113.1", "203.0.113.2"}) {
    Result<bool> local = IsLocalHost(host);
    if (!local.ok() || *local) GTEST_SKIP() << host << " is an address of this host";
  }
  const std::string lines = "meta 127.0.0.1:7100 meta.pool 8M\n"
                            "data 127.0.0.1:7101 data0.pool 4M\n"
                            "data 203.0.113.1:7102 data1.pool 6M\n";
  std::string conf = WriteClusterFile(std::string("cluster_uuid ") + kUuid + "\n" + lines);
  RunResult r = Run({"cluster", conf});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(this host's pools)"));
  EXPECT_THAT(r.out, HasSubstr("not formatted here: data 1 (203.0.113.1:7102, " + conf +
                               ":4): another host's"));
  EXPECT_TRUE(std::filesystem::exists(Path("data0.pool")));
  EXPECT_FALSE(std::filesystem::exists(Path("data1.pool")));
  Result<meta::Superblock> sb = meta::ReadSuperblock(Path("meta.pool"));
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  ASSERT_EQ(sb->data_pools.size(), 2u);
  EXPECT_EQ(sb->data_pools[1].data_size, (6u << 20) - (2u << 20));  // from the file's size

  // The other host formats its line; --only picks it here.
  r = Run({"cluster", conf, "--only", "data:1"});
  ASSERT_EQ(r.code, 0) << r.err;
  Result<pool::PoolInfo> d1 = pool::ReadPoolHeader(Path("data1.pool"));
  ASSERT_TRUE(d1.ok());
  EXPECT_EQ(d1->index, 1u);
  EXPECT_EQ(d1->cluster.ToString(), kUuid);
  EXPECT_EQ(d1->data_size, sb->data_pools[1].data_size);
  EXPECT_THAT(r.out, HasSubstr("not formatted here: metadata"));

  // --only meta again: refused without --force (it exists), formatted with it.
  r = Run({"cluster", conf, "--only", "meta"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("already holds a dpmfs metadata pool"));
  EXPECT_EQ(Run({"cluster", conf, "--only", "meta", "--force"}).code, 0);

  // Bad --only values are usage errors.
  r = Run({"cluster", conf, "--only", "data:2"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("has data pools 0 to 1"));
  // Shorter than "data:" included (the digits must not be looked for past the end).
  for (const char* bad : {"journal", "d", "data", "data:", "data:1x", "data:-1", "datax1"}) {
    r = Run({"cluster", conf, "--only", bad});
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_THAT(r.err, HasSubstr("expected 'meta' or 'data:N'")) << bad;
  }

  // Part of a cluster without a cluster_uuid line: each host would make up its own.
  std::string bare = WriteClusterFile(lines);
  r = Run({"cluster", bare, "--only", "meta", "--force"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("has no cluster_uuid line"));

  // No line of this host: says which addresses this host has.
  std::string remote = WriteClusterFile(std::string("cluster_uuid ") + kUuid + "\n" +
                                        "meta 203.0.113.1:7100 m.pool 8M\n"
                                        "data 203.0.113.2:7101 d.pool 4M\n");
  r = Run({"cluster", remote});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no line of " + remote + " has an address of this host"));
  EXPECT_THAT(r.err, HasSubstr("127.0.0.1"));
}

TEST_F(MkfsClusterTest, BadClusterFileNamesTheLine) {
  std::string conf = WriteClusterFile(
      "# comment\n"
      "meta 127.0.0.1:7100 " + Path("meta.pool") + " 4M\n"
      "dta 127.0.0.1:7101 " + Path("data0.pool") + " 4M\n");
  RunResult r = Run({"cluster", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("mkfs.dpmfs: error: " + conf + ":3: unknown keyword 'dta'"));

  conf = WriteClusterFile("meta 127.0.0.1:7100 " + Path("meta.pool") + " 4M\n"
                          "data 127.0.0.1:71x " + Path("data0.pool") + " 4M\n");
  r = Run({"cluster", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr(conf + ":2: bad address"));

  conf = WriteClusterFile("meta 127.0.0.1:7100 " + Path("meta.pool") + " 4M\n");
  r = Run({"cluster", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr(conf + ": no 'data"));

  // A metadata pool too small for its superblock, journal and checkpoints: caught before
  // any pool is formatted.
  conf = WriteClusterFile("meta 127.0.0.1:7100 " + Path("meta.pool") + " 2060K\n"
                          "data 127.0.0.1:7101 " + Path("data0.pool") + " 4M\n");
  r = Run({"cluster", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr(conf + ":1: cannot format metadata pool"));
  EXPECT_THAT(r.err, HasSubstr("too small"));
  EXPECT_FALSE(std::filesystem::exists(Path("data0.pool")));

  r = Run({"cluster", Path("missing.conf")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
}

}  // namespace
}  // namespace dpmfs::mkfs
