// Internal to metadata/: the inode and directory records behind Namespace, shared by
// namespace.cc, the handlers (ops_*.cc) and checkpoint_codec.cc.
//
// Thread-safety: none (guarded by the Namespace's owner, like Namespace itself).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "metadata/extent_map.h"
#include "metadata/namespace.h"
#include "metadata/permissions.h"
#include "metadata/posix_acl.h"

namespace dpmfs::meta {

// A directory's entries. Names hash for lookups; cookies order readdir. A cookie is
// assigned from next_cookie when an entry is added and never changes while the entry
// exists (a rename adds a new entry), so a readdir resuming after cookie c sees every
// surviving entry exactly once. by_cookie points at the (name, entry) nodes of by_name,
// which do not move on rehash.
struct Namespace::Directory {
  struct Entry {
    InodeId ino = 0;
    uint64_t cookie = 0;
  };
  using NameMap = std::unordered_map<std::string, Entry>;
  NameMap by_name;
  std::map<uint64_t, NameMap::value_type*> by_cookie;
  uint64_t next_cookie = 1;  // 0 means "from the start" in a readdir request
};

struct Namespace::Inode {
  InodeAttr attr;       // attr.blocks is derived from `extents` when an attr is produced
  InodeId parent = 0;   // directories only: the one directory naming it (root: itself)
  std::string symlink;  // symlinks: the target
  std::map<std::string, std::string, std::less<>> xattrs;  // transparent: found by string_view
  uint64_t xattr_list_bytes = 0;   // sum of (name length + 1), as listxattr returns them
  ExtentMap extents;               // regular files
  std::unique_ptr<Directory> dir;  // directories
  uint32_t open_count = 0;         // handles open on it, over every session

  bool is_dir() const { return S_ISDIR(attr.mode); }
  bool is_reg() const { return S_ISREG(attr.mode); }
};

// POSIX ACLs kept as the two system.posix_acl_* xattrs of an inode (ops_xattr.cc).
class AclXattrs {
 public:
  using Inode = Namespace::Inode;
  // The inode as the access checks see it: its attributes and its access ACL, if it has
  // one. A stored ACL that does not decode (it was validated when set, so only damage
  // does that) leaves only the owner's bits: refusing is the safe reading.
  static perm::Object SubjectOf(const Inode& in);
  // setxattr of an ACL name: as Linux's set_posix_acl and posix_acl_update_mode. 0 or
  // EINVAL (not a valid ACL), EACCES (a default ACL on a non-directory).
  static int Set(Inode* in, const SetxattrRequest& req, const Credentials& caller);
  // A new inode made in `dir` (not a symlink) takes the access and default ACLs Linux
  // would give it from the directory's default ACL, which limits its mode bits; without
  // one, `umask` limits them (kNewInodeUmask in meta_protocol.h).
  static void Inherit(const Inode& dir, uint32_t umask, Inode* in);
  // chmod of an inode with an access ACL: its class entries follow the new mode.
  static void Chmod(Inode* in);

 private:
  static std::optional<acl::PosixAcl> Stored(const Inode& in, std::string_view name);
  static void Put(Inode* in, std::string_view name, std::string value);
  static void Drop(Inode* in, std::string_view name);
};

inline uint64_t RoundUp(uint64_t v, uint64_t unit) { return (v + unit - 1) / unit * unit; }
inline uint64_t RoundDown(uint64_t v, uint64_t unit) { return v / unit * unit; }

}  // namespace dpmfs::meta
