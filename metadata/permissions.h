// The permission rules dpmfs-meta applies to every request, for the caller the request
// names (meta_protocol.h, Credentials): the same decisions, and the same errnos, as a
// local Linux file system (fs/namei.c, fs/attr.c, fs/open.c, fs/utimes.c, fs/xattr.c).
// The server checks them itself because a client that skips the kernel's checks (a
// mount without default_permissions, or a program speaking the protocol) must not get
// further than the modes allow.
//
// The rules (root means uid 0 after the server's mapping; it stands for the
// capabilities CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN, CAP_FSETID, CAP_MKNOD and
// CAP_SYS_ADMIN):
//   - access: the owner's bits if the caller owns the inode, else the group's if the
//     inode's group is the caller's gid or one of its supplementary groups, else the
//     others'. Root may read and write anything and search any directory; it may
//     execute a file only if some x bit is set. Refused: EACCES.
//   - lookup (and every operation naming an entry of a directory): x on the directory.
//   - create, mkdir, mknod, symlink, link: w+x on the parent; device nodes need root
//     (EPERM).
//   - unlink, rmdir, rename: w+x on the parent (EACCES); in a sticky directory only the
//     owner of the entry, the owner of the directory or root (EPERM); a directory moved
//     to another parent needs w on itself (its "..").
//   - chmod: owner or root (EPERM); a caller outside the file's group (not root) loses
//     the set-group-ID bit. Exception: anyone who may write the file may clear its
//     set-ID bits and nothing else (the kernel's kill-priv setattr after a write).
//   - chown: only root gives a file away; the owner may change the group to one of its
//     groups (EPERM). A non-directory loses set-user-ID, and set-group-ID when group
//     execute is set.
//   - utimes: explicit times need owner or root (EPERM); "now" needs owner, root or w
//     (EACCES).
//   - truncate, and the data operations (allocate, commit, fallocate: w): the modes,
//     except that the owner always may (knfsd's owner override: a file created 0444
//     and written through the descriptor that created it). A write or truncate by
//     anyone but root clears set-user-ID (and set-group-ID with group x).
//   - layout (where the blocks are, which is as good as the bytes): r with the owner's
//     override, or w (a writer maps the blocks it overwrites), or x: the kernel reads
//     a program it runs through the same requests, which cannot say they are for an
//     exec. So a client holding the cluster key can read a file it may only execute,
//     which a local file system would refuse.
//   - open: r for O_RDONLY, w for O_WRONLY, both for O_RDWR, w for O_TRUNC; an open for
//     execve (__FMODE_EXEC in the flags FUSE passes on) x instead of r; readdir: r.
//   - xattrs: user.* as the file's r (get, list) and w (set, remove), only on regular
//     files and directories, in sticky directories set/remove by owner or root;
//     trusted.* and security.* set/remove by root only (EPERM), trusted.* read by root
//     only (ENODATA) and hidden from others' lists. Exception: whoever may write the
//     file may remove security.capability (the kernel's kill-priv after a write or
//     fallocate by another user, which FUSE sends as that user's request).
//   - new inodes belong to the caller (a root caller may name another owner: the
//     request's uid/gid); in a set-group-ID directory they take its group, and a new
//     file created there by a non-member loses set-group-ID.
// Not checked: protected_hardlinks/protected_symlinks (sysctls of the
// client's kernel). An inode's access ACL, when it has one, decides the access checks
// (posix_acl.h).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "metadata/meta_protocol.h"
#include "metadata/posix_acl.h"

