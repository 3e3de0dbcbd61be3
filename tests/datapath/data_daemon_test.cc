// dpmfs-data as a user meets it: the real binary, started as a process. Bad pools and
// bad flags give a clear message and a non-zero exit; a good pool gives a READY line;
// SIGTERM stops it cleanly (exit 0).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <optional>
#include <vector>

#include "common/pool.h"
#include "tests/fs/fs_test_util.h"

namespace {

namespace fs = std::filesystem;
using dpmfs::fs::testing::Process;

struct ProcessRun {
  int exit_code = -1;
  std::string out, err;
};

// Runs dpmfs-data with `args` to completion (it must exit by itself).
ProcessRun RunDaemon(const std::vector<std::string>& args, const fs::path& dir) {
  std::string cmd = std::string(DPMFS_DATA_BIN);
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >" + (dir / "out").string() + " 2>" + (dir / "err").string();
  int rc = std::system(("timeout 20 " + cmd).c_str());
  ProcessRun r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  std::ifstream o(dir / "out"), e(dir / "err");
  r.out.assign(std::istreambuf_iterator<char>(o), {});
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  return r;
}

class DataDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-daemon-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    pool_ = (dir_ / "data0.pool").string();
    dpmfs::pool::FormatOptions fo;
    fo.geometry = {dpmfs::pool::Role::kData, dpmfs::pool::ClusterUuid::Generate(), 0, 4096,
                   8ull << 20};
    ASSERT_TRUE(dpmfs::pool::FormatPool(pool_, fo).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Starts dpmfs-data with `args` in the background, output in the test's directory;
  // `p` stops it on destruction even when the test fails.
  bool StartDaemon(Process& p, std::vector<std::string> args) {
    args.insert(args.begin(), {DPMFS_DATA_BIN, "--log-level", "warn"});
    return p.Start(args, dir_ / "daemon.out", dir_ / "daemon.err");
  }
  fs::path dir_;
  std::string pool_;
};

TEST_F(DataDaemonTest, HelpAnswersAndBadFlagsAreUsageErrors) {
  ProcessRun help = RunDaemon({"--help"}, dir_);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--drain-delay-us"), std::string::npos);
  EXPECT_NE(help.out.find("--pool"), std::string::npos);
  EXPECT_EQ(RunDaemon({}, dir_).exit_code, 2);  // --pool is required
  ProcessRun bad = RunDaemon({"--pool", pool_, "--listen", "nonsense"}, dir_);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("expected HOST:PORT"), std::string::npos) << bad.err;
  ProcessRun bad_transport = RunDaemon({"--pool", pool_, "--transport", "carrier-pigeon"}, dir_);
  EXPECT_NE(bad_transport.exit_code, 0);
  EXPECT_NE(bad_transport.err.find("soft or verbs"), std::string::npos) << bad_transport.err;
}

TEST_F(DataDaemonTest, RefusesMissingCorruptAndWrongPools) {
  ProcessRun missing = RunDaemon({"--pool", (dir_ / "nope.pool").string()}, dir_);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos) << missing.err;

  ProcessRun wrong_index = RunDaemon({"--pool", pool_, "--index", "7", "--listen", "127.0.0.1:0"}, dir_);
  EXPECT_EQ(wrong_index.exit_code, 1);
  EXPECT_NE(wrong_index.err.find("index"), std::string::npos) << wrong_index.err;

  // Flip one byte inside the header.
  {
    std::fstream f(pool_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(40);
    char c;
    f.get(c);
    f.seekp(40);
    f.put(static_cast<char>(c ^ 0x10));
  }
  ProcessRun corrupt = RunDaemon({"--pool", pool_, "--listen", "127.0.0.1:0"}, dir_);
  EXPECT_EQ(corrupt.exit_code, 1);
  EXPECT_NE(corrupt.err.find("checksum"), std::string::npos) << corrupt.err;
}

TEST_F(DataDaemonTest, VerbsWithoutDeviceSaysWhy) {
  ProcessRun r = RunDaemon({"--pool", pool_, "--transport", "verbs", "--listen", "127.0.0.1:0"}, dir_);
  if (r.exit_code == 0) GTEST_SKIP() << "this machine has an RDMA device";
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("RDMA"), std::string::npos) << r.err;
}

