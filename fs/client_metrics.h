// The client's live metrics (docs/monitoring.md): a latency histogram per FUSE
// operation (from the kernel's request reaching dpmfs-mount to the operation's return,
// which is when it replied), and the data path's reads and writes (one transfer call
// each: every data server it touches, durable for writes) with their bytes. Pushed to
// the metadata server with the heartbeat (MetaClientOptions::stats_report), so `dpmfs
// stats` shows every mounted client.
//
// Process-wide: one mount per dpmfs-mount process; tests of FileIo record into it too.
// Thread-safety: Record paths are lock-free (LiveHistogram); Report from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/live_histogram.h"
#include "common/stats_report.h"

namespace dpmfs::fs {

// clang-format off
#define DPMFS_FUSE_OPS(X) \
  X(Lookup, "lookup") X(Getattr, "getattr") X(Setattr, "setattr") X(Readlink, "readlink") \
  X(Mknod, "mknod") X(Mkdir, "mkdir") X(Unlink, "unlink") X(Rmdir, "rmdir") \
  X(Symlink, "symlink") X(Rename, "rename") X(Link, "link") X(Open, "open") X(Read, "read") \
  X(Write, "write") X(Flush, "flush") X(Release, "release") X(Fsync, "fsync") \
  X(Opendir, "opendir") X(Readdir, "readdir") X(Readdirplus, "readdirplus") \
  X(Releasedir, "releasedir") X(Fsyncdir, "fsyncdir") X(Statfs, "statfs") \
  X(Setxattr, "setxattr") X(Getxattr, "getxattr") X(Listxattr, "listxattr") \
  X(Removexattr, "removexattr") X(Create, "create") X(Fallocate, "fallocate") \
  X(CopyFileRange, "copy_file_range") X(Lseek, "lseek")
// clang-format on

enum class FuseOp : uint8_t {
#define DPMFS_FUSE_OP_ENUM(Name, str) k##Name,
  DPMFS_FUSE_OPS(DPMFS_FUSE_OP_ENUM)
#undef DPMFS_FUSE_OP_ENUM
  kCount
};
inline constexpr size_t kFuseOpCount = static_cast<size_t>(FuseOp::kCount);
inline constexpr std::array<std::string_view, kFuseOpCount> kFuseOpNames = {
#define DPMFS_FUSE_OP_NAME(Name, str) str,
    DPMFS_FUSE_OPS(DPMFS_FUSE_OP_NAME)
#undef DPMFS_FUSE_OP_NAME
};

class ClientMetrics {
 public:
  static ClientMetrics& Get();

  metrics::LiveHistogram& fuse_op(FuseOp op) { return fuse_ops_[static_cast<size_t>(op)]; }
  metrics::LiveHistogram& data_read() { return data_read_; }
  metrics::LiveHistogram& data_write() { return data_write_; }
  void AddRead(uint64_t bytes, bool ok) {
    (ok ? bytes_read_ : read_errors_).fetch_add(ok ? bytes : 1, std::memory_order_relaxed);
  }
  void AddWritten(uint64_t bytes, bool ok) {
    (ok ? bytes_written_ : write_errors_).fetch_add(ok ? bytes : 1, std::memory_order_relaxed);
  }
  // role "client", `instance` the client's name ("host:pid /mnt").
  metrics::StatsReport Report(std::string instance) const;

 private:
  std::array<metrics::LiveHistogram, kFuseOpCount> fuse_ops_;
  metrics::LiveHistogram data_read_, data_write_;
  std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0}, read_errors_{0}, write_errors_{0};
};

}  // namespace dpmfs::fs
