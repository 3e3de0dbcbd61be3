#include "tests/e2e/e2e_util.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace dpmfs::e2e {

std::vector<uint8_t> ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY));
  if (!fd.ok()) {
    ADD_FAILURE() << "open " << path << ": " << std::strerror(errno);
    return {};
  }
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ADD_FAILURE() << "read " << path << ": " << std::strerror(errno);
      return {};
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

std::string ReadFileString(const std::string& path) {
  std::vector<uint8_t> v = ReadFile(path);
  return std::string(v.begin(), v.end());
}

::testing::AssertionResult WriteFile(const std::string& path, const std::string& data,
                                     mode_t mode) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode));
  if (!fd.ok()) {
    return ::testing::AssertionFailure() << "open " << path << ": " << std::strerror(errno);
  }
  if (!PwriteAll(fd.get(), data.data(), data.size(), 0)) {
    return ::testing::AssertionFailure() << "write " << path << ": " << std::strerror(errno);
  }
  if (fd.Close() != 0) {
    return ::testing::AssertionFailure() << "close " << path << ": " << std::strerror(errno);
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << "opendir " << path << ": " << std::strerror(errno);
    return names;
  }
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
    errno = 0;
  }
  if (errno != 0) ADD_FAILURE() << "readdir " << path << ": " << std::strerror(errno);
  ::closedir(d);
  return names;
}

bool MountInfo::HasOption(const std::string& opt) const {
  std::stringstream ss(options);
  std::string o;
  while (std::getline(ss, o, ',')) {
    if (o == opt) return true;
  }
  return false;
}

MountInfo MountOf(const std::string& path) {
  std::error_code ec;
  std::string real = std::filesystem::canonical(path, ec).string();
  if (ec) real = path;
  MountInfo best;
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string dev, mnt, type, opts;
    ss >> dev >> mnt >> type >> opts;
    // /proc/mounts escapes a space as \040; our test paths have none.
    bool prefix = real == mnt || mnt == "/" ||
                  (real.rfind(mnt, 0) == 0 && real.size() > mnt.size() && real[mnt.size()] == '/');
    if (prefix && mnt.size() >= best.mountpoint.size()) best = MountInfo{mnt, type, opts};
  }
  return best;
}

std::string CurrentTestDirName() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  std::replace(name.begin(), name.end(), '/', '_');
  return name;
}

void E2eTest::SetUp() {
  const char* base = std::getenv("DPMFS_TEST_DIR");
  if (base == nullptr || *base == '\0') {
    GTEST_SKIP() << "DPMFS_TEST_DIR is not set: point it at a directory on the file system "
                    "under test (tests/e2e/run_e2e.sh does, on a dpmfs mount)";
  }
  dir_ = std::string(base) + "/" + CurrentTestDirName();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  ASSERT_FALSE(ec) << "cannot clear " << dir_ << ": " << ec.message();
  ASSERT_SYS(::mkdir(dir_.c_str(), 0755));
  // umask may have taken bits away; the permission tests need others to traverse it.
  ASSERT_SYS(::chmod(dir_.c_str(), 0755));
}

void E2eTest::TearDown() {
  if (dir_.empty()) return;
  const char* keep = std::getenv("DPMFS_TEST_KEEP");
  if (HasFailure() || (keep != nullptr && std::string(keep) == "1")) {
    std::cerr << "[   KEPT   ] " << dir_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  EXPECT_FALSE(ec) << "cannot remove " << dir_ << ": " << ec.message();
}

}  // namespace dpmfs::e2e
