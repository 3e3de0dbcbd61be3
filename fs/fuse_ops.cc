#include "fs/fuse_ops.h"

#include "fs/client_metrics.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "metadata/caller_scope.h"

namespace dpmfs::fs {

int ErrnoAtEdge(const Status& st, uint64_t ino) {
  if (st.ok()) return 0;
  const int err = st.ToErrno();
  // The service failed (not the namespace answering): worth a line at the default level.
  if (err == EIO || err == ETIMEDOUT || err == ENOTCONN) {
    spdlog::warn("inode {}: {} ({})", ino, st.ToString(), std::strerror(err));
  } else if (spdlog::should_log(spdlog::level::debug)) {
    // (Guarded: ToString() allocates, and ENOENT answers are frequent.)
    spdlog::debug("inode {}: {} ({})", ino, st.ToString(), std::strerror(err));
  }
  return err;
}

namespace {

using meta::InodeAttr;
using meta::InodeId;

// FALLOC_FL_* (linux/falloc.h), spelled out to avoid pulling in more kernel headers;
// the other modes are passed to the server, which refuses what it does not support.
constexpr int kFallocPunchHole = 0x02;
constexpr int kFallocZeroRange = 0x10;

// "." and ".." take directory offsets 1 and 2; a server entry with cookie c is at c + 2
// (its successor continues from cookie c). Offset 0 is the start.
constexpr off_t kDotOffsets = 2;

// An open file: the inode (kept alive while open) and the server's open handle.
struct Handle {
  std::shared_ptr<Inode> inode;
  uint64_t server_handle = 0;
  int flags = 0;
};

// An open directory. The inode stays in the table while it is open, so that fstat of
// a directory removed meanwhile can still be answered. A listing (from opendir or a
// rewind, i.e. offset 0) ends at the directory's last cookie as of its first READDIR:
// an entry renamed meanwhile is a new entry with a larger cookie, and following it
// would list one file twice, or never end beside a renamer that never stops.
struct DirHandle {
  std::shared_ptr<Inode> inode;
  std::mutex mu;  // the kernel serializes READDIRs of one open file; this is cheap insurance
  bool has_end = false;
  uint64_t end_cookie = 0;
};

Filesystem* Fs(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }
Handle* HandleOf(const fuse_file_info* fi) { return reinterpret_cast<Handle*>(fi->fh); }

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }

void ToStat(const InodeAttr& a, uint32_t block_size, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = a.ino;
  st->st_mode = a.mode;
  st->st_nlink = a.nlink;
  st->st_uid = a.uid;
  st->st_gid = a.gid;
  st->st_size = static_cast<off_t>(a.size);
  st->st_blocks = static_cast<blkcnt_t>(a.blocks);
  st->st_rdev = a.rdev;
  st->st_blksize = block_size;
  st->st_atim = {a.atime.sec, a.atime.nsec};
  st->st_mtim = {a.mtime.sec, a.mtime.nsec};
  st->st_ctim = {a.ctime.sec, a.ctime.nsec};
}

meta::Timespec FromTimespec(const struct timespec& ts) {
  return meta::Timespec{ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec)};
}

void FillEntry(Filesystem* fs, const InodeAttr& a, fuse_entry_param* e) {
  std::memset(e, 0, sizeof *e);
  e->ino = a.ino;
  e->generation = a.generation;
  ToStat(a, fs->io().block_size(), &e->attr);
  e->attr_timeout = fs->options().attr_timeout;
  e->entry_timeout = fs->options().entry_timeout;
}

// Replies with a new entry the kernel will hold a lookup on. `seq` is AttrSequence()
// from before the request that returned `attr` was sent.
void ReplyEntry(fuse_req_t req, const InodeAttr& attr, uint64_t seq) {
  Filesystem* fs = Fs(req);
  if (attr.ino == 0) {
    spdlog::error("the metadata server answered with inode number 0");
    fuse_reply_err(req, EIO);
    return;
  }
  auto inode = fs->inodes().AddLookup(attr, seq);
  fuse_entry_param e;
  FillEntry(fs, inode->attr(), &e);
  // The kernel did not get the reply (the request was interrupted): no lookup to count.
  if (fuse_reply_entry(req, &e) != 0) fs->inodes().Forget(attr.ino, 1);
}

void ReplyAttr(fuse_req_t req, const InodeAttr& attr) {
  struct stat st;
  ToStat(attr, Fs(req)->io().block_size(), &st);
  fuse_reply_attr(req, &st, Fs(req)->options().attr_timeout);
}

// After a namespace change of this client (`err`: the server's answer), keeps its caches
// in step:
//   - statahead listings (stat_ahead.h): `name` in `dir` now names `added`'s inode, or
//     (added == nullptr) is gone. A failed change drops the listing: the change may
//     have happened (a lost reply), or the failure shows the listing is out of date
//     (EEXIST for a name it had as absent, ENOENT for one it had);
//   - the changed directories' attributes from the reply (EntryReply::dirs), which
//     answer the kernel's next getattr of them (Inode::NoteChangedDir) for attr_timeout
//     from `sent`, when the request was sent.
void NoteEntryChange(Filesystem* fs, InodeId dir, const char* name, const InodeAttr* added, int err,
                     const std::vector<InodeAttr>& dirs, Inode::Clock::time_point sent) {
  if (err != 0) {
    fs->stat_ahead().NoteChanged(dir);
    return;
  }
  if (added != nullptr) {
    fs->stat_ahead().NoteAdded(dir, name, *added);
  } else {
    fs->stat_ahead().NoteRemoved(dir, name);
  }
  auto valid_until = sent + std::chrono::duration_cast<Inode::Clock::duration>(
                                std::chrono::duration<double>(fs->options().attr_timeout));
  for (const InodeAttr& d : dirs) {
    if (auto inode = fs->inodes().Find(d.ino)) inode->NoteChangedDir(d, valid_until);
  }
}

