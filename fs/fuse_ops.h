// The libfuse3 low-level file system of dpmfs-mount: every FUSE request the kernel
// sends, answered through the metadata service's interface (meta::MetaApi: MetaClient
// in the mount, a router over several metadata servers later) and the striped I/O
// engine (FileIo).
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
//   - errors: a failure of the metadata service (MetaApi) or of the I/O engine (FileIo)
//     arrives as a Status carrying its POSIX errno (the server's answer; EIO for
//     data-path failures) and is turned into the kernel's errno once, here
//     (ErrnoAtEdge), with its message logged.
//
// Thread-safety: every operation may run on any worker thread at once; the state they
// share (InodeTable, FileIo, MetaApi) is thread-safe.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <memory>

#include "fs/caller_groups.h"
#include "fs/file_io.h"
#include "fs/inode_table.h"
#include "fs/mount_options.h"
#include "fs/page_cache_invalidator.h"
#include "fs/release_batcher.h"
#include "fs/stat_ahead.h"
#include "metadata/meta_api.h"

namespace dpmfs::fs {

// FileIo's metadata calls, made through the mount's MetaApi: passed on as they are
// (their Status reaches the FUSE operation through FileIo's own).
class MetaExtentService : public ExtentService {
 public:
  explicit MetaExtentService(meta::MetaApi& meta) : meta_(meta) {}
  Status Layout(const meta::LayoutRequest& req, meta::LayoutReply* reply) override {
    return meta_.Layout(req, reply);
  }
  Status Allocate(const meta::AllocateRequest& req, meta::AllocateReply* reply) override {
    return meta_.Allocate(req, reply);
  }
  Status Commit(const meta::CommitRequest& req, meta::InodeAttr* attr) override {
    return meta_.Commit(req, attr);
  }
  Status GetClusterMap(meta::ClusterMapReply* reply) override {
    return meta_.GetClusterMap(reply);
  }
  Status ReportDataServer(const meta::ReportDataServerRequest& req,
                          meta::ClusterMapReply* reply) override {
    return meta_.ReportDataServer(req, reply);
  }
  Status MarkDegraded(const meta::MarkDegradedRequest& req) override {
    return meta_.MarkDegraded(req);
  }
  uint64_t latest_epoch() const override { return meta_.latest_epoch(); }
  Status RenewDataToken() override { return meta_.RenewDataToken(); }

 private:
  meta::MetaApi& meta_;
};

// The one place a failure (of the metadata service or the I/O engine) becomes the
// kernel's errno: 0 for OK, else the errno `st` carries, with `st`'s message logged for
// inode `ino` (debug for the namespace's own answers such as ENOENT, warn for failures
// of the service or the data path: EIO, ETIMEDOUT, ENOTCONN).
int ErrnoAtEdge(const Status& st, uint64_t ino);

class Filesystem {
 public:
  Filesystem(meta::MetaApi& meta, FileIo& io, const MountOptions& options);

  // The operation table to hand to fuse_session_new, with this object as userdata.
  static const fuse_lowlevel_ops& Ops();

  meta::MetaApi& meta() { return meta_; }
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
  // The supplementary groups of requesting processes (every metadata call carries its
  // caller: metadata/caller_scope.h).
  CallerGroups& caller_groups() { return caller_groups_; }
  // The kernel leaves the umask to us (FUSE_CAP_DONT_MASK, asked for with POSIX ACLs):
  // new inodes' requests carry the caller's umask to the metadata server. Set at
  // FUSE init, before any request.
  bool server_applies_umask() const { return server_applies_umask_; }
  void set_server_applies_umask(bool on) { server_applies_umask_ = on; }

 private:
  fuse_session* session_ = nullptr;
  bool server_applies_umask_ = false;
  meta::MetaApi& meta_;
  FileIo& io_;
  const MountOptions& options_;
  InodeTable inodes_;
  StatAhead stat_ahead_;
  PageCacheInvalidator invalidator_;
  CallerGroups caller_groups_;
  ReleaseBatcher releases_;  // last: flushed (through meta_) before the rest goes
};

}  // namespace dpmfs::fs
