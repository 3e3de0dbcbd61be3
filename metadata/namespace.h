// Namespace: dpmfs-meta's in-memory file system state (inodes, directories, symlinks,
// xattrs, extent maps) and every metadata operation on it, with Linux's errnos. Two
// components it holds keep the rest: Sessions (sessions.h: leases, the durable reply
// cache, open handles) and Space (space.h: block allocators, free quarantine, scrub
// queue).
//
// Operations: one row each in meta_ops.h; the handlers are grouped by family in
// ops_session.cc, ops_namespace.cc, ops_files.cc and ops_xattr.cc (Do<Name> for
// mutations, Read<Name> for reads, declared from the table below, so a row without a
// handler does not link); namespace.cc holds the dispatch, the shared helpers and the
// invariants.
//
// Durability model (see metadata/README.md, "Namespace and service"): MetaService runs
// every mutation through Mutate() under its exclusive lock, then journals a record made
// of the request as received plus the facts replay cannot re-decide (the time, and the
// pool ranges the block allocators handed out). Replay feeds the record back through the
// SAME Mutate() code with OpContext::replay set, which takes those facts from the record
// instead of the clock and the allocators; everything else (inode numbers, handles,
// cookies, generations) comes from counters that are part of the state, so replay
// reproduces the state and the reply bit for bit. A mutation that fails is decided
// entirely by validation before anything is changed ("validate, then mutate"), so a
// failed mutation leaves no trace but its errno (journaled as a reply-only record, so a
// retried request gets the same answer after a restart).
//
// Thread-safety: none. The owner (MetaService) serializes mutations against everything
// and lets const reads run concurrently with each other (a SharedMutex);
// Session::lease_deadline_ms is atomic so that a heartbeat may renew it under the
// shared lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "metadata/cluster_map.h"
#include "metadata/extent_map.h"
#include "metadata/meta_protocol.h"
#include "metadata/meta_store.h"
#include "metadata/op_context.h"
#include "metadata/sessions.h"
#include "metadata/space.h"

namespace dpmfs::meta {

// Mutations that only the server issues (never accepted from the wire): a session's
// lease lapsed. Payload: u64 session id.
inline constexpr uint16_t kOpExpireSession = 0x8001;
// The cluster map (cluster_map.h): a data server changes state (epoch + 1). Payload:
// u32 server, u8 new state (DataServerState), u8 full rebuild (entering resyncing with a
// freshly formatted pool: every unit it holds is dirty), then u64 pool instance (its
// pool from now on; 0: unchanged). Records from before the instance end after the flag.
inline constexpr uint16_t kOpSetServerState = 0x8002;
// A resync copied units to a resyncing server. Payload: u32 server, u32 n,
// n x (u32 primary, u64 unit).
inline constexpr uint16_t kOpResyncProgress = 0x8003;
inline constexpr uint32_t kMaxResyncUnitsPerRecord = 4096;
// The pool instance first seen on a data server (ClusterMap::SetPoolInstance; no state
// change, no epoch). Payload: u32 server, u64 pool instance (not 0).
inline constexpr uint16_t kOpSetPoolInstance = 0x8004;
std::vector<uint8_t> EncodeSetServerState(uint32_t server, DataServerState to, bool full_rebuild,
                                          uint64_t pool_instance = 0);
std::vector<uint8_t> EncodeSetPoolInstance(uint32_t server, uint64_t pool_instance);
std::vector<uint8_t> EncodeResyncProgress(uint32_t server, std::span<const DirtyUnit> units);

// Everything the namespace needs to know about the file system it serves.
struct NamespaceConfig {
  uint32_t block_size = 4096;
  uint32_t stripe_unit = 1u << 20;
  std::vector<DataPoolGeometry> pools;  // index order: the data servers
  // Root directory's timestamps on a fresh file system (the metadata pool's creation
  // time, so that replay without a checkpoint reproduces them).
  Timespec root_time;
  // Reported by statfs as total inodes (derived from the metadata pool's capacity).
  uint64_t max_inodes = 1ull << 32;
  // Mutation replies kept per session for retries after a restart.
  uint32_t reply_cache_entries = 128;
  // Handed out by Register.
  uint32_t lease_ms = 10000;
  ClusterInfo cluster;
  // Blocks freed while serving go back to the allocators only this long after the free
  // (free_quarantine.h: clients may still write them through cached layouts): freed at
  // clock reading t, they are released at t + free_quarantine_ms + 1. 0: at once.
  // MetaService sets it from its options (default 3000); replay never quarantines.
  uint32_t free_quarantine_ms = 0;
  // Freed blocks are zeroed on their data server before they are allocated again
  // (metadata/block_scrubber.h): released from the quarantine they wait in the scrub
  // queue, not in the allocators. This is what lets clients write only the bytes they
  // were asked to write (no zero padding, no zeroing past a cached EOF): every block
  // an Allocate hands out reads as zeros. MetaService sets it; off in unit tests that
  // have no data servers.
  bool scrub_freed = false;
  // The steady clock in milliseconds the quarantine runs on (the same clock as lease
  // deadlines). Empty: std::chrono::steady_clock. Tests inject their own.
  std::function<int64_t()> clock_ms;
};

class Namespace {
 public:
  // A fresh file system: the root directory only (ino 1, generation 1).
  explicit Namespace(NamespaceConfig config);
  ~Namespace();
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;

