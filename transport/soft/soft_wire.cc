#include "transport/soft/soft_wire.h"

#include "transport/connection_auth.h"

#include <bit>
#include <cstring>
#include <string>

namespace dpmfs::transport::soft {
namespace {

// Layout: magic u32 | type u8 | flags u8 | reserved u16 | payload_len u32 | imm u32 |
//         seq u64 | remote_addr u64 | rkey u32 | length u32
template <typename T>
void Put(uint8_t* p, T v) {
  static_assert(std::endian::native == std::endian::little, "soft wire is little-endian");
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool KnownType(uint8_t t) {
  return (t >= 1 && t <= 5) || (t >= 16 && t <= 18) || (t >= 32 && t <= 36);
}

}  // namespace

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]) {
  Put<uint32_t>(out + 0, kMagic);
  Put<uint8_t>(out + 4, static_cast<uint8_t>(h.type));
  Put<uint8_t>(out + 5, h.flags);
  Put<uint16_t>(out + 6, 0);
  Put<uint32_t>(out + 8, h.payload_len);
  Put<uint32_t>(out + 12, h.imm);
  Put<uint64_t>(out + 16, h.seq);
  Put<uint64_t>(out + 24, h.remote_addr);
  Put<uint32_t>(out + 32, h.rkey);
  Put<uint32_t>(out + 36, h.length);
}

Result<FrameHeader> DecodeHeader(std::span<const uint8_t, kHeaderSize> in) {
  const uint8_t* p = in.data();
  if (Get<uint32_t>(p) != kMagic) return Status::Corruption("bad frame magic");
  uint8_t type = Get<uint8_t>(p + 4);
  if (!KnownType(type)) return Status::Corruption("unknown frame type " + std::to_string(type));
  FrameHeader h;
  h.type = static_cast<FrameType>(type);
  h.flags = Get<uint8_t>(p + 5);
  if ((h.flags & ~kFlagSignaled) != 0 || Get<uint16_t>(p + 6) != 0) {
    return Status::Corruption("reserved frame bits set");
  }
  h.payload_len = Get<uint32_t>(p + 8);
  h.imm = Get<uint32_t>(p + 12);
  h.seq = Get<uint64_t>(p + 16);
  h.remote_addr = Get<uint64_t>(p + 24);
  h.rkey = Get<uint32_t>(p + 32);
  h.length = Get<uint32_t>(p + 36);

  auto bad_len = [&](const char* rule) {
    return Status::Corruption("frame type " + std::to_string(type) + " with payload " +
                              std::to_string(h.payload_len) + " / length " +
                              std::to_string(h.length) + ": " + rule);
  };
  switch (h.type) {
    case FrameType::kWrite:
    case FrameType::kWriteWithImm:
    case FrameType::kSend:
      if (h.payload_len != h.length) return bad_len("payload must equal length");
      if (h.length > kMaxTransferSize) return bad_len("length exceeds the transfer limit");
      break;
    case FrameType::kRead:
    case FrameType::kFlush:
      if (h.payload_len != 0) return bad_len("request carries no payload");
      if (h.length > kMaxTransferSize) return bad_len("length exceeds the transfer limit");
      break;
    case FrameType::kAck:
    case FrameType::kNak:
      if (h.payload_len != 0 || h.length != 0) return bad_len("response carries no payload");
      break;
    case FrameType::kReadResponse:
      // The initiator checks it against the READ it posted.
      if (h.payload_len != h.length || h.length > kMaxTransferSize) {
        return bad_len("payload must equal length");
      }
      break;
    case FrameType::kConnect:
      if (h.payload_len > kMaxConnectPrivateData) return bad_len("private data too long");
      break;
    case FrameType::kAccept:
      if (h.payload_len > kMaxAcceptPrivateData) return bad_len("private data too long");
      break;
    case FrameType::kReject:
      if (h.payload_len > kMaxRejectReason) return bad_len("reason too long");
      break;
    case FrameType::kChallenge:
      if (h.payload_len != auth::kChallengeSize) return bad_len("challenge of the wrong size");
      break;
    case FrameType::kAuth:
      if (h.payload_len > auth::kMaxAuthSize) return bad_len("authentication too long");
      break;
  }
  return h;
}

}  // namespace dpmfs::transport::soft
