#include "datapath/data_protocol.h"

#include <cstring>
#include <string>

#include "common/byte_codec.h"
#include "datapath/persist/persist_strategy.h"

// Every message is laid out once, by a Fields function walked by the project's byte codec
// (common/byte_codec.h): ByteWriter encodes, ByteReader decodes with bounds checks that
// name the field ("ConnectRequest.queue_depth (byte 8 of 10) is truncated ..."). The
// bytes are those of the first protocol version: little-endian, fixed width, no
// trailing-byte check (a transport may pad private data).

namespace dpmfs::datapath {
namespace {

using codec::ByteReader;
using codec::ByteWriter;

constexpr size_t kConnectRequestSize = 16;
// The first version's 72 bytes, then the pool instance (kServerInfoHasInstance).
constexpr size_t kServerInfoSize = 80;

// The magic and version every handshake message starts with.
template <class IO>
void Header(IO& io, uint32_t& magic, uint16_t& version) {
  io.U32("magic", magic);
  io.U16("version", version);
}

// Decode-side checks of the header, after the whole message was read.
Status CheckHeader(uint32_t magic, uint16_t version, const char* what) {
  if (magic != kDataProtocolMagic) {
    return Status::Corruption(std::string(what) + " is not from dpmfs (bad magic)");
  }
  if (version != kDataProtocolVersion) {
    return Status::NotSupported(std::string(what) + " has protocol version " +
                                std::to_string(version) + "; this dpmfs speaks " +
                                std::to_string(kDataProtocolVersion));
  }
  return Status::OK();
}

// A truncated message: Corruption, with the codec's field-naming message.
Status Truncated(ByteReader& r) { return Status::Corruption(r.Finish().message()); }

template <class IO>
void Fields(IO& io, ConnectRequest& req, uint8_t& method, uint8_t& purpose) {
  io.U8("method", method);
  io.U8("purpose", purpose);
  io.U32("queue_depth", req.queue_depth);
  io.U32("max_io_size", req.max_io_size);
}

template <class IO>
void Fields(IO& io, transport::RemoteRegion& r, const char* addr, const char* length,
            const char* rkey) {
  io.U64(addr, r.addr);
  io.U64(length, r.length);
  io.U32(rkey, r.rkey);
}

template <class IO>
void Fields(IO& io, ServerInfo& s, uint16_t& flags) {
  io.U16("flags", flags);
  Fields(io, s.pool, "pool.addr", "pool.length", "pool.rkey");
  Fields(io, s.ring, "ring.addr", "ring.length", "ring.rkey");
  io.Fixed("cluster", s.cluster);
  io.U32("pool_index", s.pool_index);
  io.U32("block_size", s.block_size);
  // Only when announced: a data server from before the field sends 72 bytes (or pads).
  if ((flags & kServerInfoHasInstance) != 0) io.U64("pool_instance", s.pool_instance);
}

// The descriptor: 24 bytes of fields, then zeros up to kDescriptorSize.
template <class IO>
void Fields(IO& io, WriteDescriptor& d, uint32_t& magic) {
  io.U32("magic", magic);
  io.U32("slot", d.slot);
  io.U64("offset", d.offset);
  io.U32("length", d.length);
  io.U32("flags", d.flags);
}

template <class IO>
void Fields(IO& io, AdminRequest& a, uint32_t& magic, uint16_t& version, uint16_t& kind) {
  Header(io, magic, version);
  io.U16("kind", kind);
  // The decoder reads `kind` before it gets here: an unknown kind reads as the level
  // form and is refused after.
  if (kind == static_cast<uint16_t>(AdminKind::kFence)) {
    io.U64("epoch", a.epoch);
  } else {
    io.Bytes("level", a.level, kMaxAdminLevelName);
  }
}
template <class IO>
void Fields(IO& io, AdminReply& a, uint32_t& magic, uint16_t& version, int32_t& code) {
  Header(io, magic, version);
  io.I32("code", code);
  io.Bytes("message", a.message, kMaxAdminMessage);
  io.Bytes("body", a.body, kMaxAdminReplySize);
}

// The reply: 12 bytes of fields, then zeros up to kReplySize.
template <class IO>
void Fields(IO& io, Reply& r, uint32_t& magic, int32_t& code) {
  io.U32("magic", magic);
  io.U32("slot", r.slot);
  io.I32("code", code);
}

}  // namespace

std::vector<uint8_t> EncodeConnectRequest(const ConnectRequest& req) {
  std::vector<uint8_t> out(kConnectRequestSize);
  ByteWriter w(out.data());
  uint32_t magic = kDataProtocolMagic;
  uint16_t version = kDataProtocolVersion;
  uint8_t method = static_cast<uint8_t>(req.method), purpose = static_cast<uint8_t>(req.purpose);
  Header(w, magic, version);
  Fields(w, const_cast<ConnectRequest&>(req), method, purpose);
  return out;
}

Result<ConnectRequest> DecodeConnectRequest(std::span<const uint8_t> data) {
  ByteReader r(data, "ConnectRequest");
  uint32_t magic = 0;
  uint16_t version = 0;
  Header(r, magic, version);
  if (!r.ok()) return Truncated(r);
  DPMFS_RETURN_IF_ERROR(CheckHeader(magic, version, "connection request"));
  ConnectRequest req;
  uint8_t method = 0, purpose = 0;
  Fields(r, req, method, purpose);
  if (!r.ok()) return Truncated(r);
  if (purpose > static_cast<uint8_t>(ConnectPurpose::kAdmin)) {
    return Status::InvalidArgument("unknown connection purpose " + std::to_string(purpose) +
                                   " (0 data, 1 admin)");
  }
  req.purpose = static_cast<ConnectPurpose>(purpose);
  if (persist::Find(static_cast<PersistMethod>(method)) == nullptr) {
    return Status::InvalidArgument("unknown persist method " + std::to_string(method));
  }
  req.method = static_cast<PersistMethod>(method);
  if (req.queue_depth == 0 || req.queue_depth > kMaxQueueDepth) {
    return Status::InvalidArgument("queue depth " + std::to_string(req.queue_depth) +
                                   " outside 1.." + std::to_string(kMaxQueueDepth));
  }
  if (req.max_io_size == 0 || req.max_io_size > kMaxIoSize) {
    return Status::InvalidArgument("I/O size " + std::to_string(req.max_io_size) +
                                   " outside 1.." + std::to_string(kMaxIoSize));
  }
  return req;
}

// The bytes `fields(io)` describes: walked once to size them, once to write them.
template <class Fn>
std::vector<uint8_t> EncodeWith(Fn&& fields) {
  codec::ByteSizer sizer;
  fields(sizer);
  std::vector<uint8_t> out(sizer.size());
  ByteWriter w(out.data());
  fields(w);
  return out;
}

std::vector<uint8_t> EncodeAdminRequest(const AdminRequest& a) {
  uint32_t magic = kDataProtocolMagic;
  uint16_t version = kDataProtocolVersion, kind = static_cast<uint16_t>(a.kind);
  return EncodeWith([&](auto& io) { Fields(io, const_cast<AdminRequest&>(a), magic, version, kind); });
}

Result<AdminRequest> DecodeAdminRequest(std::span<const uint8_t> in) {
  AdminRequest a;
  uint32_t magic = 0;
  uint16_t version = 0, kind = 0;
  ByteReader r(in, "AdminRequest");
  Fields(r, a, magic, version, kind);
  // Exactly the request: a receive buffer is not padded.
  DPMFS_RETURN_IF_ERROR(r.Finish());
  DPMFS_RETURN_IF_ERROR(CheckHeader(magic, version, "admin request"));
  if (kind != static_cast<uint16_t>(AdminKind::kStats) &&
      kind != static_cast<uint16_t>(AdminKind::kLogLevel) &&
      kind != static_cast<uint16_t>(AdminKind::kFence)) {
    return Status::InvalidArgument("unknown admin request kind " + std::to_string(kind));
  }
  a.kind = static_cast<AdminKind>(kind);
  if (a.kind == AdminKind::kFence && a.epoch == 0) {
    return Status::InvalidArgument("admin request fences epoch 0 (cluster-map epochs start at 1)");
  }
  return a;
}

std::string EncodeFenceBody(uint64_t fence) {
  std::string out(8, '\0');
  ByteWriter w(reinterpret_cast<uint8_t*>(out.data()));
  w.U64("fence", fence);
  return out;
}

Result<uint64_t> DecodeFenceBody(std::string_view body) {
  ByteReader r({reinterpret_cast<const uint8_t*>(body.data()), body.size()}, "FenceReply");
  uint64_t fence = 0;
  r.U64("fence", fence);
  if (Status st = r.Finish(); !st.ok()) return Status::Corruption(st.message());
  return fence;
}

std::vector<uint8_t> EncodeAdminReply(const AdminReply& a) {
  uint32_t magic = kDataProtocolMagic;
  uint16_t version = kDataProtocolVersion;
  int32_t code = static_cast<int32_t>(a.code);
  return EncodeWith([&](auto& io) { Fields(io, const_cast<AdminReply&>(a), magic, version, code); });
}

Result<AdminReply> DecodeAdminReply(std::span<const uint8_t> in) {
  AdminReply a;
  uint32_t magic = 0;
  uint16_t version = 0;
  int32_t code = 0;
  ByteReader r(in, "AdminReply");
  Fields(r, a, magic, version, code);
  DPMFS_RETURN_IF_ERROR(r.Finish());
  DPMFS_RETURN_IF_ERROR(CheckHeader(magic, version, "admin reply"));
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kInternal)) {
    return Status::InvalidArgument("admin reply has unknown status code " + std::to_string(code));
  }
  a.code = static_cast<StatusCode>(code);
  return a;
}

