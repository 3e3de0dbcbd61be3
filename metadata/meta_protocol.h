// The metadata RPC protocol: what a client (the FUSE client, tests, dpmfs-bench meta)
// and dpmfs-meta say to each other over rpc/ (one opcode per operation).
//
// Every request payload is one of the *Request structs below, every reply payload is
//   [int32 err][body]
// where err is 0 or a positive Linux errno (ENOENT, EEXIST, ...) exactly as a kernel
// would return it, and body is the operation's *Reply struct (present only when err==0).
// A payload that does not decode is refused by the handler with an RPC-level
// InvalidArgument (the RPC status), never with an errno: errno values are answers about
// the namespace, RPC statuses are about the message.
//
// Encoding: little-endian, fixed-width integers, strings and byte arrays as u32 length +
// bytes, vectors as u32 count + elements. Decoders check every length against what is
// left of the buffer and against the limits below, reject trailing bytes, and never read
// out of bounds: nothing from the wire is trusted.
//
// Thread-safety: free functions on values.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "common/status.h"

namespace dpmfs::meta {

using InodeId = uint64_t;
inline constexpr InodeId kRootInode = 1;

// --- Limits (real ones: see the issue; Octopus had 50-byte names, we have 255) ---
inline constexpr size_t kMaxNameLength = 255;        // bytes, like NAME_MAX
inline constexpr size_t kMaxSymlinkLength = 4095;    // bytes, PATH_MAX - 1
inline constexpr size_t kMaxXattrNameLength = 255;   // XATTR_NAME_MAX
inline constexpr size_t kMaxXattrValueLength = 65536;  // XATTR_SIZE_MAX
inline constexpr size_t kMaxXattrListLength = 65536;   // XATTR_LIST_MAX
inline constexpr uint32_t kMaxLinks = 65000;         // EMLINK beyond (ext4's limit)
inline constexpr uint32_t kMaxReaddirEntries = 1024;  // per Readdir reply
inline constexpr uint32_t kMaxExtentsPerReply = 4096;
inline constexpr uint32_t kMaxWrittenRanges = 1024;   // per Commit
inline constexpr uint32_t kMaxDataServers = 256;
// The most copies of a block (the replication factor R; docs/replication.md).
inline constexpr uint32_t kMaxReplicas = 3;
inline constexpr uint64_t kMaxFileSize = 1ull << 44;  // 16 TiB of (sparse) address space
// The RPC message size the metadata server grants (an xattr value of 64 KiB must fit).
inline constexpr uint32_t kMetaMaxMessage = 256u << 10;

// The opcodes (Opcode, OpcodeName, IsMutation) are the rows of metadata/meta_ops.h,
// included at the end of this header.

struct Timespec {
  int64_t sec = 0;
  uint32_t nsec = 0;  // < 1e9 (validated)
  bool operator==(const Timespec&) const = default;
  // Time order (sec, then nsec): one comparison for every "later than" in the tree.
  auto operator<=>(const Timespec&) const = default;
};

// What stat(2) shows. mode carries the file type bits (S_IFREG, S_IFDIR, ...).
struct InodeAttr {
  InodeId ino = 0;
  uint64_t generation = 0;  // never reused with the same ino
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units actually allocated
  uint64_t rdev = 0;
  Timespec atime, mtime, ctime;
  bool operator==(const InodeAttr&) const = default;
};

// One piece of a file's data: [file_offset, file_offset+length) lives at pool_offset of
// data server `server` (its index in ClusterInfo::servers; pool_offset is relative to
// that pool's data area). Offsets and lengths are multiples of the block size. Allocation
// places each stripe unit on its own server, but with one data server consecutive units
// may merge into one extent: clients must not assume extents end at stripe boundaries.
struct Extent {
  uint64_t file_offset = 0;
  uint64_t length = 0;
  uint64_t pool_offset = 0;
  uint32_t server = 0;
  // Allocated but never written (fallocate, or allocated for a write that has not been
  // committed): reads as zeros. A client writing into it writes whole blocks (zero
  // padding) and names the blocks in Commit::written, which clears the flag.
  static constexpr uint32_t kUnwritten = 1;
  // Allocated by Allocate at or past EOF (the blocks the write asked for and the
  // read-ahead of allocation to the end of the stripe unit). Freed, while still
  // unwritten and past EOF, at the file's last Release or when the allocating session's
  // lease lapses, so an append whose Commit never came leaks nothing. Fallocate'd blocks
  // never carry it.
  static constexpr uint32_t kSpeculative = 2;
  uint32_t flags = 0;
  bool operator==(const Extent&) const = default;
};

struct DataServerInfo {
  uint32_t index = 0;
  std::string endpoint;    // "host:port" as the metadata server was told
  uint64_t data_size = 0;  // bytes of the pool's data area
};

struct ClusterInfo {
  std::array<uint8_t, 16> cluster_uuid{};
  uint32_t block_size = 0;   // allocation unit, bytes
  uint32_t stripe_unit = 0;  // bytes, a multiple of block_size
  std::vector<DataServerInfo> servers;
  // Copies of each block (1..kMaxReplicas, at most servers.size()); where they are is
  // metadata/placement.h.
  uint32_t replicas = 1;
};

// ---- The caller ----
// Every request payload starts with the credentials of the user it acts for, then the
// operation's request (below):
//   u32 uid | u32 gid | u32 n | n x u32 supplementary group
// The FUSE client sends the uid/gid/groups of the process behind each FUSE request;
// dpmfs-meta maps them (root_squash, allowed uids per client host) and checks every
// operation against the file modes as a local file system would
// (metadata/permissions.h). The client host is trusted to tell the truth about its
// users (AUTH_SYS); authentication of the host itself is the connection's business.
inline constexpr uint32_t kMaxCallerGroups = 1024;  // more is refused (InvalidArgument)
inline constexpr size_t kCredentialsMinSize = 12;
struct Credentials {
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Inline up to 16: decoding a request allocates nothing for an ordinary user.
  boost::container::small_vector<uint32_t, 16> groups;
  bool operator==(const Credentials&) const = default;
};
size_t EncodedSize(const Credentials& c);
void EncodeTo(const Credentials& c, std::vector<uint8_t>* out);
// `caller` followed by the encoded request `body`: a request payload.
std::vector<uint8_t> EncodeCall(const Credentials& caller, std::span<const uint8_t> body);
// Splits a request payload into its caller and the operation's request bytes (a view
// into `payload`). InvalidArgument when the credentials are truncated or name more than
// kMaxCallerGroups groups.
Status SplitCall(std::span<const uint8_t> payload, Credentials* caller,
                 std::span<const uint8_t>* body);

// ---- Requests and replies (field order = wire order) ----

struct RegisterRequest {
  std::string client_name;  // for logs and `dpmfs status` ("host:pid /mnt/x")
};
struct RegisterReply {
  uint32_t lease_ms = 0;  // heartbeat at least every lease_ms/3
  ClusterInfo cluster;
};
struct HeartbeatRequest {};
// The most bytes of a session token (datapath/session_token.h; transport::kMaxCredential).
inline constexpr size_t kMaxDataTokenSize = 128;
struct HeartbeatReply {
  // false: the server does not know this session (it expired): register again; open
  // handles of the old session are gone.
  bool known = false;
  // known, and the server issues session tokens: a fresh token for this session, lasting
  // one lease, which the client presents to data servers (docs/security.md, "Tokens").
  // Issued on the lease path only, never by a mutation: tokens are not journaled and
  // never sit in the durable reply cache.
  std::string data_token;
  // The cluster map's epoch (docs/replication.md): a client holding an older map fetches
  // it again (GetClusterMap) before its next write.
  uint64_t epoch = 0;
};
struct UnregisterRequest {};
struct EmptyReply {};

// Admin (meta_ops.h kind kAdmin): answered by the service itself, never journaled.
// Stats: this server's report and the last one each live client pushed, as a
// metrics::StatsBundle (common/stats_report.h), bounded to fit one message.
struct StatsRequest {};
struct StatsReply {
  std::string bundle;
};
// A client's own report (metrics::StatsReport bytes), sent every few heartbeats.
struct PushStatsRequest {
  std::string report;
};
// Sets the server's log level ("debug", ...): `dpmfs log-level`.
struct LogLevelRequest {
  std::string level;
};
// The most bytes of a stats bundle in one reply (under kMetaMaxMessage with room for
// the RPC header and the errno prefix).
inline constexpr size_t kMaxStatsBundleBytes = (256u << 10) - 4096;
inline constexpr size_t kMaxLogLevelName = 16;

struct LookupRequest {
  InodeId parent = 0;
  std::string name;
};
// The most directories one namespace change touches: rename's two parents.
inline constexpr uint32_t kMaxChangedDirs = 2;
// Lookup, Mkdir, Mknod, Symlink, Link reply with the entry's attributes.
struct EntryReply {
  InodeAttr attr;
  // Mutations: the parent directory's attributes after the change (its mtime, ctime,
  // nlink moved). The kernel drops a directory's cached attributes after every change
  // in it and, with default_permissions, asks for them again at the next path walk;
  // with these the client answers that itself. Empty for Lookup.
  std::vector<InodeAttr> dirs;
};
struct GetattrRequest {
  InodeId ino = 0;
};
struct AttrReply {
  InodeAttr attr;
};

struct SetattrRequest {
  InodeId ino = 0;
  static constexpr uint32_t kMode = 1, kUid = 2, kGid = 4, kSize = 8, kAtime = 16,
                            kMtime = 32, kAtimeNow = 64, kMtimeNow = 128, kCtime = 256;
  // With kAtime alone: a client's lazily committed access time (reads). It never moves
  // the atime back and leaves the ctime alone (an access is no change); anything else
  // with it is EINVAL.
  static constexpr uint32_t kAccessed = 512;
  uint32_t valid = 0;  // which of the fields below to apply
  uint32_t mode = 0;   // permission bits only (07777); the type is immutable
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;   // truncate: shrinking frees blocks, growing makes a hole
  Timespec atime, mtime, ctime;
};

// kNewInodeUmask: the creating process's umask, which the server applies to the mode of
// a new inode unless its parent directory has a default ACL (POSIX: the default ACL then
// replaces the umask). A client whose kernel masked the mode already (a mount without
// ACLs) sends 0. The field is the last of its request and may be absent (journal
// records and clients from before it): absent is 0.
struct CreateRequest {
  InodeId parent = 0;
  std::string name;
  uint32_t mode = 0;   // S_IFREG | permission bits
  uint32_t uid = 0, gid = 0;
  uint32_t flags = 0;  // open(2) flags: O_EXCL -> EEXIST if it exists; O_TRUNC
  uint32_t umask = 0;  // kNewInodeUmask
};
struct CreateReply {
  InodeAttr attr;
  uint64_t handle = 0;   // open handle, to pass to Release
  bool created = false;  // false: it existed and was opened
  std::vector<InodeAttr> dirs;  // as EntryReply::dirs (empty when nothing was created)
};
struct MkdirRequest {
  InodeId parent = 0;
  std::string name;
  uint32_t mode = 0;  // permission bits
  uint32_t uid = 0, gid = 0;
  uint32_t umask = 0;  // kNewInodeUmask
};
struct MknodRequest {
  InodeId parent = 0;
  std::string name;
  uint32_t mode = 0;  // S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK | permission bits
  uint64_t rdev = 0;
  uint32_t uid = 0, gid = 0;
  uint32_t umask = 0;  // kNewInodeUmask
};
struct SymlinkRequest {
  InodeId parent = 0;
  std::string name;
  std::string target;
  uint32_t uid = 0, gid = 0;
};
struct ReadlinkRequest {
  InodeId ino = 0;
};
struct ReadlinkReply {
  std::string target;
};
struct LinkRequest {
  InodeId ino = 0;
  InodeId new_parent = 0;
  std::string new_name;
};
struct UnlinkRequest {  // also Rmdir
  InodeId parent = 0;
  std::string name;
};
// Unlink, Rmdir, Rename: the attributes of the directories the change touched (one,
// or rename's two parents when they differ), as EntryReply::dirs.
struct DirsReply {
  std::vector<InodeAttr> dirs;
};
struct RenameRequest {
  InodeId parent = 0;
  std::string name;
  InodeId new_parent = 0;
  std::string new_name;
  uint32_t flags = 0;  // RENAME_NOREPLACE (1) | RENAME_EXCHANGE (2); others -> EINVAL
};

struct ReaddirRequest {
  InodeId ino = 0;
  uint64_t cookie = 0;  // 0: from the start; else the cookie of the last entry seen
  uint32_t max_entries = 0;  // 1..kMaxReaddirEntries
  bool plus = false;         // include attributes
};
struct DirEntry {
  std::string name;
  InodeId ino = 0;
  uint32_t mode = 0;  // type bits at least; full mode when plus
  // Stable: an entry keeps its cookie while it exists; entries added later get larger
  // ones, so a readdir continuing from a cookie neither repeats nor skips survivors.
  // "." and ".." are not returned (the client synthesizes them).
  uint64_t cookie = 0;
  InodeAttr attr;  // valid when the request had plus
};
struct ReaddirReply {
  std::vector<DirEntry> entries;
  bool eof = false;
  // The largest cookie the directory has handed out (0: none yet), at least every
  // entry's cookie. A client ends a listing there (fs/README.md, "Semantics"): an entry
  // renamed meanwhile comes back with a larger cookie and would be listed twice.
  uint64_t last_cookie = 0;
};

struct OpenRequest {
  InodeId ino = 0;
  uint32_t flags = 0;  // open(2) flags; O_TRUNC truncates a regular file to 0
};
struct OpenReply {
  InodeAttr attr;  // fresh, for close-to-open
  uint64_t handle = 0;
};
struct ReleaseRequest {
  InodeId ino = 0;
  uint64_t handle = 0;
};

// Releases handles of this session in one mutation. Handles that are not open (or name
// another inode) are skipped and counted: the reply is never an errno, so that what was
// released is what the journal replays.
inline constexpr uint32_t kMaxReleasesPerRequest = 1024;
struct ReleaseManyRequest {
  std::vector<ReleaseRequest> handles;
};
struct ReleaseManyReply {
  uint32_t refused = 0;  // handles skipped (EBADF or EINVAL as a Release would say)
};

// ---- The cluster map (docs/replication.md, "Cluster map, epochs, failure") ----
// A data server's state in the map: up (read and write set), down (neither: its copies
// go stale and are recorded in its dirty set), resyncing (write set only, while the
// metadata server copies its dirty set to it).
enum class DataServerState : uint8_t { kUp = 0, kDown = 1, kResyncing = 2 };
std::string_view DataServerStateName(DataServerState s);
struct DataServerStatus {
  DataServerState state = DataServerState::kUp;
  uint64_t dirty_bytes = 0;         // stale bytes still to copy to it (units x unit size)
  uint64_t resync_done_bytes = 0;   // copied by the current (or last) resync
  uint64_t resync_total_bytes = 0;  // what that resync had to copy when it started
  bool operator==(const DataServerStatus&) const = default;
};
struct GetClusterMapRequest {};
struct ClusterMapReply {
  uint64_t epoch = 0;
  std::vector<DataServerStatus> servers;  // ClusterInfo order
  bool operator==(const ClusterMapReply&) const = default;
};
// A client that could not reach data server `server` tells the metadata server, which
// probes it itself and answers with the map (with the server down if the probe failed).
struct ReportDataServerRequest {
  uint32_t server = 0;
  uint64_t epoch = 0;  // the map the client held (informational, logged)
};
// A client about to write the primary ranges below while one of their copies is down
// (in map `epoch`): the metadata server journals their stripe units into the down
// servers' dirty sets before it replies. ESTALE when `epoch` is not the current one.
inline constexpr uint32_t kMaxDegradedRanges = 1024;
struct PrimaryRange {
  uint32_t server = 0;  // the primary copy's data server
  uint64_t pool_offset = 0;
  uint64_t length = 0;
  bool operator==(const PrimaryRange&) const = default;
};
struct MarkDegradedRequest {
  uint64_t epoch = 0;
  std::vector<PrimaryRange> ranges;
};

struct StatfsRequest {};
struct StatfsReply {
  uint32_t block_size = 0;
  uint64_t total_blocks = 0;  // over every data pool
  uint64_t free_blocks = 0;
  uint64_t total_inodes = 0;
  uint64_t free_inodes = 0;
  uint32_t name_max = kMaxNameLength;
};

struct GetxattrRequest {
  InodeId ino = 0;
  std::string name;
};
struct GetxattrReply {
  std::string value;  // bytes
};
struct SetxattrRequest {
  InodeId ino = 0;
  std::string name;
  std::string value;
  uint32_t flags = 0;  // XATTR_CREATE (1) / XATTR_REPLACE (2)
};
struct ListxattrRequest {
  InodeId ino = 0;
};
struct ListxattrReply {
  std::vector<std::string> names;
};
struct RemovexattrRequest {
  InodeId ino = 0;
  std::string name;
};

struct LayoutRequest {
  InodeId ino = 0;
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: to the end of the file's last extent
};
struct LayoutReply {
  InodeAttr attr;
  std::vector<Extent> extents;  // sorted by file_offset; holes are absent
  // true when the reply stopped at kMaxExtentsPerReply before the range's end: ask
  // again from the end of the last extent.
  bool truncated = false;
};
// Extents for a write of [offset, offset+length): existing extents are returned as
// they are, holes are allocated (kUnwritten) striped over the data servers. The server
// may allocate more than asked past the range (to the end of the stripe unit) so that
// small appends do not each need an Allocate; such blocks not committed by the time the
// file's last handle is released (or its session's lease lapses) are freed.
struct AllocateRequest {
  InodeId ino = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};
struct AllocateReply {
  std::vector<Extent> extents;  // covering at least [offset, offset+length)
};
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
// After the data of a write is durable on the data servers: size = max(size, new_size)
// when kSize is set, mtime/ctime set, and the blocks in `written` lose kUnwritten.
struct CommitRequest {
  InodeId ino = 0;
  static constexpr uint32_t kSize = 1;
  uint32_t valid = 0;
  uint64_t new_size = 0;
  Timespec mtime;
  std::vector<ByteRange> written;  // block-aligned
};
struct FallocateRequest {
  InodeId ino = 0;
  uint32_t mode = 0;  // 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE,
                      // FALLOC_FL_ZERO_RANGE; others -> EOPNOTSUPP
  uint64_t offset = 0;
  uint64_t length = 0;
};

// ---- Codec ----
// EncodeRequest(x) is the request payload of x; DecodeRequest parses one (InvalidArgument
// with what was wrong: truncated, trailing bytes, a length over its limit, a name with
// '/' or NUL, nsec >= 1e9...). The same for replies, which carry the errno prefix.
// clang-format off
#define DPMFS_META_MESSAGES(X)                                                             \
  X(RegisterRequest) X(RegisterReply) X(HeartbeatRequest) X(HeartbeatReply)               \
  X(UnregisterRequest) X(EmptyReply) X(LookupRequest) X(EntryReply) X(GetattrRequest)     \
  X(AttrReply) X(SetattrRequest) X(CreateRequest) X(CreateReply) X(MkdirRequest)          \
  X(MknodRequest) X(SymlinkRequest) X(ReadlinkRequest) X(ReadlinkReply) X(LinkRequest)    \
  X(UnlinkRequest) X(DirsReply) X(RenameRequest) X(ReaddirRequest) X(ReaddirReply)        \
  X(OpenRequest) X(OpenReply) X(ReleaseRequest) X(ReleaseManyRequest) X(ReleaseManyReply)  \
  X(StatfsRequest) X(StatfsReply)                                                         \
  X(GetxattrRequest) X(GetxattrReply) X(SetxattrRequest) X(ListxattrRequest)              \
  X(ListxattrReply) X(RemovexattrRequest) X(LayoutRequest) X(LayoutReply)                 \
  X(AllocateRequest) X(AllocateReply) X(CommitRequest) X(FallocateRequest)              \
  X(GetClusterMapRequest) X(ClusterMapReply) X(ReportDataServerRequest)                   \
  X(MarkDegradedRequest) X(StatsRequest) X(PushStatsRequest) X(StatsReply) X(LogLevelRequest)
// clang-format on

#define DPMFS_DECLARE_CODEC(T)                                   \
  size_t EncodedSize(const T& m);                                \
  std::vector<uint8_t> Encode(const T& m);                       \
  void EncodeTo(const T& m, std::vector<uint8_t>* out);          \
  Status Decode(std::span<const uint8_t> payload, T* m);
DPMFS_META_MESSAGES(DPMFS_DECLARE_CODEC)
#undef DPMFS_DECLARE_CODEC

// A reply payload: [int32 err][Encode(body)] when err == 0, just [err] otherwise.
template <class Body>
std::vector<uint8_t> EncodeReply(const Body& body) {
  // Sized once: every reply of the metadata server goes through here.
  std::vector<uint8_t> out;
  out.reserve(4 + EncodedSize(body));
  out.resize(4);
  EncodeTo(body, &out);
  return out;
}
std::vector<uint8_t> EncodeErrorReply(int err);  // err > 0
// Splits a reply into its errno and body. InvalidArgument when shorter than 4 bytes, the
// errno is negative, or an error reply carries a body.
Status SplitReply(std::span<const uint8_t> payload, int* err, std::span<const uint8_t>* body);

// Name checks shared by client and server: ENAMETOOLONG over kMaxNameLength, EINVAL for
// "", ".", "..", or a name containing '/' or NUL. Returns 0 when valid.
int CheckName(std::string_view name);

}  // namespace dpmfs::meta

// The operation table needs the messages above; everyone who knows the messages knows
// the opcodes.
#include "metadata/meta_ops.h"  // IWYU pragma: export