  const NamespaceConfig& config() const { return config_; }

  // Executes a mutation (IsMutation(op), or kRegister/kUnregister/kOpExpireSession).
  // Returns the reply payload ([errno][body]). InvalidArgument when the payload does
  // not decode (nothing changed); in replay, Corruption when the record does not apply
  // as it did live (a journal that does not match its checkpoint). On success with
  // ctx.session != 0, the reply is also stored in that session's reply cache.
  // `*err_out` (optional) receives the errno of the reply.
  Result<std::vector<uint8_t>> Mutate(uint16_t op, std::span<const uint8_t> payload, OpContext& ctx,
                                      int* err_out = nullptr);
  // Stores a reply in the session's reply cache (creating the session if needed): for a
  // failed mutation, whose record carries only its errno.
  void CacheReply(uint64_t session, uint64_t seq, std::vector<uint8_t> reply) {
    client_sessions_.CacheReply(session, seq, std::move(reply));
  }
  // A cached reply of (session, seq): the reply bytes, or nullopt. `*too_old` is set
  // when seq is at or below what the cache already dropped (the request may or may not
  // have executed).
  std::optional<std::vector<uint8_t>> CachedReply(uint64_t session, uint64_t seq,
                                                  bool* too_old) const {
    return client_sessions_.CachedReply(session, seq, too_old);
  }

  // Executes a read-only operation (lookup, getattr, readlink, readdir, statfs,
  // getxattr, listxattr, layout) for `caller` (permissions.h). InvalidArgument when the
  // payload does not decode. Without a caller: as root.
  Result<std::vector<uint8_t>> Read(uint16_t op, std::span<const uint8_t> payload,
                                    const Credentials& caller) const;
  Result<std::vector<uint8_t>> Read(uint16_t op, std::span<const uint8_t> payload) const {
    return Read(op, payload, Credentials{});
  }

  // ---- The components ----
  Sessions& sessions() { return client_sessions_; }
  const Sessions& sessions() const { return client_sessions_; }
  Space& space() { return space_; }
  const Space& space() const { return space_; }
  // The data servers' states, the epoch and the dirty sets (changed only by Mutate).
  const ClusterMap& cluster_map() const { return cluster_map_; }

  // ---- Sessions (for the service's lease handling; see sessions.h) ----
  Session* FindSession(uint64_t session) { return client_sessions_.Find(session); }
  const Session* FindSession(uint64_t session) const { return client_sessions_.Find(session); }
  // Sessions whose lease deadline is at or before `now_ms`.
  std::vector<uint64_t> ExpiredSessions(int64_t now_ms) const {
    return client_sessions_.Expired(now_ms);
  }
  // Gives every session a lease ending at `deadline_ms` (after recovery: a grace period).
  void RenewAllLeases(int64_t deadline_ms) { client_sessions_.RenewAll(deadline_ms); }
  // Moves every lease deadline `ms` later (the server was not answering for that long:
  // a checkpoint held the namespace lock, so heartbeats could not get through).
  void ExtendAllLeases(int64_t ms) { client_sessions_.ExtendAll(ms); }
  size_t session_count() const { return client_sessions_.size(); }

  // ---- The free quarantine (free_quarantine.h, space.h; memory only) ----
  // Returns the ranges whose quarantine ended by now to the allocators (every
  // allocation does this first; the service also calls it periodically so that statfs
  // shows the space). Mutates allocator state only: nothing to journal.
  void ReleaseQuarantine() { space_.ReleaseQuarantine(); }
  // The earliest quarantine release time (clock ms); INT64_MAX when nothing is held.
  int64_t next_quarantine_release_ms() const { return space_.next_quarantine_release_ms(); }
  // The restart rule: no allocation before `until_ms` (clock ms), since any free block
  // may have been freed just before the restart.
  void HoldAllocationsUntil(int64_t until_ms) { space_.HoldAllocationsUntil(until_ms); }

