// The metadata operations, one row each. Everything that differs between operations
// and is not their semantics is derived from this table: the opcode number on the wire,
// the name in logs and errors, whether it is journaled (the mutation flag), the request
// and reply messages, which family of handlers it belongs to (metadata/ops_<family>.cc),
// the server's handler registration (MetaService::Handlers, Namespace::Mutate/Read) and
// the client's typed stub (MetaClient::Call<op>).
//
// Adding an operation: one row here, its messages in meta_protocol.h (and their Fields()
// in meta_protocol.cc), one handler Namespace::Do<Name> (kMutation, kSession) or
// Namespace::Read<Name> (kRead) in the family's file, one method of MetaApi, and the
// FUSE op in fs/fuse_ops.cc. Numbers are wire format: never renumber or reuse one.
//
// Kinds:
//   kRead      answered under the shared namespace lock, never journaled
//   kMutation  journaled before the reply, answered from the durable reply cache when
//              re-sent (IsMutation)
//   kSession   journaled like a mutation but about the session itself (register,
//              unregister); not counted as a namespace mutation
//   kLease     renews the session's lease in memory only (heartbeat); handled by the
//              service, not the namespace
//   kAdmin     about the server, not the namespace (stats, a client's pushed stats, the
//              log level): handled by the service, never journaled, no caller policy
//              (the connection's cluster-key handshake is what admits it)
//
// Thread-safety: constants and pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

// clang-format off
//  X(Name,         number, "wire name",     kind,       Request,            Reply,            family)
#define DPMFS_META_OPS(X)                                                                              \
  X(Register,      1, "register",     kSession,  RegisterRequest,    RegisterReply,    session)        \
  X(Heartbeat,     2, "heartbeat",    kLease,    HeartbeatRequest,   HeartbeatReply,   session)        \
  X(Unregister,    3, "unregister",   kSession,  UnregisterRequest,  EmptyReply,       session)        \
  X(Lookup,       10, "lookup",       kRead,     LookupRequest,      EntryReply,       namespace)      \
  X(Getattr,      11, "getattr",      kRead,     GetattrRequest,     AttrReply,        namespace)      \
  X(Setattr,      12, "setattr",      kMutation, SetattrRequest,     AttrReply,        namespace)      \
  X(Create,       13, "create",       kMutation, CreateRequest,      CreateReply,      namespace)      \
  X(Mkdir,        14, "mkdir",        kMutation, MkdirRequest,       EntryReply,       namespace)      \
  X(Mknod,        15, "mknod",        kMutation, MknodRequest,       EntryReply,       namespace)      \
  X(Symlink,      16, "symlink",      kMutation, SymlinkRequest,     EntryReply,       namespace)      \
  X(Readlink,     17, "readlink",     kRead,     ReadlinkRequest,    ReadlinkReply,    namespace)      \
  X(Link,         18, "link",         kMutation, LinkRequest,        EntryReply,       namespace)      \
  X(Unlink,       19, "unlink",       kMutation, UnlinkRequest,      DirsReply,        namespace)      \
  X(Rmdir,        20, "rmdir",        kMutation, UnlinkRequest,      DirsReply,        namespace)      \
  X(Rename,       21, "rename",       kMutation, RenameRequest,      DirsReply,        namespace)      \
  X(Readdir,      22, "readdir",      kRead,     ReaddirRequest,     ReaddirReply,     namespace)      \
  X(Open,         23, "open",         kMutation, OpenRequest,        OpenReply,        files)          \
  X(Release,      24, "release",      kMutation, ReleaseRequest,     EmptyReply,       files)          \
  X(Statfs,       25, "statfs",       kRead,     StatfsRequest,      StatfsReply,      files)          \
  X(Getxattr,     26, "getxattr",     kRead,     GetxattrRequest,    GetxattrReply,    xattr)          \
  X(Setxattr,     27, "setxattr",     kMutation, SetxattrRequest,    EmptyReply,       xattr)          \
  X(Listxattr,    28, "listxattr",    kRead,     ListxattrRequest,   ListxattrReply,   xattr)          \
  X(Removexattr,  29, "removexattr",  kMutation, RemovexattrRequest, EmptyReply,       xattr)          \
  X(Layout,       30, "layout",       kRead,     LayoutRequest,      LayoutReply,      files)          \
  X(Allocate,     31, "allocate",     kMutation, AllocateRequest,    AllocateReply,    files)          \
  X(Commit,       32, "commit",       kMutation, CommitRequest,      AttrReply,        files)          \
  X(Fallocate,    33, "fallocate",    kMutation, FallocateRequest,   AttrReply,        files)          \
  X(ReleaseMany,  34, "release_many", kMutation, ReleaseManyRequest, ReleaseManyReply, files)          \
  X(GetClusterMap, 40, "get_cluster_map", kRead, GetClusterMapRequest, ClusterMapReply, cluster)        \
  X(ReportDataServer, 41, "report_data_server", kRead, ReportDataServerRequest, ClusterMapReply, cluster) \
  X(MarkDegraded, 42, "mark_degraded", kMutation, MarkDegradedRequest, EmptyReply, cluster)          \
  X(Stats,        48, "stats",        kAdmin,    StatsRequest,       StatsReply,       admin)          \
  X(PushStats,    49, "push_stats",   kAdmin,    PushStatsRequest,   EmptyReply,       admin)          \
  X(LogLevel,     50, "log_level",    kAdmin,    LogLevelRequest,    EmptyReply,       admin)
