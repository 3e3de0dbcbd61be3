#include "metadata/permissions.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

namespace dpmfs::meta::perm {

namespace {

constexpr uint32_t kSetId = S_ISUID | S_ISGID;

bool HasPrefix(std::string_view name, std::string_view prefix) {
  return name.substr(0, prefix.size()) == prefix;
}

// The three bits of `a`'s mode that apply to `c` (generic_permission's choice of class:
// owner, else group, else others; a member of the group gets the group's bits even
// when the others' are wider, as on Linux).
uint32_t ClassBits(const Credentials& c, const InodeAttr& a) {
  if (c.uid == a.uid) return (a.mode >> 6) & 7;
  if (InGroup(c, a.gid)) return (a.mode >> 3) & 7;
  return a.mode & 7;
}

}  // namespace

bool InGroup(const Credentials& c, uint32_t gid) {
  return c.gid == gid || std::find(c.groups.begin(), c.groups.end(), gid) != c.groups.end();
}

int MayAccess(const Credentials& c, const Object& o, uint32_t mask) {
  const InodeAttr& a = o.attr;
  mask &= kRead | kWrite | kExec;
  if (o.acl ? acl::Permission(*o.acl, c, a, mask) == 0 : (mask & ~ClassBits(c, a)) == 0) {
    return 0;
  }
  if (IsRoot(c)) {
    // CAP_DAC_OVERRIDE: read, write and directory search always; executing a file
    // only when someone may execute it.
    if (S_ISDIR(a.mode) || (mask & kExec) == 0 || (a.mode & 0111) != 0) return 0;
  }
  return EACCES;
}

int MayAccessOwnerOverride(const Credentials& c, const Object& o, uint32_t mask) {
  if (c.uid == o.attr.uid) return 0;
  return MayAccess(c, o, mask);
}

int MayDelete(const Credentials& c, const Object& dir_object, const InodeAttr& victim) {
  if (int e = MayAccess(c, dir_object, kWrite | kExec)) return e;
  const InodeAttr& dir = dir_object.attr;
  // check_sticky: in a sticky directory only the entry's owner, the directory's owner
  // or CAP_FOWNER may remove or rename it.
  if ((dir.mode & S_ISVTX) != 0 && !IsRoot(c) && c.uid != victim.uid && c.uid != dir.uid) {
    return EPERM;
  }
  return 0;
}

int MayReadLayout(const Credentials& c, const Object& o) {
  if (MayAccessOwnerOverride(c, o, kRead) == 0 || MayAccess(c, o, kWrite) == 0 ||
      MayAccess(c, o, kExec) == 0) {
    return 0;
  }
  return EACCES;
}

uint32_t OpenAccess(uint32_t flags) {
  uint32_t mask = 0;
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      mask = (flags & kFmodeExec) != 0 ? kExec : kRead;
      break;
    case O_WRONLY:
      mask = kWrite;
      break;
    default:  // O_RDWR, and 3 which Linux also takes as read + write
      mask = kRead | kWrite;
      break;
  }
  if (flags & O_TRUNC) mask |= kWrite;
  return mask;
}

int MayOpen(const Credentials& c, const Object& o, uint32_t flags) {
  return MayAccess(c, o, OpenAccess(flags));
}

int MayMknod(const Credentials& c, uint32_t mode) {
  const uint32_t type = mode & S_IFMT;
  if ((type == S_IFCHR || type == S_IFBLK) && !IsRoot(c)) return EPERM;  // CAP_MKNOD
  return 0;
}

uint32_t ModeAfterWrite(const Credentials& c, uint32_t mode) {
  // CAP_FSETID keeps the bits; set-group-ID without group execute is not a privilege
  // (it marked mandatory locking) and stays, as the kernel's FUSE kill-priv does it.
  if (IsRoot(c) || !S_ISREG(mode)) return mode;
  mode &= ~uint32_t{S_ISUID};
  if (mode & S_IXGRP) mode &= ~uint32_t{S_ISGID};
  return mode;
}

uint32_t ModeAfterFallocate(const Credentials& c, uint32_t mode, uint32_t gid) {
  if (IsRoot(c) || !S_ISREG(mode)) return mode;
  mode &= ~uint32_t{S_ISUID};
  if ((mode & S_IXGRP) || !InGroup(c, gid)) mode &= ~uint32_t{S_ISGID};
  return mode;
}

