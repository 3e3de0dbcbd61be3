#include "metadata/mutation.h"

#include <cstring>
#include <string>

#include "common/byte_codec.h"

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"

namespace dpmfs::meta {

namespace {
constexpr uint32_t kRecordMagicV1 = 0x31524d44;  // "DMR1": no caller field
constexpr uint32_t kRecordMagic = 0x32524d44;    // "DMR2"
constexpr size_t kHeadSize = 4 + 2 + 8 + 8 + 8 + 4 + 4 + 4;  // magic .. request length
                                                              // (without the caller)
constexpr size_t kRangeSize = 4 + 8 + 8;
constexpr int32_t kMaxErrno = 4095;  // Linux's MAX_ERRNO, as the reply protocol's
}  // namespace

MutationRecord RecordOf(uint16_t op, const OpContext& ctx, int err,
                        std::span<const uint8_t> request) {
  MutationRecord rec;
  rec.op = op;
  rec.session = ctx.session;
  rec.seq = ctx.seq;
  rec.now = ctx.now;
  rec.err = err;
  rec.caller = ctx.caller;
  if (err == 0) {  // an error changed nothing: only the reply is replayed
    rec.request = request;
    rec.allocations = ctx.allocations;
  }
  return rec;
}

// Layout (little-endian, common/byte_codec.h): magic u32, op u16, session u64, seq u64,
// now.sec i64, now.nsec u32, err i32, caller (uid u32, gid u32, group count u32, groups),
// request length u32 + bytes, allocation count u32, then per allocation server u32,
// pool_offset u64, length u64.
void EncodeMutation(const MutationRecord& rec, std::vector<uint8_t>* out) {
  const size_t caller_size = EncodedSize(rec.caller);
  out->resize(kHeadSize + caller_size + rec.request.size() + 4 +
              rec.allocations.size() * kRangeSize);
  codec::ByteWriter w(out->data());
  w.U32("magic", kRecordMagic);
  w.U16("op", rec.op);
  w.U64("session", rec.session);
  w.U64("seq", rec.seq);
  w.I64("now.sec", rec.now.sec);
  w.U32("now.nsec", rec.now.nsec);
  w.I32("err", rec.err);
  w.U32("caller.uid", rec.caller.uid);
  w.U32("caller.gid", rec.caller.gid);
  w.U32("caller.groups", static_cast<uint32_t>(rec.caller.groups.size()));
  for (uint32_t g : rec.caller.groups) w.U32("caller.groups", g);
  w.U32("request length", static_cast<uint32_t>(rec.request.size()));
  if (!rec.request.empty()) std::memcpy(w.position(), rec.request.data(), rec.request.size());
  codec::ByteWriter t(w.position() + rec.request.size());
  t.U32("count", static_cast<uint32_t>(rec.allocations.size()));
  for (const PoolRange& r : rec.allocations) {
    t.U32("server", r.server);
    t.U64("pool_offset", r.pool_offset);
    t.U64("length", r.length);
  }
}

// The record's bytes come from the metadata pool, not from the wire: a failure is
// Corruption.
Status DecodeMutation(std::span<const uint8_t> bytes, MutationRecord* rec,
                      std::vector<PoolRange>* ranges) {
  codec::ByteReader r(bytes, "journal record");
  uint32_t magic = 0;
  r.U32("magic", magic);
  r.Require(magic == kRecordMagic || magic == kRecordMagicV1, "magic",
            "is bad (not a namespace mutation)");
  r.U16("op", rec->op);
  r.U64("session", rec->session);
  r.U64("seq", rec->seq);
  r.I64("now.sec", rec->now.sec);
  r.U32("now.nsec", rec->now.nsec);
  r.Require(rec->now.nsec < 1000000000u, "now.nsec", "is >= 1e9");
  r.I32("err", rec->err);
  // An errno the reply protocol can carry (SplitReply's range): replay caches it as the
  // reply a retried request gets after a restart.
  r.Require(rec->err >= 0 && rec->err <= kMaxErrno, "err", "is not an errno (0..4095)");
  rec->caller = Credentials{};
  if (magic == kRecordMagic) {
    uint32_t groups = 0;
    r.U32("caller.uid", rec->caller.uid);
    r.U32("caller.gid", rec->caller.gid);
    r.U32("caller.groups", groups);
    r.Require(groups <= kMaxCallerGroups && uint64_t{groups} * 4 <= r.left(), "caller.groups",
              "is more groups than the record holds or a request may name");
    if (r.ok()) rec->caller.groups.resize(groups);
    for (uint32_t& g : rec->caller.groups) r.U32("caller.groups", g);
  }
  uint32_t req_len = 0;
  r.U32("request length", req_len);
  r.Require(req_len <= r.left(), "request length", "is longer than the record");
  if (!r.ok()) return Status::Corruption(r.Finish().message());
  const size_t req_at = bytes.size() - r.left();
  rec->request = bytes.subspan(req_at, req_len);
  codec::ByteReader t(bytes.subspan(req_at + req_len), "journal record allocations");
  uint32_t n = 0;
  t.U32("count", n);
  t.Require(uint64_t{n} * kRangeSize <= t.left(), "count", "is more ranges than bytes");
  ranges->clear();
  if (t.ok()) ranges->resize(n);
  for (uint32_t i = 0; i < n && t.ok(); ++i) {
    t.U32("server", (*ranges)[i].server);
    t.U64("pool_offset", (*ranges)[i].pool_offset);
    t.U64("length", (*ranges)[i].length);
  }
  Status st = t.Finish();
  if (!st.ok()) return Status::Corruption(st.message());
  rec->allocations = *ranges;
  return Status::OK();
}

namespace {
std::string OpName(uint16_t op) {
  if (op == kOpExpireSession) return "expire-session";
  if (op == kOpSetServerState) return "set-server-state";
  if (op == kOpResyncProgress) return "resync-progress";
  if (op == kOpSetPoolInstance) return "set-pool-instance";
  return std::string(OpcodeName(static_cast<Opcode>(op)));
}
}  // namespace

Status ApplyRecord(Namespace& ns, uint64_t lsn, std::span<const uint8_t> bytes) {
  MutationRecord rec;
  std::vector<PoolRange> ranges;
  Status st = DecodeMutation(bytes, &rec, &ranges);
  if (!st.ok()) return st.WithContext("journal record LSN " + std::to_string(lsn));
  const std::string what = "journal record LSN " + std::to_string(lsn) + " (" + OpName(rec.op) +
                           " of session " + std::to_string(rec.session) + ", seq " +
                           std::to_string(rec.seq) + ")";
  if (rec.err != 0) {
    if (rec.session != 0 && rec.op != static_cast<uint16_t>(Opcode::kUnregister)) {
      ns.CacheReply(rec.session, rec.seq, EncodeErrorReply(rec.err));
    }
    return Status::OK();
  }
  OpContext ctx;
  ctx.replay = true;
  ctx.now = rec.now;
  ctx.session = rec.session;
  ctx.seq = rec.seq;
  ctx.caller = rec.caller;
  ctx.allocations = std::move(ranges);
  int err = 0;
  auto r = ns.Mutate(rec.op, rec.request, ctx, &err);
  if (!r.ok()) return Status::Corruption(what + " does not decode: " + r.status().message());
  if (!ctx.replay_error.empty()) {
    return Status::Corruption(what +
                              " does not apply to the recovered namespace: " + ctx.replay_error);
  }
  if (err != 0) {
    return Status::Corruption(what +
                              " succeeded when it was executed but fails on replay "
                              "with errno " +
                              std::to_string(err));
  }
  if (ctx.next_allocation != ctx.allocations.size()) {
    return Status::Corruption(what + " records " + std::to_string(ctx.allocations.size()) +
                              " allocated ranges but replay used " +
                              std::to_string(ctx.next_allocation));
  }
  return Status::OK();
}

}  // namespace dpmfs::meta