// The end of mknod, mkdir, symlink and link: the caches, then the new entry (or error).
void FinishNewEntry(fuse_req_t req, InodeId dir, const char* name, int err, const InodeAttr& attr,
                    const std::vector<InodeAttr>& dirs, uint64_t seq,
                    Inode::Clock::time_point sent) {
  NoteEntryChange(Fs(req), dir, name, &attr, err, dirs, sent);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ReplyEntry(req, attr, seq);
}

// --- namespace ---

// Lists directory `dir` with attributes for statahead (see stat_ahead.h), after this
// worker has answered the lookup that triggered it.
void FetchListing(Filesystem* fs, InodeId dir) {
  StatAhead& sa = fs->stat_ahead();
  std::vector<StatAhead::Entry> entries;
  const uint64_t seq = AttrSequence();
  const auto sent = StatAhead::Clock::now();
  meta::ReaddirRequest r;
  r.ino = dir;
  r.max_entries = meta::kMaxReaddirEntries;
  r.plus = true;
  while (true) {
    meta::ReaddirReply reply;
    if (int err = ErrnoAtEdge(fs->meta().Readdir(r, &reply), r.ino); err != 0) {
      spdlog::debug("statahead of directory {}: {}", dir, std::strerror(err));
      sa.Abandon(dir);
      return;
    }
    if (entries.size() + reply.entries.size() > sa.options().max_entries) {
      spdlog::debug("statahead: directory {} has more than {} entries; not listed", dir,
                    sa.options().max_entries);
      sa.Abandon(dir);
      return;
    }
    for (meta::DirEntry& d : reply.entries) {
      InodeAttr a = d.attr;
      a.ino = d.ino;
      entries.push_back(StatAhead::Entry{std::move(d.name), a});
      r.cookie = d.cookie;
    }
    if (reply.eof || reply.entries.empty()) break;
  }
  const size_t n = entries.size();
  if (sa.Store(dir, std::move(entries), seq, sent)) {
    spdlog::debug("statahead: listed directory {} ({} entries)", dir, n);
  }
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Filesystem* fs = Fs(req);
  StatAhead::Found found;
  // A listing holds no "." or ".." (the kernel only asks for those when exporting).
  const bool dots = std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
  switch (dots ? StatAhead::Answer::kUnknown : fs->stat_ahead().Lookup(parent, name, &found)) {
    case StatAhead::Answer::kAbsent:
      fuse_reply_err(req, ENOENT);
      return;
    case StatAhead::Answer::kFound: {
      // The kernel caches what it is given no longer than the listing is valid.
      auto inode = fs->inodes().AddLookup(found.attr, found.seq_before, found.as_of);
      fuse_entry_param e;
      FillEntry(fs, inode->attr(), &e);
      const double left = std::chrono::duration<double>(found.remaining).count();
      e.attr_timeout = std::min(e.attr_timeout, left);
      e.entry_timeout = std::min(e.entry_timeout, left);
      if (fuse_reply_entry(req, &e) != 0) fs->inodes().Forget(found.attr.ino, 1);
      return;
    }
    case StatAhead::Answer::kUnknown:
      break;
  }
  InodeAttr attr;
  uint64_t seq = AttrSequence();
  int err = ErrnoAtEdge(fs->meta().Lookup(parent, name, &attr), parent);
  if (err == 0) {
    ReplyEntry(req, attr, seq);
  } else {
    fuse_reply_err(req, err);
  }
  // Found or absent, the server answered about this directory: that counts toward a
  // listing. Other errors say nothing about it.
  if ((err == 0 || err == ENOENT) && fs->stat_ahead().NoteLookupMiss(parent)) {
    FetchListing(fs, parent);
  }
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req)->inodes().Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req)->inodes().Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  Filesystem* fs = Fs(req);
  InodeAttr attr;
  auto inode = fs->inodes().Find(ino);
  std::chrono::duration<double> remaining;
  if (inode != nullptr && inode->FreshDirAttr(&attr, &remaining)) {
    struct stat st;
    ToStat(attr, fs->io().block_size(), &st);
    fuse_reply_attr(req, &st, remaining.count());
    return;
  }
  uint64_t seq = AttrSequence();
  if (int err = ErrnoAtEdge(fs->meta().Getattr(ino, &attr), ino); err != 0) {
    // A directory removed while open is gone on the server (directories hold no server
    // handle), yet fstat of the open descriptor must answer, as Linux does: with what
    // we knew of it and no links left.
    if (err == ENOENT && inode != nullptr && inode->has_attr() && fs->inodes().IsOpen(ino) &&
        S_ISDIR(inode->attr().mode)) {
      attr = inode->attr();
      attr.nlink = 0;
      struct stat st;
      ToStat(attr, fs->io().block_size(), &st);
      fuse_reply_attr(req, &st, 0);
      return;
    }
    fuse_reply_err(req, err);
    return;
  }
  if (inode == nullptr) inode = fs->inodes().Find(ino);  // looked up meanwhile?
  if (inode == nullptr) {                                // not known: nothing cached to update
    ReplyAttr(req, attr);
    return;
  }
  inode->UpdateAttr(attr, seq);
  ReplyAttr(req, inode->attr());  // with a pending local mtime laid over
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info* /*fi*/) {
  Filesystem* fs = Fs(req);
  meta::SetattrRequest r;
  r.ino = ino;
  if (to_set & FUSE_SET_ATTR_MODE) {
    r.valid |= meta::SetattrRequest::kMode;
    r.mode = attr->st_mode & 07777;
  }
  if (to_set & FUSE_SET_ATTR_UID) {
    r.valid |= meta::SetattrRequest::kUid;
    r.uid = attr->st_uid;
  }
  if (to_set & FUSE_SET_ATTR_GID) {
    r.valid |= meta::SetattrRequest::kGid;
    r.gid = attr->st_gid;
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (attr->st_size < 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    if (static_cast<uint64_t>(attr->st_size) > meta::kMaxFileSize) {
      fuse_reply_err(req, EFBIG);
      return;
    }
    r.valid |= meta::SetattrRequest::kSize;
    r.size = static_cast<uint64_t>(attr->st_size);
  }
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    r.valid |= meta::SetattrRequest::kAtimeNow;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    r.valid |= meta::SetattrRequest::kAtime;
    r.atime = FromTimespec(attr->st_atim);
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    r.valid |= meta::SetattrRequest::kMtimeNow;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    r.valid |= meta::SetattrRequest::kMtime;
    r.mtime = FromTimespec(attr->st_mtim);
  }
  if (to_set & FUSE_SET_ATTR_CTIME) {
    r.valid |= meta::SetattrRequest::kCtime;
    r.ctime = FromTimespec(attr->st_ctim);
  }
  auto inode = fs->inodes().Get(ino);
  fs->stat_ahead().NoteAttrChanged(ino);
  InodeAttr out;
  int err = 0;
  if (r.valid & meta::SetattrRequest::kSize) {
    // Nothing to zero on either side: the metadata server zeroes the tail a shrink
    // cuts off, so growing finds zeros past EOF (metadata/ops_files.cc).
    err = ErrnoAtEdge(fs->io().ModifyLayout(*inode, {},
                                            [&]() -> Status {
                                              Status st = fs->meta().Setattr(r, &out);
                                              // Under the write mutex: authoritative.
                                              if (st.ok()) inode->SetAttr(out);
                                              return st;
                                            },
                                            {}),
                      r.ino);
  } else {
    uint64_t seq = AttrSequence();
    err = ErrnoAtEdge(fs->meta().Setattr(r, &out), r.ino);
    if (err == 0) inode->UpdateAttr(out, seq);
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if (r.valid & (meta::SetattrRequest::kSize | meta::SetattrRequest::kMtime |
                 meta::SetattrRequest::kMtimeNow)) {
    inode->ClearPendingMtime();  // the server's mtime is newer than any pending one
  }
  ReplyAttr(req, inode->attr());
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  std::string target;
  if (int err = ErrnoAtEdge(Fs(req)->meta().Readlink(ino, &target), ino); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_readlink(req, target.c_str());
}

// What a new inode's request carries as the caller's umask: 0 when the kernel applied
// it to the mode already (no FUSE_CAP_DONT_MASK).
uint32_t UmaskOf(fuse_req_t req) {
  return Fs(req)->server_applies_umask() ? fuse_req_ctx(req)->umask & 0777 : 0;
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  meta::MknodRequest r;
  r.parent = parent;
  r.name = name;
  r.mode = mode;
  r.rdev = rdev;
  r.uid = ctx->uid;
  r.gid = ctx->gid;
  r.umask = UmaskOf(req);
  InodeAttr attr;
  std::vector<InodeAttr> dirs;
  uint64_t seq = AttrSequence();
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Mknod(r, &attr, &dirs), r.parent);
  FinishNewEntry(req, parent, name, err, attr, dirs, seq, sent);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  meta::MkdirRequest r;
  r.parent = parent;
  r.name = name;
  r.mode = mode & 07777;
  r.uid = ctx->uid;
  r.gid = ctx->gid;
  r.umask = UmaskOf(req);
  InodeAttr attr;
  std::vector<InodeAttr> dirs;
  uint64_t seq = AttrSequence();
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Mkdir(r, &attr, &dirs), r.parent);
  FinishNewEntry(req, parent, name, err, attr, dirs, seq, sent);
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  std::vector<InodeAttr> dirs;
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Unlink(parent, name, &dirs), parent);
  NoteEntryChange(Fs(req), parent, name, nullptr, err, dirs, sent);
  fuse_reply_err(req, err);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  std::vector<InodeAttr> dirs;
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Rmdir(parent, name, &dirs), parent);
  NoteEntryChange(Fs(req), parent, name, nullptr, err, dirs, sent);
  fuse_reply_err(req, err);
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  meta::SymlinkRequest r;
  r.parent = parent;
  r.name = name;
  r.target = link;
  r.uid = ctx->uid;
  r.gid = ctx->gid;
  InodeAttr attr;
  std::vector<InodeAttr> dirs;
  uint64_t seq = AttrSequence();
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Symlink(r, &attr, &dirs), r.parent);
  FinishNewEntry(req, parent, name, err, attr, dirs, seq, sent);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  meta::RenameRequest r;
  r.parent = parent;
  r.name = name;
  r.new_parent = newparent;
  r.new_name = newname;
  r.flags = flags;
  std::vector<InodeAttr> dirs;
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Rename(r, &dirs), r.parent);
  // Listings do not follow renames: both are dropped (also on failure: it may have
  // happened). The directories' attributes are kept as for any change.
  NoteEntryChange(Fs(req), parent, name, nullptr, err, dirs, sent);
  // A name the rename replaced: its inode lost a link, which its other names must show.
  if (err == 0 && (flags & RENAME_EXCHANGE) == 0) {
    Fs(req)->stat_ahead().NoteRemoved(newparent, newname);
  }
  Fs(req)->stat_ahead().NoteChanged(parent);
  Fs(req)->stat_ahead().NoteChanged(newparent);
  fuse_reply_err(req, err);
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Fs(req)->stat_ahead().NoteAttrChanged(ino);  // its nlink
  InodeAttr attr;
  std::vector<InodeAttr> dirs;
  uint64_t seq = AttrSequence();
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(Fs(req)->meta().Link(ino, newparent, newname, &attr, &dirs), ino);
  FinishNewEntry(req, newparent, newname, err, attr, dirs, seq, sent);
}

