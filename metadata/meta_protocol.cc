#include "metadata/meta_protocol.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cassert>
#include <cerrno>

#include "common/byte_codec.h"
#include "common/stats_report.h"

// Wire layout: each message's Fields() below lists its fields in wire order (the same
// order as the struct in meta_protocol.h). Fixed sizes: Timespec 12 bytes, InodeAttr 92,
// Extent 32, ByteRange 16, DirEntry 116 + name bytes (the attributes are always sent,
// zero when the request had no `plus`, so every entry has one layout).
//
// Which reply answers which request (what MetaClient decodes and dpmfs-meta must send;
// the Request and Reply columns of metadata/meta_ops.h):
//   register -> RegisterReply      heartbeat -> HeartbeatReply   unregister -> EmptyReply
//   lookup, mkdir, mknod, symlink, link -> EntryReply
//   getattr, setattr, commit, fallocate -> AttrReply
//   create -> CreateReply   open -> OpenReply   readlink -> ReadlinkReply
//   unlink, rmdir, rename -> DirsReply
//   release, setxattr, removexattr -> EmptyReply   release_many -> ReleaseManyReply
//   readdir -> ReaddirReply   statfs -> StatfsReply   getxattr -> GetxattrReply
//   listxattr -> ListxattrReply   layout -> LayoutReply   allocate -> AllocateReply
//
// What Decode refuses and what it leaves to the server: a request field the server must
// answer with an errno (a 300-byte name -> ENAMETOOLONG, "." -> EINVAL, a 70 KiB xattr
// value -> E2BIG, max_entries 0 -> EINVAL, unknown flags) decodes, as long as it is
// structurally sound and below a hard cap that no legitimate request comes near. Only
// structural garbage is refused: truncation, trailing bytes, a length or count over its
// hard cap or past the end, a boolean byte other than 0/1, nsec >= 1e9. Replies are held
// to the protocol's limits exactly (an entry name must pass CheckName, extents must be
// sorted, ...): the client hands them to the kernel, which trusts them.

