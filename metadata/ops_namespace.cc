// The namespace family (meta_ops.h): lookup, getattr, readlink, readdir, setattr,
// create, mkdir, mknod, symlink, link, unlink, rmdir, rename. Every mutation validates
// completely before it changes anything (namespace.h).
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"
#include "metadata/permissions.h"

namespace dpmfs::meta {

namespace {
constexpr uint32_t kPermBits = 07777;
}  // namespace

// The owner, group and mode of a new inode made by the caller in `dir`: the caller's
// (root may name another owner), the set-group-ID directory's group (Linux's
// inode_init_owner and mode_strip_sgid, permissions.h). Decided here, not by the
// client, so every client gets the same result.
static void NewInodeOwner(const Credentials& caller, const InodeAttr& dir, uint32_t req_uid,
                          uint32_t req_gid, uint32_t* mode, uint32_t* uid, uint32_t* gid) {
  perm::NewOwner(caller, req_uid, req_gid, uid, gid);
  perm::InheritFromDirectory(caller, dir, mode, gid);
}

int Namespace::ReadLookup(const LookupRequest& req, const Credentials& caller,
                          EntryReply* reply) const {
  const Inode* dir = nullptr;
  const Inode* in = nullptr;
  if (int e = FindEntry(caller, req.parent, req.name, &dir, &in)) return e;
  reply->attr = AttrOf(*in);
  return 0;
}

// stat(2) needs no permission on the inode itself (only search on the path, which the
// lookups that found it checked).
int Namespace::ReadGetattr(const GetattrRequest& req, const Credentials& /*caller*/,
                           AttrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::ReadReadlink(const ReadlinkRequest& req, const Credentials& /*caller*/,
                            ReadlinkReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (!S_ISLNK(in->attr.mode)) return EINVAL;
  reply->target = in->symlink;
  return 0;
}

int Namespace::ReadReaddir(const ReaddirRequest& req, const Credentials& caller,
                           ReaddirReply* reply) const {
  const Inode* dir = nullptr;
  if (int e = FindDir(req.ino, &dir)) return e;
  if (int e = perm::MayAccess(caller, AclXattrs::SubjectOf(*dir), perm::kRead)) return e;
  if (req.max_entries == 0 || req.max_entries > kMaxReaddirEntries) return EINVAL;
  // Stay well inside the message size: an entry encodes as ~120 bytes + its name.
  constexpr size_t kBudget = kMetaMaxMessage - 8192;
  size_t bytes = 16;
  const Directory& d = *dir->dir;
  auto it = d.by_cookie.upper_bound(req.cookie);
  for (; it != d.by_cookie.end() && reply->entries.size() < req.max_entries; ++it) {
    const std::string& name = it->second->first;
    size_t need = 128 + name.size();
    if (bytes + need > kBudget && !reply->entries.empty()) break;
    const Directory::Entry& e = it->second->second;
    const Inode* in = Find(e.ino);
    if (in == nullptr) return EIO;
    DirEntry out;
    out.name = name;
    out.ino = e.ino;
    out.cookie = e.cookie;
    if (req.plus) {
      out.attr = AttrOf(*in);
      out.mode = out.attr.mode;
    } else {
      out.mode = in->attr.mode & S_IFMT;
    }
    reply->entries.push_back(std::move(out));
    bytes += need;
  }
  reply->eof = it == d.by_cookie.end();
  reply->last_cookie = d.next_cookie - 1;
  return 0;
}

int Namespace::DoSetattr(const SetattrRequest& req, OpContext& ctx, AttrReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  const uint32_t v = req.valid;
  uint32_t mode = in->attr.mode;
  if (v & SetattrRequest::kAccessed) {
    if (v != (SetattrRequest::kAccessed | SetattrRequest::kAtime)) return EINVAL;
    if (int e = perm::MaySetattr(ctx.caller, AclXattrs::SubjectOf(*in), req, &mode)) return e;
    if (req.atime > in->attr.atime) in->attr.atime = req.atime;
    reply->attr = AttrOf(*in);
    return 0;
  }
  if (v & SetattrRequest::kSize) {
    if (in->is_dir()) return EISDIR;
    if (!in->is_reg()) return EINVAL;
    if (req.size > kMaxFileSize) return EFBIG;
  }
  // Who may, and what the mode becomes (set-ID bits cleared by chmod, chown, truncate).
  if (int e = perm::MaySetattr(ctx.caller, AclXattrs::SubjectOf(*in), req, &mode)) return e;
  in->attr.mode = mode;
  if (v & SetattrRequest::kMode) AclXattrs::Chmod(in);  // posix_acl_chmod
  if (v & SetattrRequest::kUid) in->attr.uid = req.uid;
  if (v & SetattrRequest::kGid) in->attr.gid = req.gid;
  if ((v & SetattrRequest::kSize) && req.size != in->attr.size) {
    Truncate(*in, req.size, ctx);
    in->attr.mtime = ctx.now;
  }
  if (v & SetattrRequest::kAtimeNow) {
    in->attr.atime = ctx.now;
  } else if (v & SetattrRequest::kAtime) {
    in->attr.atime = req.atime;
  }
  if (v & SetattrRequest::kMtimeNow) {
    in->attr.mtime = ctx.now;
  } else if (v & SetattrRequest::kMtime) {
    in->attr.mtime = req.mtime;
  }
  in->attr.ctime = (v & SetattrRequest::kCtime) ? req.ctime : ctx.now;
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::DoCreate(const CreateRequest& req, OpContext& ctx, CreateReply* reply) {
  Inode* dir = nullptr;
  if (int e = FindSearchableDir(ctx.caller, req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  const uint32_t type = req.mode & S_IFMT;
  if (type != 0 && type != S_IFREG) return EINVAL;
  auto it = dir->dir->by_name.find(req.name);
  if (it != dir->dir->by_name.end()) {
    if (req.flags & O_EXCL) return EEXIST;
    Inode* in = Find(it->second.ino);
    if (in == nullptr) return EIO;
    if (in->is_dir()) return EISDIR;
    if (int e = perm::MayOpen(ctx.caller, AclXattrs::SubjectOf(*in), req.flags)) return e;
    if ((req.flags & O_TRUNC) && in->is_reg()) {
      Truncate(*in, 0, ctx);
      in->attr.mode = perm::ModeAfterWrite(ctx.caller, in->attr.mode);
      Touch(*in, ctx.now, true, true);
    }
    reply->handle = OpenHandle(*in, ctx);
    reply->attr = AttrOf(*in);
    reply->created = false;
    return 0;
  }
  if (int e = perm::MayCreate(ctx.caller, AclXattrs::SubjectOf(*dir))) return e;
  if (dir->attr.nlink == 0) return ENOENT;  // a removed directory takes no new names
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  uint32_t mode = S_IFREG | (req.mode & kPermBits);
  uint32_t uid = 0, gid = 0;
  NewInodeOwner(ctx.caller, dir->attr, req.uid, req.gid, &mode, &uid, &gid);
  Inode& in = NewInode(mode, uid, gid, 0, ctx);
  AclXattrs::Inherit(*dir, req.umask, &in);
  in.attr.nlink = 1;
  AddEntry(*dir, req.name, in.attr.ino);
  Touch(*dir, ctx.now, true, true);
  reply->handle = OpenHandle(in, ctx);
  reply->attr = AttrOf(in);
  reply->created = true;
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoMkdir(const MkdirRequest& req, OpContext& ctx, EntryReply* reply) {
  Inode* dir = nullptr;
  if (int e = FindSearchableDir(ctx.caller, req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  if (dir->dir->by_name.count(req.name)) return EEXIST;
  if (int e = perm::MayCreate(ctx.caller, AclXattrs::SubjectOf(*dir))) return e;
  if (dir->attr.nlink == 0) return ENOENT;
  if (dir->attr.nlink >= kMaxLinks) return EMLINK;
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  uint32_t mode = S_IFDIR | (req.mode & kPermBits);
  uint32_t uid = 0, gid = 0;
  NewInodeOwner(ctx.caller, dir->attr, req.uid, req.gid, &mode, &uid, &gid);
  Inode& in = NewInode(mode, uid, gid, 0, ctx);
  AclXattrs::Inherit(*dir, req.umask, &in);
  in.attr.nlink = 2;
  in.parent = dir->attr.ino;
  in.dir = std::make_unique<Directory>();
  AddEntry(*dir, req.name, in.attr.ino);
  ++dir->attr.nlink;
  Touch(*dir, ctx.now, true, true);
  reply->attr = AttrOf(in);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoMknod(const MknodRequest& req, OpContext& ctx, EntryReply* reply) {
  Inode* dir = nullptr;
  if (int e = FindSearchableDir(ctx.caller, req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  uint32_t type = req.mode & S_IFMT;
  switch (type) {
    case 0:
      type = S_IFREG;
      break;
    case S_IFREG:
    case S_IFIFO:
    case S_IFSOCK:
    case S_IFCHR:
    case S_IFBLK:
      break;
    case S_IFDIR:
      return EPERM;  // Linux's may_mknod
    default:
      return EINVAL;
  }
  if (int e = perm::MayMknod(ctx.caller, type)) return e;
  if (dir->dir->by_name.count(req.name)) return EEXIST;
  if (int e = perm::MayCreate(ctx.caller, AclXattrs::SubjectOf(*dir))) return e;
  if (dir->attr.nlink == 0) return ENOENT;
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  const uint64_t rdev = (type == S_IFCHR || type == S_IFBLK) ? req.rdev : 0;
  uint32_t mode = type | (req.mode & kPermBits);
  uint32_t uid = 0, gid = 0;
  NewInodeOwner(ctx.caller, dir->attr, req.uid, req.gid, &mode, &uid, &gid);
  Inode& in = NewInode(mode, uid, gid, rdev, ctx);
  AclXattrs::Inherit(*dir, req.umask, &in);
  in.attr.nlink = 1;
  AddEntry(*dir, req.name, in.attr.ino);
  Touch(*dir, ctx.now, true, true);
  reply->attr = AttrOf(in);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoSymlink(const SymlinkRequest& req, OpContext& ctx, EntryReply* reply) {
  Inode* dir = nullptr;
  if (int e = FindSearchableDir(ctx.caller, req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  if (req.target.empty()) return ENOENT;  // as symlink(2)
  if (req.target.size() > kMaxSymlinkLength) return ENAMETOOLONG;
  if (req.target.find('\0') != std::string::npos) return EINVAL;
  if (dir->dir->by_name.count(req.name)) return EEXIST;
  if (int e = perm::MayCreate(ctx.caller, AclXattrs::SubjectOf(*dir))) return e;
  if (dir->attr.nlink == 0) return ENOENT;
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  uint32_t mode = S_IFLNK | 0777;
  uint32_t uid = 0, gid = 0;
  NewInodeOwner(ctx.caller, dir->attr, req.uid, req.gid, &mode, &uid, &gid);
  Inode& in = NewInode(mode, uid, gid, 0, ctx);
  in.attr.nlink = 1;
  in.attr.size = req.target.size();
  in.symlink = req.target;
  AddEntry(*dir, req.name, in.attr.ino);
  Touch(*dir, ctx.now, true, true);
  reply->attr = AttrOf(in);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoLink(const LinkRequest& req, OpContext& ctx, EntryReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  Inode* dir = nullptr;
  if (int e = FindSearchableDir(ctx.caller, req.new_parent, &dir)) return e;
  if (int e = CheckName(req.new_name)) return e;
  if (in->is_dir()) return EPERM;
  if (dir->dir->by_name.count(req.new_name)) return EEXIST;
  if (int e = perm::MayCreate(ctx.caller, AclXattrs::SubjectOf(*dir))) return e;
  if (dir->attr.nlink == 0 || in->attr.nlink == 0) return ENOENT;
  if (in->attr.nlink >= kMaxLinks) return EMLINK;
  if (ctx.metadata_full) return ENOSPC;
  AddEntry(*dir, req.new_name, in->attr.ino);
  ++in->attr.nlink;
  in->attr.ctime = ctx.now;
  Touch(*dir, ctx.now, true, true);
  reply->attr = AttrOf(*in);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoUnlink(const UnlinkRequest& req, OpContext& ctx, DirsReply* reply) {
  Inode* dir = nullptr;
  Inode* in = nullptr;
  if (int e = FindEntry(ctx.caller, req.parent, req.name, &dir, &in)) return e;
  if (int e = perm::MayDelete(ctx.caller, AclXattrs::SubjectOf(*dir), in->attr)) return e;
  if (in->is_dir()) return EISDIR;
  RemoveEntry(*dir, req.name);
  --in->attr.nlink;
  in->attr.ctime = ctx.now;
  Touch(*dir, ctx.now, true, true);
  MaybeFree(*in, ctx);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoRmdir(const UnlinkRequest& req, OpContext& ctx, DirsReply* reply) {
  Inode* dir = nullptr;
  Inode* in = nullptr;
  if (int e = FindEntry(ctx.caller, req.parent, req.name, &dir, &in)) return e;
  if (int e = perm::MayDelete(ctx.caller, AclXattrs::SubjectOf(*dir), in->attr)) return e;
  if (!in->is_dir()) return ENOTDIR;
  if (!in->dir->by_name.empty()) return ENOTEMPTY;
  RemoveEntry(*dir, req.name);
  --dir->attr.nlink;
  in->attr.nlink = 0;
  in->attr.ctime = ctx.now;
  Touch(*dir, ctx.now, true, true);
  MaybeFree(*in, ctx);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

// A rename's changed directories: both parents, once when they are the same.
std::vector<InodeAttr> Namespace::ChangedDirs(const Inode& sdir, const Inode& ddir) const {
  if (&sdir == &ddir) return {AttrOf(sdir)};
  return {AttrOf(sdir), AttrOf(ddir)};
}

int Namespace::DoRename(const RenameRequest& req, OpContext& ctx, DirsReply* reply) {
  constexpr uint32_t kNoReplace = 1, kExchange = 2;
  if ((req.flags & ~(kNoReplace | kExchange)) != 0) return EINVAL;
  if (req.flags == (kNoReplace | kExchange)) return EINVAL;
  Inode* sdir = nullptr;
  Inode* ddir = nullptr;
  if (int e = FindSearchableDir(ctx.caller, req.parent, &sdir)) return e;
  if (int e = FindSearchableDir(ctx.caller, req.new_parent, &ddir)) return e;
  if (int e = CheckName(req.name)) return e;
  if (int e = CheckName(req.new_name)) return e;
  auto sit = sdir->dir->by_name.find(req.name);
  if (sit == sdir->dir->by_name.end()) return ENOENT;
  auto dit = ddir->dir->by_name.find(req.new_name);
  const bool have_dst = dit != ddir->dir->by_name.end();
  if ((req.flags & kNoReplace) && have_dst) return EEXIST;
  if ((req.flags & kExchange) && !have_dst) return ENOENT;
  if (ddir->attr.nlink == 0) return ENOENT;
  Inode* src = Find(sit->second.ino);
  Inode* dst = have_dst ? Find(dit->second.ino) : nullptr;
  if (src == nullptr || (have_dst && dst == nullptr)) return EIO;
  const bool src_dir = src->is_dir();
  const bool dst_dir = dst != nullptr && dst->is_dir();
  if (src != dst) {
    // vfs_rename's order: the source's removal, the target's removal or the new name's
    // creation, then a directory changing parents needs write on itself (its "..").
    if (int e = perm::MayDelete(ctx.caller, AclXattrs::SubjectOf(*sdir), src->attr)) return e;
    if (int e = dst != nullptr ? perm::MayDelete(ctx.caller, AclXattrs::SubjectOf(*ddir), dst->attr)
                               : perm::MayCreate(ctx.caller, AclXattrs::SubjectOf(*ddir))) {
      return e;
    }
    if (sdir != ddir) {
      if (src_dir) {
        if (int e = perm::MayAccess(ctx.caller, AclXattrs::SubjectOf(*src), perm::kWrite)) return e;
      }
      if ((req.flags & kExchange) && dst_dir) {
        if (int e = perm::MayAccess(ctx.caller, AclXattrs::SubjectOf(*dst), perm::kWrite)) return e;
      }
    }
  }

  if (req.flags & kExchange) {
    if (src == dst) return 0;
    if (src_dir && IsAncestor(src->attr.ino, ddir->attr.ino)) return EINVAL;
    if (dst_dir && IsAncestor(dst->attr.ino, sdir->attr.ino)) return EINVAL;
    if (sdir != ddir && src_dir != dst_dir) {
      // A directory moves from one parent to the other: its ".." link moves with it.
      Inode* gains = src_dir ? ddir : sdir;
      if (gains->attr.nlink >= kMaxLinks) return EMLINK;
      Inode* loses = src_dir ? sdir : ddir;
      ++gains->attr.nlink;
      --loses->attr.nlink;
    }
    if (src_dir) src->parent = ddir->attr.ino;
    if (dst_dir) dst->parent = sdir->attr.ino;
    std::swap(sit->second.ino, dit->second.ino);
    src->attr.ctime = ctx.now;
    dst->attr.ctime = ctx.now;
    Touch(*sdir, ctx.now, true, true);
    Touch(*ddir, ctx.now, true, true);
    reply->dirs = ChangedDirs(*sdir, *ddir);
    return 0;
  }

  if (src_dir && IsAncestor(src->attr.ino, ddir->attr.ino)) return EINVAL;
  if (dst != nullptr) {
    if (dst == src) return 0;  // two names of one inode: POSIX says do nothing
    if (dst_dir && IsAncestor(dst->attr.ino, sdir->attr.ino)) return ENOTEMPTY;
    if (src_dir && !dst_dir) return ENOTDIR;
    if (!src_dir && dst_dir) return EISDIR;
    if (dst_dir && !dst->dir->by_name.empty()) return ENOTEMPTY;
  }
  if (src_dir && sdir != ddir && !dst_dir && ddir->attr.nlink >= kMaxLinks) return EMLINK;

  // Validated; now change things.
  const std::string name = req.name;  // sit is invalidated by the removals below
  if (dst != nullptr) {
    RemoveEntry(*ddir, req.new_name);
    if (dst_dir) {
      dst->attr.nlink = 0;
      --ddir->attr.nlink;
    } else {
      --dst->attr.nlink;
    }
    dst->attr.ctime = ctx.now;
  }
  RemoveEntry(*sdir, name);
  AddEntry(*ddir, req.new_name, src->attr.ino);
  if (src_dir && sdir != ddir) {
    --sdir->attr.nlink;
    ++ddir->attr.nlink;
    src->parent = ddir->attr.ino;
  }
  src->attr.ctime = ctx.now;
  Touch(*sdir, ctx.now, true, true);
  Touch(*ddir, ctx.now, true, true);
  if (dst != nullptr) MaybeFree(*dst, ctx);
  reply->dirs = ChangedDirs(*sdir, *ddir);
  return 0;
}

}  // namespace dpmfs::meta