// --- files ---

// Finishes an open/create: a handle for fi->fh. `emptied`: the open left the file
// empty (it created or truncated it).
Handle* NewHandle(Filesystem* fs, std::shared_ptr<Inode> inode, uint64_t server_handle,
                  fuse_file_info* fi, bool emptied) {
  auto* h = new Handle{std::move(inode), server_handle, fi->flags};
  fi->fh = reinterpret_cast<uint64_t>(h);
  // No direct_io, also not for O_DIRECT: the kernel's own O_DIRECT path for FUSE
  // already sends the caller's range straight to us (READ/WRITE of the user's buffer,
  // no page cache), and unlike direct_io it lets the file be mapped (direct_io refuses
  // MAP_SHARED without FUSE_DIRECT_IO_ALLOW_MMAP, which libfuse 3.14 cannot ask for),
  // writes back and drops the range's cached pages around each write, and clears
  // set-user-ID/set-group-ID before a write itself (file_remove_privs, then SETATTR)
  // where direct_io would send FUSE_WRITE_KILL_SUIDGID, which libfuse 3.14 drops.
  // The price: before every write that path asks for the security.capability xattr (a
  // FUSE round trip, answered from our cache): 4 KiB O_DIRECT writes run ~20% slower.
  // -o odirect=direct_io trades mapping and those bits for that speed.
  if (fs->options().odirect_direct_io) fi->direct_io = (fi->flags & O_DIRECT) != 0;
  // close() waits for a FLUSH, which writes back dirty shared-mmap pages and commits
  // the lazy mtime of overwrites (OpFlush). The kernel skips it for handles that have
  // neither to do: a read-only handle writes nothing and cannot map the file shared
  // and writable; a write-only one cannot map it at all, and if it created or
  // truncated the file its writes extend it, so they commit their mtime with their
  // size (only a rewrite of what it wrote leaves its mtime to the release, which the
  // kernel sends as close() returns). Locks need no FLUSH: the kernel keeps them (no
  // lock operations here).
  const int access = fi->flags & O_ACCMODE;
  fi->noflush = access == O_RDONLY || (emptied && access == O_WRONLY);
  fs->inodes().Opened(h->inode);
  return h;
}

