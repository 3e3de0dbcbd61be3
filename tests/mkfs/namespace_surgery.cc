// dpmfs-check-damage: damages the namespace of a STOPPED cluster's metadata pool on
// purpose, so that tests/mkfs/check_test.sh can see mkfs.dpmfs check find it. It goes
// through the store's own API: MetaStore::Open (the pool's lock) and Recover into a
// Namespace, one edit of the recovered state (as NamespaceSurgery, the friend
// metadata/namespace.h keeps for this), then MetaStore::WriteCheckpoint of the edited
// state, so the pool is well formed (every CRC right) and only its meaning is wrong.
//
//   dpmfs-check-damage META_POOL share PATH_A PATH_B   B's first extent onto A's blocks
//   dpmfs-check-damage META_POOL straddle PATH         its first extent onto the last used
//                                                      block of its pool and the free blocks
//                                                      after it (shared + owned but free)
//   dpmfs-check-damage META_POOL orphan PATH           unlink it, keep its blocks (a leak)
//   dpmfs-check-damage META_POOL nlink PATH N          a wrong link count
//   dpmfs-check-damage META_POOL outside PATH          its first extent past the pool's end
//
// PATH is absolute inside the file system (/d/f). Test code only.
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "metadata/meta_store.h"
#include "metadata/mutation.h"
#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"

namespace dpmfs::meta {

class NamespaceSurgery {
 public:
  explicit NamespaceSurgery(Namespace& ns) : ns_(ns) {}

  // The inode at `path` and the directory holding its last name.
  Namespace::Inode* Resolve(const std::string& path, Namespace::Inode** parent, std::string* name) {
    Namespace::Inode* cur = ns_.Find(kRootInode);
    std::stringstream ss(path);
    std::string part;
    while (std::getline(ss, part, '/')) {
      if (part.empty()) continue;
      if (cur == nullptr || !cur->dir) return nullptr;
      auto it = cur->dir->by_name.find(part);
      if (it == cur->dir->by_name.end()) return nullptr;
      *parent = cur;
      *name = part;
      cur = ns_.Find(it->second.ino);
    }
    return cur;
  }
  static bool FirstExtent(const Namespace::Inode& in, Extent* out) {
    bool found = false;
    in.extents.ForEach([&](const Extent& e) {
      if (!found) *out = e;
      found = true;
    });
    return found;
  }
  // Replaces `in`'s extent at e.file_offset with `moved`.
  static void Move(Namespace::Inode& in, const Extent& e, const Extent& moved) {
    std::vector<PoolRange> freed;
    in.extents.Remove(e.file_offset, e.length, &freed);
    in.extents.Insert(moved);
  }
  uint64_t HighestEnd(uint32_t server) const {
    uint64_t end = 0;
    for (const auto& [ino, in] : ns_.inodes_) {
      in->extents.ForEach([&](const Extent& e) {
        if (e.server == server) end = std::max(end, e.pool_offset + e.length);
      });
    }
    return end;
  }
  // Makes damage `what` at `path` (see the file comment); `arg` is the second operand.
  Status Damage(const std::string& what, const std::string& path, const std::string& arg,
                const Superblock& sb, std::ostream& out) {
    Namespace::Inode* parent = nullptr;
    std::string name;
    Namespace::Inode* in = Resolve(path, &parent, &name);
    if (in == nullptr) return Status::InvalidArgument(path + ": no such file in the namespace");
    Extent e;
    const bool has_extent = NamespaceSurgery::FirstExtent(*in, &e);
    const uint32_t bs = ns_.config().block_size;
    if (what == "share") {
      if (arg.empty()) return Status::InvalidArgument("share needs PATH_A PATH_B");
      Namespace::Inode* b = Resolve(arg, &parent, &name);
      Extent eb;
      if (b == nullptr || !has_extent || !NamespaceSurgery::FirstExtent(*b, &eb))
        return Status::InvalidArgument("share: both files need an extent");
      Extent moved = eb;
      moved.server = e.server;
      moved.pool_offset = e.pool_offset;
      moved.length = std::min(eb.length, e.length);
      NamespaceSurgery::Move(*b, eb, moved);
      out << "moved " << arg << " file offset " << eb.file_offset << " onto pool "
                << e.server << " offset " << e.pool_offset << " length " << moved.length << "\n";
    } else if (what == "straddle") {
      if (!has_extent || e.length < 2 * bs) return Status::InvalidArgument("straddle: needs an extent of 2+ blocks");
      const uint64_t top = HighestEnd(e.server);
      Extent moved = e;
      moved.pool_offset = top - bs;
      NamespaceSurgery::Move(*in, e, moved);
      out << "moved " << path << " onto pool " << e.server << " offset " << moved.pool_offset
                << " length " << moved.length << "\n";
    } else if (what == "orphan") {
      if (S_ISDIR(in->attr.mode)) return Status::InvalidArgument("orphan: a file, please");
      parent->dir->by_cookie.erase(parent->dir->by_name.at(name).cookie);
      parent->dir->by_name.erase(name);
      in->attr.nlink = 0;
    } else if (what == "nlink") {
      if (arg.empty()) return Status::InvalidArgument("nlink needs N");
      in->attr.nlink = static_cast<uint32_t>(std::strtoul(arg.c_str(), nullptr, 10));
    } else if (what == "outside") {
      if (!has_extent) return Status::InvalidArgument("outside: needs an extent");
      Extent moved = e;
      moved.pool_offset = sb.data_pools[e.server].data_size;
      NamespaceSurgery::Move(*in, e, moved);
    } else {
      return Status::InvalidArgument("unknown damage '" + what + "'");
    }
    return Status::OK();
  }

  const NamespaceConfig& config() const { return ns_.config(); }

 private:
  Namespace& ns_;
};

}  // namespace dpmfs::meta

namespace {

using namespace dpmfs;
using namespace dpmfs::meta;

int Fail(const std::string& what) {
  std::cerr << "dpmfs-check-damage: " << what << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return Fail("usage: META_POOL share|straddle|orphan|nlink|outside PATH [ARG]");
  const std::string pool = argv[1], what = argv[2], path = argv[3];
  auto store = MetaStore::Open(pool, pool::OpenExpectations{pool::Role::kMetadata, {}, {}});
  if (!store.ok()) return Fail(store.status().ToString());
  const Superblock& sb = (*store)->superblock();
  NamespaceConfig cfg;
  cfg.block_size = sb.data_pools[0].block_size;
  cfg.stripe_unit = sb.stripe_unit;
  cfg.pools = sb.data_pools;  // replicas 1 in the tests: the whole pool is primary
  Namespace ns(cfg);
  RecoveryStats stats;
  Status st = (*store)->Recover([&](std::span<const uint8_t> blob) { return ns.Load(blob); },
                                [&](uint64_t lsn, std::span<const uint8_t> rec) {
                                  return ApplyRecord(ns, lsn, rec);
                                },
                                &stats);
  if (!st.ok()) return Fail(st.ToString());

  Status st2 = NamespaceSurgery(ns).Damage(what, path, argc > 4 ? argv[4] : "", sb, std::cout);
  if (!st2.ok()) return Fail(st2.ToString());
  std::vector<uint8_t> blob = ns.Serialize();
  st = (*store)->WriteCheckpoint((*store)->last_lsn(), blob);
  if (!st.ok()) return Fail(st.ToString());
  std::cout << "damaged (" << what << ") " << path << "\n";
  return 0;
}
