// The journal record of one metadata mutation, as MetaService appends it to MetaStore
// and replays it after a crash (see namespace.h for the replay model).
//
// Layout (little-endian):
//   u32 magic "DMR2" | u16 op | u64 session | u64 seq | i64 now.sec | u32 now.nsec |
//   i32 err | caller (Credentials: u32 uid, u32 gid, u32 n, n x u32 group; the mapped
//   caller the server checked, so replay decides the same) |
//   u32 request length | request bytes (empty when err != 0) |
//   u32 n | n x (u32 server, u64 pool_offset, u64 length)   -- ranges the allocators
//                                                             handed out, in order
// A record with err != 0 changed nothing; it exists so that a retried request gets the
// same errno after a restart (the durable reply cache). Records of magic "DMR1" (before
// callers were journaled) have no caller field and replay as root, which is what the
// server then checked (nothing).
//
// Thread-safety: free functions on values.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "metadata/extent_map.h"
#include "metadata/meta_protocol.h"
#include "metadata/op_context.h"

namespace dpmfs::meta {

struct MutationRecord {
  uint16_t op = 0;
  uint64_t session = 0;
  uint64_t seq = 0;
  Timespec now;
  int32_t err = 0;
  Credentials caller;  // root for DMR1 records
  std::span<const uint8_t> request;  // encoding: refers to the caller's bytes;
                                     // decoding: into the decoded buffer
  std::span<const PoolRange> allocations;
};

// The record of mutation `op` that Namespace::Mutate just ran with `ctx` and answered
// with `err`, `request` its bytes (after the caller): what the journal must hold for
// replay to decide exactly as the live run did (its time, caller and allocations). Refers
// to `ctx` and `request`, which must outlive it. MetaService journals it; tests that
// keep their own journal build it here too, so they cannot drift from it.
MutationRecord RecordOf(uint16_t op, const OpContext& ctx, int err,
                        std::span<const uint8_t> request);

// Appends the encoding of `rec` to `out` (cleared first).
void EncodeMutation(const MutationRecord& rec, std::vector<uint8_t>* out);
// Parses a record; `ranges` receives the allocations (rec->allocations points into it).
// Corruption naming the field when it does not parse.
Status DecodeMutation(std::span<const uint8_t> bytes, MutationRecord* rec,
                      std::vector<PoolRange>* ranges);

class Namespace;
// Replays one journal record onto `ns` (recovery): the record's request goes through
// Namespace::Mutate with the record's time and allocations; a reply-only record (err !=
// 0) only refills the reply cache. Corruption naming the LSN when the record does not
// parse or does not apply exactly as it did live.
Status ApplyRecord(Namespace& ns, uint64_t lsn, std::span<const uint8_t> bytes);

}  // namespace dpmfs::meta