// clang-format on
// (ReportDataServer is a read for the namespace: the service probes the server outside
// the namespace lock and journals a state change as its own record, then answers with
// the map; docs/replication.md.)
// (Open and Release are mutations: they create and drop open handles, which decide when
// an unlinked file's blocks are freed, and open(O_TRUNC) truncates. ReleaseMany is
// several Releases in one journaled mutation: clients batch them.)

enum class OpKind : uint8_t { kRead, kMutation, kSession, kLease, kAdmin };

enum class Opcode : uint16_t {
#define DPMFS_OP_ENUM(Name, number, str, kind, Req, Rep, family) k##Name = number,
  DPMFS_META_OPS(DPMFS_OP_ENUM)
#undef DPMFS_OP_ENUM
};

// One row of the table as data (for loops: registration, tests, tools).
struct OpInfo {
  Opcode op;
  std::string_view name;
  OpKind kind;
  std::string_view family;
};

inline constexpr auto kMetaOps = std::to_array<OpInfo>({
#define DPMFS_OP_INFO(Name, number, str, kind, Req, Rep, family) \
  OpInfo{Opcode::k##Name, str, OpKind::kind, #family},
    DPMFS_META_OPS(DPMFS_OP_INFO)
#undef DPMFS_OP_INFO
});

// Opcode numbers stay below this (an index of the rows by number keeps FindOp O(1)).
inline constexpr uint16_t kMaxOpcode = 63;

namespace ops_internal {
constexpr std::array<int8_t, kMaxOpcode + 1> MakeOpIndex() {
  std::array<int8_t, kMaxOpcode + 1> index{};
  for (int8_t& i : index) i = -1;
  for (size_t i = 0; i < kMetaOps.size(); ++i) {
    index[static_cast<uint16_t>(kMetaOps[i].op)] = static_cast<int8_t>(i);
  }
  return index;
}
constexpr bool NumbersValid() {
  for (size_t i = 0; i < kMetaOps.size(); ++i) {
    const auto n = static_cast<uint16_t>(kMetaOps[i].op);
    if (n == 0 || n > kMaxOpcode) return false;
    for (size_t j = 0; j < i; ++j) {
      if (kMetaOps[j].op == kMetaOps[i].op || kMetaOps[j].name == kMetaOps[i].name) return false;
    }
  }
  return true;
}
inline constexpr auto kOpIndex = MakeOpIndex();
}  // namespace ops_internal
static_assert(ops_internal::NumbersValid(),
              "meta_ops.h: opcode numbers must be 1..kMaxOpcode, numbers and names unique");

// The row of `op`, or nullptr for a number no operation has (refused by the server).
constexpr const OpInfo* FindOp(Opcode op) {
  const auto n = static_cast<uint16_t>(op);
  if (n > kMaxOpcode || ops_internal::kOpIndex[n] < 0) return nullptr;
  return &kMetaOps[static_cast<size_t>(ops_internal::kOpIndex[n])];
}
constexpr const OpInfo* FindOp(uint16_t number) { return FindOp(static_cast<Opcode>(number)); }

// "lookup", ...; "unknown" for a number that is no operation.
constexpr std::string_view OpcodeName(Opcode op) {
  const OpInfo* i = FindOp(op);
  return i != nullptr ? i->name : std::string_view("unknown");
}
// True for opcodes that change the namespace (journaled, answered from the reply cache
// when retried): kind kMutation.
constexpr bool IsMutation(Opcode op) {
  const OpInfo* i = FindOp(op);
  return i != nullptr && i->kind == OpKind::kMutation;
}
// Journaled and answered from the durable reply cache: kMutation and kSession.
constexpr bool IsJournaled(Opcode op) {
  const OpInfo* i = FindOp(op);
  return i != nullptr && (i->kind == OpKind::kMutation || i->kind == OpKind::kSession);
}

// The messages of an operation: OpTypes<Opcode::kLookup>::Request is LookupRequest.
template <Opcode op>
struct OpTypes;
#define DPMFS_OP_TYPES(Name, number, str, kind_, Req, Rep, family) \
  template <>                                                      \
  struct OpTypes<Opcode::k##Name> {                                \
    using Request = Req;                                           \
    using Reply = Rep;                                             \
    static constexpr OpKind kind = OpKind::kind_;                  \
  };
DPMFS_META_OPS(DPMFS_OP_TYPES)
#undef DPMFS_OP_TYPES

}  // namespace dpmfs::meta
