#include "rpc/rpc_protocol.h"

#include <algorithm>
#include <string>

#include "common/byte_codec.h"

namespace dpmfs::rpc {
namespace {

// Header layout (offsets): magic 0, version 4, kind 5, opcode 6, request_id 8,
// session 16, seq 24, status 32, payload_len 36.
constexpr uint32_t kConnectMagic = 0x4E435244;  // "DRCN"
constexpr size_t kConnectRequestSize = 24;
constexpr size_t kConnectReplySize = 16;

}  // namespace

void EncodeHeader(const MessageHeader& h, uint8_t* out) {
  codec::ByteWriter w(out);
  w.U32("magic", kMagic);
  w.U8("version", kVersion);
  w.U8("kind", static_cast<uint8_t>(h.kind));
  w.U16("opcode", h.opcode);
  w.U64("request_id", h.request_id);
  w.U64("session", h.session);
  w.U64("seq", h.seq);
  w.I32("status", h.status);
  w.U32("payload_len", h.payload_len);
}

bool ValidStatusCode(int32_t code) {
  return code >= static_cast<int32_t>(StatusCode::kOk) &&
         code <= static_cast<int32_t>(StatusCode::kInternal);
}

Result<DecodedMessage> DecodeMessage(std::span<const uint8_t> msg, uint32_t max_message,
                                     bool* id_readable, MessageHeader* header) {
  *id_readable = false;
  if (msg.size() < kHeaderSize) {
    return Status::Corruption("rpc message of " + std::to_string(msg.size()) +
                              " bytes is shorter than the " + std::to_string(kHeaderSize) +
                              "-byte header");
  }
  // Exactly the header's bytes: the length was checked above, so no read can fail.
  codec::ByteReader r(msg.first(kHeaderSize), "rpc message header");
  uint32_t magic = 0;
  r.U32("magic", magic);
  if (magic != kMagic) return Status::Corruption("rpc message with a wrong magic number");
  uint8_t version = 0, kind = 0;
  r.U8("version", version);
  r.U8("kind", kind);
  MessageHeader& h = *header;
  r.U16("opcode", h.opcode);
  r.U64("request_id", h.request_id);
  r.U64("session", h.session);
  r.U64("seq", h.seq);
  r.I32("status", h.status);
  r.U32("payload_len", h.payload_len);
  *id_readable = true;
  if (version != kVersion) {
    return Status::NotSupported("rpc message of version " + std::to_string(version) +
                                "; this build speaks version " + std::to_string(kVersion));
  }
  if (kind != static_cast<uint8_t>(MessageKind::kRequest) &&
      kind != static_cast<uint8_t>(MessageKind::kResponse)) {
    return Status::Corruption("rpc message of unknown kind " + std::to_string(kind));
  }
  h.kind = static_cast<MessageKind>(kind);
  if (msg.size() > max_message) {
    return Status::ResourceExhausted("rpc message of " + std::to_string(msg.size()) +
                                     " bytes exceeds the negotiated " +
                                     std::to_string(max_message) + "-byte maximum");
  }
  if (uint64_t{h.payload_len} != msg.size() - kHeaderSize) {
    return Status::Corruption("rpc message says its payload is " + std::to_string(h.payload_len) +
                              " bytes but " + std::to_string(msg.size() - kHeaderSize) +
                              " arrived");
  }
  if (h.kind == MessageKind::kResponse && !ValidStatusCode(h.status)) {
    return Status::Corruption("rpc response with unknown status code " + std::to_string(h.status));
  }
  if (h.kind == MessageKind::kRequest && h.status != 0) {
    return Status::Corruption("rpc request with a non-zero status field");
  }
  return DecodedMessage{h, msg.subspan(kHeaderSize, h.payload_len)};
}

std::vector<uint8_t> EncodeConnectRequest(const ConnectRequest& r) {
  std::vector<uint8_t> out(kConnectRequestSize);
  codec::ByteWriter w(out.data());
  w.U32("magic", kConnectMagic);
  w.U8("version", kVersion);
  w.U8("reserved", 0);
  w.U16("reserved", 0);
  w.U64("session", r.session);
  w.U32("max_message", r.max_message);
  w.U32("recv_depth", r.recv_depth);
  return out;
}

Result<ConnectRequest> DecodeConnectRequest(std::span<const uint8_t> data) {
  // Longer data is tolerated (a later version may append fields).
  codec::ByteReader rd(data.first(std::min(data.size(), kConnectRequestSize)),
                       "rpc ConnectRequest");
  uint32_t magic = 0;
  uint8_t version = 0, reserved8 = 0;
  uint16_t reserved16 = 0;
  ConnectRequest r;
  rd.U32("magic", magic);
  rd.U8("version", version);
  rd.U8("reserved", reserved8);
  rd.U16("reserved", reserved16);
  rd.U64("session", r.session);
  rd.U32("max_message", r.max_message);
  rd.U32("recv_depth", r.recv_depth);
  if (data.size() < kConnectRequestSize || magic != kConnectMagic) {
    Status why = rd.Finish();
    return Status::InvalidArgument("not a dpmfs rpc connection request" +
                                   (why.ok() ? std::string() : ": " + why.message()));
  }
  if (version != kVersion) {
    return Status::NotSupported("rpc client speaks version " + std::to_string(version) +
                                "; this server speaks version " + std::to_string(kVersion));
  }
  if (r.session == 0) return Status::InvalidArgument("rpc connection request with session 0");
  if (r.max_message < kMinMessageSize || r.max_message > kMaxMessageSizeCap) {
    return Status::InvalidArgument(
        "rpc connection request with max message size " + std::to_string(r.max_message) +
        " outside " + std::to_string(kMinMessageSize) + ".." + std::to_string(kMaxMessageSizeCap));
  }
  if (r.recv_depth == 0 || r.recv_depth > kMaxDepth) {
    return Status::InvalidArgument("rpc connection request with receive depth " +
                                   std::to_string(r.recv_depth) + " outside 1.." +
                                   std::to_string(kMaxDepth));
  }
  return r;
}

std::vector<uint8_t> EncodeConnectReply(const ConnectReply& r) {
  std::vector<uint8_t> out(kConnectReplySize);
  codec::ByteWriter w(out.data());
  w.U32("magic", kConnectMagic);
  w.U8("version", kVersion);
  w.U8("reserved", 0);
  w.U16("reserved", 0);
  w.U32("max_message", r.max_message);
  w.U32("depth", r.depth);
  return out;
}

Result<ConnectReply> DecodeConnectReply(std::span<const uint8_t> data) {
  // Trailing bytes are tolerated: verbs pads the private data with zeros.
  codec::ByteReader rd(data.first(std::min(data.size(), kConnectReplySize)), "rpc ConnectReply");
  uint32_t magic = 0;
  uint8_t version = 0, reserved8 = 0;
  uint16_t reserved16 = 0;
  ConnectReply r;
  rd.U32("magic", magic);
  rd.U8("version", version);
  rd.U8("reserved", reserved8);
  rd.U16("reserved", reserved16);
  rd.U32("max_message", r.max_message);
  rd.U32("depth", r.depth);
  if (!rd.ok() || magic != kConnectMagic || version != kVersion) {
    Status why = rd.Finish();
    return Status::Corruption("the peer's accept data is not a dpmfs rpc connection reply" +
                              (why.ok() ? std::string() : ": " + why.message()));
  }
  if (r.max_message < kMinMessageSize || r.max_message > kMaxMessageSizeCap || r.depth == 0 ||
      r.depth > kMaxDepth) {
    return Status::Corruption("rpc connection reply with max message " +
                              std::to_string(r.max_message) + " / depth " +
                              std::to_string(r.depth) + " out of range");
  }
  return r;
}

}  // namespace dpmfs::rpc