// A read of `inode` (a READ, or an open for reading: reads served from the page cache
// never reach us): the access time by the mount's rule, shown at once and committed at
// the release. The kernel's cached attributes are dropped so that a stat shows it;
// attributes only (offset -1), which takes no page lock, so it is safe from a READ.
void NoteRead(Filesystem* fs, Inode& inode) {
  if (!inode.NoteAccess(Now(), fs->options().atime) || fs->session() == nullptr) return;
  int rc = fuse_lowlevel_notify_inval_inode(fs->session(), inode.ino(), -1, 0);
  if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_inode {} attrs: {}", inode.ino(), strerror(-rc));
}

// Commits an access time NoteRead left pending (without changing the ctime, and never
// backwards: SetattrRequest::kAccessed). Best effort: an access time is not worth
// failing a close for.
void CommitAtime(Filesystem* fs, Inode& inode) {
  meta::SetattrRequest r;
  if (!inode.PendingAtime(&r.atime)) return;
  r.ino = inode.ino();
  r.valid = meta::SetattrRequest::kAtime | meta::SetattrRequest::kAccessed;
  InodeAttr out;
  uint64_t seq = AttrSequence();
  if (int err = ErrnoAtEdge(fs->meta().Setattr(r, &out), r.ino); err != 0) {
    // Still pending: shown, and sent again at the next release.
    spdlog::debug("inode {}: committing the access time failed: {}", inode.ino(), std::strerror(err));
    return;
  }
  inode.UpdateAttr(out, seq);
  inode.AtimeCommitted(r.atime);
}