namespace dpmfs::meta::perm {

// Access masks (as MAY_EXEC, MAY_WRITE, MAY_READ).
inline constexpr uint32_t kExec = 1, kWrite = 2, kRead = 4;

// What an access check looks at: the inode's attributes and, when it has one, its access
// ACL (posix_acl.h), which then decides for everyone but the owner (and root). Made
// implicitly from the attributes alone: an inode without an ACL.
struct Object {
  Object(const InodeAttr& a) : attr(a) {}  // NOLINT(google-explicit-constructor)
  Object(const InodeAttr& a, std::optional<acl::PosixAcl> access_acl)
      : attr(a), acl(std::move(access_acl)) {}
  const InodeAttr& attr;
  std::optional<acl::PosixAcl> acl;
};

inline bool IsRoot(const Credentials& c) { return c.uid == 0; }
// The caller's gid or one of its supplementary groups.
bool InGroup(const Credentials& c, uint32_t gid);
inline bool IsOwnerOrRoot(const Credentials& c, const InodeAttr& a) {
  return c.uid == a.uid || IsRoot(c);
}

// 0 when the caller may access `a` for every bit of `mask`, else EACCES.
int MayAccess(const Credentials& c, const Object& o, uint32_t mask);
// As MayAccess, but the owner always may (data operations on an inode, truncate).
int MayAccessOwnerOverride(const Credentials& c, const Object& o, uint32_t mask);
// Asking where a file's blocks are (layout): r (owner override), w or x, else EACCES.
int MayReadLayout(const Credentials& c, const Object& o);
// Search permission on a directory of the path.
inline int MayLookup(const Credentials& c, const Object& dir) { return MayAccess(c, dir, kExec); }
// Adding a name to `dir`.
inline int MayCreate(const Credentials& c, const Object& dir) {
  return MayAccess(c, dir, kWrite | kExec);
}
// Removing the name of `victim` from `dir` (unlink, rmdir, rename's source and target):
// EACCES without w+x on dir, EPERM for the sticky rule.
int MayDelete(const Credentials& c, const Object& dir, const InodeAttr& victim);
// __FMODE_EXEC of include/linux/fs.h: in the f_flags of an open for execve (O_RDONLY |
// __FMODE_EXEC), which FUSE passes on; never set by open(2) itself.
inline constexpr uint32_t kFmodeExec = 0x20;
// The access an open with `flags` needs: r, w or both by O_ACCMODE, w for O_TRUNC, and
// x instead of r for an open for execve (a mode-0111 program runs; xfstests generic/126).
uint32_t OpenAccess(uint32_t flags);
// Opening an existing inode with open(2) flags: MayAccess for OpenAccess(flags).
int MayOpen(const Credentials& c, const Object& o, uint32_t flags);
// Creating an inode of type `mode & S_IFMT`: EPERM for device nodes unless root.
int MayMknod(const Credentials& c, uint32_t mode);

// A setattr (SetattrRequest::valid and its fields) on `a`: 0 and `*mode` = the mode to
// store (permission bits with the type, after set-ID clearing), or EPERM / EACCES.
// Validation of the request itself (EINVAL, EISDIR, EFBIG) is the caller's, first.
int MaySetattr(const Credentials& c, const Object& o, const SetattrRequest& req,
               uint32_t* mode);
// The mode of a regular file after `c` wrote into or truncated it.
uint32_t ModeAfterWrite(const Credentials& c, uint32_t mode);
// The mode of a regular file of group `gid` after `c` fallocated, punched or zeroed a
// range of it: the kernel's rule for a local file system (setattr_should_drop_sgid),
// which also takes set-group-ID from a caller outside the group when the group may not
// execute. The kernel leaves that to a FUSE file system for fallocate (its own FUSE
// kill-priv keeps the older rule of ModeAfterWrite); xfstests generic/683-685.
uint32_t ModeAfterFallocate(const Credentials& c, uint32_t mode, uint32_t gid);

// The owner of a new inode made by `c` (a root caller may ask for any owner).
void NewOwner(const Credentials& c, uint32_t req_uid, uint32_t req_gid, uint32_t* uid,
              uint32_t* gid);
// Linux's inode_init_owner for a new inode of `*mode` (with type) in `dir`: the
// set-group-ID directory's group (and bit, for a directory); a non-directory created
// there with set-group-ID by a caller outside that group (not root) loses the bit.
void InheritFromDirectory(const Credentials& c, const InodeAttr& dir, uint32_t* mode,
                          uint32_t* gid);

// Extended attributes (Linux's xattr_permission and the capability rules for the
// security namespace; system.posix_acl_*: anyone reads, the owner or root writes). `write`: set or remove. 0, EACCES, EPERM or (reading trusted.*
// or user.* where they cannot be) ENODATA.
int MayXattr(const Credentials& c, const Object& o, std::string_view name, bool write);
// removexattr: MayXattr's write rule, except that whoever may write the file may remove
// security.capability (the kernel's kill-priv; xfstests generic/688 failed with EPERM).
int MayRemoveXattr(const Credentials& c, const Object& o, std::string_view name);
// Whether listxattr shows `name` to `c` (trusted.* only to root).
bool MayListXattr(const Credentials& c, std::string_view name);

}  // namespace dpmfs::meta::perm
