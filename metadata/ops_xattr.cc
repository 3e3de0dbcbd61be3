// The xattr family (meta_ops.h): getxattr, listxattr, setxattr, removexattr.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"
#include "metadata/permissions.h"
#include "metadata/posix_acl.h"

namespace dpmfs::meta {

namespace {

bool IsAclName(std::string_view name) {
  return name == acl::kAccessXattr || name == acl::kDefaultXattr;
}

int XattrNameError(const std::string& name) {
  // Linux: an empty name or one over XATTR_NAME_MAX is ERANGE.
  if (name.empty() || name.size() > kMaxXattrNameLength) return ERANGE;
  // A C string cannot hold one; listxattr's NUL-separated list could not either.
  if (name.find('\0') != std::string::npos) return EINVAL;
  // Only the namespaces Linux file systems store: of "system.", the two ACLs; an unknown
  // prefix is EOPNOTSUPP as the VFS says for a local file system (FUSE leaves that check
  // to us).
  auto has_prefix = [&](std::string_view p) { return name.compare(0, p.size(), p) == 0; };
  if (!has_prefix("user.") && !has_prefix("trusted.") && !has_prefix("security.") &&
      !IsAclName(name)) {
    return EOPNOTSUPP;
  }
  return 0;
}

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

perm::Object AclXattrs::SubjectOf(const Inode& in) {
  if (in.xattrs.empty()) return perm::Object(in.attr);  // the common case: no lookup at all
  auto it = in.xattrs.find(acl::kAccessXattr);
  if (it == in.xattrs.end()) return perm::Object(in.attr);
  Result<acl::PosixAcl> a = acl::Decode(AsBytes(it->second));
  return perm::Object(in.attr, a.ok() ? std::move(*a) : acl::FromMode(in.attr.mode & 0700));
}

std::optional<acl::PosixAcl> AclXattrs::Stored(const Inode& in, std::string_view name) {
  auto it = in.xattrs.find(name);
  if (it == in.xattrs.end()) return std::nullopt;
  Result<acl::PosixAcl> a = acl::Decode(AsBytes(it->second));
  if (!a.ok()) return std::nullopt;  // validated when set: only damage gets here
  return std::move(*a);
}

void AclXattrs::Put(Inode* in, std::string_view name, std::string value) {
  auto it = in->xattrs.find(name);
  if (it != in->xattrs.end()) {
    it->second = std::move(value);
    return;
  }
  in->xattr_list_bytes += name.size() + 1;
  in->xattrs.emplace(std::string(name), std::move(value));
}

void AclXattrs::Drop(Inode* in, std::string_view name) {
  auto it = in->xattrs.find(name);
  if (it == in->xattrs.end()) return;
  in->xattr_list_bytes -= it->first.size() + 1;
  in->xattrs.erase(it);
}

// Linux ignores XATTR_CREATE and XATTR_REPLACE for ACLs (vfs_set_acl), and so do we.
int AclXattrs::Set(Inode* in, const SetxattrRequest& req, const Credentials& caller) {
  Result<acl::PosixAcl> a = acl::Decode(AsBytes(req.value));
  if (!a.ok()) return EINVAL;
  const bool is_default = req.name == acl::kDefaultXattr;
  if (is_default && !in->is_dir()) return EACCES;
  // An access ACL sets the mode's permission bits (and drops set-group-ID for a caller
  // outside the file's group), and is stored only when it says more than the mode.
  const acl::ImpliedMode implied = acl::ModeOf(*a);
  const bool store = is_default || !implied.equivalent;
  // A new name must fit listxattr's limit as any other (the reply could not carry it).
  if (store && in->xattrs.find(req.name) == in->xattrs.end() &&
      in->xattr_list_bytes + req.name.size() + 1 > kMaxXattrListLength) {
    return ENOSPC;
  }
  if (!is_default) {
    uint32_t mode = (in->attr.mode & ~0777u) | implied.bits;
    if (!perm::IsRoot(caller) && !perm::InGroup(caller, in->attr.gid)) mode &= ~uint32_t{S_ISGID};
    in->attr.mode = mode;
  }
  if (store) {
    Put(in, req.name, Bytes(acl::Encode(*a)));
  } else {
    Drop(in, req.name);
  }
  return 0;
}

void AclXattrs::Inherit(const Inode& dir, uint32_t umask, Inode* in) {
  if (S_ISLNK(in->attr.mode)) return;
  std::optional<acl::PosixAcl> def = Stored(dir, acl::kDefaultXattr);
  // Without a default ACL the umask applies (0 from a client whose kernel applied it);
  // with one, the ACL replaces it.
  acl::NewInodeAcl got = acl::ForNewInode(def ? &*def : nullptr, in->attr.mode, umask);
  in->attr.mode = got.mode;
  if (got.access) Put(in, acl::kAccessXattr, Bytes(acl::Encode(*got.access)));
  if (got.default_acl) Put(in, acl::kDefaultXattr, Bytes(acl::Encode(*got.default_acl)));
}

void AclXattrs::Chmod(Inode* in) {
  std::optional<acl::PosixAcl> a = Stored(*in, acl::kAccessXattr);
  if (!a) return;
  acl::Chmod(&*a, in->attr.mode);
  Put(in, acl::kAccessXattr, Bytes(acl::Encode(*a)));
}

// Who may read and write which namespace (Linux's xattr_permission: user.* only on
// regular files and directories and as the file's modes, trusted.* and security.*
// writes only by root) is perm::MayXattr. The kernel checks it before a FUSE request
// is sent; the server checks it for every client.

int Namespace::ReadGetxattr(const GetxattrRequest& req, const Credentials& caller,
                            GetxattrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (int e = XattrNameError(req.name)) return e;
  if (int e = perm::MayXattr(caller, AclXattrs::SubjectOf(*in), req.name, false)) return e;
  auto it = in->xattrs.find(req.name);
  if (it == in->xattrs.end()) return ENODATA;
  reply->value = it->second;
  return 0;
}

int Namespace::ReadListxattr(const ListxattrRequest& req, const Credentials& caller,
                             ListxattrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  for (const auto& [name, value] : in->xattrs) {
    if (perm::MayListXattr(caller, name)) reply->names.push_back(name);
  }
  return 0;
}

int Namespace::DoSetxattr(const SetxattrRequest& req, OpContext& ctx, EmptyReply*) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (req.flags & ~uint32_t{XATTR_CREATE | XATTR_REPLACE}) return EINVAL;
  if (int e = XattrNameError(req.name)) return e;
  if (int e = perm::MayXattr(ctx.caller, AclXattrs::SubjectOf(*in), req.name, true)) return e;
  if (req.value.size() > kMaxXattrValueLength) return E2BIG;
  if (IsAclName(req.name)) {
    if (ctx.metadata_full) return ENOSPC;
    if (int e = AclXattrs::Set(in, req, ctx.caller)) return e;
    in->attr.ctime = ctx.now;
    return 0;
  }
  auto it = in->xattrs.find(req.name);
  const bool exists = it != in->xattrs.end();
  if ((req.flags & XATTR_CREATE) && exists) return EEXIST;
  if ((req.flags & XATTR_REPLACE) && !exists) return ENODATA;
  if (!exists) {
    if (in->xattr_list_bytes + req.name.size() + 1 > kMaxXattrListLength) return ENOSPC;
    if (ctx.metadata_full) return ENOSPC;
    in->xattr_list_bytes += req.name.size() + 1;
    in->xattrs.emplace(req.name, req.value);
  } else {
    if (ctx.metadata_full && req.value.size() > it->second.size()) return ENOSPC;
    it->second = req.value;
  }
  in->attr.ctime = ctx.now;
  return 0;
}

int Namespace::DoRemovexattr(const RemovexattrRequest& req, OpContext& ctx, EmptyReply*) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (int e = XattrNameError(req.name)) return e;
  if (int e = perm::MayRemoveXattr(ctx.caller, AclXattrs::SubjectOf(*in), req.name)) return e;
  auto it = in->xattrs.find(req.name);
  if (it == in->xattrs.end()) return ENODATA;
  in->xattr_list_bytes -= it->first.size() + 1;
  in->xattrs.erase(it);
  in->attr.ctime = ctx.now;
  return 0;
}

}  // namespace dpmfs::meta
