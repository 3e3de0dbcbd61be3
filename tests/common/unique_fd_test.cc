// UniqueFd (common/unique_fd.h): closes what it owns exactly once, on destruction, reset
// or move-assignment; release() gives the descriptor up; Close() reports close(2).
#include "common/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>

namespace dpmfs {
namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnDestructionResetAndMove) {
  int raw = -1;
  {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    raw = fd.get();
    EXPECT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw)) << "closed at the end of its scope";

  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int first = a.get();
  a.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_NE(a.get(), first);  // opened before the old one was closed
  EXPECT_FALSE(IsOpen(first)) << "reset closes the old descriptor";
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a.valid());
  EXPECT_TRUE(b.valid());
  UniqueFd c(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int c_fd = c.get();
  const int b_fd = b.get();
  c = std::move(b);
  EXPECT_EQ(c.get(), b_fd);
  EXPECT_FALSE(IsOpen(c_fd)) << "move-assignment closes what the target held";
}

TEST(UniqueFd, ReleaseGivesUpAndCloseReports) {
  UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw = fd.release();
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(IsOpen(raw)) << "released, not closed";
  ASSERT_EQ(::close(raw), 0);

  UniqueFd g(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int graw = g.get();
  EXPECT_EQ(g.Close(), 0);
  EXPECT_FALSE(g.valid());
  EXPECT_FALSE(IsOpen(graw));
  EXPECT_EQ(g.Close(), 0) << "nothing held: nothing to close";
  UniqueFd none;
  EXPECT_FALSE(none.valid());
  EXPECT_FALSE(static_cast<bool>(none));
}

}  // namespace
}  // namespace dpmfs