void DropHandle(Filesystem* fs, Handle* h) {
  // Writes changed size and mtime; a statahead listing may hold the old ones.
  if ((h->flags & O_ACCMODE) != O_RDONLY) fs->stat_ahead().NoteAttrChanged(h->inode->ino());
  // Release cannot fail to the kernel: this is the failure's edge.
  if (Status st = fs->io().FlushMtime(*h->inode); !st.ok()) {
    spdlog::warn("inode {}: committing the mtime at release failed: {}", h->inode->ino(),
                 st.ToString());
  }
  CommitAtime(fs, *h->inode);
  fs->releases().Add(h->inode->ino(), h->server_handle);
  // The server frees a file's unwritten speculative blocks at its last release: a
  // layout cached past that point could name blocks that are another file's by now.
  if (fs->inodes().Closed(h->inode)) h->inode->layout().Clear();
  delete h;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem* fs = Fs(req);
  auto inode = fs->inodes().Get(ino);
  meta::OpenReply reply;
  if (fi->flags & O_TRUNC) {
    // The server truncates: a size change like a setattr, under the write mutex.
    fs->stat_ahead().NoteAttrChanged(ino);
    std::lock_guard<std::mutex> lock(inode->write_mutex());
    inode->ClearPendingMtime();
    if (int err = ErrnoAtEdge(fs->meta().Open(ino, static_cast<uint32_t>(fi->flags), &reply), ino); err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    inode->SetAttr(reply.attr);
    inode->layout().Clear();
    fi->keep_cache = 0;
  } else {
    uint64_t seq = AttrSequence();
    if (int err = ErrnoAtEdge(fs->meta().Open(ino, static_cast<uint32_t>(fi->flags), &reply), ino); err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    // Close-to-open: fresh attributes, no cached layout; the page cache stays only if
    // nobody changed the file since this client last saw it.
    fi->keep_cache = inode->RefreshAtOpen(reply.attr, seq);
    if (!fi->keep_cache && fs->session() != nullptr) {
      // Another client changed the file: the kernel may still hold its old size (from a
      // stat within attr_timeout), and a read below a stale i_size never asks us. Drop
      // its attributes (and pages) so the next access revalidates. Safe from here: the
      // kernel holds no inode or page lock while it waits for an open reply.
      int rc = fuse_lowlevel_notify_inval_inode(fs->session(), ino, 0, 0);
      if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_inode {}: {}", ino, strerror(-rc));
    }
  }
  if ((fi->flags & O_ACCMODE) != O_WRONLY) NoteRead(fs, *inode);
  Handle* h = NewHandle(fs, inode, reply.handle, fi, /*emptied=*/(fi->flags & O_TRUNC) != 0);
  if (fuse_reply_open(req, fi) != 0) DropHandle(fs, h);  // interrupted: no release will come
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Filesystem* fs = Fs(req);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  meta::CreateRequest r;
  r.parent = parent;
  r.name = name;
  r.mode = (mode & S_IFMT) == 0 ? (mode | S_IFREG) : mode;
  r.uid = ctx->uid;
  r.gid = ctx->gid;
  r.flags = static_cast<uint32_t>(fi->flags);
  r.umask = UmaskOf(req);
  meta::CreateReply reply;
  uint64_t seq = AttrSequence();
  auto sent = Inode::Clock::now();
  int err = ErrnoAtEdge(fs->meta().Create(r, &reply), r.parent);
  // An existing file opened changed nothing (and its reply names no directory).
  if (err != 0 || reply.created) {
    NoteEntryChange(fs, parent, name, &reply.attr, err, reply.dirs, sent);
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if (reply.attr.ino == 0) {
    spdlog::error("the metadata server created '{}' as inode number 0", name);
    fuse_reply_err(req, EIO);
    return;
  }
  auto inode = fs->inodes().AddLookup(reply.attr, seq);
  inode->RefreshAtOpen(reply.attr, seq);
  // A new file, or one the server just truncated: its size is exactly the reply's.
  if (reply.created || (fi->flags & O_TRUNC)) inode->SetAttr(reply.attr);
  if (reply.created) fs->io().KnowEmptyLayout(*inode);
  Handle* h = NewHandle(fs, inode, reply.handle, fi, reply.created || (fi->flags & O_TRUNC));
  fuse_entry_param e;
  FillEntry(fs, inode->attr(), &e);
  if (fuse_reply_create(req, &e, fi) != 0) {
    fs->inodes().Forget(reply.attr.ino, 1);
    DropHandle(fs, h);
  }
}

// Whether a READ or WRITE came from the kernel's O_DIRECT path (fuse_direct_io), not
// from the page cache (a fill, a buffered write, a writeback, or the buffered fallback
// of an O_DIRECT write): only that path names a lock owner (the caller's files).
bool FromDirectPath(const fuse_file_info* fi) {
  return (fi->flags & O_DIRECT) != 0 && !fi->writepage && fi->lock_owner != 0;
}

// How long a direct write's answer waits for the drop of its range from the page cache
// (fs/page_cache_invalidator.h: a bound, so that a drop stuck on a queued READ cannot
// hold up the request that would let that READ through).
constexpr std::chrono::milliseconds kDropWait{20};

void OpRead(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
  Filesystem* fs = Fs(req);
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  // One buffer per worker thread, kept between requests (no allocation per read).
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < size) buf.resize(size);
  size_t n = 0;
  Inode& inode = *HandleOf(fi)->inode;
  // Noted before the data is read: a direct write that completes after this looks at it
  // (OpWrite); one that completed before has its bytes in what this READ returns.
  if (!FromDirectPath(fi)) inode.NotePageCacheFill();
  if (Status st = fs->io().Read(inode, static_cast<uint64_t>(off), size, buf.data(), &n);
      !st.ok()) {
    fuse_reply_err(req, ErrnoAtEdge(st, inode.ino()));
    return;
  }
  NoteRead(fs, inode);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off,
             fuse_file_info* fi) {
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  Filesystem* fs = Fs(req);
  Inode& inode = *HandleOf(fi)->inode;
  if (Status st = fs->io().Write(inode, static_cast<uint64_t>(off),
                                 reinterpret_cast<const uint8_t*>(data), size);
      !st.ok()) {
    fuse_reply_err(req, ErrnoAtEdge(st, ino));
    return;
  }
  // The data is durable: a page a buffered reader cached while the write was in flight
  // holds the old bytes, and the kernel drops nothing after an asynchronous direct
  // write (fs/page_cache_invalidator.h). Only the direct path: a buffered write holds
  // its pages locked until this reply, so dropping them here would stall it.
  if (FromDirectPath(fi) && inode.page_cache_filled()) {
    fs->invalidator().Drop(ino, static_cast<uint64_t>(off), size, kDropWait);
  }
  fuse_reply_write(req, size);
}

void OpFlush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  // Data is durable at every write's return; what is left is the lazy mtime.
  Inode& inode = *HandleOf(fi)->inode;
  fuse_reply_err(req, ErrnoAtEdge(Fs(req)->io().FlushMtime(inode), inode.ino()));
}

void OpRelease(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  DropHandle(Fs(req), HandleOf(fi));
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t /*ino*/, int datasync, fuse_file_info* fi) {
  // Data and size are durable already; fsync (not fdatasync) also wants the mtime.
  Inode& inode = *HandleOf(fi)->inode;
  fuse_reply_err(req, datasync ? 0 : ErrnoAtEdge(Fs(req)->io().FlushMtime(inode), inode.ino()));
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* /*fi*/) {
  Filesystem* fs = Fs(req);
  if (offset < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  uint64_t off = static_cast<uint64_t>(offset), len = static_cast<uint64_t>(length);
  if (off > meta::kMaxFileSize || len > meta::kMaxFileSize - off) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  meta::FallocateRequest r{ino, static_cast<uint32_t>(mode), off, len};
  // The server frees (punch) or zeroes (zero range) whole blocks; the partial blocks
  // at the edges are zeroed here with data writes.
  std::vector<meta::ByteRange> edges;
  if (mode & (kFallocPunchHole | kFallocZeroRange)) {
    uint64_t bs = fs->io().block_size(), end = off + len;
    uint64_t head_end = std::min(AlignUp(off, bs), end);
    if (head_end > off) edges.push_back({off, head_end - off});
    uint64_t tail_begin = std::max(AlignDown(end, bs), head_end);
    if (end > tail_begin) edges.push_back({tail_begin, end - tail_begin});
  }
  auto inode = fs->inodes().Get(ino);
  fs->stat_ahead().NoteAttrChanged(ino);
  // Growing needs no zeroing: bytes past EOF read as zeros (metadata/ops_files.cc).
  InodeAttr attr;
  const uint32_t mode_before = inode->attr().mode;
  Status st = fs->io().ModifyLayout(
      *inode, {},
      [&]() -> Status {
        Status fst = fs->meta().Fallocate(r, &attr);
        if (fst.ok()) inode->SetAttr(attr);  // under the write mutex: authoritative
        return fst;
      },
      edges);
  if (st.ok() && attr.mode != mode_before && fs->session() != nullptr) {
    // The server took set-ID bits away (perm::ModeAfterFallocate); the kernel drops
    // only its cached size and times after a fallocate, and would show the old mode for
    // attr_timeout. Attributes only (offset -1): no page lock, safe inside a request.
    int rc = fuse_lowlevel_notify_inval_inode(fs->session(), ino, -1, 0);
    if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_inode {} attrs: {}", ino, strerror(-rc));
  }
  fuse_reply_err(req, ErrnoAtEdge(st, ino));
}

// copy_file_range(2) inside the mount: the data goes from the source's data servers to
// this client with one-sided READs and out to the destination's like a write(2) (durable
// before the reply), kCopyChunk at a time. Without it the kernel copies through the page
// cache and sends a READ and a WRITE request per 128 KiB. The kernel has checked the
// handles (readable, writable, not O_APPEND), the flags and same-file overlap, flushed
// nothing we need (no writeback cache), and drops the destination's cached pages and
// attributes after the reply. Holes in the source are copied as zeros (cp(1) skips them
// itself with SEEK_DATA/SEEK_HOLE before it copies). A failure after some bytes were
// copied answers those bytes, as a short write would.
constexpr size_t kCopyChunk = 4u << 20;
constexpr size_t kCopyMax = 1u << 30;

void OpCopyFileRange(fuse_req_t req, fuse_ino_t /*ino_in*/, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t /*ino_out*/, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  Filesystem* fs = Fs(req);
  if (flags != 0 || off_in < 0 || off_out < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  Inode& in = *HandleOf(fi_in)->inode;
  Inode& out = *HandleOf(fi_out)->inode;
  const uint64_t src = static_cast<uint64_t>(off_in), dst = static_cast<uint64_t>(off_out);
  if (dst > meta::kMaxFileSize || len > meta::kMaxFileSize - dst) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  if (&in == &out && src < dst + len && dst < src + len) {
    fuse_reply_err(req, EINVAL);  // as the kernel's own check: overlapping ranges of one file
    return;
  }
  // FUSE answers with a 32-bit count; a short copy is normal (callers loop), and it
  // bounds how long one request holds a worker.
  len = std::min<size_t>(len, kCopyMax);
  thread_local std::vector<uint8_t> buf;
  size_t done = 0;
  Status st;
  uint64_t failed_ino = 0;  // the inode whose read or write failed
  while (done < len) {
    const size_t want = std::min(len - done, kCopyChunk);
    if (buf.size() < want) buf.resize(want);
    size_t n = 0;
    st = fs->io().Read(in, src + done, want, buf.data(), &n);
    if (!st.ok()) {
      failed_ino = in.ino();
      break;
    }
    if (n == 0) break;
    st = fs->io().Write(out, dst + done, buf.data(), n);
    if (!st.ok()) {
      failed_ino = out.ino();
      break;
    }
    done += n;
    if (n < want) break;  // the source's end
  }
  const int err = ErrnoAtEdge(st, failed_ino);
  if (done == 0 && err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if (err != 0) spdlog::debug("copy_file_range stopped after {} bytes: {}", done, std::strerror(err));
  fuse_reply_write(req, done);
}

void OpLseek(fuse_req_t req, fuse_ino_t /*ino*/, off_t off, int whence, fuse_file_info* fi) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    fuse_reply_err(req, EINVAL);  // the kernel handles SEEK_SET/CUR/END itself
    return;
  }
  if (off < 0) {
    fuse_reply_err(req, ENXIO);
    return;
  }
  uint64_t result = 0;
  Inode& inode = *HandleOf(fi)->inode;
  if (Status st = Fs(req)->io().Seek(inode, static_cast<uint64_t>(off), whence == SEEK_DATA,
                                     &result);
      !st.ok()) {
    fuse_reply_err(req, ErrnoAtEdge(st, inode.ino()));
    return;
  }
  fuse_reply_lseek(req, static_cast<off_t>(result));
}

// --- directories ---

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Filesystem* fs = Fs(req);
  auto* h = new DirHandle;
  h->inode = fs->inodes().Get(ino);
  fs->inodes().Opened(h->inode);
  fi->fh = reinterpret_cast<uint64_t>(h);
  if (fuse_reply_open(req, fi) != 0) {  // interrupted: no releasedir will come
    fs->inodes().Closed(h->inode);
    delete h;
  }
}

void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus,
             fuse_file_info* fi) {
  Filesystem* fs = Fs(req);
  auto* dh = reinterpret_cast<DirHandle*>(fi->fh);
  std::lock_guard<std::mutex> dir_lock(dh->mu);
  if (off == 0) dh->has_end = false;  // opendir or rewind: a new listing
  std::vector<char> buf(size);
  size_t used = 0;
  auto add_dot = [&](const char* name, off_t next) -> bool {
    struct stat st;
    std::memset(&st, 0, sizeof st);
    st.st_ino = ino;
    st.st_mode = S_IFDIR;
    size_t n;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);  // ino 0: the kernel takes no lookup for dot entries
      e.attr = st;
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
    } else {
      n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
    }
    if (n > size - used) return false;
    used += n;
    return true;
  };
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (off == 0 && !add_dot(".", 1)) {
    fuse_reply_buf(req, buf.data(), used);
    return;
  }
  if (off <= 1 && !add_dot("..", kDotOffsets)) {
    fuse_reply_buf(req, buf.data(), used);
    return;
  }
  uint64_t cookie = off > kDotOffsets ? static_cast<uint64_t>(off - kDotOffsets) : 0;
  bool full = false;
  while (!full) {
    meta::ReaddirRequest r;
    r.ino = ino;
    r.cookie = cookie;
    // Roughly what fits: an entry takes at least 24 (readdir) or ~150 (plus) bytes.
    size_t per_entry = plus ? 160 : 32;
    r.max_entries = static_cast<uint32_t>(
        std::clamp<size_t>((size - used) / per_entry + 1, 1, meta::kMaxReaddirEntries));
    r.plus = plus;
    meta::ReaddirReply reply;
    uint64_t seq = AttrSequence();
    if (int err = ErrnoAtEdge(fs->meta().Readdir(r, &reply), r.ino); err != 0) {
      if (used > 0) break;  // return what we have; the error comes again next time
      fuse_reply_err(req, err);
      return;
    }
    if (!dh->has_end) {
      dh->has_end = true;
      dh->end_cookie = reply.last_cookie;
    }
    bool past_end = false;
    for (const meta::DirEntry& d : reply.entries) {
      if (d.cookie > dh->end_cookie) {  // added (or renamed) after the listing began
        past_end = true;
        break;
      }
      if (d.cookie > static_cast<uint64_t>(INT64_MAX) - kDotOffsets) {
        spdlog::error("directory {}: the server sent cookie {} (too large for an offset)", ino,
                      d.cookie);
        full = true;
        break;
      }
      off_t next = static_cast<off_t>(d.cookie) + kDotOffsets;
      size_t n;
      if (plus) {
        InodeAttr a = d.attr;
        if (a.ino != d.ino) a.ino = d.ino;
        fuse_entry_param e;
        FillEntry(fs, a, &e);
        n = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e, next);
        if (n > size - used) {
          full = true;
          break;
        }
        fs->inodes().AddLookup(a, seq);  // the kernel holds a lookup on every plus entry
      } else {
        struct stat st;
        std::memset(&st, 0, sizeof st);
        st.st_ino = d.ino;
        st.st_mode = d.mode;
        n = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st, next);
        if (n > size - used) {
          full = true;
          break;
        }
      }
      used += n;
      cookie = d.cookie;
    }
    if (past_end || reply.eof || reply.entries.empty() || cookie >= dh->end_cookie) break;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Readdir(req, ino, size, off, false, fi);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Readdir(req, ino, size, off, true, fi);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  auto* dh = reinterpret_cast<DirHandle*>(fi->fh);
  Fs(req)->inodes().Closed(dh->inode);
  delete dh;
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t /*ino*/, int /*datasync*/, fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);  // every namespace change is durable when acknowledged
}

