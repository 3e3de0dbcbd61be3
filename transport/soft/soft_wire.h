// Wire format of the soft transport (a software RNIC over TCP). Every frame is a
// fixed 40-byte little-endian header followed by `payload_len` bytes. Frames from the
// wire are untrusted: DecodeHeader validates magic, type, reserved bits and every
// length against the type's rules before anything is copied, so a malformed frame is
// detected before it can make the receiver allocate or touch memory.
//
// Thread-safety: pure functions and values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/status.h"
#include "transport/transport.h"

namespace dpmfs::transport::soft {

inline constexpr uint32_t kMagic = 0x534D5044;  // "DPMS"
inline constexpr size_t kHeaderSize = 40;

enum class FrameType : uint8_t {
  // initiator → target (requests; `seq` is the initiator's work request number)
  kWrite = 1,
  kWriteWithImm = 2,
  kRead = 3,
  kSend = 4,
  kFlush = 5,
  // target → initiator (responses)
  kAck = 16,           // request `seq` (and every request before it) completed
  kReadResponse = 17,  // payload: the READ's bytes
  kNak = 18,           // request `seq` failed with CompletionStatus `imm`; QP goes to error
  // connection handshake
  kConnect = 32,  // payload: initiator private data (≤ kMaxConnectPrivateData)
  kAccept = 33,   // payload: target private data (≤ kMaxAcceptPrivateData)
  kReject = 34,   // payload: a short reason text
  // authentication (connection_auth.h), between CONNECT and ACCEPT when keys are set
  kChallenge = 35,  // target → initiator: auth::Challenge
  kAuth = 36,       // initiator → target: auth::AuthRequest (carries the app's request)
};

inline constexpr uint8_t kFlagSignaled = 1;
inline constexpr size_t kMaxRejectReason = 256;

struct FrameHeader {
  FrameType type = FrameType::kAck;
  uint8_t flags = 0;
  uint32_t payload_len = 0;
  uint32_t imm = 0;
  uint64_t seq = 0;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint32_t length = 0;  // bytes the request moves (WRITE/SEND: == payload_len)

  bool signaled() const { return (flags & kFlagSignaled) != 0; }
};

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]);
// Validates and decodes. Corruption names what is wrong ("unknown frame type 9").
Result<FrameHeader> DecodeHeader(std::span<const uint8_t, kHeaderSize> in);

}  // namespace dpmfs::transport::soft
