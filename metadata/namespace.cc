// Namespace: dispatch, sessions and the entry operations (everything but file data,
// which is in namespace_files.cc). Every mutation validates completely before it
// changes anything: see namespace.h for why replay depends on it.
#include "metadata/namespace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "metadata/namespace_internal.h"

namespace dpmfs::meta {

namespace {

constexpr uint32_t kPermBits = 07777;

// Decodes `payload` as Req, runs fn(req, &reply) and encodes its answer.
template <class Req, class Rep, class Fn>
Result<std::vector<uint8_t>> RunOp(std::span<const uint8_t> payload, int* err, Fn&& fn) {
  Req req;
  Status st = Decode(payload, &req);
  if (!st.ok()) return st;
  Rep rep;
  *err = fn(req, &rep);
  if (*err != 0) return EncodeErrorReply(*err);
  return EncodeReply(rep);
}

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

Timespec NowTimespec() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Timespec{static_cast<int64_t>(ts.tv_sec), static_cast<uint32_t>(ts.tv_nsec)};
}

Namespace::Namespace(NamespaceConfig config)
    : config_(std::move(config)), quarantine_(config_.pools.size()) {
  for (const DataPoolGeometry& p : config_.pools) {
    allocators_.emplace_back(p.index, p.data_size, p.block_size);
    scrub_queue_.emplace_back();
    scrub_queued_.push_back(0);
    scrubbing_.push_back(0);
  }
  auto root = std::make_unique<Inode>();
  root->attr.ino = kRootInode;
  root->attr.generation = 1;
  root->attr.mode = S_IFDIR | 0755;
  root->attr.nlink = 2;
  root->attr.atime = root->attr.mtime = root->attr.ctime = config_.root_time;
  root->parent = kRootInode;
  root->dir = std::make_unique<Directory>();
  inodes_.emplace(kRootInode, std::move(root));
}

Namespace::~Namespace() = default;

// ---------------------------------------------------------------------------------------
// Dispatch

Result<std::vector<uint8_t>> Namespace::Mutate(uint16_t op, std::span<const uint8_t> payload,
                                               OpContext& ctx, int* err_out) {
  int err = 0;
  Result<std::vector<uint8_t>> r = Status::InvalidArgument("unset");
  auto empty = [&](auto tag, auto&& fn) {
    using Req = decltype(tag);
    return RunOp<Req, EmptyReply>(payload, &err,
                                  [&](const Req& req, EmptyReply*) { return fn(req); });
  };
  switch (static_cast<Opcode>(op)) {
    case Opcode::kRegister:
      r = RunOp<RegisterRequest, RegisterReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoRegister(q, ctx, p); });
      break;
    case Opcode::kUnregister:
      r = empty(UnregisterRequest{}, [&](const auto&) { return DoUnregister(ctx); });
      break;
    case Opcode::kSetattr:
      r = RunOp<SetattrRequest, AttrReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoSetattr(q, ctx, p); });
      break;
    case Opcode::kCreate:
      r = RunOp<CreateRequest, CreateReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoCreate(q, ctx, p); });
      break;
    case Opcode::kMkdir:
      r = RunOp<MkdirRequest, EntryReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoMkdir(q, ctx, p); });
      break;
    case Opcode::kMknod:
      r = RunOp<MknodRequest, EntryReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoMknod(q, ctx, p); });
      break;
    case Opcode::kSymlink:
      r = RunOp<SymlinkRequest, EntryReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoSymlink(q, ctx, p); });
      break;
    case Opcode::kLink:
      r = RunOp<LinkRequest, EntryReply>(payload, &err,
                                         [&](const auto& q, auto* p) { return DoLink(q, ctx, p); });
      break;
    case Opcode::kUnlink:
      r = RunOp<UnlinkRequest, DirsReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoUnlink(q, ctx, p); });
      break;
    case Opcode::kRmdir:
      r = RunOp<UnlinkRequest, DirsReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoRmdir(q, ctx, p); });
      break;
    case Opcode::kRename:
      r = RunOp<RenameRequest, DirsReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoRename(q, ctx, p); });
      break;
    case Opcode::kOpen:
      r = RunOp<OpenRequest, OpenReply>(payload, &err,
                                        [&](const auto& q, auto* p) { return DoOpen(q, ctx, p); });
      break;
    case Opcode::kRelease:
      r = empty(ReleaseRequest{}, [&](const auto& q) { return DoRelease(q, ctx); });
      break;
    case Opcode::kReleaseMany:
      r = RunOp<ReleaseManyRequest, ReleaseManyReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoReleaseMany(q, ctx, p); });
      break;
    case Opcode::kSetxattr:
      r = empty(SetxattrRequest{}, [&](const auto& q) { return DoSetxattr(q, ctx); });
      break;
    case Opcode::kRemovexattr:
      r = empty(RemovexattrRequest{}, [&](const auto& q) { return DoRemovexattr(q, ctx); });
      break;
    case Opcode::kAllocate:
      r = RunOp<AllocateRequest, AllocateReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoAllocate(q, ctx, p); });
      break;
    case Opcode::kCommit:
      r = RunOp<CommitRequest, AttrReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoCommit(q, ctx, p); });
      break;
    case Opcode::kFallocate:
      r = RunOp<FallocateRequest, AttrReply>(
          payload, &err, [&](const auto& q, auto* p) { return DoFallocate(q, ctx, p); });
      break;
    default:
      if (op == kOpExpireSession) {
        if (payload.size() != 8) {
          return Status::InvalidArgument("expire-session record payload has " +
                                         std::to_string(payload.size()) + " bytes, not 8");
        }
        uint64_t session = 0;
        for (int i = 0; i < 8; ++i) session |= uint64_t{payload[i]} << (8 * i);
        err = DoExpire(session, ctx);
        r = err != 0 ? EncodeErrorReply(err) : EncodeReply(EmptyReply{});
        break;
      }
      return Status::InvalidArgument("opcode " + std::to_string(op) + " is not a mutation");
  }
  if (!r.ok()) return r;
  if (err_out != nullptr) *err_out = err;
  // An ENOSPC the caller will retry once quarantined space is released is not the
  // answer yet: caching it would let a re-sent request see a reply never journaled.
  if (ctx.retry_at_ms != 0) return r;
  // Unregister ended the session: caching its reply would bring it back.
  if (ctx.session != 0 && static_cast<Opcode>(op) != Opcode::kUnregister) {
    CacheReply(ctx.session, ctx.seq, *r);
    // A client that sends mutations is alive: renew its lease (this also gives a
    // session that came back after expiring, or never registered, a live lease).
    if (ctx.lease_deadline_ms != 0) {
      SessionFor(ctx.session)
          .lease_deadline_ms.store(ctx.lease_deadline_ms, std::memory_order_relaxed);
    }
  }
  return r;
}

