// The client's inodes: for every inode number the kernel knows, its cached attributes,
// its layout cache, the write-side state of the I/O engine, and the two counts that
// decide when it can be forgotten (kernel lookups, FUSE forget; open handles).
//
// Thread-safety: InodeTable is thread-safe. An Inode's methods are thread-safe (its own
// mutex); write_mutex() is for the I/O engine's callers (see file_io.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "common/mutex.h"
#include "fs/atime_policy.h"
#include "fs/layout_cache.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

// A counter of authoritative attribute changes over all inodes (see Inode::SetAttr).
uint64_t AttrSequence();

class Inode {
 public:
  explicit Inode(meta::InodeId ino) : ino_(ino) {}
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  meta::InodeId ino() const { return ino_; }

  // The cached attributes with a not yet committed local mtime (overwrites commit it
  // lazily, see file_io.h) laid over the server's. has_attr() false: never fetched.
  meta::InodeAttr attr() const;
  bool has_attr() const;
  uint64_t size() const;
  // The attributes exactly as the server last reported them (no local overlay).
  meta::InodeAttr server_attr() const;
  // Attributes from the server come in two kinds.
  //  - Authoritative: the reply of a size change this client made while holding the
  //    inode's write mutex (commit, truncate, fallocate, O_TRUNC open). SetAttr stores
  //    it as is.
  //  - Any other reply (getattr, lookup, readdirplus, open, chmod, ...) may have been
  //    computed before a commit of this client that finished while it travelled; its
  //    size would then move the cached size back, and the I/O engine decides from that
  //    size whether a write grows the file and which bytes past EOF to zero. UpdateAttr
  //    takes the size only if no authoritative change happened since `seq_before`
  //    (AttrSequence() read before the request was sent); the other fields always.
  // A different generation means the number now names another file: everything is
  // taken and the layout cache dropped.
  void SetAttr(const meta::InodeAttr& attr);
  void UpdateAttr(const meta::InodeAttr& attr, uint64_t seq_before);
  // UpdateAttr for attributes the server had at `as_of` (a statahead listing, see
  // stat_ahead.h): ignored when this inode's attributes were updated since.
  using Clock = std::chrono::steady_clock;
  void UpdateAttrAsOf(const meta::InodeAttr& attr, uint64_t seq_before, Clock::time_point as_of);
  // Close-to-open: stores the attributes an open returned (as UpdateAttr), drops the
  // layout cache, and says whether the kernel may keep its page cache (size and mtime
  // are what this client had cached).
  bool RefreshAtOpen(const meta::InodeAttr& fresh, uint64_t seq_before);
  // Directories. The kernel drops a directory's cached attributes after every change
  // in it and asks for them again (with default_permissions, at the next path walk).
  // The change's reply carried them (EntryReply::dirs): they answer that getattr until
  // `valid_until`, the request's send time plus attr_timeout, i.e. as long as the kernel
  // would have cached them itself. A reply older (by ctime) than the attributes held is
  // ignored: concurrent changes in one directory may answer out of order. Any other
  // attribute update ends the validity (the next getattr asks the server).
  void NoteChangedDir(const meta::InodeAttr& attr, Clock::time_point valid_until);
  // The attributes NoteChangedDir stored, while valid; `remaining` is the time left.
  bool FreshDirAttr(meta::InodeAttr* attr, std::chrono::duration<double>* remaining) const;

  // A write grew the file (the server took max(size, new_size)); keeps the cache from
  // showing a smaller size before the commit's reply attributes arrive.
  void GrowSize(uint64_t new_size);

  // Lazy mtime of overwrites (no metadata RPC on the write path).
  void NoteOverwrite(const meta::Timespec& now);
  // Takes the pending mtime, if any.
  bool TakePendingMtime(meta::Timespec* mtime);
  // The server now has a newer mtime (truncate, utimens, commit): drop the pending one.
  void ClearPendingMtime();

  // Lazy atime of reads (fs/atime_policy.h): an access at `now` under `policy`. Returns
  // true when it moved the atime shown (then pending until committed).
  bool NoteAccess(const meta::Timespec& now, AtimePolicy policy);
  // The pending atime to commit, which stays pending (and shown) until
  // AtimeCommitted: a getattr answered while the commit is in flight would otherwise
  // show the server's older atime (e2e AttrTest.ReadUpdatesAtimeRelatime saw 1000
  // after a read, once, under load: the release that commits it runs after close()).
  bool PendingAtime(meta::Timespec* atime) const;
  // The server has `atime` now: no longer pending, unless a later access replaced it.
  void AtimeCommitted(const meta::Timespec& atime);