std::vector<uint8_t> EncodeServerInfo(const ServerInfo& s) {
  std::vector<uint8_t> out(kServerInfoSize);
  ByteWriter w(out.data());
  uint32_t magic = kDataProtocolMagic;
  uint16_t version = kDataProtocolVersion;
  uint16_t flags = (s.is_pmem ? kServerInfoIsPmem : 0) | kServerInfoHasInstance;
  Header(w, magic, version);
  Fields(w, const_cast<ServerInfo&>(s), flags);
  return out;
}

Result<ServerInfo> DecodeServerInfo(std::span<const uint8_t> data) {
  ByteReader r(data, "ServerInfo");
  uint32_t magic = 0;
  uint16_t version = 0;
  Header(r, magic, version);
  if (!r.ok()) return Truncated(r);
  DPMFS_RETURN_IF_ERROR(CheckHeader(magic, version, "server reply"));
  ServerInfo s;
  uint16_t flags = 0;
  Fields(r, s, flags);
  if (!r.ok()) return Truncated(r);
  s.is_pmem = (flags & kServerInfoIsPmem) != 0;
  if (s.pool.length == 0) return Status::Corruption("server reply names an empty pool");
  if (s.pool.addr + s.pool.length < s.pool.addr) {
    return Status::Corruption("server reply names a pool that wraps the address space");
  }
  return s;
}

