// Namespace::Serialize / Load: the checkpoint blob (layout in metadata/README.md,
// "Namespace and service"). Deterministic: inodes by number, entries by cookie, sessions
// by id, so that equal states give equal bytes (tests compare replayed states this way).
// Free space is not stored: Load rebuilds every allocator from the extent maps, which
// also proves that no two extents share a block.
#include <sys/stat.h>

#include <algorithm>
#include <cassert>

#include "common/byte_codec.h"

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"

namespace dpmfs::meta {

namespace {

constexpr uint64_t kBlobMagic = 0x31534e53464d5044ull;  // "DPMFSNS1"
// Version 2 appends the cluster map (cluster_map.h); a version-1 blob (before
// replication had a map) loads with a fresh one: epoch 1, every server up, nothing dirty.
// Version 3 adds each server's pool instance to the map; a version-2 blob loads with
// none seen yet (the next probe of each server records it).
constexpr uint32_t kBlobVersion = 3;
constexpr uint32_t kBlobVersionNoInstances = 2;
constexpr uint32_t kBlobVersionNoMap = 1;

using CheckpointReader = codec::ByteReader;

void ReadTime(CheckpointReader& r, const char* field, Timespec* t) {
  r.I64(field, t->sec);
  r.U32(field, t->nsec);
  r.Require(t->nsec < 1000000000u, field, "holds a timestamp with nsec >= 1e9");
}

template <class IO>
void WriteTime(IO& w, const char* field, const Timespec& t) {
  w.I64(field, t.sec);
  w.U32(field, t.nsec);
}

// A u32 length and the bytes (what ByteReader::Bytes reads), from a byte vector.
template <class IO>
void WriteBlob(IO& w, const char* field, const std::vector<uint8_t>& b) {
  w.U32(field, static_cast<uint32_t>(b.size()));
  for (uint8_t byte : b) w.U8(field, byte);
}

}  // namespace

// The checkpoint blob codec; a friend of Namespace. Thread-safety: as Namespace (the
// caller holds the namespace lock).
class NamespaceCodec {
 public:
  static void Write(const Namespace& ns, std::vector<uint8_t>* out);
  // `refused` null: an extent the allocators refuse is Corruption (the servers). Else
  // (the offline check) it is counted there and kept, unmarked.
  static Status Read(Namespace& ns, std::span<const uint8_t> blob, uint64_t* refused);