// --- file system ---

void OpStatfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  // Blocks of unlinked files are in use until their last release: count them as freed
  // once this client's closes are.
  Fs(req)->releases().Flush();
  meta::StatfsReply r;
  if (int err = ErrnoAtEdge(Fs(req)->meta().Statfs(&r), meta::kRootInode); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = r.block_size;
  st.f_frsize = r.block_size;
  st.f_blocks = r.total_blocks;
  st.f_bfree = r.free_blocks;
  st.f_bavail = r.free_blocks;
  st.f_files = r.total_inodes;
  st.f_ffree = r.free_inodes;
  st.f_favail = r.free_inodes;
  st.f_namemax = r.name_max;
  fuse_reply_statfs(req, &st);
}

// --- extended attributes ---

constexpr std::string_view kCapabilityXattr = "security.capability";

// Forgets a learnt absence of security.capability (any xattr change may be it).
void XattrChanged(Filesystem* fs, fuse_ino_t ino) {
  if (auto inode = fs->inodes().Find(ino)) inode->XattrChanged();
  fs->stat_ahead().NoteAttrChanged(ino);  // its ctime
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  XattrChanged(Fs(req), ino);
  meta::SetxattrRequest r;
  r.ino = ino;
  r.name = name;
  r.value.assign(value, size);
  r.flags = static_cast<uint32_t>(flags);
  fuse_reply_err(req, ErrnoAtEdge(Fs(req)->meta().Setxattr(r), r.ino));
}