void EncodeDescriptor(const WriteDescriptor& d, uint8_t out[kDescriptorSize]) {
  std::memset(out, 0, kDescriptorSize);
  ByteWriter w(out);
  uint32_t magic = kDataProtocolMagic;
  Fields(w, const_cast<WriteDescriptor&>(d), magic);
}

Result<WriteDescriptor> DecodeDescriptor(std::span<const uint8_t> in) {
  if (in.size() < kDescriptorSize) {
    return Status::Corruption("write descriptor too short (" + std::to_string(in.size()) +
                              " of " + std::to_string(kDescriptorSize) + " bytes)");
  }
  ByteReader r(in.first(kDescriptorSize), "WriteDescriptor");
  WriteDescriptor d;
  uint32_t magic = 0;
  Fields(r, d, magic);
  if (!r.ok()) return Truncated(r);
  if (magic != kDataProtocolMagic) return Status::Corruption("write descriptor has a bad magic");
  if ((d.flags & ~kDescriptorZero) != 0) {
    return Status::Corruption("write descriptor has unknown flags " + std::to_string(d.flags));
  }
  return d;
}

void EncodeReply(const Reply& r, uint8_t out[kReplySize]) {
  std::memset(out, 0, kReplySize);
  ByteWriter w(out);
  uint32_t magic = kDataProtocolMagic;
  int32_t code = static_cast<int32_t>(r.code);
  Fields(w, const_cast<Reply&>(r), magic, code);
}

Result<Reply> DecodeReply(std::span<const uint8_t> in) {
  if (in.size() < kReplySize) {
    return Status::Corruption("reply too short (" + std::to_string(in.size()) + " of " +
                              std::to_string(kReplySize) + " bytes)");
  }
  ByteReader r(in.first(kReplySize), "Reply");
  Reply rep;
  uint32_t magic = 0;
  int32_t code = 0;
  Fields(r, rep, magic, code);
  if (!r.ok()) return Truncated(r);
  if (magic != kDataProtocolMagic) return Status::Corruption("reply has a bad magic");
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kInternal)) {
    return Status::Corruption("reply has an unknown status " + std::to_string(code));
  }
  rep.code = static_cast<StatusCode>(code);
  return rep;
}

}  // namespace dpmfs::datapath
