// Helpers of the end-to-end tests: raw syscalls with errno checks, a directory per test
// under $DPMFS_TEST_DIR, deterministic data patterns.
//
// The tests run against whatever directory DPMFS_TEST_DIR names: a dpmfs mount (through
// tests/e2e/run_e2e.sh) or a local file system such as tmpfs, which is how the tests
// themselves are validated (tests/e2e/README.md).
//
// Thread-safety: Fd and the free functions are safe on distinct objects; TestDir is used
// by one test thread.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace dpmfs::e2e {

// `expr` must fail with errno `err`. errno is read right after the call.
#define EXPECT_ERRNO(expr, err)                                                          \
  do {                                                                                   \
    errno = 0;                                                                           \
    auto e2e_r_ = (expr);                                                                \
    int e2e_e_ = errno;                                                                  \
    EXPECT_EQ(e2e_r_, decltype(e2e_r_)(-1)) << #expr << " succeeded; wanted "            \
                                            << strerrorname_np(err);                     \
    if (e2e_r_ == decltype(e2e_r_)(-1)) {                                                \
      EXPECT_EQ(e2e_e_, err) << #expr << " failed with " << strerrorname_np(e2e_e_)      \
                             << " (" << std::strerror(e2e_e_) << "), wanted "            \
                             << strerrorname_np(err);                                    \
    }                                                                                    \
  } while (0)

// `expr` (a syscall returning -1 on failure) must succeed.
#define ASSERT_SYS(expr)                                                                 \
  do {                                                                                   \
    errno = 0;                                                                           \
    auto e2e_r_ = (expr);                                                                \
    int e2e_e_ = errno;                                                                  \
    ASSERT_NE(e2e_r_, decltype(e2e_r_)(-1)) << #expr << ": " << strerrorname_np(e2e_e_)  \
                                            << " (" << std::strerror(e2e_e_) << ")";     \
  } while (0)
#define EXPECT_SYS(expr)                                                                 \
  do {                                                                                   \
    errno = 0;                                                                           \
    auto e2e_r_ = (expr);                                                                \
    int e2e_e_ = errno;                                                                  \
    EXPECT_NE(e2e_r_, decltype(e2e_r_)(-1)) << #expr << ": " << strerrorname_np(e2e_e_)  \
                                            << " (" << std::strerror(e2e_e_) << ")";     \
  } while (0)

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Closes now and returns close()'s result (close-to-open tests want it checked).
  int Close() {
    int r = ::close(fd_);
    fd_ = -1;
    return r;
  }

 private:
  int fd_ = -1;
};

// A byte of the deterministic pattern `seed` at file offset `off`: a file written with
// it can be checked from any offset without keeping a copy.
inline uint8_t PatternByte(uint64_t seed, uint64_t off) {
  uint64_t x = (off >> 3) * 0x9E3779B97F4A7C15ull ^ seed * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint8_t>(x >> ((off & 7) * 8));
}
inline std::vector<uint8_t> Pattern(uint64_t seed, uint64_t off, size_t len) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = PatternByte(seed, off + i);
  return v;
}

// pwrite/pread the whole buffer (looping over short transfers). Return false with errno
// set on failure; PreadAll stops early at EOF and returns the bytes read in *got.
inline bool PwriteAll(int fd, const void* buf, size_t len, off_t off) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = EIO;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
    off += n;
  }
  return true;
}
inline bool PreadAll(int fd, void* buf, size_t len, off_t off, size_t* got) {
  auto* p = static_cast<uint8_t*>(buf);
  *got = 0;
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    p += n;
    len -= static_cast<size_t>(n);
    off += n;
    *got += static_cast<size_t>(n);
  }
  return true;
}

// Index of the first byte where `a` and `b` differ, or -1 (for readable failures).
inline long FirstDifference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<long>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<long>(n);
}

// Reads the whole file at `path` (empty + ADD_FAILURE on error).
std::vector<uint8_t> ReadFile(const std::string& path);
// Creates or truncates `path` with `data`.
::testing::AssertionResult WriteFile(const std::string& path, const std::string& data,
                                     mode_t mode = 0644);
std::string ReadFileString(const std::string& path);

// Names in directory `path` (without "." and ".."), in readdir order; duplicates kept.
std::vector<std::string> ListDir(const std::string& path);

// The mount that holds `path` (longest mountpoint prefix of its real path) from
// /proc/self/mounts: file system type and options.
struct MountInfo {
  std::string mountpoint;
  std::string fstype;
  std::string options;
  bool HasOption(const std::string& opt) const;
  bool IsFuse() const { return fstype.rfind("fuse", 0) == 0; }
};
MountInfo MountOf(const std::string& path);

// "<Suite>.<Test>" of the running test, '/' of parameterized names made '_': the name
// of its directory under each DPMFS_TEST_DIR*.
std::string CurrentTestDirName();

// Base class of every test: a fresh directory $DPMFS_TEST_DIR/<Suite>.<Test> (mode 0755),
// removed after a passing test (kept after a failure, or always with DPMFS_TEST_KEEP=1,
// for a look). Skips when DPMFS_TEST_DIR is not set.
class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Path of `name` inside the test's directory.
  std::string P(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

  std::string dir_;
};

}  // namespace dpmfs::e2e
