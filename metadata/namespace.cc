// Namespace: the dispatch of every operation of meta_ops.h to its handler (the handlers
// are in ops_<family>.cc), the helpers the handlers share, and the invariants. Every
// mutation validates completely before it changes anything: see namespace.h for why
// replay depends on it.
#include "metadata/namespace.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "metadata/namespace_internal.h"
#include "metadata/permissions.h"

namespace dpmfs::meta {

namespace {

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

// The map's primary region size: with R > 1 every pool's primary region is the same
// (MetaService passes Placement::PrimaryCapacity as the pool size); with R = 1 nothing
// is ever dirty and the largest pool bounds the units.
uint64_t MaxPoolSize(const std::vector<DataPoolGeometry>& pools) {
  uint64_t m = 0;
  for (const DataPoolGeometry& p : pools) m = std::max(m, p.data_size);
  return m;
}

}  // namespace

Timespec NowTimespec() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Timespec{static_cast<int64_t>(ts.tv_sec), static_cast<uint32_t>(ts.tv_nsec)};
}

Namespace::Namespace(NamespaceConfig config)
    : config_(std::move(config)),
      space_(config_.pools,
             SpaceOptions{config_.free_quarantine_ms, config_.scrub_freed, config_.clock_ms}),
      client_sessions_(config_.reply_cache_entries),
      cluster_map_(static_cast<uint32_t>(config_.pools.size()), config_.cluster.replicas,
                   config_.stripe_unit, MaxPoolSize(config_.pools)) {
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
// Dispatch: one case per row of meta_ops.h, by kind.

Result<std::vector<uint8_t>> Namespace::Mutate(uint16_t op, std::span<const uint8_t> payload,
                                               OpContext& ctx, int* err_out) {
  int err = 0;
  Result<std::vector<uint8_t>> r = Status::InvalidArgument("unset");
  switch (static_cast<Opcode>(op)) {
#define DPMFS_NS_MUTATE_kMutation(Name, Req, Rep)                                            \
  case Opcode::k##Name:                                                                      \
    r = RunOp<Req, Rep>(payload, &err,                                                       \
                        [&](const Req& q, Rep* p) { return Do##Name(q, ctx, p); });          \
    break;
#define DPMFS_NS_MUTATE_kSession(Name, Req, Rep) DPMFS_NS_MUTATE_kMutation(Name, Req, Rep)
#define DPMFS_NS_MUTATE_kRead(Name, Req, Rep)
#define DPMFS_NS_MUTATE_kLease(Name, Req, Rep)
#define DPMFS_NS_MUTATE_kAdmin(Name, Req, Rep)
#define DPMFS_NS_MUTATE(Name, number, str, kind, Req, Rep, family) \
  DPMFS_NS_MUTATE_##kind(Name, Req, Rep)
    DPMFS_META_OPS(DPMFS_NS_MUTATE)
#undef DPMFS_NS_MUTATE
#undef DPMFS_NS_MUTATE_kLease
#undef DPMFS_NS_MUTATE_kAdmin
#undef DPMFS_NS_MUTATE_kRead
#undef DPMFS_NS_MUTATE_kSession
#undef DPMFS_NS_MUTATE_kMutation
    default:
      if (op == kOpExpireSession) {
        if (payload.size() != 8) {
          return Status::InvalidArgument("expire-session record payload has " +
                                         std::to_string(payload.size()) + " bytes, not 8");
        }
        uint64_t session = 0;
        for (int i = 0; i < 8; ++i) session |= uint64_t{payload[i]} << (8 * i);
        err = EndSession(session, ctx);
        r = err != 0 ? EncodeErrorReply(err) : EncodeReply(EmptyReply{});
        break;
      }
      if (op == kOpSetServerState || op == kOpResyncProgress || op == kOpSetPoolInstance) {
        r = MutateClusterMap(op, payload, &err);
        if (!r.ok()) return r;
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
    client_sessions_.CacheReply(ctx.session, ctx.seq, *r);
    // A client that sends mutations is alive: renew its lease (this also gives a
    // session that came back after expiring, or never registered, a live lease).
    if (ctx.lease_deadline_ms != 0) {
      client_sessions_.GetOrCreate(ctx.session)
          .lease_deadline_ms.store(ctx.lease_deadline_ms, std::memory_order_relaxed);
    }
  }
  return r;
}

Result<std::vector<uint8_t>> Namespace::Read(uint16_t op, std::span<const uint8_t> payload,
                                             const Credentials& caller) const {
  int err = 0;
  switch (static_cast<Opcode>(op)) {
#define DPMFS_NS_READ_kRead(Name, Req, Rep) \
  case Opcode::k##Name:                     \
    return RunOp<Req, Rep>(payload, &err,                                                     \
                           [&](const Req& q, Rep* p) { return Read##Name(q, caller, p); });
#define DPMFS_NS_READ_kMutation(Name, Req, Rep)
#define DPMFS_NS_READ_kSession(Name, Req, Rep)
#define DPMFS_NS_READ_kLease(Name, Req, Rep)
#define DPMFS_NS_READ_kAdmin(Name, Req, Rep)
#define DPMFS_NS_READ(Name, number, str, kind, Req, Rep, family) DPMFS_NS_READ_##kind(Name, Req, Rep)
    DPMFS_META_OPS(DPMFS_NS_READ)
#undef DPMFS_NS_READ
#undef DPMFS_NS_READ_kLease
#undef DPMFS_NS_READ_kAdmin
#undef DPMFS_NS_READ_kSession
#undef DPMFS_NS_READ_kMutation
#undef DPMFS_NS_READ_kRead
    default:
      return Status::InvalidArgument("opcode " + std::to_string(op) + " is not a read");
  }
}

// ---------------------------------------------------------------------------------------
// Open handles (who holds them: Sessions; what they keep alive: here)

uint64_t Namespace::OpenHandle(Inode& inode, OpContext& ctx) {
  uint64_t h = next_handle_++;
  client_sessions_.AddHandle(ctx.session, h, inode.attr.ino);
  ++inode.open_count;
  return h;
}

void Namespace::CloseHandle(Session& s, uint64_t handle, const OpContext& ctx) {
  const InodeId ino = client_sessions_.RemoveHandle(s, handle);
  if (ino == 0) return;
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

int Namespace::FindSearchableDir(const Credentials& caller, InodeId ino, Inode** out) {
  if (int e = FindDir(ino, out)) return e;
  return perm::MayLookup(caller, AclXattrs::SubjectOf(**out));
}

int Namespace::FindEntry(const Credentials& caller, InodeId parent, const std::string& name,
                         const Inode** dir, const Inode** in) const {
  if (int e = FindDir(parent, dir)) return e;
  if (int e = perm::MayLookup(caller, AclXattrs::SubjectOf(**dir))) return e;
  if (int e = CheckName(name)) return e;
  auto it = (*dir)->dir->by_name.find(name);
  if (it == (*dir)->dir->by_name.end()) return ENOENT;
  *in = Find(it->second.ino);
  return *in == nullptr ? EIO : 0;  // CheckInvariants rules EIO out
}

int Namespace::FindEntry(const Credentials& caller, InodeId parent, const std::string& name,
                         Inode** dir, Inode** in) {
  // The const lookup changes nothing; the caller owns the namespace mutably.
  const Inode* d = nullptr;
  const Inode* i = nullptr;
  if (int e = std::as_const(*this).FindEntry(caller, parent, name, &d, &i)) return e;
  *dir = const_cast<Inode*>(d);
  *in = const_cast<Inode*>(i);
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
  space_.Free(freed, ctx);
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



// ---------------------------------------------------------------------------------------
// Invariants

void Namespace::ForEachInode(const std::function<void(const InodeView&)>& fn) const {
  InodeView v;
  for (const auto& [ino, in] : inodes_) {
    v.attr = &in->attr;
    v.parent = in->parent;
    v.extents = &in->extents;
    v.open_count = in->open_count;
    v.entries.clear();
    if (in->dir) {
      for (const auto& [cookie, node] : in->dir->by_cookie) {
        v.entries.push_back(DirEntryView{node->first, node->second.ino});
      }
    }
    fn(v);
  }
}

Status Namespace::CheckInvariants() const {
  auto fail = [](std::string m) { return Status::Internal(std::move(m)); };
  const Inode* root = Find(kRootInode);
  if (root == nullptr || !root->is_dir()) return fail("the root directory (inode 1) is missing");
  std::unordered_map<InodeId, uint32_t> names;  // entries naming each inode
  std::unordered_map<InodeId, uint32_t> subdirs;
  names.reserve(inodes_.size());
  std::vector<uint64_t> used(space_.pool_count(), 0);
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
    // A copy: clang before 16 cannot capture a structured binding in a lambda (P1381).
    const InodeId this_ino = ino;
    in->extents.ForEach([&](const Extent& e) {
      if (!bad.ok()) return;
      if (e.server >= used.size()) {
        bad = fail("inode " + std::to_string(this_ino) + " has an extent on data server " +
                   std::to_string(e.server) + " of " + std::to_string(used.size()));
        return;
      }
      used[e.server] += e.length;
    });
    if (!bad.ok()) return bad;
  }
  std::unordered_map<InodeId, uint32_t> opens;
  if (Status st = client_sessions_.Check(next_handle_, &opens); !st.ok()) return st;
  for (const auto& [ino, count] : opens) {
    if (!inodes_.count(ino)) {
      return fail("an open handle names missing inode " + std::to_string(ino));
    }
  }
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
  return space_.CheckUsage(used);
}

}  // namespace dpmfs::meta
