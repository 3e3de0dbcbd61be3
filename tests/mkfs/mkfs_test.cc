// Runs the real mkfs.dpmfs binary (MKFS_BIN, set by CMake) and checks exit codes, output
// and the pools it leaves behind.
#include <fcntl.h>
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

#include "common/pool.h"

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

}  // namespace
}  // namespace dpmfs::mkfs
