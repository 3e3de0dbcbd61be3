// What a data client and a data server say to each other: the connection handshake
// (in the transport's private data) and the small messages of the `imm` and `rpc`
// persist methods. All integers little-endian, fixed width, encoded and decoded through
// common/byte_codec.h; decoders validate every field, since they come from the wire, and
// a truncated message's error names the field and byte offset where it ended.
//
// Thread-safety: values and pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

inline constexpr uint32_t kDataProtocolMagic = 0x44504D44;  // "DPMD"
inline constexpr uint16_t kDataProtocolVersion = 1;
inline constexpr uint32_t kMaxQueueDepth = 1024;
inline constexpr uint32_t kMaxIoSize = 16u << 20;
// The most receive-buffer memory one rpc connection may make its data server allocate
// (queue depth x (header + max I/O size)): a peer must not make a server zero-fill
// gigabytes, or abort it, with one CONNECT. The clients' defaults (16 x 1 MiB) use 16 MiB.
inline constexpr uint64_t kMaxRpcReceiveBytes = 64ull << 20;

// What a connection is for (the byte after the method, once padding; older clients send
// 0). kAdmin: no data, queue depth 1; the client SENDs AdminRequests and the server
// answers each with an AdminReply (stats, log level; `dpmfs stats`). The cluster-key
// handshake of the transport admits it like any other connection.
enum class ConnectPurpose : uint8_t { kData = 0, kAdmin = 1 };

// Client → server, in the connect private data (16 of 56 bytes).
struct ConnectRequest {
  PersistMethod method = PersistMethod::kRead;
  uint32_t queue_depth = 16;
  uint32_t max_io_size = 1u << 20;
  // Last, so that {method, depth, size} initializers keep meaning what they meant.
  ConnectPurpose purpose = ConnectPurpose::kData;
};
std::vector<uint8_t> EncodeConnectRequest(const ConnectRequest& r);
Result<ConnectRequest> DecodeConnectRequest(std::span<const uint8_t> data);

// Server → client, in the accept private data.
struct ServerInfo {
  transport::RemoteRegion pool;  // the pool's data area
  transport::RemoteRegion ring;  // imm: descriptor ring (queue_depth slots); else empty
  std::array<uint8_t, 16> cluster{};
  uint32_t pool_index = 0;
  uint32_t block_size = 0;
  bool is_pmem = false;
  // Which format of the pool this is (its header's creation time, pool::PoolInfo): a
  // pool deleted and formatted again at the same index has another one, so the metadata
  // server knows to rebuild it in full (docs/replication.md, "Full rebuild"). 0: not
  // said (a data server from before this field). On the wire after the fields above,
  // announced by flag kServerInfoHasInstance, so older peers ignore it.
  uint64_t pool_instance = 0;
};
inline constexpr uint16_t kServerInfoIsPmem = 1;
inline constexpr uint16_t kServerInfoHasInstance = 2;
std::vector<uint8_t> EncodeServerInfo(const ServerInfo& s);
Result<ServerInfo> DecodeServerInfo(std::span<const uint8_t> data);

// imm: the descriptor a client writes into ring slot `imm` before WRITE_WITH_IMM;
// rpc: the header in front of the data of a SEND.
//
// kDescriptorZero (rpc only): the SEND is the header alone and asks the server to make
// [offset, offset+length) read as zeros, durably, before it replies. The metadata
// server uses it to scrub freed blocks before they are allocated again
// (metadata/block_scrubber.h): a client never pads blocks it did not write.
inline constexpr uint32_t kDescriptorZero = 1;
struct WriteDescriptor {
  uint64_t offset = 0;  // in the pool's data area
  uint32_t length = 0;
  uint32_t slot = 0;
  uint32_t flags = 0;  // kDescriptorZero or 0; other bits are refused
};
inline constexpr size_t kDescriptorSize = 32;
void EncodeDescriptor(const WriteDescriptor& d, uint8_t out[kDescriptorSize]);
Result<WriteDescriptor> DecodeDescriptor(std::span<const uint8_t> in);

// Server → client (SEND) after persisting an imm/rpc write.
struct Reply {
  uint32_t slot = 0;
  StatusCode code = StatusCode::kOk;
};
inline constexpr size_t kReplySize = 16;
void EncodeReply(const Reply& r, uint8_t out[kReplySize]);
Result<Reply> DecodeReply(std::span<const uint8_t> in);

// ---- Admin connections (ConnectPurpose::kAdmin) ----
// Client → server: one request per SEND, at most kAdminRequestSize bytes.
//   u32 magic | u16 version | u16 kind | then by kind:
//     kStats, kLogLevel: str level (kLogLevel only, else empty)
//     kFence: u64 epoch
// kFence (the metadata server, docs/replication.md "Fencing"): from now on refuse data
// connections whose session token's epoch is below `epoch`, and revoke the established
// ones below it, before replying. The fence only rises: a lower epoch changes nothing.
// The reply's body is the fence now in force, u64 little-endian (8 bytes).
enum class AdminKind : uint16_t { kStats = 1, kLogLevel = 2, kFence = 3 };
struct AdminRequest {
  AdminKind kind = AdminKind::kStats;
  std::string level;
  uint64_t epoch = 0;  // kFence
};
// The body of a kFence reply, and its decoding (Corruption unless exactly 8 bytes).
std::string EncodeFenceBody(uint64_t fence);
Result<uint64_t> DecodeFenceBody(std::string_view body);
inline constexpr uint32_t kAdminRequestSize = 64;
inline constexpr size_t kMaxAdminLevelName = 16;
// Server → client: u32 magic | u16 version | i32 status code | str message | str body
// (kStats: a metrics::StatsReport). At most kMaxAdminReplySize bytes.
struct AdminReply {
  StatusCode code = StatusCode::kOk;
  std::string message;  // why, when code is not kOk
  std::string body;
};
inline constexpr size_t kMaxAdminMessage = 512;
inline constexpr uint32_t kMaxAdminReplySize = (128u << 10) + 1024;
std::vector<uint8_t> EncodeAdminRequest(const AdminRequest& r);
Result<AdminRequest> DecodeAdminRequest(std::span<const uint8_t> in);
std::vector<uint8_t> EncodeAdminReply(const AdminReply& r);
Result<AdminReply> DecodeAdminReply(std::span<const uint8_t> in);

}  // namespace dpmfs::datapath
