// libFuzzer target for the data protocol (datapath/data_protocol.h): what a data server
// reads from a client (CONNECT private data, imm descriptors, rpc headers, admin requests
// such as the metadata server's fence) and what a client reads from a data server
// (ServerInfo, replies, a fence reply's body). The first input byte picks the
// decoder; the rest is its input. Properties:
//   - an accepted message satisfies the rules the header states (queue depth and I/O
//     size in range, a known persist method, a pool that does not wrap, known flags and
//     status codes), and decode(encode(decode(bytes))) == decode(bytes);
//   - decode(encode(x)) == x for a message built from the input's bytes whenever x is
//     valid, and it is refused exactly when it is not;
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read;
//   - every input is also a session token (session_token.h): never accepted without the
//     key's MAC, and one that decodes re-issues to the same fields.
#include <algorithm>
#include <cstring>

#include "datapath/data_protocol.h"
#include "datapath/persist/persist_strategy.h"
#include "datapath/session_token.h"
#include "fuzz_check.h"

namespace {

using namespace dpmfs;
using namespace dpmfs::datapath;
using fuzz::Le;

bool ValidConnect(const ConnectRequest& r) {
  return persist::Find(r.method) != nullptr && r.queue_depth >= 1 &&
         r.queue_depth <= kMaxQueueDepth && r.max_io_size >= 1 && r.max_io_size <= kMaxIoSize;
}
bool SameConnect(const ConnectRequest& a, const ConnectRequest& b) {
  return a.method == b.method && a.queue_depth == b.queue_depth && a.max_io_size == b.max_io_size;
}

void FuzzConnectRequest(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<ConnectRequest> r = DecodeConnectRequest(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeConnectRequest");
  } else {
    FUZZ_CHECK(ValidConnect(*r), "accepted an invalid ConnectRequest");
    FUZZ_CHECK_ROUND_TRIP(*r, DecodeConnectRequest(EncodeConnectRequest(*r)), true, SameConnect,
                         "accepted ConnectRequest");
  }
  if (in.size() < 9) return;
  ConnectRequest x;
  x.method = static_cast<PersistMethod>(in[0]);
  x.queue_depth = static_cast<uint32_t>(Le(in.data() + 1, 4));
  x.max_io_size = static_cast<uint32_t>(Le(in.data() + 5, 4));
  FUZZ_CHECK_ROUND_TRIP(x, DecodeConnectRequest(EncodeConnectRequest(x)), ValidConnect(x),
                       SameConnect, "ConnectRequest");
}

bool SameRegion(const transport::RemoteRegion& a, const transport::RemoteRegion& b) {
  return a.addr == b.addr && a.length == b.length && a.rkey == b.rkey;
}
bool SameInfo(const ServerInfo& a, const ServerInfo& b) {
  return SameRegion(a.pool, b.pool) && SameRegion(a.ring, b.ring) && a.cluster == b.cluster &&
         a.pool_index == b.pool_index && a.block_size == b.block_size && a.is_pmem == b.is_pmem &&
         a.pool_instance == b.pool_instance;
}

void FuzzServerInfo(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<ServerInfo> r = DecodeServerInfo(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeServerInfo");
  } else {
    FUZZ_CHECK(r->pool.length != 0 && r->pool.addr + r->pool.length > r->pool.addr,
               "accepted an empty or wrapping pool");
    FUZZ_CHECK_ROUND_TRIP(*r, DecodeServerInfo(EncodeServerInfo(*r)), true, SameInfo,
                         "accepted ServerInfo");
  }
  if (in.size() < 65) return;
  ServerInfo x;
  x.pool = {Le(in.data(), 8), Le(in.data() + 8, 8), static_cast<uint32_t>(Le(in.data() + 16, 4))};
  x.ring = {Le(in.data() + 20, 8), Le(in.data() + 28, 8),
            static_cast<uint32_t>(Le(in.data() + 36, 4))};
  std::memcpy(x.cluster.data(), in.data() + 40, 16);
  x.pool_index = static_cast<uint32_t>(Le(in.data() + 56, 4));
  x.block_size = static_cast<uint32_t>(Le(in.data() + 60, 4));
  x.is_pmem = (in[64] & 1) != 0;
  const bool valid = x.pool.length != 0 && x.pool.addr + x.pool.length > x.pool.addr;
  FUZZ_CHECK_ROUND_TRIP(x, DecodeServerInfo(EncodeServerInfo(x)), valid, SameInfo, "ServerInfo");
}

void FuzzDescriptor(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<WriteDescriptor> r = DecodeDescriptor(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeDescriptor");
  } else {
    FUZZ_CHECK((r->flags & ~kDescriptorZero) == 0, "accepted unknown descriptor flags");
    FUZZ_CHECK(data.size() >= kDescriptorSize, "accepted a short descriptor");
    uint8_t again[kDescriptorSize];
    EncodeDescriptor(*r, again);
    // The first 24 bytes are fields; the rest is padding the decoder does not read.
    FUZZ_CHECK(std::memcmp(again, data.data(), 24) == 0, "descriptor re-encodes differently");
  }
  if (in.size() < 20) return;
  WriteDescriptor x{Le(in.data(), 8), static_cast<uint32_t>(Le(in.data() + 8, 4)),
                    static_cast<uint32_t>(Le(in.data() + 12, 4)),
                    static_cast<uint32_t>(Le(in.data() + 16, 4))};
  uint8_t enc[kDescriptorSize];
  EncodeDescriptor(x, enc);
  FUZZ_CHECK_ROUND_TRIP(
      x, DecodeDescriptor(fuzz::Exact({enc, kDescriptorSize})),
      (x.flags & ~kDescriptorZero) == 0,
      [](const WriteDescriptor& a, const WriteDescriptor& b) {
        return a.offset == b.offset && a.length == b.length && a.slot == b.slot &&
               a.flags == b.flags;
      },
      "WriteDescriptor");
}

void FuzzReply(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<Reply> r = DecodeReply(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeReply");
  } else {
    FUZZ_CHECK(static_cast<int>(r->code) >= 0 &&
                   static_cast<int>(r->code) <= static_cast<int>(StatusCode::kInternal),
               "accepted an unknown status code");
    uint8_t again[kReplySize];
    EncodeReply(*r, again);
    FUZZ_CHECK(std::memcmp(again, data.data(), 12) == 0, "reply re-encodes differently");
  }
  if (in.size() < 8) return;
  const int32_t code = static_cast<int32_t>(Le(in.data() + 4, 4));
  Reply x{static_cast<uint32_t>(Le(in.data(), 4)), static_cast<StatusCode>(code)};
  uint8_t enc[kReplySize];
  EncodeReply(x, enc);
  FUZZ_CHECK_ROUND_TRIP(
      x, DecodeReply(fuzz::Exact({enc, kReplySize})),
      code >= 0 && code <= static_cast<int32_t>(StatusCode::kInternal),
      [](const Reply& a, const Reply& b) { return a.slot == b.slot && a.code == b.code; },
      "Reply");
}

bool SameAdmin(const AdminRequest& a, const AdminRequest& b) {
  return a.kind == b.kind && a.level == b.level && a.epoch == b.epoch;
}
bool ValidAdmin(const AdminRequest& a) {
  switch (a.kind) {
    case AdminKind::kStats:
    case AdminKind::kLogLevel: return a.level.size() <= kMaxAdminLevelName && a.epoch == 0;
    case AdminKind::kFence: return a.epoch != 0 && a.level.empty();
  }
  return false;
}

// An admin request (stats, log level, fence): what a data server reads from any holder
// of the cluster key on an admin connection.
void FuzzAdminRequest(std::span<const uint8_t> in) {
  std::vector<uint8_t> data = fuzz::Exact(in);
  Result<AdminRequest> r = DecodeAdminRequest(data);
  if (!r.ok()) {
    fuzz::CheckRefusal(r.status(), "DecodeAdminRequest");
  } else {
    FUZZ_CHECK(ValidAdmin(*r), "accepted an invalid AdminRequest");
    FUZZ_CHECK(data.size() <= kAdminRequestSize, "accepted an admin request over its size");
    FUZZ_CHECK_ROUND_TRIP(*r, DecodeAdminRequest(EncodeAdminRequest(*r)), true, SameAdmin,
                         "accepted AdminRequest");
  }
  // The fence reply's body, from the same bytes: exactly 8 or refused.
  const std::string body(in.begin(), in.end());
  Result<uint64_t> fence = DecodeFenceBody(body);
  FUZZ_CHECK(fence.ok() == (in.size() == 8), "a fence body of the wrong size was accepted");
  if (!fence.ok()) fuzz::CheckRefusal(fence.status(), "DecodeFenceBody");
  if (in.size() < 9) return;
  AdminRequest x;
  x.kind = static_cast<AdminKind>(1 + in[0] % 3);
  if (x.kind == AdminKind::kFence) {
    x.epoch = Le(in.data() + 1, 8);
  } else if (x.kind == AdminKind::kLogLevel) {
    x.level.assign(in.begin() + 1, in.begin() + 1 + std::min<size_t>(in.size() - 1, in[0] % 24));
  }
  FUZZ_CHECK_ROUND_TRIP(x, DecodeAdminRequest(EncodeAdminRequest(x)), ValidAdmin(x), SameAdmin,
                       "AdminRequest");
}

}  // namespace