 private:
  // The blob's layout, written once for ByteSizer and ByteWriter (Read mirrors it with
  // its checks); inodes and sessions in the order given.
  template <class IO>
  static void Fields(const Namespace& ns, const std::vector<InodeId>& inos,
                     const std::vector<uint64_t>& ids, IO& w);
};

std::vector<uint8_t> Namespace::Serialize() const {
  std::vector<uint8_t> out;
  NamespaceCodec::Write(*this, &out);
  return out;
}

Status Namespace::Load(std::span<const uint8_t> blob) {
  Status st = NamespaceCodec::Read(*this, blob, nullptr);
  if (!st.ok()) return st;
  st = CheckInvariants();
  if (!st.ok())
    return Status::Corruption("checkpoint describes an impossible namespace: " + st.message());
  return Status::OK();
}

Status Namespace::LoadForCheck(std::span<const uint8_t> blob, uint64_t* refused) {
  *refused = 0;
  return NamespaceCodec::Read(*this, blob, refused);
}

void NamespaceCodec::Write(const Namespace& ns, std::vector<uint8_t>* out) {
  // The order of inodes and sessions is decided once; then one pass counts the bytes and
  // one writes them into a buffer of exactly that size (common/byte_codec.h).
  std::vector<InodeId> inos;
  inos.reserve(ns.inodes_.size());
  for (const auto& [ino, in] : ns.inodes_) inos.push_back(ino);
  std::sort(inos.begin(), inos.end());
  std::vector<uint64_t> ids;
  ids.reserve(ns.client_sessions_.table().size());
  for (const auto& [id, s] : ns.client_sessions_.table()) ids.push_back(id);
  std::sort(ids.begin(), ids.end());

  codec::ByteSizer sizer;
  Fields(ns, inos, ids, sizer);
  out->clear();
  out->resize(sizer.size());
  codec::ByteWriter w(out->data());
  Fields(ns, inos, ids, w);
  assert(w.position() == out->data() + out->size());
}

template <class IO>
void NamespaceCodec::Fields(const Namespace& ns, const std::vector<InodeId>& inos,
                            const std::vector<uint64_t>& ids, IO& w) {
  w.U64("magic", kBlobMagic);
  w.U32("version", kBlobVersion);
  w.U32("block_size", ns.config_.block_size);
  w.U32("stripe_unit", ns.config_.stripe_unit);
  w.U32("data pools", static_cast<uint32_t>(ns.config_.pools.size()));
  w.U64("next_ino", ns.next_ino_);
  w.U64("next_generation", ns.next_generation_);
  w.U64("next_handle", ns.next_handle_);

  w.U64("inode count", inos.size());
  for (InodeId ino : inos) {
    const Namespace::Inode& in = *ns.inodes_.at(ino);
    const InodeAttr& a = in.attr;
    w.U64("ino", a.ino);
    w.U64("generation", a.generation);
    w.U32("mode", a.mode);
    w.U32("uid", a.uid);
    w.U32("gid", a.gid);
    w.U32("nlink", a.nlink);
    w.U64("size", a.size);
    w.U64("rdev", a.rdev);
    WriteTime(w, "atime", a.atime);
    WriteTime(w, "mtime", a.mtime);
    WriteTime(w, "ctime", a.ctime);
    w.U64("parent", in.parent);
    w.Bytes("symlink", in.symlink, kMaxSymlinkLength);
    w.U32("xattr count", static_cast<uint32_t>(in.xattrs.size()));
    for (const auto& [name, value] : in.xattrs) {
      w.Bytes("xattr name", name, kMaxXattrNameLength);
      w.Bytes("xattr value", value, kMaxXattrValueLength);
    }
    w.U64("extent count", in.extents.extent_count());
    in.extents.ForEach([&](const Extent& e) {
      w.U64("extent file_offset", e.file_offset);
      w.U64("extent length", e.length);
      w.U64("extent pool_offset", e.pool_offset);
      w.U32("extent server", e.server);
      w.U32("extent flags", e.flags);
    });
    if (in.dir) {
      const Namespace::Directory& d = *in.dir;
      w.U64("next_cookie", d.next_cookie);
      w.U64("entry count", d.by_cookie.size());
      for (const auto& [cookie, node] : d.by_cookie) {
        w.U64("entry cookie", cookie);
        w.U64("entry ino", node->second.ino);
        w.Bytes("entry name", node->first, kMaxNameLength);
      }
    }
  }

  w.U64("session count", ids.size());
  for (uint64_t id : ids) {
    const Session& s = *ns.client_sessions_.table().at(id);
    w.U64("session id", id);
    w.Bytes("client name", s.client_name, 4096);
    w.U64("evicted_max", s.evicted_max);
    w.U32("handle count", static_cast<uint32_t>(s.handles.size()));
    for (const auto& [h, ino] : s.handles) {
      w.U64("handle", h);
      w.U64("handle ino", ino);
    }
    w.U32("reply count", static_cast<uint32_t>(s.replies.size()));
    for (const auto& [seq, reply] : s.replies) {
      w.U64("reply seq", seq);
      WriteBlob(w, "reply", reply);
    }
  }
  ns.cluster_map_.WriteTo(w);
}

Status NamespaceCodec::Read(Namespace& ns, std::span<const uint8_t> blob, uint64_t* refused) {
  CheckpointReader r(blob, "namespace checkpoint");
  auto corrupt = [&](const std::string& what) {
    return Status::Corruption("namespace checkpoint (" + std::to_string(blob.size()) + " bytes) " +
                              what);
  };
  uint64_t magic = 0;
  uint32_t version = 0, block_size = 0, stripe_unit = 0, pools = 0;
  r.U64("magic", magic);
  r.U32("version", version);
  if (r.ok() && magic != kBlobMagic) return corrupt("has a bad magic");
  if (r.ok() && version != kBlobVersion && version != kBlobVersionNoInstances &&
      version != kBlobVersionNoMap) {
    return Status::NotSupported("namespace checkpoint has format version " +
                                std::to_string(version) + "; this dpmfs-meta reads " +
                                std::to_string(kBlobVersion));
  }
  r.U32("block_size", block_size);
  r.U32("stripe_unit", stripe_unit);
  r.U32("data pools", pools);
  if (r.ok() && (block_size != ns.config_.block_size || stripe_unit != ns.config_.stripe_unit ||
                 pools != ns.config_.pools.size())) {
    return corrupt("was written for block size " + std::to_string(block_size) + ", stripe unit " +
                   std::to_string(stripe_unit) + " and " + std::to_string(pools) +
                   " data pools, not this file system's");
  }
  // Start from an empty state with fresh allocators.
  ns.inodes_.clear();
  ns.client_sessions_.table().clear();
  ns.client_sessions_.handle_index().clear();
  ns.space_.Reset(ns.config_.pools);
  r.U64("next_ino", ns.next_ino_);
  r.U64("next_generation", ns.next_generation_);
  r.U64("next_handle", ns.next_handle_);
  uint64_t n_inodes = 0;
  r.U64("inode count", n_inodes);
  r.Require(n_inodes <= r.left() / 64, "inode count", "has more inodes than bytes");
  for (uint64_t i = 0; i < n_inodes && r.ok(); ++i) {
    auto in = std::make_unique<Namespace::Inode>();
    InodeAttr& a = in->attr;
    r.U64("ino", a.ino);
    r.U64("generation", a.generation);
    r.U32("mode", a.mode);
    r.U32("uid", a.uid);
    r.U32("gid", a.gid);
    r.U32("nlink", a.nlink);
    r.U64("size", a.size);
    r.U64("rdev", a.rdev);
    ReadTime(r, "atime", &a.atime);
    ReadTime(r, "mtime", &a.mtime);
    ReadTime(r, "ctime", &a.ctime);
    r.U64("parent", in->parent);
    r.Bytes("symlink", in->symlink, kMaxSymlinkLength);
    if (!r.ok()) break;
    const std::string where = "inode " + std::to_string(a.ino);
    if (a.ino == 0 || ns.inodes_.count(a.ino)) return corrupt("repeats or zeroes " + where);
    if (a.size > kMaxFileSize) return corrupt(where + " has size past the file size limit");
    const uint32_t type = a.mode & S_IFMT;
    if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFIFO &&
        type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK) {
      return corrupt(where + " has an unknown file type");
    }
    uint32_t n_x = 0;
    r.U32("xattr count", n_x);
    r.Require(n_x <= r.left() / 8, "xattr count", "has more xattrs than bytes");
    for (uint32_t k = 0; k < n_x && r.ok(); ++k) {
      std::string name, value;
      r.Bytes("xattr name", name, kMaxXattrNameLength);
      r.Bytes("xattr value", value, kMaxXattrValueLength);
      if (!r.ok()) break;
      in->xattr_list_bytes += name.size() + 1;
      if (!in->xattrs.emplace(std::move(name), std::move(value)).second) {
        return corrupt(where + " repeats an xattr name");
      }
    }
    uint64_t n_ext = 0;
    r.U64("extent count", n_ext);
    r.Require(n_ext <= r.left() / 32, "extent count", "has more extents than bytes");
    uint64_t prev_end = 0;
    for (uint64_t k = 0; k < n_ext && r.ok(); ++k) {
      Extent e;
      r.U64("extent file_offset", e.file_offset);
      r.U64("extent length", e.length);
      r.U64("extent pool_offset", e.pool_offset);
      r.U32("extent server", e.server);
      r.U32("extent flags", e.flags);
      if (!r.ok()) break;
      const std::string ew = where + " extent " + std::to_string(k) + " (file offset " +
                             std::to_string(e.file_offset) + ")";
      if (e.length == 0 || e.file_offset < prev_end || e.file_offset % block_size != 0 ||
          e.length % block_size != 0 || e.length > kMaxFileSize + stripe_unit ||
          e.file_offset > kMaxFileSize + stripe_unit) {
        return corrupt(ew + " is empty, misaligned, out of order or out of range");
      }
      if (e.flags & ~uint32_t{Extent::kUnwritten | Extent::kSpeculative}) {
        return corrupt(ew + " has unknown flags");
      }
      if (e.server >= ns.space_.allocators().size() ||
          !ns.space_.allocators()[e.server].MarkUsed(e.pool_offset, e.length)) {
        if (refused != nullptr) {
          ++*refused;  // the offline check reports it with what it overlaps
          prev_end = e.file_offset + e.length;
          in->extents.Insert(e);
          continue;
        }
        return corrupt(ew + " at pool offset " + std::to_string(e.pool_offset) + " of data pool " +
                       std::to_string(e.server) +
                       " overlaps another extent or lies outside the pool");
      }
      prev_end = e.file_offset + e.length;
      in->extents.Insert(e);
    }
    if (!r.ok()) break;
    if (type == S_IFDIR) {
      in->dir = std::make_unique<Namespace::Directory>();
      Namespace::Directory& d = *in->dir;
      uint64_t n_ent = 0;
      r.U64("next_cookie", d.next_cookie);
      r.U64("entry count", n_ent);
      r.Require(n_ent <= r.left() / 20, "entry count", "has more entries than bytes");
      uint64_t prev_cookie = 0;
      for (uint64_t k = 0; k < n_ent && r.ok(); ++k) {
        uint64_t cookie = 0, child = 0;
        std::string name;
        r.U64("entry cookie", cookie);
        r.U64("entry ino", child);
        r.Bytes("entry name", name, kMaxNameLength);
        if (!r.ok()) break;
        if (cookie <= prev_cookie || cookie >= d.next_cookie) {
          return corrupt(where + " has an entry cookie out of order");
        }
        if (CheckName(name) != 0) return corrupt(where + " has an invalid entry name");
        prev_cookie = cookie;
        auto [it, inserted] =
            d.by_name.emplace(std::move(name), Namespace::Directory::Entry{child, cookie});
        if (!inserted) return corrupt(where + " has two entries named '" + it->first + "'");
        d.by_cookie.emplace(cookie, &*it);
      }
    }
    if (!r.ok()) break;
    ns.inodes_.emplace(a.ino, std::move(in));
  }

