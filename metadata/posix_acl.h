// POSIX access control lists as Linux stores them: the value of the extended attributes
// system.posix_acl_access and system.posix_acl_default (include/uapi/linux/
// posix_acl_xattr.h), and the rules that use them (fs/posix_acl.c): the access check,
// chmod, the mode an ACL implies, and what a new inode inherits from its directory's
// default ACL. dpmfs-meta applies them itself, as it applies the mode bits
// (permissions.h), so that a client skipping the kernel's checks gets no further than
// the ACL allows.
//
// The server keeps them as xattrs and applies them (namespace_internal.h, AclXattrs);
// mounts do not ask for them yet (metadata/README.md, "POSIX ACLs").
//
// Thread-safety: values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta::acl {

inline constexpr std::string_view kAccessXattr = "system.posix_acl_access";
inline constexpr std::string_view kDefaultXattr = "system.posix_acl_default";

// Entry tags (ACL_USER_OBJ ...), in the order a valid ACL lists them.
enum class Tag : uint16_t {
  kUserObj = 0x01,
  kUser = 0x02,
  kGroupObj = 0x04,
  kGroup = 0x08,
  kMask = 0x10,
  kOther = 0x20,
};
inline constexpr uint32_t kUndefinedId = 0xffffffffu;  // the id of the *_OBJ, MASK, OTHER entries

struct Entry {
  Tag tag;
  uint16_t perm;  // rwx as 4|2|1
  uint32_t id;    // uid for kUser, gid for kGroup, else kUndefinedId
  bool operator==(const Entry&) const = default;
};

// A valid ACL (the kernel's posix_acl_valid): USER_OBJ, named USERs, GROUP_OBJ, named
// GROUPs, MASK (required when a named entry exists, allowed otherwise), OTHER, in that
// order; perms within rwx.
struct PosixAcl {
  std::vector<Entry> entries;
  bool operator==(const PosixAcl&) const = default;
};

// The largest xattr value of an ACL: the 4-byte header and 8 bytes per entry within
// XATTR_SIZE_MAX.
inline constexpr size_t kMaxEntries = (kMaxXattrValueLength - 4) / 8;

// Parses and validates an xattr value. InvalidArgument naming the fault (the errno a
// setxattr of it gets is EINVAL). An empty value is refused too: removing an ACL is a
// removexattr.
Result<PosixAcl> Decode(std::span<const uint8_t> value);
std::vector<uint8_t> Encode(const PosixAcl& acl);

// The three-entry ACL that says exactly what `mode`'s permission bits say.
PosixAcl FromMode(uint32_t mode);
// The permission bits `acl` implies (owner from USER_OBJ, group class from MASK when
// there is one, else GROUP_OBJ, others from OTHER), and whether it says no more than
// they do (no named entries, no mask): such an ACL is not stored, the mode holds it.
struct ImpliedMode {
  uint32_t bits;  // 0777 part only
  bool equivalent;
};
ImpliedMode ModeOf(const PosixAcl& acl);

// Linux's access check of a file with an access ACL (acl_permission_check and
// posix_acl_permission): 0 when `c` (not root: the caller applies root's override as
// for the mode) may access for every bit of `want` (perm::kRead|kWrite|kExec), else
// EACCES. The owner gets the mode's owner bits; the ACL is consulted only when the
// mode's group class bits (the mask) are not all clear, else the mode decides (a
// Linux shortcut the kernel of a client with default_permissions takes too). `a`'s mode
// is assumed in step with the ACL, as Chmod and ModeOf keep it.
int Permission(const PosixAcl& acl, const Credentials& c, const InodeAttr& a, uint32_t want);

// chmod on a file with an access ACL: USER_OBJ, the group class (MASK, else GROUP_OBJ)
// and OTHER take the new mode's bits; named entries keep theirs (the mask limits them).
void Chmod(PosixAcl* acl, uint32_t mode);

// What a new inode of `mode` (type and permission bits as the caller asked) made in a
// directory gets: with the directory's default ACL, the permission bits are limited by
// it (no umask), the access ACL is the default one limited by the mode (kept only when
// it says more than the mode), and a new directory inherits the default ACL as its own
// default; without one, the umask applies. Symbolic links take neither.
struct NewInodeAcl {
  uint32_t mode;                          // type and permission bits to store
  std::optional<PosixAcl> access;         // system.posix_acl_access to store, if any
  std::optional<PosixAcl> default_acl;    // system.posix_acl_default to store, if any
};
NewInodeAcl ForNewInode(const PosixAcl* parent_default, uint32_t mode, uint32_t umask);

}  // namespace dpmfs::meta::acl
