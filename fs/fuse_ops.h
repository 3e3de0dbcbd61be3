// The libfuse3 low-level file system of dpmfs-mount: every FUSE request the kernel
// sends, answered with metadata RPCs (MetaClient) and the striped I/O engine (FileIo).
//
// Semantics (see fs/README.md):
//   - entries and attributes are cached by the kernel for entry_timeout/attr_timeout;
//   - close-to-open: open fetches fresh attributes from the server, drops the cached
//     layout, and lets the kernel keep its page cache only if size and mtime did not
//     change;
//   - write() returns once the data is durable (no writeback cache); O_DIRECT goes
//     through the kernel's O_DIRECT path (no direct_io), so it bypasses the page cache
//     and the file can still be mapped;
//   - flock/fcntl locks are left to the kernel (no lock ops: local to this mount);
//   - errors: the metadata server's errno as it gave it; EIO for data-path failures.
//
// Thread-safety: every operation may run on any worker thread at once; the state they
// share (InodeTable, FileIo, MetaClient) is thread-safe.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <memory>

#include "fs/file_io.h"
#include "fs/inode_table.h"
#include "fs/mount_options.h"
#include "fs/page_cache_invalidator.h"
#include "fs/release_batcher.h"
#include "fs/stat_ahead.h"
#include "metadata/meta_client.h"

namespace dpmfs::fs {

// FileIo's metadata calls, made through the mount's MetaClient.
class MetaExtentService : public ExtentService {
 public:
  explicit MetaExtentService(meta::MetaClient& meta) : meta_(meta) {}
  int Layout(const meta::LayoutRequest& req, meta::LayoutReply* reply) override {
    return meta_.Layout(req, reply);
  }
  int Allocate(const meta::AllocateRequest& req, meta::AllocateReply* reply) override {
    return meta_.Allocate(req, reply);
  }
  int Commit(const meta::CommitRequest& req, meta::InodeAttr* attr) override {
    return meta_.Commit(req, attr);
  }

 private:
  meta::MetaClient& meta_;
};

class Filesystem {
 public:
  Filesystem(meta::MetaClient& meta, FileIo& io, const MountOptions& options);

  // The operation table to hand to fuse_session_new, with this object as userdata.
  static const fuse_lowlevel_ops& Ops();

  meta::MetaClient& meta() { return meta_; }
  FileIo& io() { return io_; }
  InodeTable& inodes() { return inodes_; }
  StatAhead& stat_ahead() { return stat_ahead_; }
  ReleaseBatcher& releases() { return releases_; }
  const MountOptions& options() const { return options_; }
  // The session, for invalidation notices to the kernel; set once after
  // fuse_session_new, before the loop runs.
  void set_session(fuse_session* se) {
    session_ = se;
    invalidator_.Start(se);
  }
  fuse_session* session() const { return session_; }
  // After the request loop, before the session goes: ends the page-cache invalidator.
  void EndSession() { invalidator_.Stop(); }
  PageCacheInvalidator& invalidator() { return invalidator_; }

 private:
  fuse_session* session_ = nullptr;
  meta::MetaClient& meta_;
  FileIo& io_;
  const MountOptions& options_;
  InodeTable inodes_;
  StatAhead stat_ahead_;
  PageCacheInvalidator invalidator_;
  ReleaseBatcher releases_;  // last: flushed (through meta_) before the rest goes
};

}  // namespace dpmfs::fs