int MaySetattr(const Credentials& c, const Object& o, const SetattrRequest& req,
               uint32_t* mode) {
  using R = SetattrRequest;
  const InodeAttr& a = o.attr;
  const uint32_t v = req.valid;
  *mode = a.mode;
  if (v & R::kAccessed) {
    // A client's lazily committed access time: someone read the file.
    if (IsOwnerOrRoot(c, a)) return 0;
    return MayAccess(c, o, kRead);
  }
  const bool owner_or_root = IsOwnerOrRoot(c, a);
  if (v & R::kSize) {
    // truncate(2) needs write permission; the owner may always (ftruncate of a file
    // it created read-only: the server cannot tell the descriptor).
    if (int e = MayAccessOwnerOverride(c, o, kWrite)) return e;
  }
  // chown_ok / chgrp_ok.
  if ((v & R::kUid) && !IsRoot(c) && !(c.uid == a.uid && req.uid == a.uid)) return EPERM;
  if ((v & R::kGid) && !IsRoot(c) &&
      !(c.uid == a.uid && (req.gid == a.gid || InGroup(c, req.gid)))) {
    return EPERM;
  }
  const uint32_t gid_after = (v & R::kGid) ? req.gid : a.gid;
  if (v & R::kMode) {
    uint32_t next = (a.mode & S_IFMT) | (req.mode & 07777);
    if (!owner_or_root) {
      // The kernel's kill-priv after a write by someone else: set-ID bits cleared,
      // nothing added or otherwise changed. Allowed to whoever may write the file.
      const bool only_clears_set_id = next != a.mode && (next & ~a.mode) == 0 &&
                                      (next | kSetId) == (a.mode | kSetId);
      if (!only_clears_set_id || MayAccess(c, o, kWrite) != 0) return EPERM;
    } else if (!IsRoot(c) && !InGroup(c, gid_after)) {
      next &= ~uint32_t{S_ISGID};
    }
    *mode = next;
  }
  if ((v & (R::kUid | R::kGid)) && !(v & R::kMode) && !S_ISDIR(a.mode)) {
    // Giving a file away (or re-grouping it) never carries its privileges along. A
    // mode sent in the same request is the client's own result of that rule (the
    // kernel folds the cleared bits into the chown it sends), so it wins.
    *mode &= ~uint32_t{S_ISUID};
    if ((*mode & S_IXGRP) || (!IsRoot(c) && !InGroup(c, a.gid))) *mode &= ~uint32_t{S_ISGID};
  }
  if (v & R::kSize) *mode = ModeAfterWrite(c, *mode);
  const bool explicit_times = ((v & R::kAtime) && !(v & R::kAtimeNow)) ||
                              ((v & R::kMtime) && !(v & R::kMtimeNow));
  if (explicit_times && !owner_or_root) return EPERM;
  const bool now_times = (v & (R::kAtimeNow | R::kMtimeNow | R::kCtime)) != 0;
  if (now_times && !owner_or_root) {
    if (int e = MayAccess(c, o, kWrite)) return e;
  }
  return 0;
}

void NewOwner(const Credentials& c, uint32_t req_uid, uint32_t req_gid, uint32_t* uid,
              uint32_t* gid) {
  if (IsRoot(c)) {
    *uid = req_uid;
    *gid = req_gid;
  } else {
    *uid = c.uid;
    *gid = c.gid;
  }
}

void InheritFromDirectory(const Credentials& c, const InodeAttr& dir, uint32_t* mode,
                          uint32_t* gid) {
  if ((dir.mode & S_ISGID) == 0) return;
  *gid = dir.gid;
  if (S_ISDIR(*mode)) {
    *mode |= S_ISGID;
  } else if ((*mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) && !IsRoot(c) &&
             !InGroup(c, dir.gid)) {
    *mode &= ~uint32_t{S_ISGID};  // mode_strip_sgid
  }
}

int MayXattr(const Credentials& c, const Object& o, std::string_view name, bool write) {
  const InodeAttr& a = o.attr;
  if (name == acl::kAccessXattr || name == acl::kDefaultXattr) {
    // posix_acl_xattr_set: inode_owner_or_capable; reading needs nothing.
    return write && !IsOwnerOrRoot(c, a) ? EPERM : 0;
  }
  if (HasPrefix(name, "security.")) {
    // No VFS check on reading; writing needs CAP_SYS_ADMIN (or CAP_SETFCAP for
    // security.capability, which root has too).
    return write && !IsRoot(c) ? EPERM : 0;
  }
  if (HasPrefix(name, "trusted.")) {
    if (IsRoot(c)) return 0;
    return write ? EPERM : ENODATA;
  }
  if (HasPrefix(name, "user.")) {
    if (!S_ISREG(a.mode) && !S_ISDIR(a.mode)) return write ? EPERM : ENODATA;
    if (write && S_ISDIR(a.mode) && (a.mode & S_ISVTX) && !IsOwnerOrRoot(c, a)) return EPERM;
    return MayAccess(c, o, write ? kWrite : kRead);
  }
  return 0;  // other namespaces are refused by name (EOPNOTSUPP) before this
}

int MayRemoveXattr(const Credentials& c, const Object& o, std::string_view name) {
  // cap_inode_killpriv removes it with no permission check of its own; through FUSE the
  // removal arrives as the writer's request, so being allowed to write is the check.
  if (name == "security.capability" && MayAccess(c, o, kWrite) == 0) return 0;
  return MayXattr(c, o, name, true);
}

bool MayListXattr(const Credentials& c, std::string_view name) {
  return IsRoot(c) || !HasPrefix(name, "trusted.");
}

}  // namespace dpmfs::meta::perm