namespace dpmfs::meta {
namespace {

namespace wire = dpmfs::codec;
using WireReader = codec::ByteReader;
using WireSizer = codec::ByteSizer;
using WireWriter = codec::ByteWriter;

// Hard caps of request strings the server judges itself (see above). No kernel sends
// more: NAME_MAX is 255 and PATH_MAX 4096.
constexpr size_t kWireNameCap = 4096;  // entry names and xattr names in requests
constexpr size_t kWirePathCap = 8192;  // symlink targets in requests
constexpr size_t kClientNameCap = 1024;
constexpr size_t kEndpointCap = 512;
constexpr int kMaxErrno = 4095;  // Linux's MAX_ERRNO: larger "errnos" are garbage

constexpr size_t kTimespecSize = 12;
constexpr size_t kInodeAttrSize = 8 + 8 + 4 * 4 + 8 * 3 + 3 * kTimespecSize;
constexpr size_t kExtentSize = 32;
constexpr size_t kByteRangeSize = 16;
constexpr size_t kDirEntryMinSize = wire::kLengthPrefix + 1 + 8 + 4 + 8 + kInodeAttrSize;
constexpr size_t kServerInfoMinSize = 4 + wire::kLengthPrefix + 8;
constexpr size_t kXattrNameMinSize = wire::kLengthPrefix + 1;

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// ---- Shared pieces ----

template <class IO>
void Fields(IO& io, Timespec& t, const char* field) {
  io.I64(field, t.sec);
  io.U32(field, t.nsec);
  io.Require(t.nsec < 1000000000u, field, "has nsec >= 1000000000");
}

template <class IO>
void Fields(IO& io, InodeAttr& a) {
  io.U64("attr.ino", a.ino);
  io.U64("attr.generation", a.generation);
  io.U32("attr.mode", a.mode);
  io.U32("attr.uid", a.uid);
  io.U32("attr.gid", a.gid);
  io.U32("attr.nlink", a.nlink);
  io.U64("attr.size", a.size);
  io.U64("attr.blocks", a.blocks);
  io.U64("attr.rdev", a.rdev);
  Fields(io, a.atime, "attr.atime");
  Fields(io, a.mtime, "attr.mtime");
  Fields(io, a.ctime, "attr.ctime");
}

template <class IO>
void Fields(IO& io, Extent& e) {
  io.U64("extents.file_offset", e.file_offset);
  io.U64("extents.length", e.length);
  io.U64("extents.pool_offset", e.pool_offset);
  io.U32("extents.server", e.server);
  io.U32("extents.flags", e.flags);
  io.Require(e.length != 0, "extents.length", "is 0");
  io.Require(e.file_offset + e.length > e.file_offset && e.pool_offset + e.length > e.pool_offset,
             "extents", "wraps around 2^64");
  io.Require((e.flags & ~(Extent::kUnwritten | Extent::kSpeculative)) == 0, "extents.flags",
             "has unknown bits");
}

// A reply's extents: sorted by file offset, not overlapping.
template <class IO>
void ExtentList(IO& io, std::vector<Extent>& extents) {
  io.Vector("extents", extents, kMaxExtentsPerReply, kExtentSize,
            [](IO& sub, Extent& e) { Fields(sub, e); });
  if constexpr (IO::kDecoding) {
    for (size_t i = 1; i < extents.size() && io.ok(); ++i) {
      const Extent& prev = extents[i - 1];
      io.Require(extents[i].file_offset >= prev.file_offset + prev.length, "extents",
                 "are not sorted by file offset or overlap");
    }
  }
}

template <class IO>
void Fields(IO& io, ClusterInfo& c) {
  io.Fixed("cluster.cluster_uuid", c.cluster_uuid);
  io.U32("cluster.block_size", c.block_size);
  io.Require(IsPowerOfTwo(c.block_size) && c.block_size >= 512 && c.block_size <= (1u << 20),
             "cluster.block_size", "is not a power of two in 512..1M");
  io.U32("cluster.stripe_unit", c.stripe_unit);
  io.Require(c.stripe_unit != 0 && c.block_size != 0 && c.stripe_unit % c.block_size == 0,
             "cluster.stripe_unit", "is not a non-zero multiple of block_size");
  io.Vector("cluster.servers", c.servers, kMaxDataServers, kServerInfoMinSize,
            [](IO& sub, DataServerInfo& s) {
              sub.U32("cluster.servers.index", s.index);
              sub.Bytes("cluster.servers.endpoint", s.endpoint, kEndpointCap);
              sub.U64("cluster.servers.data_size", s.data_size);
            });
  if constexpr (IO::kDecoding) {
    for (size_t i = 0; i < c.servers.size() && io.ok(); ++i) {
      io.Require(c.servers[i].index == i, "cluster.servers.index",
                 "does not match the server's position in the list");
    }
  }
  io.U32("cluster.replicas", c.replicas);
  io.Require(c.replicas >= 1 && c.replicas <= kMaxReplicas && c.replicas <= c.servers.size(),
             "cluster.replicas", "is not in 1..3 and at most the number of servers");
}

template <class IO>
void Fields(IO& io, DirEntry& e) {
  io.Bytes("entries.name", e.name, kMaxNameLength);
  io.Require(CheckName(e.name) == 0, "entries.name",
             "is not a valid name (empty, \".\", \"..\", or contains '/' or NUL)");
  io.U64("entries.ino", e.ino);
  io.U32("entries.mode", e.mode);
  io.U64("entries.cookie", e.cookie);
  Fields(io, e.attr);
}

// ---- Messages (field order = wire order = struct order in meta_protocol.h) ----

template <class IO>
void Fields(IO& io, RegisterRequest& m) {
  io.Bytes("client_name", m.client_name, kClientNameCap);
}
template <class IO>
void Fields(IO& io, RegisterReply& m) {
  io.U32("lease_ms", m.lease_ms);
  io.Require(m.lease_ms != 0, "lease_ms", "is 0");
  Fields(io, m.cluster);
}
template <class IO>
void Fields(IO&, HeartbeatRequest&) {}
template <class IO>
void Fields(IO& io, HeartbeatReply& m) {
  io.Bool("known", m.known);
  io.Bytes("data_token", m.data_token, kMaxDataTokenSize);
  io.U64("epoch", m.epoch);
}
template <class IO>
void Fields(IO&, UnregisterRequest&) {}
template <class IO>
void Fields(IO&, EmptyReply&) {}

template <class IO>
void Fields(IO&, StatsRequest&) {}
template <class IO>
void Fields(IO& io, StatsReply& m) {
  io.Bytes("bundle", m.bundle, kMaxStatsBundleBytes);
}
template <class IO>
void Fields(IO& io, PushStatsRequest& m) {
  io.Bytes("report", m.report, metrics::kMaxStatsReportBytes);
}
template <class IO>
void Fields(IO& io, LogLevelRequest& m) {
  io.Bytes("level", m.level, kMaxLogLevelName);
}

template <class IO>
void Fields(IO& io, LookupRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
}
// The directories a mutation changed (EntryReply, CreateReply, DirsReply).
template <class IO>
void ChangedDirs(IO& io, std::vector<InodeAttr>& dirs) {
  io.Vector("dirs", dirs, kMaxChangedDirs, kInodeAttrSize, [](IO& sub, InodeAttr& a) {
    Fields(sub, a);
    sub.Require(a.ino != 0, "dirs.ino", "is 0");
    sub.Require((a.mode & S_IFMT) == S_IFDIR, "dirs.mode", "is not a directory's");
  });
}

template <class IO>
void Fields(IO& io, EntryReply& m) {
  Fields(io, m.attr);
  ChangedDirs(io, m.dirs);
}
template <class IO>
void Fields(IO& io, DirsReply& m) {
  ChangedDirs(io, m.dirs);
}
template <class IO>
void Fields(IO& io, GetattrRequest& m) {
  io.U64("ino", m.ino);
}
template <class IO>
void Fields(IO& io, AttrReply& m) {
  Fields(io, m.attr);
}
template <class IO>
void Fields(IO& io, SetattrRequest& m) {
  io.U64("ino", m.ino);
  io.U32("valid", m.valid);
  io.U32("mode", m.mode);
  io.U32("uid", m.uid);
  io.U32("gid", m.gid);
  io.U64("size", m.size);
  Fields(io, m.atime, "atime");
  Fields(io, m.mtime, "mtime");
  Fields(io, m.ctime, "ctime");
}
// A field added at the end of a request once journals held records of the request
// without it: a record (or an older client's request) that ends before it leaves the
// default. Only a last field can be optional this way.
template <class IO>
void TrailingU32(IO& io, const char* field, uint32_t& v) {
  if constexpr (std::is_same_v<IO, WireReader>) {
    if (io.left() == 0) return;
  }
  io.U32(field, v);
}

template <class IO>
void Fields(IO& io, CreateRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
  io.U32("mode", m.mode);
  io.U32("uid", m.uid);
  io.U32("gid", m.gid);
  io.U32("flags", m.flags);
  TrailingU32(io, "umask", m.umask);
}
template <class IO>
void Fields(IO& io, CreateReply& m) {
  Fields(io, m.attr);
  io.U64("handle", m.handle);
  io.Bool("created", m.created);
  ChangedDirs(io, m.dirs);
}
template <class IO>
void Fields(IO& io, MkdirRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
  io.U32("mode", m.mode);
  io.U32("uid", m.uid);
  io.U32("gid", m.gid);
  TrailingU32(io, "umask", m.umask);
}
template <class IO>
void Fields(IO& io, MknodRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
  io.U32("mode", m.mode);
  io.U64("rdev", m.rdev);
  io.U32("uid", m.uid);
  io.U32("gid", m.gid);
  TrailingU32(io, "umask", m.umask);
}
template <class IO>
void Fields(IO& io, SymlinkRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
  io.Bytes("target", m.target, kWirePathCap);
  io.U32("uid", m.uid);
  io.U32("gid", m.gid);
}
template <class IO>
void Fields(IO& io, ReadlinkRequest& m) {
  io.U64("ino", m.ino);
}
template <class IO>
void Fields(IO& io, ReadlinkReply& m) {
  io.Bytes("target", m.target, kMaxSymlinkLength);
  io.Require(m.target.find('\0') == std::string::npos, "target", "contains a NUL byte");
}
template <class IO>
void Fields(IO& io, LinkRequest& m) {
  io.U64("ino", m.ino);
  io.U64("new_parent", m.new_parent);
  io.Bytes("new_name", m.new_name, kWireNameCap);
}
template <class IO>
void Fields(IO& io, UnlinkRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
}
template <class IO>
void Fields(IO& io, RenameRequest& m) {
  io.U64("parent", m.parent);
  io.Bytes("name", m.name, kWireNameCap);
  io.U64("new_parent", m.new_parent);
  io.Bytes("new_name", m.new_name, kWireNameCap);
  io.U32("flags", m.flags);
}
template <class IO>
void Fields(IO& io, ReaddirRequest& m) {
  io.U64("ino", m.ino);
  io.U64("cookie", m.cookie);
  io.U32("max_entries", m.max_entries);
  io.Bool("plus", m.plus);
}
template <class IO>
void Fields(IO& io, ReaddirReply& m) {
  io.Vector("entries", m.entries, kMaxReaddirEntries, kDirEntryMinSize,
            [](IO& sub, DirEntry& e) { Fields(sub, e); });
  io.Bool("eof", m.eof);
  io.U64("last_cookie", m.last_cookie);
  if constexpr (IO::kDecoding) {
    for (size_t i = 0; i < m.entries.size() && io.ok(); ++i) {
      io.Require(m.entries[i].cookie <= m.last_cookie, "last_cookie",
                 "is smaller than an entry's cookie");
    }
  }
}
template <class IO>
void Fields(IO& io, OpenRequest& m) {
  io.U64("ino", m.ino);
  io.U32("flags", m.flags);
}
template <class IO>
void Fields(IO& io, OpenReply& m) {
  Fields(io, m.attr);
  io.U64("handle", m.handle);
}
template <class IO>
void Fields(IO& io, ReleaseRequest& m) {
  io.U64("ino", m.ino);
  io.U64("handle", m.handle);
}
template <class IO>
void Fields(IO& io, ReleaseManyRequest& m) {
  io.Vector("handles", m.handles, kMaxReleasesPerRequest, 16,
            [](IO& sub, ReleaseRequest& r) { Fields(sub, r); });
}
template <class IO>
void Fields(IO& io, ReleaseManyReply& m) {
  io.U32("refused", m.refused);
}
template <class IO>
void Fields(IO&, GetClusterMapRequest&) {}
template <class IO>
void Fields(IO& io, ClusterMapReply& m) {
  io.U64("epoch", m.epoch);
  io.Vector("servers", m.servers, kMaxDataServers, 1 + 3 * 8,
            [](IO& sub, DataServerStatus& s) {
              uint8_t state = static_cast<uint8_t>(s.state);
              sub.U8("servers.state", state);
              sub.Require(state <= static_cast<uint8_t>(DataServerState::kResyncing),
                          "servers.state", "is not up (0), down (1) or resyncing (2)");
              s.state = static_cast<DataServerState>(state);
              sub.U64("servers.dirty_bytes", s.dirty_bytes);
              sub.U64("servers.resync_done_bytes", s.resync_done_bytes);
              sub.U64("servers.resync_total_bytes", s.resync_total_bytes);
            });
}
template <class IO>
void Fields(IO& io, ReportDataServerRequest& m) {
  io.U32("server", m.server);
  io.U64("epoch", m.epoch);
}
template <class IO>
void Fields(IO& io, MarkDegradedRequest& m) {
  io.U64("epoch", m.epoch);
  io.Vector("ranges", m.ranges, kMaxDegradedRanges, 4 + 8 + 8,
            [](IO& sub, PrimaryRange& r) {
              sub.U32("ranges.server", r.server);
              sub.U64("ranges.pool_offset", r.pool_offset);
              sub.U64("ranges.length", r.length);
            });
}

template <class IO>
void Fields(IO&, StatfsRequest&) {}
template <class IO>
void Fields(IO& io, StatfsReply& m) {
  io.U32("block_size", m.block_size);
  io.U64("total_blocks", m.total_blocks);
  io.U64("free_blocks", m.free_blocks);
  io.U64("total_inodes", m.total_inodes);
  io.U64("free_inodes", m.free_inodes);
  io.U32("name_max", m.name_max);
}
template <class IO>
void Fields(IO& io, GetxattrRequest& m) {
  io.U64("ino", m.ino);
  io.Bytes("name", m.name, kWireNameCap);
}
template <class IO>
void Fields(IO& io, GetxattrReply& m) {
  io.Bytes("value", m.value, kMaxXattrValueLength);
}
template <class IO>
void Fields(IO& io, SetxattrRequest& m) {
  io.U64("ino", m.ino);
  io.Bytes("name", m.name, kWireNameCap);
  // Bounded by the message itself: the server answers E2BIG above kMaxXattrValueLength.
  io.Bytes("value", m.value, kMetaMaxMessage);
  io.U32("flags", m.flags);
}
template <class IO>
void Fields(IO& io, ListxattrRequest& m) {
  io.U64("ino", m.ino);
}
template <class IO>
void Fields(IO& io, ListxattrReply& m) {
  // listxattr(2) returns the names NUL-separated in at most kMaxXattrListLength bytes.
  io.Vector("names", m.names, kMaxXattrListLength / 2, kXattrNameMinSize,
            [](IO& sub, std::string& name) {
              sub.Bytes("names", name, kMaxXattrNameLength);
              sub.Require(!name.empty() && name.find('\0') == std::string::npos, "names",
                          "has an empty name or one with a NUL byte");
            });
  if constexpr (IO::kDecoding) {
    size_t total = 0;
    for (const std::string& name : m.names) total += name.size() + 1;
    io.Require(total <= kMaxXattrListLength, "names",
               "add up to more than kMaxXattrListLength bytes");
  }
}
template <class IO>
void Fields(IO& io, RemovexattrRequest& m) {
  io.U64("ino", m.ino);
  io.Bytes("name", m.name, kWireNameCap);
}
template <class IO>
void Fields(IO& io, LayoutRequest& m) {
  io.U64("ino", m.ino);
  io.U64("offset", m.offset);
  io.U64("length", m.length);
}
template <class IO>
void Fields(IO& io, LayoutReply& m) {
  Fields(io, m.attr);
  ExtentList(io, m.extents);
  io.Bool("truncated", m.truncated);
}
template <class IO>
void Fields(IO& io, AllocateRequest& m) {
  io.U64("ino", m.ino);
  io.U64("offset", m.offset);
  io.U64("length", m.length);
}
template <class IO>
void Fields(IO& io, AllocateReply& m) {
  ExtentList(io, m.extents);
}
template <class IO>
void Fields(IO& io, CommitRequest& m) {
  io.U64("ino", m.ino);
  io.U32("valid", m.valid);
  io.U64("new_size", m.new_size);
  Fields(io, m.mtime, "mtime");
  io.Vector("written", m.written, kMaxWrittenRanges, kByteRangeSize, [](IO& sub, ByteRange& r) {
    sub.U64("written.offset", r.offset);
    sub.U64("written.length", r.length);
  });
}
template <class IO>
void Fields(IO& io, FallocateRequest& m) {
  io.U64("ino", m.ino);
  io.U32("mode", m.mode);
  io.U64("offset", m.offset);
  io.U64("length", m.length);
}

}  // namespace

// ---- Codec entry points ----

#define DPMFS_DEFINE_CODEC(T)                                    \
  size_t EncodedSize(const T& m) {                               \
    T& mm = const_cast<T&>(m); /* read only: see common/byte_codec.h */ \
    WireSizer sizer;                                       \
    Fields(sizer, mm);                                           \
    return sizer.size();                                         \
  }                                                              \
  void EncodeTo(const T& m, std::vector<uint8_t>* out) {         \
    T& mm = const_cast<T&>(m); /* read only: see common/byte_codec.h */ \
    size_t at = out->size();                                     \
    /* no allocation when the caller reserved (EncodeReply) */   \
    out->resize(at + EncodedSize(m));                            \
    WireWriter writer(out->data() + at);                   \
    Fields(writer, mm);                                          \
    assert(writer.position() == out->data() + out->size());      \
  }                                                              \
  std::vector<uint8_t> Encode(const T& m) {                      \
    std::vector<uint8_t> out;                                    \
    EncodeTo(m, &out);                                           \
    return out;                                                  \
  }                                                              \
  Status Decode(std::span<const uint8_t> payload, T* m) {        \
    WireReader reader(payload, #T);                        \
    Fields(reader, *m);                                          \
    return reader.Finish();                                      \
  }
DPMFS_META_MESSAGES(DPMFS_DEFINE_CODEC)
#undef DPMFS_DEFINE_CODEC

// ---- The caller (a prefix of every request; fixed layout, groups inline) ----

size_t EncodedSize(const Credentials& c) { return kCredentialsMinSize + 4 * c.groups.size(); }

void EncodeTo(const Credentials& c, std::vector<uint8_t>* out) {
  const size_t at = out->size();
  out->resize(at + EncodedSize(c));
  WireWriter w(out->data() + at);
  w.U32("uid", c.uid);
  w.U32("gid", c.gid);
  w.U32("groups", static_cast<uint32_t>(c.groups.size()));
  for (uint32_t g : c.groups) w.U32("groups", g);
}

std::vector<uint8_t> EncodeCall(const Credentials& caller, std::span<const uint8_t> body) {
  std::vector<uint8_t> out;
  out.reserve(EncodedSize(caller) + body.size());
  EncodeTo(caller, &out);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Status SplitCall(std::span<const uint8_t> payload, Credentials* caller,
                 std::span<const uint8_t>* body) {
  WireReader r(payload, "Credentials");
  uint32_t n = 0;
  r.U32("uid", caller->uid);
  r.U32("gid", caller->gid);
  r.U32("groups", n);
  r.Require(n <= kMaxCallerGroups, "groups", "names more than kMaxCallerGroups (1024) groups");
  r.Require(uint64_t{n} * 4 <= r.left(), "groups", "is truncated");
  if (!r.ok()) return r.Finish();
  caller->groups.resize(n);
  for (uint32_t& g : caller->groups) r.U32("groups", g);
  *body = payload.subspan(payload.size() - r.left());
  return Status::OK();
}

std::string_view DataServerStateName(DataServerState s) {
  switch (s) {
    case DataServerState::kUp:
      return "up";
    case DataServerState::kDown:
      return "down";
    case DataServerState::kResyncing:
      return "resyncing";
  }
  return "unknown";
}

std::vector<uint8_t> EncodeErrorReply(int err) {
  if (err <= 0 || err > kMaxErrno) {
    // A caller bug: an "error" reply of 0 would read as success with a missing body.
    // Answer EIO rather than something the client would misread, and say so.
    spdlog::error("meta protocol: EncodeErrorReply({}) is not a positive errno; sending EIO", err);
    err = EIO;
  }
  std::vector<uint8_t> out(4);
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(static_cast<uint32_t>(err) >> (8 * i));
  return out;
}

Status SplitReply(std::span<const uint8_t> payload, int* err, std::span<const uint8_t>* body) {
  if (payload.size() < 4) {
    return Status::InvalidArgument("metadata reply of " + std::to_string(payload.size()) +
                                   " bytes is shorter than its 4-byte errno");
  }
  uint32_t raw = 0;
  for (int i = 0; i < 4; ++i) raw |= uint32_t{payload[i]} << (8 * i);
  int32_t e = static_cast<int32_t>(raw);
  if (e < 0 || e > kMaxErrno) {
    return Status::InvalidArgument("metadata reply with errno " + std::to_string(e) +
                                   " outside 0.." + std::to_string(kMaxErrno));
  }
  if (e != 0 && payload.size() != 4) {
    return Status::InvalidArgument("metadata error reply (errno " + std::to_string(e) +
                                   ") carries " + std::to_string(payload.size() - 4) +
                                   " body bytes");
  }
  *err = e;
  *body = payload.subspan(4);
  return Status::OK();
}

int CheckName(std::string_view name) {
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  if (name.empty() || name == "." || name == "..") return EINVAL;
  if (name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) return EINVAL;
  return 0;
}

}  // namespace dpmfs::meta
