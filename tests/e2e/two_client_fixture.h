// TwoClientTest: DPMFS_TEST_DIR and DPMFS_TEST_DIR2 name the same directory through two
// different mounts of one cluster (two dpmfs-mount processes); DPMFS_TEST_DIR3, when
// set, through a third one that the tests only read from. Skipped without
// DPMFS_TEST_DIR2; with DPMFS_TEST_DIR2 = DPMFS_TEST_DIR (one local file system) the
// tests check themselves.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/e2e/e2e_util.h"

namespace dpmfs::e2e {

class TwoClientTest : public E2eTest {
 protected:
  void SetUp() override {
    const char* second = std::getenv("DPMFS_TEST_DIR2");
    if (second == nullptr || *second == '\0') {
      GTEST_SKIP() << "DPMFS_TEST_DIR2 is not set: it names DPMFS_TEST_DIR through a second "
                      "mount of the same cluster (tests/e2e/run_e2e.sh sets it)";
    }
    E2eTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    dir2_ = std::string(second) + "/" + CurrentTestDirName();
    // The second client sees the directory the first one created (open-time lookup).
    struct stat st{};
    ASSERT_EQ(::stat(dir2_.c_str(), &st), 0)
        << dir2_ << " (the test directory through the second mount): " << std::strerror(errno);
  }
  // `name` through the second client.
  std::string Q(const std::string& name) const { return dir2_ + "/" + name; }
  // `name` through a third client that neither writer used (DPMFS_TEST_DIR3; without
  // it, through the first): what the servers hold, not what a writer cached.
  std::string R(const std::string& name) const {
    const char* third = std::getenv("DPMFS_TEST_DIR3");
    if (third == nullptr || *third == '\0') return P(name);
    return std::string(third) + "/" + CurrentTestDirName() + "/" + name;
  }

  std::string dir2_;
};

}  // namespace dpmfs::e2e