// Two data servers on one pool would each believe they own it: the second is refused
// with the first one's pid in the message, and the pool is free again once it stops.
TEST_F(DataDaemonTest, SecondServerOnTheSamePoolIsRefused) {
  Process first;
  ASSERT_TRUE(StartDaemon(first, {"--pool", pool_, "--listen", "127.0.0.1:0"}));
  ASSERT_TRUE(first.WaitReady()) << first.err_text();
  ProcessRun second = RunDaemon({"--pool", pool_, "--listen", "127.0.0.1:0"}, dir_);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find(pool_ + " is in use"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(first.pid()) + " (dpmfs-data)"),
            std::string::npos)
      << second.err;
  first.Signal(SIGTERM);
  EXPECT_EQ(first.Wait(std::chrono::seconds(5)), 0);
}

// `dpmfs-data --cluster-file FILE --index N`: pool, address and cluster UUID from the
// file's lines; mistakes in the flags or the index are said clearly.
TEST_F(DataDaemonTest, ClusterFileAndIndexConfigureTheServer) {
  auto info = dpmfs::pool::ReadPoolHeader(pool_);
  ASSERT_TRUE(info.ok());
  // data line 1 is our pool (index 0 in its header: refused), line 0 another path.
  std::string conf = (dir_ / "cluster.conf").string();
  std::ofstream(conf) << "cluster_uuid " << info->cluster.ToString() << "\n"
                      << "meta 127.0.0.1:1 meta.pool 8M\n"
                      << "data 127.0.0.1:0x data1.pool 8M\n";
  ProcessRun bad_file = RunDaemon({"--cluster-file", conf, "--index", "0"}, dir_);
  EXPECT_EQ(bad_file.exit_code, 1);
  EXPECT_NE(bad_file.err.find(conf + ":3: bad address"), std::string::npos) << bad_file.err;

  std::ofstream(conf) << "cluster_uuid " << info->cluster.ToString() << "\n"
                      << "meta 127.0.0.1:1 meta.pool 8M\n"
                      << "data 127.0.0.1:2 data0.pool 8M\n"
                      << "data 127.0.0.1:3 other.pool 8M\n";
  ProcessRun no_index = RunDaemon({"--cluster-file", conf}, dir_);
  EXPECT_EQ(no_index.exit_code, 2);
  EXPECT_NE(no_index.err.find("--cluster-file needs --index"), std::string::npos) << no_index.err;
  ProcessRun both = RunDaemon({"--cluster-file", conf, "--index", "0", "--pool", pool_}, dir_);
  EXPECT_EQ(both.exit_code, 2);
  ProcessRun beyond = RunDaemon({"--cluster-file", conf, "--index", "2"}, dir_);
  EXPECT_EQ(beyond.exit_code, 1);
  EXPECT_NE(beyond.err.find("indexes 0 to 1"), std::string::npos) << beyond.err;
  ProcessRun missing = RunDaemon({"--cluster-file", conf, "--index", "1"}, dir_);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find((dir_ / "other.pool").string()), std::string::npos) << missing.err;

  // Index 0: serves data0.pool, listening where the file says (port 0 is not allowed in a
  // file, so --listen overrides the address here to get a free port).
  Process served;
  ASSERT_TRUE(StartDaemon(served, {"--cluster-file", conf, "--index", "0", "--listen",
                                   "127.0.0.1:0"}));
  std::optional<std::string> at = served.WaitReady();
  ASSERT_TRUE(at) << served.err_text();
  EXPECT_EQ(at->rfind("127.0.0.1:", 0), 0u) << *at;
  served.Signal(SIGTERM);
  EXPECT_EQ(served.Wait(std::chrono::seconds(5)), 0);

  // A cluster_uuid that is not the pool's: refused.
  std::ofstream(conf) << "cluster_uuid 2c5f39cb-3fb2-42e3-994f-1127e4ddb538\n"
                      << "meta 127.0.0.1:1 meta.pool 8M\n"
                      << "data 127.0.0.1:2 data0.pool 8M\n";
  ProcessRun foreign = RunDaemon({"--cluster-file", conf, "--index", "0", "--listen",
                                  "127.0.0.1:0"}, dir_);
  EXPECT_EQ(foreign.exit_code, 1);
  EXPECT_NE(foreign.err.find("belongs to cluster"), std::string::npos) << foreign.err;
}

TEST_F(DataDaemonTest, ReadyThenCleanStopOnSigterm) {
  Process daemon;
  ASSERT_TRUE(StartDaemon(daemon, {"--pool", pool_, "--listen", "127.0.0.1:0"}));
  std::optional<std::string> at = daemon.WaitReady();
  ASSERT_TRUE(at) << daemon.err_text();
  EXPECT_EQ(at->rfind("127.0.0.1:", 0), 0u) << *at;
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(std::chrono::seconds(5)), 0)
      << "dpmfs-data did not stop cleanly within 5 s of SIGTERM: " << daemon.err_text();
}

}  // namespace