// getxattr/listxattr: size 0 asks for the length; a too small buffer is ERANGE.
void ReplySized(fuse_req_t req, const std::string& bytes, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, bytes.size());
  } else if (bytes.size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, bytes.data(), bytes.size());
  }
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Filesystem* fs = Fs(req);
  // The kernel's check before every buffered write: answered here once known absent,
  // which saves a metadata RPC per write.
  std::shared_ptr<Inode> inode;
  uint64_t epoch = 0;
  if (name == kCapabilityXattr) {
    inode = fs->inodes().Find(ino);
    if (inode && inode->capability_absent()) {
      fuse_reply_err(req, ENODATA);
      return;
    }
    if (inode) epoch = inode->xattr_epoch();
  }
  std::string value;
  if (int err = ErrnoAtEdge(fs->meta().Getxattr(ino, name, &value), ino); err != 0) {
    if (err == ENODATA && inode) inode->MarkCapabilityAbsent(epoch);
    fuse_reply_err(req, err);
    return;
  }
  ReplySized(req, value, size);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::vector<std::string> names;
  if (int err = ErrnoAtEdge(Fs(req)->meta().Listxattr(ino, &names), ino); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  std::string list;
  for (const std::string& n : names) {
    list += n;
    list.push_back('\0');
  }
  ReplySized(req, list, size);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  XattrChanged(Fs(req), ino);
  fuse_reply_err(req, ErrnoAtEdge(Fs(req)->meta().Removexattr(ino, name), ino));
}

// --- session ---

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* fs = static_cast<Filesystem*>(userdata);
  const MountOptions& o = fs->options();
  auto want = [&](unsigned cap, bool on) {
    if (on && (conn->capable & cap)) {
      conn->want |= cap;
    } else {
      conn->want &= ~cap;
    }
  };
  want(FUSE_CAP_ATOMIC_O_TRUNC, true);    // open(O_TRUNC) in one RPC
  want(FUSE_CAP_WRITEBACK_CACHE, false);  // write() must return only once durable
  want(FUSE_CAP_HANDLE_KILLPRIV, false);  // the kernel clears suid/sgid on write
  want(FUSE_CAP_PARALLEL_DIROPS, true);   // the server serializes what must be
  want(FUSE_CAP_CACHE_SYMLINKS, true);    // symlinks never change
  want(FUSE_CAP_ASYNC_DIO, true);
  want(FUSE_CAP_AUTO_INVAL_DATA, true);  // drop stale pages when mtime/size change
  want(FUSE_CAP_READDIRPLUS, true);
  want(FUSE_CAP_READDIRPLUS_AUTO, true);
  want(FUSE_CAP_EXPORT_SUPPORT, false);  // lookups of "." and ".." are not served
  // POSIX ACLs: the kernel enforces them (it reads system.posix_acl_access, cached per
  // inode) and leaves their inheritance, and so the umask, to the file system: the
  // metadata server applies both (metadata/README.md, "POSIX ACLs").
  want(FUSE_CAP_POSIX_ACL, o.posix_acl);
  want(FUSE_CAP_DONT_MASK, o.posix_acl);
  fs->set_server_applies_umask((conn->want & FUSE_CAP_DONT_MASK) != 0);
  if (o.posix_acl && (conn->want & FUSE_CAP_POSIX_ACL) == 0) {
    spdlog::warn("the kernel offers no POSIX ACLs for FUSE: mounted with file modes only");
  }
  conn->max_write = o.max_write;
  conn->time_gran = 1;
  spdlog::info("FUSE session: protocol {}.{}, max_write {}, max_readahead {}", conn->proto_major,
               conn->proto_minor, conn->max_write, conn->max_readahead);
}