  uint64_t n_sessions = 0;
  r.U64("session count", n_sessions);
  r.Require(n_sessions <= r.left() / 24, "session count", "has more sessions than bytes");
  for (uint64_t i = 0; i < n_sessions && r.ok(); ++i) {
    auto s = std::make_unique<Session>();
    uint64_t id = 0;
    uint32_t n_handles = 0, n_replies = 0;
    r.U64("session id", id);
    r.Bytes("client name", s->client_name, 4096);
    r.U64("evicted_max", s->evicted_max);
    r.U32("handle count", n_handles);
    r.Require(n_handles <= r.left() / 16, "handle count", "has more handles than bytes");
    for (uint32_t k = 0; k < n_handles && r.ok(); ++k) {
      uint64_t h = 0, ino = 0;
      r.U64("handle", h);
      r.U64("handle ino", ino);
      if (!r.ok()) break;
      if (!ns.client_sessions_.handle_index().emplace(h, id).second) {
        return corrupt("repeats open handle " + std::to_string(h));
      }
      s->handles.emplace(h, ino);
      auto in = ns.inodes_.find(ino);
      if (in == ns.inodes_.end()) {
        return corrupt("has open handle " + std::to_string(h) + " on missing inode " +
                       std::to_string(ino));
      }
      ++in->second->open_count;
    }
    r.U32("reply count", n_replies);
    r.Require(n_replies <= r.left() / 12, "reply count", "has more replies than bytes");
    for (uint32_t k = 0; k < n_replies && r.ok(); ++k) {
      uint64_t seq = 0;
      std::string reply;
      r.U64("reply seq", seq);
      r.Bytes("reply", reply, kMetaMaxMessage);
      if (!r.ok()) break;
      s->replies.emplace(seq, std::vector<uint8_t>(reply.begin(), reply.end()));
    }
    if (!r.ok()) break;
    if (id == 0 || !ns.client_sessions_.table().emplace(id, std::move(s)).second) {
      return corrupt("repeats or zeroes session " + std::to_string(id));
    }
  }
  ns.cluster_map_.Reset();
  if (version != kBlobVersionNoMap && r.ok()) {
    ns.cluster_map_.ReadFrom(r, version == kBlobVersion);
  }
  Status st = r.Finish();
  if (!st.ok()) return Status::Corruption(st.message());
  return Status::OK();
}

}  // namespace dpmfs::meta
