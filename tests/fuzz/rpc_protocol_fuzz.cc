// libFuzzer target for the RPC wire (rpc/rpc_protocol.h): the 40-byte message header
// every metadata request and reply arrives with, and the connect / accept private data.
// The first input byte picks the decoder; the rest is its input. Properties:
//   - DecodeMessage accepts exactly what the header table allows, and an accepted
//     header re-encodes to the same 40 bytes (nothing is ignored); the payload it returns
//     lies inside the message; a refusal says whether the ids are readable only when the
//     header was whole and carried our magic;
//   - decode(encode(x)) == x for ConnectRequest / ConnectReply built from the input,
//     accepted exactly when the fields are in range;
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read.
#include <cstring>

#include "fuzz_check.h"
#include "rpc/rpc_protocol.h"

namespace {

using namespace dpmfs;
using namespace dpmfs::rpc;
using fuzz::Le;

void FuzzMessage(std::span<const uint8_t> in) {
  if (in.size() < 4) return;
  // The negotiated maximum the receiver applies: any value, as a bad peer could make a
  // caller pass (the real ones lie in kMinMessageSize..kMaxMessageSizeCap).
  const uint32_t max_message = static_cast<uint32_t>(Le(in.data(), 4));
  std::vector<uint8_t> msg = fuzz::Exact(in.subspan(4));
  bool id_readable = true;
  MessageHeader h;
  Result<DecodedMessage> d = DecodeMessage(msg, max_message, &id_readable, &h);
  const bool whole_with_magic = msg.size() >= kHeaderSize && Le(msg.data(), 4) == kMagic;
  if (!d.ok()) {
    fuzz::CheckRefusal(d.status(), "DecodeMessage");
    FUZZ_CHECK(!id_readable || whole_with_magic, "ids readable from a broken header");
    return;
  }
  FUZZ_CHECK(id_readable && whole_with_magic, "accepted without a whole header");
  FUZZ_CHECK(msg.size() <= max_message, "accepted a message over the negotiated maximum");
  FUZZ_CHECK(d->payload.data() == msg.data() + kHeaderSize &&
                 d->payload.size() == msg.size() - kHeaderSize &&
                 d->header.payload_len == d->payload.size(),
             "payload span does not match the message");
  FUZZ_CHECK(msg[4] == kVersion, "accepted another version");
  if (d->header.kind == MessageKind::kRequest) {
    FUZZ_CHECK(d->header.status == 0, "request with a status");
  } else {
    FUZZ_CHECK(d->header.kind == MessageKind::kResponse && ValidStatusCode(d->header.status),
               "response with an unknown kind or status");
  }
  uint8_t again[kHeaderSize];
  EncodeHeader(d->header, again);
  FUZZ_CHECK(std::memcmp(again, msg.data(), kHeaderSize) == 0,
             "accepted header re-encodes differently");
}

bool ValidConnectRequest(const ConnectRequest& r) {
  return r.session != 0 && r.max_message >= kMinMessageSize &&
         r.max_message <= kMaxMessageSizeCap && r.recv_depth >= 1 && r.recv_depth <= kMaxDepth;
}
bool SameConnectRequest(const ConnectRequest& a, const ConnectRequest& b) {
  return a.session == b.session && a.max_message == b.max_message && a.recv_depth == b.recv_depth;
}

void FuzzConnectRequest(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<ConnectRequest> r = DecodeConnectRequest(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeConnectRequest");
  } else {
    FUZZ_CHECK(ValidConnectRequest(*r), "accepted an out-of-range ConnectRequest");
    FUZZ_CHECK_ROUND_TRIP(*r, DecodeConnectRequest(EncodeConnectRequest(*r)), true,
                         SameConnectRequest, "accepted ConnectRequest");
  }
  // Structured: the input's first 16 bytes as field values.
  if (in.size() < 16) return;
  ConnectRequest x{Le(in.data(), 8), static_cast<uint32_t>(Le(in.data() + 8, 4)),
                   static_cast<uint32_t>(Le(in.data() + 12, 4))};
  FUZZ_CHECK_ROUND_TRIP(x, DecodeConnectRequest(EncodeConnectRequest(x)), ValidConnectRequest(x),
                       SameConnectRequest, "ConnectRequest");
}

bool ValidConnectReply(const ConnectReply& r) {
  return r.max_message >= kMinMessageSize && r.max_message <= kMaxMessageSizeCap &&
         r.depth >= 1 && r.depth <= kMaxDepth;
}

void FuzzConnectReply(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<ConnectReply> r = DecodeConnectReply(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeConnectReply");
  } else {
    FUZZ_CHECK(ValidConnectReply(*r), "accepted an out-of-range ConnectReply");
  }
  if (in.size() < 8) return;
  ConnectReply x{static_cast<uint32_t>(Le(in.data(), 4)),
                 static_cast<uint32_t>(Le(in.data() + 4, 4))};
  FUZZ_CHECK_ROUND_TRIP(
      x, DecodeConnectReply(EncodeConnectReply(x)), ValidConnectReply(x),
      [](const ConnectReply& a, const ConnectReply& b) {
        return a.max_message == b.max_message && a.depth == b.depth;
      },
      "ConnectReply");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: FuzzMessage(in); break;
    case 1: FuzzConnectRequest(in); break;
    case 2: FuzzConnectReply(in); break;
  }
  return 0;
}
