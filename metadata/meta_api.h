// MetaApi: what a client of the metadata service can ask, one method per operation of
// meta_ops.h (but the session's own: register, heartbeat and unregister belong to a
// connection). The FUSE client (fs/) holds this interface, never a concrete client, so
// that a router over several metadata servers (each owning part of the namespace) can
// stand where MetaClient stands today, and tests can put an in-memory one there.
//
// Errors: every method returns a Status carrying the POSIX errno the operation failed
// with (Status::posix_errno, ToErrno): the namespace's answer (ENOENT, EEXIST, ...) as
// the server gave it; EIO when a reply does not decode or the server reported an
// RPC-level error; ETIMEDOUT when the call's deadline passed; ENOTCONN when the server
// stayed unreachable. The message says which operation failed and why. Callers turn it
// into an errno once, at their edge (fs/fuse_ops.cc), and log the message there.
//
// Thread-safety: implementations are thread-safe; any number of calls may run at once.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

class MetaApi {
 public:
  virtual ~MetaApi() = default;

  // The cluster the service described when this client registered.
  virtual const ClusterInfo& cluster() const = 0;

  virtual Status Lookup(InodeId parent, std::string_view name, InodeAttr* attr) = 0;
  virtual Status Getattr(InodeId ino, InodeAttr* attr) = 0;
  virtual Status Setattr(const SetattrRequest& req, InodeAttr* attr) = 0;
  // Namespace changes. `dirs`, when given, receives the attributes of the directories
  // the change touched, as the server had them right after it (see EntryReply::dirs).
  virtual Status Create(const CreateRequest& req, CreateReply* reply) = 0;
  virtual Status Mkdir(const MkdirRequest& req, InodeAttr* attr,
                       std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Mknod(const MknodRequest& req, InodeAttr* attr,
                       std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Symlink(const SymlinkRequest& req, InodeAttr* attr,
                         std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Readlink(InodeId ino, std::string* target) = 0;
  virtual Status Link(InodeId ino, InodeId new_parent, std::string_view new_name, InodeAttr* attr,
                      std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Unlink(InodeId parent, std::string_view name,
                        std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Rmdir(InodeId parent, std::string_view name,
                       std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Rename(const RenameRequest& req, std::vector<InodeAttr>* dirs = nullptr) = 0;
  virtual Status Readdir(const ReaddirRequest& req, ReaddirReply* reply) = 0;
  virtual Status Open(InodeId ino, uint32_t flags, OpenReply* reply) = 0;
  virtual Status Release(InodeId ino, uint64_t handle) = 0;
  // Releases up to kMaxReleasesPerRequest handles in one call; `refused` (optional) gets
  // how many were not open.
  virtual Status ReleaseMany(const std::vector<ReleaseRequest>& handles,
                             uint32_t* refused = nullptr) = 0;
  virtual Status Statfs(StatfsReply* reply) = 0;
  virtual Status Getxattr(InodeId ino, std::string_view name, std::string* value) = 0;
  virtual Status Setxattr(const SetxattrRequest& req) = 0;
  virtual Status Listxattr(InodeId ino, std::vector<std::string>* names) = 0;
  virtual Status Removexattr(InodeId ino, std::string_view name) = 0;
  virtual Status Layout(const LayoutRequest& req, LayoutReply* reply) = 0;
  virtual Status Allocate(const AllocateRequest& req, AllocateReply* reply) = 0;
  virtual Status Commit(const CommitRequest& req, InodeAttr* attr) = 0;
  virtual Status Fallocate(const FallocateRequest& req, InodeAttr* attr) = 0;

  // ---- The cluster map (docs/replication.md) ----
  // Defaults for services without one (tests' fakes): ENOSYS, epoch 0.
  virtual Status GetClusterMap(ClusterMapReply* /*reply*/) {
    return Status::Posix(ENOSYS, "this metadata service has no cluster map");
  }
  virtual Status ReportDataServer(const ReportDataServerRequest& /*req*/,
                                  ClusterMapReply* /*reply*/) {
    return Status::Posix(ENOSYS, "this metadata service has no cluster map");
  }
  virtual Status MarkDegraded(const MarkDegradedRequest& /*req*/) {
    return Status::Posix(ENOSYS, "this metadata service has no cluster map");
  }
  // The newest map epoch the service has mentioned (in heartbeat replies): a client
  // holding an older map fetches it before its next replicated write.
  virtual uint64_t latest_epoch() const { return 0; }
  // Renews the lease now (a heartbeat) for the fresh data-server session token and epoch
  // it brings: what a client does when a data server refused its token as older than
  // its fence (docs/replication.md, "Fencing"), instead of waiting for the next beat.
  virtual Status RenewDataToken() {
    return Status::Posix(ENOSYS, "this metadata service issues no session tokens");
  }
};

}  // namespace dpmfs::meta