// The session token a client presents at connect (datapath/session_token.h), on every
// input: a forged token is never accepted, and one that decodes re-issues (MACed) to the
// same fields.
void FuzzSessionToken(std::span<const uint8_t> in) {
  static const dpmfs::ClusterKey key(dpmfs::ClusterKey::Bytes{7});
  auto verified = dpmfs::datapath::VerifySessionToken(key, in, 0);
  FUZZ_CHECK(!verified.ok(), "a token without the key's MAC was accepted");
  dpmfs::fuzz::CheckRefusal(verified.status(), "VerifySessionToken");
  auto t = dpmfs::datapath::DecodeSessionToken(in);
  if (!t.ok()) {
    dpmfs::fuzz::CheckRefusal(t.status(), "DecodeSessionToken");
    return;
  }
  auto again = dpmfs::datapath::DecodeSessionToken(dpmfs::datapath::IssueSessionToken(key, *t));
  FUZZ_CHECK(again.ok() && again->session == t->session && again->client == t->client &&
                 again->issued_ms == t->issued_ms && again->expires_ms == t->expires_ms &&
                 again->epoch == t->epoch,
             "a decoded token does not re-issue to the same fields");
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzSessionToken({data, size});
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0: FuzzConnectRequest(in); break;
    case 1: FuzzServerInfo(in); break;
    case 2: FuzzDescriptor(in); break;
    case 3: FuzzReply(in); break;
    case 4: FuzzAdminRequest(in); break;
  }
  return 0;
}
