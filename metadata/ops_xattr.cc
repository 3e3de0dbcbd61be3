// The xattr family (meta_ops.h): getxattr, listxattr, setxattr, removexattr.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <string>
#include <string_view>

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"
#include "metadata/permissions.h"

namespace dpmfs::meta {

namespace {

int XattrNameError(const std::string& name) {
  // Linux: an empty name or one over XATTR_NAME_MAX is ERANGE.
  if (name.empty() || name.size() > kMaxXattrNameLength) return ERANGE;
  // A C string cannot hold one; listxattr's NUL-separated list could not either.
  if (name.find('\0') != std::string::npos) return EINVAL;
  // Only the namespaces Linux file systems store; "system." would be ACLs, which dpmfs
  // does not implement, and an unknown prefix is EOPNOTSUPP as the VFS says for a local
  // file system (FUSE leaves that check to us).
  auto has_prefix = [&](std::string_view p) { return name.compare(0, p.size(), p) == 0; };
  if (!has_prefix("user.") && !has_prefix("trusted.") && !has_prefix("security.")) {
    return EOPNOTSUPP;
  }
  return 0;
}

}  // namespace

// Who may read and write which namespace (Linux's xattr_permission: user.* only on
// regular files and directories and as the file's modes, trusted.* and security.*
// writes only by root) is perm::MayXattr. The kernel checks it before a FUSE request
// is sent; the server checks it for every client.

int Namespace::ReadGetxattr(const GetxattrRequest& req, const Credentials& caller,
                            GetxattrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (int e = XattrNameError(req.name)) return e;
  if (int e = perm::MayXattr(caller, in->attr, req.name, false)) return e;
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
  if (int e = perm::MayXattr(ctx.caller, in->attr, req.name, true)) return e;
  if (req.value.size() > kMaxXattrValueLength) return E2BIG;
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
  if (int e = perm::MayRemoveXattr(ctx.caller, in->attr, req.name)) return e;
  auto it = in->xattrs.find(req.name);
  if (it == in->xattrs.end()) return ENODATA;
  in->xattr_list_bytes -= it->first.size() + 1;
  in->xattrs.erase(it);
  in->attr.ctime = ctx.now;
  return 0;
}

}  // namespace dpmfs::meta