  // ---- The scrub queue (scrub_freed; memory only; space.h) ----
  // After recovery nobody knows which free blocks hold old bytes: all of them go to
  // the scrub queue (the allocators start empty and fill as the scrubber works).
  void ScrubAllFree() { space_.ScrubAllFree(); }
  // Up to `max_bytes` of queued ranges of `server`, each at most `max_range` long,
  // taken out of the queue (after releasing the quarantine); false when none.
  bool TakeScrubWork(uint32_t server, uint64_t max_bytes, uint64_t max_range,
                     std::vector<PoolRange>* out) {
    return space_.TakeScrubWork(server, max_bytes, max_range, out);
  }
  // Ranges from TakeScrubWork: zeroed -> to their allocator; not -> back in the queue.
  void FinishScrub(const std::vector<PoolRange>& ranges, bool zeroed) {
    space_.FinishScrub(ranges, zeroed);
  }
  uint64_t scrub_queued_bytes() const { return space_.scrub_queued_bytes(); }
  // Where the bytes a truncate of `ino` to `new_size` cuts off inside the block that
  // holds the new EOF lie: [new_size, min(size, end of that block)) on its data pool.
  // False when there are none (not a regular file, not shrinking, an aligned size, no
  // block allocated there).
  // False too when `caller` may not make that setattr (it will fail without zeroing).
  bool TruncatedTail(const SetattrRequest& sa, const Credentials& caller, PoolRange* out) const;

  // ---- Checkpoints (checkpoint_codec.cc) ----
  // The whole state as one blob; deterministic (equal states give equal bytes).
  std::vector<uint8_t> Serialize() const;
  // Replaces the state with a blob from Serialize and rebuilds the block allocators
  // from the extent maps. Corruption (naming what and where) for a blob that does not
  // parse or describes an impossible state (overlapping extents, a dangling entry...).
  Status Load(std::span<const uint8_t> blob);
  // Load for the offline check (mkfs.dpmfs check, mkfs/cluster_check.h): the blob must
  // still parse, but extents that overlap others or leave their pool are kept (without
  // being marked in the allocators) and the invariants are not checked, so that the
  // check can report every problem rather than the first. `*refused` counts the
  // extents the allocators refused. Never serve from a namespace loaded this way.
  Status LoadForCheck(std::span<const uint8_t> blob, uint64_t* refused);

  // What the offline check sees of one inode (ForEachInode).
  struct DirEntryView {
    std::string name;
    InodeId ino = 0;
  };
  struct InodeView {
    const InodeAttr* attr = nullptr;
    InodeId parent = 0;                 // directories: the directory naming it (root: 1)
    const ExtentMap* extents = nullptr;
    uint32_t open_count = 0;            // handles open on it, over every session
    std::vector<DirEntryView> entries;  // directories: every entry, in cookie order
  };

  // ---- Inspection (tests, statfs, dpmfs status) ----
  size_t inode_count() const { return inodes_.size(); }
  // Free in the allocators or waiting to be scrubbed (and taken by the scrubber);
  // quarantined bytes are neither free nor in a file.
  uint64_t free_bytes() const { return space_.free_bytes(); }
  uint64_t total_bytes() const { return space_.total_bytes(); }
  uint64_t quarantined_bytes() const { return space_.quarantined_bytes(); }
  // Consistency check of the whole state: every entry names a live inode, link counts
  // match the entries, parents match, open counts match the handles, allocator usage
  // matches the extents. Internal error naming the first problem.
  Status CheckInvariants() const;
  // Every inode, in no particular order (the offline check walks the namespace).
  void ForEachInode(const std::function<void(const InodeView&)>& fn) const;

 private:
  struct Directory;
  struct Inode;

  // The handlers, one per row of meta_ops.h (see the top of this file): kMutation and
  // kSession rows get Do<Name>, kRead rows Read<Name>, kLease rows (heartbeat) and kAdmin rows none.
#define DPMFS_NS_HANDLER_kMutation(Name, Req, Rep) \
  int Do##Name(const Req& req, OpContext& ctx, Rep* reply);
#define DPMFS_NS_HANDLER_kSession(Name, Req, Rep) DPMFS_NS_HANDLER_kMutation(Name, Req, Rep)
#define DPMFS_NS_HANDLER_kRead(Name, Req, Rep) \
  int Read##Name(const Req& req, const Credentials& caller, Rep* reply) const;
#define DPMFS_NS_HANDLER_kLease(Name, Req, Rep)
#define DPMFS_NS_HANDLER_kAdmin(Name, Req, Rep)
#define DPMFS_NS_HANDLER(Name, number, str, kind, Req, Rep, family) \
  DPMFS_NS_HANDLER_##kind(Name, Req, Rep)
  DPMFS_META_OPS(DPMFS_NS_HANDLER)
#undef DPMFS_NS_HANDLER
#undef DPMFS_NS_HANDLER_kLease
#undef DPMFS_NS_HANDLER_kAdmin
#undef DPMFS_NS_HANDLER_kRead
#undef DPMFS_NS_HANDLER_kSession
#undef DPMFS_NS_HANDLER_kMutation

