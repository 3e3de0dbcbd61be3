#include "metadata/posix_acl.h"

#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "common/byte_codec.h"
#include "metadata/permissions.h"

namespace dpmfs::meta::acl {

namespace {

constexpr uint32_t kXattrVersion = 2;  // POSIX_ACL_XATTR_VERSION
constexpr size_t kHeaderSize = 4;
constexpr size_t kEntrySize = 8;

bool IsNamed(Tag t) { return t == Tag::kUser || t == Tag::kGroup; }

// posix_acl_valid, as the kernel applies it to what a setxattr sends: USER_OBJ, the
// named users, GROUP_OBJ, the named groups, a MASK (required when a named entry exists),
// OTHER, in that order, each perm within rwx, named ids real ids. (Like the kernel, it
// does not insist on ascending or unique named ids: ext4 stores such an ACL too.)
// Returns what is wrong, or nullptr.
const char* Invalid(const PosixAcl& acl) {
  enum { kWantUserObj, kInUsers, kInGroups, kWantOther, kDone } state = kWantUserObj;
  bool needs_mask = false;
  for (const Entry& e : acl.entries) {
    if (e.perm & ~7u) return "has an entry with permission bits beyond rwx";
    switch (e.tag) {
      case Tag::kUserObj:
        if (state != kWantUserObj) return "has its owner entry out of place";
        state = kInUsers;
        break;
      case Tag::kUser:
      case Tag::kGroup:
        if (state != (e.tag == Tag::kUser ? kInUsers : kInGroups)) {
          return "has a named entry out of place";
        }
        if (e.id == kUndefinedId) return "has a named entry without a valid id";
        needs_mask = true;
        break;
      case Tag::kGroupObj:
        if (state != kInUsers) return "has its owning-group entry out of place";
        state = kInGroups;
        break;
      case Tag::kMask:
        if (state != kInGroups) return "has its mask entry out of place";
        state = kWantOther;
        break;
      case Tag::kOther:
        if (state == kWantOther || (state == kInGroups && !needs_mask)) {
          state = kDone;
          break;
        }
        return state == kInGroups ? "has named entries but no mask" : "has its other entry out of place";
      default: return "has an entry of unknown tag";
    }
    if (state == kDone && &e != &acl.entries.back()) return "has entries after its other entry";
  }
  return state == kDone ? nullptr : "lacks an owner, owning-group or other entry";
}

Entry* Find(PosixAcl* acl, Tag tag) {
  for (Entry& e : acl->entries) {
    if (e.tag == tag) return &e;
  }
  return nullptr;
}
const Entry* Find(const PosixAcl& acl, Tag tag) { return Find(const_cast<PosixAcl*>(&acl), tag); }

}  // namespace

Result<PosixAcl> Decode(std::span<const uint8_t> value) {
  codec::ByteReader in(value, "posix_acl");
  uint32_t version = 0;
  in.U32("version", version);
  in.Require(version == kXattrVersion, "version", "is not 2 (POSIX_ACL_XATTR_VERSION)");
  if (in.ok() && in.left() % kEntrySize != 0) {
    in.Fail("entries", "are not a whole number of 8-byte entries");
  }
  if (in.ok() && in.left() / kEntrySize > kMaxEntries) in.Fail("entries", "are too many");
  PosixAcl acl;
  if (in.ok()) acl.entries.reserve(in.left() / kEntrySize);
  while (in.ok() && in.left() > 0) {
    uint16_t tag = 0, perm = 0;
    uint32_t id = 0;
    in.U16("tag", tag);
    in.U16("perm", perm);
    in.U32("id", id);
    const auto t = static_cast<Tag>(tag);
    // The *_OBJ, MASK and OTHER entries carry ACL_UNDEFINED_ID; store it as such so
    // that encoding gives back the kernel's bytes whatever a client sent.
    acl.entries.push_back(Entry{t, perm, IsNamed(t) ? id : kUndefinedId});
  }
  DPMFS_RETURN_IF_ERROR(in.Finish());
  if (const char* why = Invalid(acl)) {
    return Status::InvalidArgument(std::string("posix_acl ") + why);
  }
  return acl;
}

std::vector<uint8_t> Encode(const PosixAcl& acl) {
  std::vector<uint8_t> out(kHeaderSize + kEntrySize * acl.entries.size());
  codec::ByteWriter w(out.data());
  w.U32("version", kXattrVersion);
  for (const Entry& e : acl.entries) {
    w.U16("tag", static_cast<uint16_t>(e.tag));
    w.U16("perm", e.perm);
    w.U32("id", e.id);
  }
  return out;
}

PosixAcl FromMode(uint32_t mode) {
  return PosixAcl{{{Tag::kUserObj, static_cast<uint16_t>((mode >> 6) & 7), kUndefinedId},
                   {Tag::kGroupObj, static_cast<uint16_t>((mode >> 3) & 7), kUndefinedId},
                   {Tag::kOther, static_cast<uint16_t>(mode & 7), kUndefinedId}}};
}

ImpliedMode ModeOf(const PosixAcl& acl) {
  ImpliedMode m{0, true};
  uint32_t group_obj = 0;
  std::optional<uint32_t> mask;
  for (const Entry& e : acl.entries) {
    switch (e.tag) {
      case Tag::kUserObj: m.bits |= uint32_t{e.perm} << 6; break;
      case Tag::kGroupObj: group_obj = e.perm; break;
      case Tag::kMask: mask = e.perm; m.equivalent = false; break;
      case Tag::kOther: m.bits |= e.perm; break;
      default: m.equivalent = false; break;
    }
  }
  m.bits |= mask.value_or(group_obj) << 3;
  return m;
}

int Permission(const PosixAcl& acl, const Credentials& c, const InodeAttr& a, uint32_t want) {
  want &= perm::kRead | perm::kWrite | perm::kExec;
  // acl_permission_check (fs/namei.c): the owner gets the mode's owner bits, and the ACL
  // is read only when the group class bits (the mask) are not all clear; with a mask of
  // 0 Linux answers from the mode alone, so a named user the ACL would refuse still
  // gets the others' bits. The mode-only check is perm::MayAccess's (root aside).
  if (c.uid == a.uid || (a.mode & S_IRWXG) == 0) {
    uint32_t bits = a.mode & 7;
    if (c.uid == a.uid) {
      bits = (a.mode >> 6) & 7;
    } else if ((want & (a.mode ^ (a.mode >> 3))) != 0 && perm::InGroup(c, a.gid)) {
      bits = (a.mode >> 3) & 7;
    }
    return (want & ~bits) == 0 ? 0 : EACCES;
  }
  const Entry* matched = nullptr;  // a named or group entry, limited by the mask
  bool in_a_group = false;
  for (const Entry& e : acl.entries) {
    switch (e.tag) {
      case Tag::kUserObj:
        if (c.uid == a.uid) return (e.perm & want) == want ? 0 : EACCES;
        break;
      case Tag::kUser:
        if (c.uid == e.id) matched = &e;
        break;
      case Tag::kGroupObj:
      case Tag::kGroup: {
        const uint32_t gid = e.tag == Tag::kGroupObj ? a.gid : e.id;
        // Any group entry of the caller's that grants all of `want` does (POSIX); one
        // that matches without granting still denies the others' entry below.
        if (perm::InGroup(c, gid)) {
          in_a_group = true;
          if ((e.perm & want) == want) matched = &e;
        }
        break;
      }
      default: break;
    }
    if (matched != nullptr) break;
  }
  if (matched == nullptr) {
    if (in_a_group) return EACCES;
    const Entry* other = Find(acl, Tag::kOther);
    return other != nullptr && (other->perm & want) == want ? 0 : EACCES;
  }
  const Entry* mask = Find(acl, Tag::kMask);
  const uint32_t limit = mask != nullptr ? mask->perm : 7;
  return (matched->perm & limit & want) == want ? 0 : EACCES;
}

void Chmod(PosixAcl* acl, uint32_t mode) {
  if (Entry* e = Find(acl, Tag::kUserObj)) e->perm = static_cast<uint16_t>((mode >> 6) & 7);
  Entry* group_class = Find(acl, Tag::kMask);
  if (group_class == nullptr) group_class = Find(acl, Tag::kGroupObj);
  if (group_class != nullptr) group_class->perm = static_cast<uint16_t>((mode >> 3) & 7);
  if (Entry* e = Find(acl, Tag::kOther)) e->perm = static_cast<uint16_t>(mode & 7);
}

NewInodeAcl ForNewInode(const PosixAcl* parent_default, uint32_t mode, uint32_t umask) {
  NewInodeAcl out{mode, std::nullopt, std::nullopt};
  if (S_ISLNK(mode)) return out;  // a symlink's bits are 0777 and mean nothing
  if (parent_default == nullptr) {
    out.mode = mode & ~(umask & 0777);
    return out;
  }
  if (S_ISDIR(mode)) out.default_acl = *parent_default;
  // __posix_acl_create: each class entry is limited by the requested bits, and the mode
  // by what the entries leave.
  PosixAcl access = *parent_default;
  uint32_t bits = mode & 0777;
  Entry* user_obj = Find(&access, Tag::kUserObj);
  Entry* other = Find(&access, Tag::kOther);
  Entry* mask = Find(&access, Tag::kMask);
  Entry* group_class = mask != nullptr ? mask : Find(&access, Tag::kGroupObj);
  user_obj->perm &= static_cast<uint16_t>((bits >> 6) & 7);
  other->perm &= static_cast<uint16_t>(bits & 7);
  group_class->perm &= static_cast<uint16_t>((bits >> 3) & 7);
  bits = (uint32_t{user_obj->perm} << 6) | (uint32_t{group_class->perm} << 3) | other->perm;
  out.mode = (mode & ~0777u) | bits;
  if (!ModeOf(access).equivalent) out.access = std::move(access);
  return out;
}

}  // namespace dpmfs::meta::acl