  // The kernel asks for the "security.capability" xattr before every buffered write
  // (to drop file capabilities). Having learnt it is absent, this client answers
  // ENODATA itself until it sets or removes an xattr of the file or re-opens it
  // (close-to-open, like the rest of the cache).
  bool capability_absent() const;
  // An xattr of the file changed (or may have): forget the absence.
  void XattrChanged();
  // Read before asking the server; MarkCapabilityAbsent(epoch) after its ENODATA is
  // ignored if an xattr changed meanwhile.
  uint64_t xattr_epoch() const;
  void MarkCapabilityAbsent(uint64_t epoch);

  // A READ filled the kernel's page cache of this file (not an O_DIRECT read): only then
  // can a direct write leave stale pages behind that must be dropped (OpWrite).
  void NotePageCacheFill() { page_cache_filled_.store(true); }
  bool page_cache_filled() const { return page_cache_filled_.load(); }

  LayoutCache& layout() { return layout_; }
  // Serializes this client's writes that allocate or commit (see
  // file_io.h); pure overwrites of written blocks do not take it.
  std::mutex& write_mutex() { return write_mu_; }

 private:
  friend class InodeTable;
  const meta::InodeId ino_;
  mutable Mutex mu_;
  meta::InodeAttr attr_ GUARDED_BY(mu_);
  bool has_attr_ GUARDED_BY(mu_) = false;
  bool pending_mtime_ GUARDED_BY(mu_) = false;
  bool capability_absent_ GUARDED_BY(mu_) = false;
  uint64_t xattr_epoch_ GUARDED_BY(mu_) = 0;
  meta::Timespec pending_mtime_value_ GUARDED_BY(mu_);
  bool pending_atime_ GUARDED_BY(mu_) = false;
  meta::Timespec pending_atime_value_ GUARDED_BY(mu_);
  // AttrSequence() of the last authoritative size.
  uint64_t size_seq_ GUARDED_BY(mu_) = 0;
  Clock::time_point dir_attr_valid_until_ GUARDED_BY(mu_){};  // see NoteChangedDir
  // When attr_ last changed (UpdateAttrAsOf).
  Clock::time_point attr_updated_at_ GUARDED_BY(mu_){};
  LayoutCache layout_;
  std::mutex write_mu_;  // std::mutex: file_io.* locks it with std::unique_lock
  std::atomic<bool> page_cache_filled_{false};
  // Guarded by InodeTable::mu_ (another object's mutex: not expressible for the analysis).
  uint64_t nlookup_ = 0;
  uint64_t open_count_ = 0;
};

class InodeTable {
 public:
  InodeTable();  // holds the root inode (never forgotten)

  // The inode, creating an entry (no lookup counted) if the table has none: the kernel
  // only names inodes it learned from us, so that happens only after a race with forget.
  std::shared_ptr<Inode> Get(meta::InodeId ino);
  // The inode if the table has it, else nullptr.
  std::shared_ptr<Inode> Find(meta::InodeId ino) const;
  // The kernel learned `attr.ino` from a reply (lookup, create, mkdir, mknod, symlink,
  // link, readdirplus): counts the lookup and stores the attributes.
  // `as_of`: see Inode::UpdateAttrAsOf (by default the attributes are taken).
  std::shared_ptr<Inode> AddLookup(
      const meta::InodeAttr& attr, uint64_t seq_before,
      Inode::Clock::time_point as_of = Inode::Clock::time_point::max());
  // FUSE forget: drops `n` lookups; the entry goes once no lookup and no handle is left.
  void Forget(meta::InodeId ino, uint64_t n);
  void Opened(const std::shared_ptr<Inode>& inode);
  // Returns whether that was this client's last open handle of the inode.
  bool Closed(const std::shared_ptr<Inode>& inode);
  // Whether this client holds an open handle (file or directory) of `ino`.
  bool IsOpen(meta::InodeId ino) const;

  size_t size() const;

 private:
  void MaybeEraseLocked(meta::InodeId ino) REQUIRES(mu_);

  mutable Mutex mu_;
  std::unordered_map<meta::InodeId, std::shared_ptr<Inode>> inodes_ GUARDED_BY(mu_);
};

}  // namespace dpmfs::fs
