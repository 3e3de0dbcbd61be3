// libFuzzer target for the soft transport's frame header (transport/soft/soft_wire.h):
// the 40 bytes in front of every frame a soft NIC reads from its TCP socket, before it
// sizes or copies anything. Properties:
//   - an accepted header obeys its type's length rules (restated here from the table in
//     transport/README.md) and re-encodes to exactly the same 40 bytes (no bit ignored);
//   - decode(encode(h)) == h for a header built from the input, accepted exactly when
//     the rules allow it;
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read.
#include <cstring>
#include <memory>

#include "fuzz_check.h"
#include "transport/connection_auth.h"
#include "transport/soft/soft_wire.h"

namespace {

using namespace dpmfs;
using namespace dpmfs::transport;
using namespace dpmfs::transport::soft;
using fuzz::Le;

// The rules of transport/README.md's frame table, written out independently.
bool Allowed(uint8_t type, uint8_t flags, uint32_t payload_len, uint32_t length) {
  if ((flags & ~kFlagSignaled) != 0) return false;
  switch (type) {
    case 1: case 2: case 4:  // WRITE, WRITE_WITH_IMM, SEND
      return payload_len == length && length <= kMaxTransferSize;
    case 3: case 5:  // READ, FLUSH
      return payload_len == 0 && length <= kMaxTransferSize;
    case 16: case 18:  // ACK, NAK
      return payload_len == 0 && length == 0;
    case 17:  // READ_RESPONSE
      return payload_len == length && length <= kMaxTransferSize;
    case 32: return payload_len <= kMaxConnectPrivateData;
    case 33: return payload_len <= kMaxAcceptPrivateData;
    case 34: return payload_len <= kMaxRejectReason;
    case 35: return payload_len == auth::kChallengeSize;  // CHALLENGE (connection_auth.h)
    case 36: return payload_len <= auth::kMaxAuthSize;    // AUTH
    default: return false;
  }
}

bool Same(const FrameHeader& a, const FrameHeader& b) {
  return a.type == b.type && a.flags == b.flags && a.payload_len == b.payload_len &&
         a.imm == b.imm && a.seq == b.seq && a.remote_addr == b.remote_addr && a.rkey == b.rkey &&
         a.length == b.length;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderSize) return 0;
  // Exactly 40 bytes on the heap: a read past them is an ASan report.
  auto bytes = std::make_unique<uint8_t[]>(kHeaderSize);
  std::memcpy(bytes.get(), data, kHeaderSize);
  std::span<const uint8_t, kHeaderSize> in(bytes.get(), kHeaderSize);
  Result<FrameHeader> h = DecodeHeader(in);
  const bool allowed = Le(data, 4) == kMagic && Le(data + 6, 2) == 0 &&
                       Allowed(data[4], data[5], static_cast<uint32_t>(Le(data + 8, 4)),
                               static_cast<uint32_t>(Le(data + 36, 4)));
  FUZZ_CHECK(h.ok() == allowed, "frame header accepted/refused against the table");
  if (!h.ok()) {
    fuzz::CheckRefusal(h.status(), "DecodeHeader");
  } else {
    uint8_t again[kHeaderSize];
    EncodeHeader(*h, again);
    FUZZ_CHECK(std::memcmp(again, data, kHeaderSize) == 0, "accepted header re-encodes differently");
  }
  // Structured: the header fields from the input (the magic and reserved bits are the
  // encoder's), through encode and decode.
  FrameHeader x;
  x.type = static_cast<FrameType>(data[4]);
  x.flags = data[5];
  x.payload_len = static_cast<uint32_t>(Le(data + 8, 4));
  x.imm = static_cast<uint32_t>(Le(data + 12, 4));
  x.seq = Le(data + 16, 8);
  x.remote_addr = Le(data + 24, 8);
  x.rkey = static_cast<uint32_t>(Le(data + 32, 4));
  x.length = static_cast<uint32_t>(Le(data + 36, 4));
  uint8_t enc[kHeaderSize];
  EncodeHeader(x, enc);
  FUZZ_CHECK_ROUND_TRIP(x, DecodeHeader(std::span<const uint8_t, kHeaderSize>(enc, kHeaderSize)),
                       Allowed(data[4], x.flags, x.payload_len, x.length), Same,
                       "FrameHeader (against the table)");
  return 0;
}
