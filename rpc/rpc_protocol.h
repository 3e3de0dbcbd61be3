// The wire format of dpmfs RPC (see rpc/README.md for the table): a fixed 40-byte
// little-endian header followed by the payload, carried in one SEND; plus the private
// data exchanged when a connection is set up. Decoders validate every field and never
// read past the bytes they are given; nothing read from the wire is trusted.
//
// Thread-safety: free functions on values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace dpmfs::rpc {

inline constexpr uint32_t kMagic = 0x43505244;  // "DRPC" little-endian
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 40;
// Largest message (header + payload) either side may ever negotiate.
inline constexpr uint32_t kMaxMessageSizeCap = 1u << 20;
inline constexpr uint32_t kMinMessageSize = 256;
inline constexpr uint32_t kDefaultMessageSize = 64u << 10;
// Largest receive depth (credits) a connection may negotiate.
inline constexpr uint32_t kMaxDepth = 256;

enum class MessageKind : uint8_t { kRequest = 1, kResponse = 2 };

struct MessageHeader {
  MessageKind kind = MessageKind::kRequest;
  uint16_t opcode = 0;
  uint64_t request_id = 0;
  uint64_t session = 0;
  uint64_t seq = 0;
  int32_t status = 0;  // StatusCode of a response; 0 in requests
  uint32_t payload_len = 0;
};

// Writes the 40-byte header to `out` (which must hold kHeaderSize bytes).
void EncodeHeader(const MessageHeader& h, uint8_t* out);

// What a decoder learnt from a received message.
struct DecodedMessage {
  MessageHeader header;
  std::span<const uint8_t> payload;  // inside the decoded buffer
};

// Decodes one received message of `msg.size()` bytes (the RECV's byte_len), accepting
// at most `max_message` bytes in all. On failure `*id_readable` tells whether the header
// was complete and carried our magic, i.e. whether header->request_id/session/seq may be
// used to address an error reply; `*header` is then filled as far as it was read.
Result<DecodedMessage> DecodeMessage(std::span<const uint8_t> msg, uint32_t max_message,
                                     bool* id_readable, MessageHeader* header);

// Whether a status code read from the wire names a real StatusCode.
bool ValidStatusCode(int32_t code);

// Connect private data (client -> server): 24 bytes, well under the 56-byte limit.
struct ConnectRequest {
  uint64_t session = 0;      // never 0
  uint32_t max_message = 0;  // what the client can receive and wants to send
  uint32_t recv_depth = 0;   // receive buffers the client posted (>= granted depth)
};
std::vector<uint8_t> EncodeConnectRequest(const ConnectRequest& r);
Result<ConnectRequest> DecodeConnectRequest(std::span<const uint8_t> data);

// Accept private data (server -> client): 16 bytes; trailing zeros tolerated.
struct ConnectReply {
  uint32_t max_message = 0;  // negotiated: min of both sides
  uint32_t depth = 0;        // requests the client may have outstanding (server RECVs)
};
std::vector<uint8_t> EncodeConnectReply(const ConnectReply& r);
Result<ConnectReply> DecodeConnectReply(std::span<const uint8_t> data);

}  // namespace dpmfs::rpc