// Every operation runs inside a CallerScope of its request: the metadata calls it makes
// (on this thread) act for the process that made the request, whose uid, gid and
// groups the metadata server checks. Resolved at the first metadata call only.
void ResolveRequestCaller(void* req, meta::Credentials* out) {
  auto r = static_cast<fuse_req_t>(req);
  Fs(r)->caller_groups().Resolve(r, out);
}
// Also times the operation into its histogram (client_metrics.h): the operations reply
// before they return, so this is the kernel's wait plus what is left after the reply.
template <auto Op, FuseOp kOp>
struct AsCaller;
template <class... Args, void (*Op)(fuse_req_t, Args...), FuseOp kOp>
struct AsCaller<Op, kOp> {
  static void Run(fuse_req_t req, Args... args) {
    metrics::ScopedLatency timed(ClientMetrics::Get().fuse_op(kOp));
    meta::CallerScope caller(&ResolveRequestCaller, req);
    Op(req, args...);
  }
};

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = OpInit;
  ops.lookup = AsCaller<OpLookup, FuseOp::kLookup>::Run;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = AsCaller<OpGetattr, FuseOp::kGetattr>::Run;
  ops.setattr = AsCaller<OpSetattr, FuseOp::kSetattr>::Run;
  ops.readlink = AsCaller<OpReadlink, FuseOp::kReadlink>::Run;
  ops.mknod = AsCaller<OpMknod, FuseOp::kMknod>::Run;
  ops.mkdir = AsCaller<OpMkdir, FuseOp::kMkdir>::Run;
  ops.unlink = AsCaller<OpUnlink, FuseOp::kUnlink>::Run;
  ops.rmdir = AsCaller<OpRmdir, FuseOp::kRmdir>::Run;
  ops.symlink = AsCaller<OpSymlink, FuseOp::kSymlink>::Run;
  ops.rename = AsCaller<OpRename, FuseOp::kRename>::Run;
  ops.link = AsCaller<OpLink, FuseOp::kLink>::Run;
  ops.open = AsCaller<OpOpen, FuseOp::kOpen>::Run;
  ops.read = AsCaller<OpRead, FuseOp::kRead>::Run;
  ops.write = AsCaller<OpWrite, FuseOp::kWrite>::Run;
  ops.flush = AsCaller<OpFlush, FuseOp::kFlush>::Run;
  ops.release = AsCaller<OpRelease, FuseOp::kRelease>::Run;
  ops.fsync = AsCaller<OpFsync, FuseOp::kFsync>::Run;
  ops.opendir = AsCaller<OpOpendir, FuseOp::kOpendir>::Run;
  ops.readdir = AsCaller<OpReaddir, FuseOp::kReaddir>::Run;
  ops.readdirplus = AsCaller<OpReaddirplus, FuseOp::kReaddirplus>::Run;
  ops.releasedir = AsCaller<OpReleasedir, FuseOp::kReleasedir>::Run;
  ops.fsyncdir = AsCaller<OpFsyncdir, FuseOp::kFsyncdir>::Run;
  ops.statfs = AsCaller<OpStatfs, FuseOp::kStatfs>::Run;
  ops.setxattr = AsCaller<OpSetxattr, FuseOp::kSetxattr>::Run;
  ops.getxattr = AsCaller<OpGetxattr, FuseOp::kGetxattr>::Run;
  ops.listxattr = AsCaller<OpListxattr, FuseOp::kListxattr>::Run;
  ops.removexattr = AsCaller<OpRemovexattr, FuseOp::kRemovexattr>::Run;
  ops.create = AsCaller<OpCreate, FuseOp::kCreate>::Run;
  ops.fallocate = AsCaller<OpFallocate, FuseOp::kFallocate>::Run;
  ops.lseek = AsCaller<OpLseek, FuseOp::kLseek>::Run;
  ops.copy_file_range = AsCaller<OpCopyFileRange, FuseOp::kCopyFileRange>::Run;
  // No getlk/setlk/flock: the kernel then keeps POSIX and BSD locks local to this
  // mount, which is what a single-client lock needs.
  return ops;
}

StatAhead::Options StatAheadOptions(const MountOptions& o) {
  StatAhead::Options s;
  s.trigger = o.statahead;
  s.answer_absent = o.lookupcache_negative;
  s.validity = std::chrono::duration_cast<StatAhead::Clock::duration>(
      std::chrono::duration<double>(o.entry_timeout));
  return s;
}
}  // namespace

// Releases wait at most this long for company, in batches of at most this many.
constexpr auto kReleaseDelay = std::chrono::milliseconds(2);
constexpr size_t kReleaseBatch = 256;

Filesystem::Filesystem(meta::MetaApi& meta, FileIo& io, const MountOptions& options)
    : meta_(meta),
      io_(io),
      options_(options),
      stat_ahead_(StatAheadOptions(options)),
      releases_(
          [&meta](const std::vector<meta::ReleaseRequest>& batch) {
            uint32_t refused = 0;
            int err = ErrnoAtEdge(meta.ReleaseMany(batch, &refused), meta::kRootInode);
            if (err == 0 && refused != 0) {
              spdlog::debug("{} of {} released handles were not open", refused, batch.size());
            }
            return err;
          },
          kReleaseDelay, kReleaseBatch) {}

const fuse_lowlevel_ops& Filesystem::Ops() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace dpmfs::fs