  // ops_session.cc: ends session `id`, closing its handles (unregister, lease expiry).
  int EndSession(uint64_t id, OpContext& ctx);
  // ops_cluster.cc: the server-internal records of the cluster map (kOpSetServerState,
  // kOpResyncProgress, kOpSetPoolInstance). InvalidArgument for a payload that does not decode; else the
  // reply with the errno (EINVAL: a move the map does not allow, changing nothing).
  Result<std::vector<uint8_t>> MutateClusterMap(uint16_t op, std::span<const uint8_t> payload,
                                                int* err);
  // ops_namespace.cc: a rename's changed directories.
  std::vector<InodeAttr> ChangedDirs(const Inode& sdir, const Inode& ddir) const;

  // ops_files.cc: data helpers.
  // Sets the size of a regular file: shrinking frees every block past the block that
  // holds the new EOF. No errors (validated by the caller).
  void Truncate(Inode& inode, uint64_t size, OpContext& ctx);
  // Allocates pool space for the holes of [start, end) (block aligned), split at stripe
  // unit boundaries, with `flags`; ranges from [spec_from, end) get kSpeculative too.
  // All or nothing: ENOSPC leaves no trace.
  int AllocateHoles(Inode& inode, uint64_t start, uint64_t end, uint64_t spec_from, OpContext& ctx);
  // Frees unwritten kSpeculative extents past EOF (at the last release).
  void TrimSpeculative(Inode& inode, const OpContext& ctx);

  // Shared helpers.
  Inode* Find(InodeId ino);
  const Inode* Find(InodeId ino) const;
  // The directory `ino` or an errno (ENOENT, ENOTDIR).
  int FindDir(InodeId ino, Inode** out);
  int FindDir(InodeId ino, const Inode** out) const;
  // The entry `name` of directory `parent` (lookup, unlink, rmdir) as `caller` finds it:
  // the directory and the inode it names, or the errno (ENOTDIR/ENOENT for the parent,
  // EACCES without search permission on it, a bad name, ENOENT for no such entry, EIO
  // for an entry naming no inode, which CheckInvariants rules out).
  int FindEntry(const Credentials& caller, InodeId parent, const std::string& name, Inode** dir,
                Inode** in);
  int FindEntry(const Credentials& caller, InodeId parent, const std::string& name,
                const Inode** dir, const Inode** in) const;
  // The directory `ino` that `caller` may search (x): FindDir, then EACCES.
  int FindSearchableDir(const Credentials& caller, InodeId ino, Inode** out);
  InodeAttr AttrOf(const Inode& inode) const;
  Inode& NewInode(uint32_t mode, uint32_t uid, uint32_t gid, uint64_t rdev, OpContext& ctx);
  // Links `ino` into `dir` under `name` (a fresh cookie).
  void AddEntry(Inode& dir, const std::string& name, InodeId ino);
  void RemoveEntry(Inode& dir, const std::string& name);
  // nlink dropped: frees the inode when no name and no open handle is left.
  void MaybeFree(Inode& inode, const OpContext& ctx);
  void FreeInode(InodeId ino, const OpContext& ctx);
  // Opens a handle on `inode` for the context's session.
  uint64_t OpenHandle(Inode& inode, OpContext& ctx);
  // Closes `handle` of `session` (trim / free at the last close).
  void CloseHandle(Session& session, uint64_t handle, const OpContext& ctx);
  // Whether `ancestor` is `ino` or one of its ancestors.
  bool IsAncestor(InodeId ancestor, InodeId ino) const;
  void Touch(Inode& inode, const Timespec& now, bool mtime, bool ctime);

  NamespaceConfig config_;
  std::unordered_map<InodeId, std::unique_ptr<Inode>> inodes_;
  Space space_;                 // allocators, quarantine, scrub queue
  Sessions client_sessions_;    // sessions, reply caches, open handles
  ClusterMap cluster_map_;      // data server states, epoch, dirty sets
  InodeId next_ino_ = kRootInode + 1;
  uint64_t next_generation_ = 2;
  uint64_t next_handle_ = 1;

  friend class NamespaceCodec;  // checkpoint_codec.cc
  friend class AclXattrs;       // ops_xattr.cc: POSIX ACLs kept as xattrs
  // Tests only (tests/mkfs/namespace_surgery.h): damages a namespace on purpose so that
  // the offline check has something to find. Nothing in the servers uses it.
  friend class NamespaceSurgery;
};

// A clock reading for OpContext::now (CLOCK_REALTIME).
Timespec NowTimespec();

}  // namespace dpmfs::meta