Result<std::vector<uint8_t>> Namespace::Read(uint16_t op, std::span<const uint8_t> payload) const {
  int err = 0;
  switch (static_cast<Opcode>(op)) {
    case Opcode::kLookup:
      return RunOp<LookupRequest, EntryReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadLookup(q, p); });
    case Opcode::kGetattr:
      return RunOp<GetattrRequest, AttrReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadGetattr(q, p); });
    case Opcode::kReadlink:
      return RunOp<ReadlinkRequest, ReadlinkReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadReadlink(q, p); });
    case Opcode::kReaddir:
      return RunOp<ReaddirRequest, ReaddirReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadReaddir(q, p); });
    case Opcode::kStatfs:
      return RunOp<StatfsRequest, StatfsReply>(payload, &err,
                                               [&](const auto&, auto* p) { return ReadStatfs(p); });
    case Opcode::kGetxattr:
      return RunOp<GetxattrRequest, GetxattrReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadGetxattr(q, p); });
    case Opcode::kListxattr:
      return RunOp<ListxattrRequest, ListxattrReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadListxattr(q, p); });
    case Opcode::kLayout:
      return RunOp<LayoutRequest, LayoutReply>(
          payload, &err, [&](const auto& q, auto* p) { return ReadLayout(q, p); });
    default:
      return Status::InvalidArgument("opcode " + std::to_string(op) + " is not a read");
  }
}

