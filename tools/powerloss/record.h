// The self-describing records dpmfs-powerloss writes: each names its trial, sequence
// number and position and carries a CRC32C, so that reading a position back after the
// power loss tells exactly what is there (the right record, nothing, a record of an
// earlier trial, a torn or corrupt one) without any state besides the run's seed.
//
// Layout (little-endian, `size` bytes, 64..4096):
//   0  u64 magic       kRecordMagic
//   8  u64 trial id    unique per trial of a run (never 0)
//   16 u64 seq         0, 1, 2, ... within the trial
//   24 u64 position    pool data offset the record was written to
//   32 u32 size        record size in bytes
//   36 u32 reserved    0
//   40 ..  payload     bytes derived from (seed, trial id, seq)
//   size-4 u32 crc     CRC32C of bytes [0, size-4)
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dpmfs::powerloss {

inline constexpr uint64_t kRecordMagic = 0x31525053464d5044ull;  // "DPMFSPR1" on media
inline constexpr uint32_t kMinRecordSize = 64;
inline constexpr uint32_t kMaxRecordSize = 4096;

struct RecordId {
  uint64_t seed = 0;
  uint64_t trial_id = 0;
  uint64_t seq = 0;
  uint64_t position = 0;
  uint32_t size = 0;
};

// Writes the record `id` into out[0, id.size).
void EncodeRecord(const RecordId& id, uint8_t* out);

enum class RecordCheck {
  kOk,
  kZero,           // all zero bytes: the write never reached the pool
  kOtherTrial,     // a valid record of another trial (stale contents of the position)
  kBadMagic,       // neither zero nor a record (garbage, or a write torn at the start)
  kBadCrc,         // magic present but the CRC does not match (torn or corrupt)
  kWrongIdentity,  // valid CRC, right trial, but another seq/position/size
  kBadPayload,     // valid CRC and identity, but the payload differs from the expected one
};
const char* RecordCheckName(RecordCheck c);

// Compares what was read back at `expected.position` with the record that was written.
// `detail` (optional) gets a one-line description of what was found instead.
RecordCheck CheckRecord(const RecordId& expected, const uint8_t* found, std::string* detail);

// A well-mixed 64-bit value of `x` (splitmix64's finaliser).
uint64_t Mix64(uint64_t x);

}  // namespace dpmfs::powerloss
