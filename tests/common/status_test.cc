#include "common/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace dpmfs {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  DPMFS_ASSIGN_OR_RETURN(int h, Half(x));
  DPMFS_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckPositive(int x) {
  if (x <= 0) return Status::OutOfRange("not positive");
  return Status::OK();
}

Status Both(int a, int b) {
  DPMFS_RETURN_IF_ERROR(CheckPositive(a));
  DPMFS_RETURN_IF_ERROR(CheckPositive(b));
  return Status::OK();
}

TEST(StatusTest, OkAndErrorsCarryCodeAndMessage) {
  EXPECT_TRUE(Status::OK().ok());
  EXPECT_EQ(Status::OK().ToString(), "OK");
  Status st = Status::Corruption("pool header checksum mismatch");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_EQ(st.ToString(), "Corruption: pool header checksum mismatch");
  EXPECT_EQ(st.WithContext("/pm/data0").message(), "/pm/data0: pool header checksum mismatch");
}

TEST(StatusTest, FromErrnoNamesTheError) {
  Status st = Status::FromErrno(ENOENT, "open /nope");
  EXPECT_EQ(st.code(), StatusCode::kIOError);
  EXPECT_NE(st.message().find("No such file"), std::string::npos) << st.message();
}

// The POSIX error currency: a Status carries the errno it was made from through
// WithContext and DPMFS_RETURN_IF_ERROR, and ToErrno gives it back (or the errno its
// code stands for).
TEST(StatusTest, PosixCarriesTheErrno) {
  Status st = Status::Posix(ENOENT, "lookup");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_EQ(st.posix_errno(), ENOENT);
  EXPECT_EQ(st.ToErrno(), ENOENT);
  EXPECT_EQ(st.WithContext("inode 5").ToErrno(), ENOENT);
  EXPECT_EQ(st.WithContext("inode 5").message(), "inode 5: lookup");
  EXPECT_TRUE(Status::Posix(0, "nothing").ok());
  EXPECT_EQ(Status::OK().ToErrno(), 0);
  EXPECT_EQ(Status::Posix(EEXIST, "x").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Status::Posix(ENOTEMPTY, "x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Status::Posix(ENOTEMPTY, "x").ToErrno(), ENOTEMPTY);
  EXPECT_EQ(Status::Posix(ETIMEDOUT, "x").code(), StatusCode::kTimedOut);
  EXPECT_EQ(Status::FromErrno(EACCES, "open").ToErrno(), EACCES);
  // Without a carried errno: the code's.
  EXPECT_EQ(Status::NotFound("x").ToErrno(), ENOENT);
  EXPECT_EQ(Status::TimedOut("x").ToErrno(), ETIMEDOUT);
  EXPECT_EQ(Status::Unavailable("x").ToErrno(), ENOTCONN);
  EXPECT_EQ(Status::Corruption("x").ToErrno(), EIO);
  EXPECT_EQ(Status::Internal("x").ToErrno(), EIO);
  auto pass = [](int err) -> Status {
    DPMFS_RETURN_IF_ERROR(Status::Posix(err, "inner"));
    return Status::OK();
  };
  EXPECT_EQ(pass(ENOSPC).ToErrno(), ENOSPC);
}

TEST(ResultTest, PropagatesThroughMacros) {
  EXPECT_EQ(Quarter(12).value(), 3);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "odd: 3");
  EXPECT_TRUE(Both(1, 2).ok());
  EXPECT_EQ(Both(1, -2).code(), StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace dpmfs
