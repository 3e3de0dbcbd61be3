#include "rpc/rpc_protocol.h"

#include <string>

#include "common/little_endian.h"

namespace dpmfs::rpc {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
using le::Get32;
using le::Get64;
using le::Put32;
using le::Put64;

// Header layout (offsets): magic 0, version 4, kind 5, opcode 6, request_id 8,
// session 16, seq 24, status 32, payload_len 36.
constexpr uint32_t kConnectMagic = 0x4E435244;  // "DRCN"
constexpr size_t kConnectRequestSize = 24;
constexpr size_t kConnectReplySize = 16;

}  // namespace

void EncodeHeader(const MessageHeader& h, uint8_t* out) {
  Put32(out + 0, kMagic);
  out[4] = kVersion;
  out[5] = static_cast<uint8_t>(h.kind);
  Put16(out + 6, h.opcode);
  Put64(out + 8, h.request_id);
  Put64(out + 16, h.session);
  Put64(out + 24, h.seq);
  Put32(out + 32, static_cast<uint32_t>(h.status));
  Put32(out + 36, h.payload_len);
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
  const uint8_t* p = msg.data();
  if (Get32(p) != kMagic) return Status::Corruption("rpc message with a wrong magic number");
  MessageHeader& h = *header;
  h.opcode = Get16(p + 6);
  h.request_id = Get64(p + 8);
  h.session = Get64(p + 16);
  h.seq = Get64(p + 24);
  h.status = static_cast<int32_t>(Get32(p + 32));
  h.payload_len = Get32(p + 36);
  *id_readable = true;
  if (p[4] != kVersion) {
    return Status::NotSupported("rpc message of version " + std::to_string(p[4]) +
                                "; this build speaks version " + std::to_string(kVersion));
  }
  if (p[5] != static_cast<uint8_t>(MessageKind::kRequest) &&
      p[5] != static_cast<uint8_t>(MessageKind::kResponse)) {
    return Status::Corruption("rpc message of unknown kind " + std::to_string(p[5]));
  }
  h.kind = static_cast<MessageKind>(p[5]);
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
  std::vector<uint8_t> out(kConnectRequestSize, 0);
  Put32(out.data(), kConnectMagic);
  out[4] = kVersion;
  Put64(out.data() + 8, r.session);
  Put32(out.data() + 16, r.max_message);
  Put32(out.data() + 20, r.recv_depth);
  return out;
}

Result<ConnectRequest> DecodeConnectRequest(std::span<const uint8_t> data) {
  if (data.size() < kConnectRequestSize || Get32(data.data()) != kConnectMagic) {
    return Status::InvalidArgument("not a dpmfs rpc connection request");
  }
  if (data[4] != kVersion) {
    return Status::NotSupported("rpc client speaks version " + std::to_string(data[4]) +
                                "; this server speaks version " + std::to_string(kVersion));
  }
  ConnectRequest r;
  r.session = Get64(data.data() + 8);
  r.max_message = Get32(data.data() + 16);
  r.recv_depth = Get32(data.data() + 20);
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
  std::vector<uint8_t> out(kConnectReplySize, 0);
  Put32(out.data(), kConnectMagic);
  out[4] = kVersion;
  Put32(out.data() + 8, r.max_message);
  Put32(out.data() + 12, r.depth);
  return out;
}

Result<ConnectReply> DecodeConnectReply(std::span<const uint8_t> data) {
  if (data.size() < kConnectReplySize || Get32(data.data()) != kConnectMagic ||
      data[4] != kVersion) {
    return Status::Corruption("the peer's accept data is not a dpmfs rpc connection reply");
  }
  ConnectReply r;
  r.max_message = Get32(data.data() + 8);
  r.depth = Get32(data.data() + 12);
  if (r.max_message < kMinMessageSize || r.max_message > kMaxMessageSizeCap || r.depth == 0 ||
      r.depth > kMaxDepth) {
    return Status::Corruption("rpc connection reply with max message " +
                              std::to_string(r.max_message) + " / depth " +
                              std::to_string(r.depth) + " out of range");
  }
  return r;
}

}  // namespace dpmfs::rpc