// ---------------------------------------------------------------------------------------
// Sessions and the reply cache

Session& Namespace::SessionFor(uint64_t id) {
  auto& s = sessions_[id];
  if (!s) s = std::make_unique<Session>();
  return *s;
}

Session* Namespace::FindSession(uint64_t id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

const Session* Namespace::FindSession(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

std::vector<uint64_t> Namespace::ExpiredSessions(int64_t now_ms) const {
  std::vector<uint64_t> out;
  for (const auto& [id, s] : sessions_) {
    if (s->lease_deadline_ms.load(std::memory_order_relaxed) <= now_ms) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Namespace::RenewAllLeases(int64_t deadline_ms) {
  for (auto& [id, s] : sessions_) s->lease_deadline_ms.store(deadline_ms);
}

void Namespace::ExtendAllLeases(int64_t ms) {
  for (auto& [id, s] : sessions_) s->lease_deadline_ms.fetch_add(ms, std::memory_order_relaxed);
}

void Namespace::CacheReply(uint64_t session, uint64_t seq, std::vector<uint8_t> reply) {
  Session& s = SessionFor(session);
  s.replies[seq] = std::move(reply);
  while (s.replies.size() > config_.reply_cache_entries) {
    s.evicted_max = std::max(s.evicted_max, s.replies.begin()->first);
    s.replies.erase(s.replies.begin());
  }
}

std::optional<std::vector<uint8_t>> Namespace::CachedReply(uint64_t session, uint64_t seq,
                                                           bool* too_old) const {
  *too_old = false;
  const Session* s = FindSession(session);
  if (s == nullptr) return std::nullopt;
  auto it = s->replies.find(seq);
  if (it != s->replies.end()) return it->second;
  *too_old = seq <= s->evicted_max;
  return std::nullopt;
}

int Namespace::DoRegister(const RegisterRequest& req, OpContext& ctx, RegisterReply* reply) {
  if (ctx.session == 0) return EINVAL;
  Session& s = SessionFor(ctx.session);
  s.client_name = req.client_name;
  if (ctx.lease_deadline_ms != 0) s.lease_deadline_ms.store(ctx.lease_deadline_ms);
  reply->lease_ms = config_.lease_ms;
  reply->cluster = config_.cluster;
  return 0;
}

int Namespace::DoUnregister(OpContext& ctx) { return DoExpire(ctx.session, ctx); }

int Namespace::DoExpire(uint64_t id, OpContext& ctx) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return 0;
  Session& s = *it->second;
  while (!s.handles.empty()) CloseHandle(s, s.handles.begin()->first, ctx);
  sessions_.erase(it);
  return 0;
}

uint64_t Namespace::OpenHandle(Inode& inode, OpContext& ctx) {
  uint64_t h = next_handle_++;
  Session& s = SessionFor(ctx.session);
  s.handles.emplace(h, inode.attr.ino);
  handle_session_.emplace(h, ctx.session);
  ++inode.open_count;
  return h;
}

void Namespace::CloseHandle(Session& s, uint64_t handle, const OpContext& ctx) {
  auto it = s.handles.find(handle);
  if (it == s.handles.end()) return;
  InodeId ino = it->second;
  s.handles.erase(it);
  handle_session_.erase(handle);
  Inode* inode = Find(ino);
  if (inode == nullptr) return;
  if (--inode->open_count == 0) {
    if (inode->is_reg()) TrimSpeculative(*inode, ctx);
    MaybeFree(*inode, ctx);
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

Namespace::Inode* Namespace::Find(InodeId ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

const Namespace::Inode* Namespace::Find(InodeId ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

int Namespace::FindDir(InodeId ino, Inode** out) {
  Inode* in = Find(ino);
  if (in == nullptr) return ENOENT;
  if (!in->is_dir()) return ENOTDIR;
  *out = in;
  return 0;
}

int Namespace::FindDir(InodeId ino, const Inode** out) const {
  const Inode* in = Find(ino);
  if (in == nullptr) return ENOENT;
  if (!in->is_dir()) return ENOTDIR;
  *out = in;
  return 0;
}

InodeAttr Namespace::AttrOf(const Inode& inode) const {
  InodeAttr a = inode.attr;
  a.blocks = inode.extents.allocated_bytes() / 512;
  return a;
}

Namespace::Inode& Namespace::NewInode(uint32_t mode, uint32_t uid, uint32_t gid, uint64_t rdev,
                                      OpContext& ctx) {
  auto in = std::make_unique<Inode>();
  in->attr.ino = next_ino_++;
  in->attr.generation = next_generation_++;
  in->attr.mode = mode;
  in->attr.uid = uid;
  in->attr.gid = gid;
  in->attr.rdev = rdev;
  in->attr.atime = in->attr.mtime = in->attr.ctime = ctx.now;
  Inode& ref = *in;
  inodes_.emplace(ref.attr.ino, std::move(in));
  return ref;
}

void Namespace::AddEntry(Inode& dir, const std::string& name, InodeId ino) {
  Directory& d = *dir.dir;
  uint64_t cookie = d.next_cookie++;
  auto [it, inserted] = d.by_name.emplace(name, Directory::Entry{ino, cookie});
  (void)inserted;  // validated by every caller
  d.by_cookie.emplace(cookie, &*it);
}

void Namespace::RemoveEntry(Inode& dir, const std::string& name) {
  Directory& d = *dir.dir;
  auto it = d.by_name.find(name);
  if (it == d.by_name.end()) return;
  d.by_cookie.erase(it->second.cookie);
  d.by_name.erase(it);
}

void Namespace::MaybeFree(Inode& inode, const OpContext& ctx) {
  if (inode.attr.nlink == 0 && inode.open_count == 0) FreeInode(inode.attr.ino, ctx);
}

void Namespace::FreeInode(InodeId ino, const OpContext& ctx) {
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  std::vector<PoolRange> freed;
  it->second->extents.ForEach([&](const Extent& e) {
    freed.push_back(PoolRange{e.server, e.pool_offset, e.length});
  });
  FreeRanges(freed, ctx);
  inodes_.erase(it);
}

bool Namespace::IsAncestor(InodeId ancestor, InodeId ino) const {
  for (InodeId cur = ino;;) {
    if (cur == ancestor) return true;
    const Inode* in = Find(cur);
    if (in == nullptr || in->parent == cur || in->parent == 0) return false;
    cur = in->parent;
  }
}

void Namespace::Touch(Inode& inode, const Timespec& now, bool mtime, bool ctime) {
  if (mtime) inode.attr.mtime = now;
  if (ctime) inode.attr.ctime = now;
}

// Linux's inode_init_owner: in a set-group-ID directory a new inode takes the
// directory's group rather than the creator's, and a new directory keeps the bit so
// that the rule reaches the whole subtree. Decided here, not by the client, so every
// client gets the same result. (The other half of the kernel's rule, dropping
// set-group-ID from a new file whose creator is outside the group, needs the
// creator's supplementary groups: the kernel applies it before the request is sent,
// mode_strip_sgid.)
static void InheritGroup(const InodeAttr& dir, uint32_t* mode, uint32_t* gid) {
  if ((dir.mode & S_ISGID) == 0) return;
  *gid = dir.gid;
  if (S_ISDIR(*mode)) *mode |= S_ISGID;
}

// ---------------------------------------------------------------------------------------
// Reads

int Namespace::ReadLookup(const LookupRequest& req, EntryReply* reply) const {
  const Inode* dir = nullptr;
  if (int e = FindDir(req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  auto it = dir->dir->by_name.find(req.name);
  if (it == dir->dir->by_name.end()) return ENOENT;
  const Inode* in = Find(it->second.ino);
  if (in == nullptr) return EIO;  // CheckInvariants rules this out
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::ReadGetattr(const GetattrRequest& req, AttrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::ReadReadlink(const ReadlinkRequest& req, ReadlinkReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (!S_ISLNK(in->attr.mode)) return EINVAL;
  reply->target = in->symlink;
  return 0;
}

int Namespace::ReadReaddir(const ReaddirRequest& req, ReaddirReply* reply) const {
  const Inode* dir = nullptr;
  if (int e = FindDir(req.ino, &dir)) return e;
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

// Linux keeps user.* xattrs to regular files and directories (fs/xattr.c,
// xattr_permission): elsewhere setting or removing one is EPERM, reading one ENODATA.
// The kernel checks this before a FUSE request is sent; this is for other clients.
static bool UserXattrRefused(const std::string& name, uint32_t mode) {
  return name.compare(0, 5, "user.") == 0 && !S_ISREG(mode) && !S_ISDIR(mode);
}

int Namespace::ReadGetxattr(const GetxattrRequest& req, GetxattrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (int e = XattrNameError(req.name)) return e;
  if (UserXattrRefused(req.name, in->attr.mode)) return ENODATA;
  auto it = in->xattrs.find(req.name);
  if (it == in->xattrs.end()) return ENODATA;
  reply->value = it->second;
  return 0;
}

int Namespace::ReadListxattr(const ListxattrRequest& req, ListxattrReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  for (const auto& [name, value] : in->xattrs) reply->names.push_back(name);
  return 0;
}

// ---------------------------------------------------------------------------------------
// Mutations

int Namespace::DoSetattr(const SetattrRequest& req, OpContext& ctx, AttrReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  const uint32_t v = req.valid;
  if (v & SetattrRequest::kAccessed) {
    if (v != (SetattrRequest::kAccessed | SetattrRequest::kAtime)) return EINVAL;
    if (req.atime > in->attr.atime) in->attr.atime = req.atime;
    reply->attr = AttrOf(*in);
    return 0;
  }
  if (v & SetattrRequest::kSize) {
    if (in->is_dir()) return EISDIR;
    if (!in->is_reg()) return EINVAL;
    if (req.size > kMaxFileSize) return EFBIG;
  }
  if (v & SetattrRequest::kMode) {
    in->attr.mode = (in->attr.mode & S_IFMT) | (req.mode & kPermBits);
  }
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
  if (int e = FindDir(req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  const uint32_t type = req.mode & S_IFMT;
  if (type != 0 && type != S_IFREG) return EINVAL;
  auto it = dir->dir->by_name.find(req.name);
  if (it != dir->dir->by_name.end()) {
    if (req.flags & O_EXCL) return EEXIST;
    Inode* in = Find(it->second.ino);
    if (in == nullptr) return EIO;
    if (in->is_dir()) return EISDIR;
    if ((req.flags & O_TRUNC) && in->is_reg()) {
      Truncate(*in, 0, ctx);
      Touch(*in, ctx.now, true, true);
    }
    reply->handle = OpenHandle(*in, ctx);
    reply->attr = AttrOf(*in);
    reply->created = false;
    return 0;
  }
  if (dir->attr.nlink == 0) return ENOENT;  // a removed directory takes no new names
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  uint32_t mode = S_IFREG | (req.mode & kPermBits);
  uint32_t gid = req.gid;
  InheritGroup(dir->attr, &mode, &gid);
  Inode& in = NewInode(mode, req.uid, gid, 0, ctx);
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
  if (int e = FindDir(req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  if (dir->dir->by_name.count(req.name)) return EEXIST;
  if (dir->attr.nlink == 0) return ENOENT;
  if (dir->attr.nlink >= kMaxLinks) return EMLINK;
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  uint32_t mode = S_IFDIR | (req.mode & kPermBits);
  uint32_t gid = req.gid;
  InheritGroup(dir->attr, &mode, &gid);
  Inode& in = NewInode(mode, req.uid, gid, 0, ctx);
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
  if (int e = FindDir(req.parent, &dir)) return e;
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
  if (dir->dir->by_name.count(req.name)) return EEXIST;
  if (dir->attr.nlink == 0) return ENOENT;
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  const uint64_t rdev = (type == S_IFCHR || type == S_IFBLK) ? req.rdev : 0;
  uint32_t mode = type | (req.mode & kPermBits);
  uint32_t gid = req.gid;
  InheritGroup(dir->attr, &mode, &gid);
  Inode& in = NewInode(mode, req.uid, gid, rdev, ctx);
  in.attr.nlink = 1;
  AddEntry(*dir, req.name, in.attr.ino);
  Touch(*dir, ctx.now, true, true);
  reply->attr = AttrOf(in);
  reply->dirs = {AttrOf(*dir)};
  return 0;
}

int Namespace::DoSymlink(const SymlinkRequest& req, OpContext& ctx, EntryReply* reply) {
  Inode* dir = nullptr;
  if (int e = FindDir(req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  if (req.target.empty()) return ENOENT;  // as symlink(2)
  if (req.target.size() > kMaxSymlinkLength) return ENAMETOOLONG;
  if (req.target.find('\0') != std::string::npos) return EINVAL;
  if (dir->dir->by_name.count(req.name)) return EEXIST;
  if (dir->attr.nlink == 0) return ENOENT;
  if (ctx.metadata_full || inodes_.size() >= config_.max_inodes) return ENOSPC;
  uint32_t mode = S_IFLNK | 0777;
  uint32_t gid = req.gid;
  InheritGroup(dir->attr, &mode, &gid);
  Inode& in = NewInode(mode, req.uid, gid, 0, ctx);
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
  if (int e = FindDir(req.new_parent, &dir)) return e;
  if (int e = CheckName(req.new_name)) return e;
  if (in->is_dir()) return EPERM;
  if (dir->dir->by_name.count(req.new_name)) return EEXIST;
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
  if (int e = FindDir(req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  auto it = dir->dir->by_name.find(req.name);
  if (it == dir->dir->by_name.end()) return ENOENT;
  Inode* in = Find(it->second.ino);
  if (in == nullptr) return EIO;
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
  if (int e = FindDir(req.parent, &dir)) return e;
  if (int e = CheckName(req.name)) return e;
  auto it = dir->dir->by_name.find(req.name);
  if (it == dir->dir->by_name.end()) return ENOENT;
  Inode* in = Find(it->second.ino);
  if (in == nullptr) return EIO;
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
  if (int e = FindDir(req.parent, &sdir)) return e;
  if (int e = FindDir(req.new_parent, &ddir)) return e;
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

int Namespace::DoOpen(const OpenRequest& req, OpContext& ctx, OpenReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (in->is_dir() && ((req.flags & O_ACCMODE) != O_RDONLY || (req.flags & O_TRUNC))) {
    return EISDIR;
  }
  if ((req.flags & O_TRUNC) && in->is_reg()) {
    Truncate(*in, 0, ctx);
    Touch(*in, ctx.now, true, true);
  }
  reply->handle = OpenHandle(*in, ctx);
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::DoRelease(const ReleaseRequest& req, OpContext& ctx) {
  auto hs = handle_session_.find(req.handle);
  if (hs == handle_session_.end()) return EBADF;
  Session* s = FindSession(hs->second);
  if (s == nullptr) return EBADF;
  auto it = s->handles.find(req.handle);
  if (it == s->handles.end()) return EBADF;
  if (it->second != req.ino) return EINVAL;
  CloseHandle(*s, req.handle, ctx);
  return 0;
}

int Namespace::DoReleaseMany(const ReleaseManyRequest& req, OpContext& ctx,
                             ReleaseManyReply* reply) {
  for (const ReleaseRequest& r : req.handles) {
    if (DoRelease(r, ctx) != 0) ++reply->refused;
  }
  return 0;  // never an errno: the journal must replay exactly what was released
}

int Namespace::DoSetxattr(const SetxattrRequest& req, OpContext& ctx) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (req.flags & ~uint32_t{XATTR_CREATE | XATTR_REPLACE}) return EINVAL;
  if (int e = XattrNameError(req.name)) return e;
  if (UserXattrRefused(req.name, in->attr.mode)) return EPERM;
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

int Namespace::DoRemovexattr(const RemovexattrRequest& req, OpContext& ctx) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (int e = XattrNameError(req.name)) return e;
  if (UserXattrRefused(req.name, in->attr.mode)) return EPERM;
  auto it = in->xattrs.find(req.name);
  if (it == in->xattrs.end()) return ENODATA;
  in->xattr_list_bytes -= it->first.size() + 1;
  in->xattrs.erase(it);
  in->attr.ctime = ctx.now;
  return 0;
}

// ---------------------------------------------------------------------------------------
// Invariants

Status Namespace::CheckInvariants() const {
  auto fail = [](std::string m) { return Status::Internal(std::move(m)); };
  const Inode* root = Find(kRootInode);
  if (root == nullptr || !root->is_dir()) return fail("the root directory (inode 1) is missing");
  std::unordered_map<InodeId, uint32_t> names;  // entries naming each inode
  std::unordered_map<InodeId, uint32_t> subdirs;
  names.reserve(inodes_.size());
  std::vector<uint64_t> used(allocators_.size(), 0);
  for (const auto& [ino, in] : inodes_) {
    if (in->attr.ino != ino)
      return fail("inode " + std::to_string(ino) + " carries number " +
                  std::to_string(in->attr.ino));
    if (ino >= next_ino_)
      return fail("inode " + std::to_string(ino) +
                  " is at or past the "
                  "next inode number " +
                  std::to_string(next_ino_));
    if (in->is_dir() != (in->dir != nullptr)) {
      return fail("inode " + std::to_string(ino) +
                  " has a directory table that does not "
                  "match its type");
    }
    if (in->is_dir()) {
      const Directory& d = *in->dir;
      if (d.by_cookie.size() != d.by_name.size()) {
        return fail("directory " + std::to_string(ino) + " has " +
                    std::to_string(d.by_name.size()) + " names but " +
                    std::to_string(d.by_cookie.size()) + " cookies");
      }
      for (const auto& [name, e] : d.by_name) {
        const Inode* child = Find(e.ino);
        if (child == nullptr) {
          return fail("entry '" + name + "' of directory " + std::to_string(ino) +
                      " names missing inode " + std::to_string(e.ino));
        }
        if (e.cookie >= d.next_cookie) {
          return fail("entry '" + name + "' of directory " + std::to_string(ino) + " has cookie " +
                      std::to_string(e.cookie) + " past the next cookie");
        }
        auto c = d.by_cookie.find(e.cookie);
        if (c == d.by_cookie.end() || c->second->first != name) {
          return fail("entry '" + name + "' of directory " + std::to_string(ino) +
                      " is missing from the cookie order");
        }
        if (e.ino == kRootInode)
          return fail("directory " + std::to_string(ino) + " names the root");
        ++names[e.ino];
        if (child->is_dir()) {
          ++subdirs[ino];
          if (child->parent != ino) {
            return fail("directory " + std::to_string(e.ino) + " is named in " +
                        std::to_string(ino) + " but records parent " +
                        std::to_string(child->parent));
          }
        }
      }
    }
    if (!in->is_reg() && !in->extents.empty()) {
      return fail("inode " + std::to_string(ino) + " is not a regular file but has extents");
    }
    uint64_t xbytes = 0;
    for (const auto& [n, v] : in->xattrs) xbytes += n.size() + 1;
    if (xbytes != in->xattr_list_bytes) {
      return fail("inode " + std::to_string(ino) + " xattr size accounting is off");
    }
    Status bad;
    in->extents.ForEach([&](const Extent& e) {
      if (!bad.ok()) return;
      if (e.server >= used.size()) {
        bad = fail("inode " + std::to_string(ino) + " has an extent on data server " +
                   std::to_string(e.server) + " of " + std::to_string(used.size()));
        return;
      }
      used[e.server] += e.length;
    });
    if (!bad.ok()) return bad;
  }
  std::unordered_map<InodeId, uint32_t> opens;
  for (const auto& [sid, s] : sessions_) {
    for (const auto& [h, ino] : s->handles) {
      if (!inodes_.count(ino)) {
        return fail("handle " + std::to_string(h) + " of session " + std::to_string(sid) +
                    " names missing inode " + std::to_string(ino));
      }
      auto hs = handle_session_.find(h);
      if (hs == handle_session_.end() || hs->second != sid || h >= next_handle_) {
        return fail("handle " + std::to_string(h) + " is not indexed to session " +
                    std::to_string(sid));
      }
      ++opens[ino];
    }
  }
  size_t handles = 0;
  for (const auto& [sid, s] : sessions_) handles += s->handles.size();
  if (handles != handle_session_.size()) return fail("the handle index has stale handles");
  for (const auto& [ino, in] : inodes_) {
    const uint32_t n = names.count(ino) ? names[ino] : 0;
    const uint32_t o = opens.count(ino) ? opens[ino] : 0;
    if (in->open_count != o) {
      return fail("inode " + std::to_string(ino) + " counts " + std::to_string(in->open_count) +
                  " open handles, sessions hold " + std::to_string(o));
    }
    if (in->is_dir()) {
      if (ino == kRootInode) {
        if (n != 0) return fail("the root directory is named by an entry");
      } else if (in->attr.nlink == 0) {
        if (n != 0) return fail("removed directory " + std::to_string(ino) + " is still named");
      } else if (n != 1) {
        return fail("directory " + std::to_string(ino) + " is named " + std::to_string(n) +
                    " times");
      }
      const uint32_t want = in->attr.nlink == 0 ? 0 : 2 + (subdirs.count(ino) ? subdirs[ino] : 0);
      if (in->attr.nlink != want) {
        return fail("directory " + std::to_string(ino) + " has nlink " +
                    std::to_string(in->attr.nlink) + ", expected " + std::to_string(want));
      }
    } else if (in->attr.nlink != n) {
      return fail("inode " + std::to_string(ino) + " has nlink " + std::to_string(in->attr.nlink) +
                  " but " + std::to_string(n) + " names");
    }
    if (in->attr.nlink == 0 && in->open_count == 0) {
      return fail("inode " + std::to_string(ino) + " has no name and no open handle");
    }
  }
  for (size_t i = 0; i < allocators_.size(); ++i) {
    // Quarantined and scrub-queued ranges are out of the allocator but in no file.
    const uint64_t scrub = scrub_queued_[i] + scrubbing_[i];
    const uint64_t in_use = allocators_[i].total_bytes() - allocators_[i].free_bytes() -
                            quarantine_.bytes(static_cast<uint32_t>(i)) - scrub;
    if (in_use != used[i]) {
      return fail("data pool " + std::to_string(i) + " has " + std::to_string(in_use) +
                  " bytes in use (" + std::to_string(quarantine_.bytes(static_cast<uint32_t>(i))) +
                  " more quarantined) but the extent maps hold " + std::to_string(used[i]));
    }
  }
  return Status::OK();
}

}  // namespace dpmfs::meta
