#include "tools/powerloss/record.h"

#include <cstring>

#include "common/crc32c.h"

namespace dpmfs::powerloss {
namespace {

constexpr size_t kMagicOff = 0;
constexpr size_t kTrialOff = 8;
constexpr size_t kSeqOff = 16;
constexpr size_t kPositionOff = 24;
constexpr size_t kSizeOff = 32;
constexpr size_t kPayloadOff = 40;

template <typename T>
void Put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);  // x86/ARM little-endian hosts only (as the whole project)
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Fills [p, p+n) with the payload of record (seed, trial, seq): a splitmix64 stream, so
// that a record written to the wrong place or with stale bytes cannot pass by chance.
void FillPayload(const RecordId& id, uint8_t* p, size_t n) {
  uint64_t state = Mix64(id.seed ^ Mix64(id.trial_id ^ Mix64(id.seq)));
  while (n > 0) {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t v = Mix64(state);
    size_t k = n < sizeof v ? n : sizeof v;
    std::memcpy(p, &v, k);
    p += k;
    n -= k;
  }
}

}  // namespace

uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

void EncodeRecord(const RecordId& id, uint8_t* out) {
  Put<uint64_t>(out + kMagicOff, kRecordMagic);
  Put<uint64_t>(out + kTrialOff, id.trial_id);
  Put<uint64_t>(out + kSeqOff, id.seq);
  Put<uint64_t>(out + kPositionOff, id.position);
  Put<uint32_t>(out + kSizeOff, id.size);
  Put<uint32_t>(out + kSizeOff + 4, 0);
  FillPayload(id, out + kPayloadOff, id.size - 4 - kPayloadOff);
  Put<uint32_t>(out + id.size - 4, Crc32c(out, id.size - 4));
}

const char* RecordCheckName(RecordCheck c) {
  switch (c) {
    case RecordCheck::kOk:
      return "ok";
    case RecordCheck::kZero:
      return "zeros";
    case RecordCheck::kOtherTrial:
      return "other-trial";
    case RecordCheck::kBadMagic:
      return "bad-magic";
    case RecordCheck::kBadCrc:
      return "bad-crc";
    case RecordCheck::kWrongIdentity:
      return "wrong-identity";
    case RecordCheck::kBadPayload:
      return "bad-payload";
  }
  return "?";
}

RecordCheck CheckRecord(const RecordId& expected, const uint8_t* found, std::string* detail) {
  auto say = [&](RecordCheck c, std::string what) {
    if (detail != nullptr) *detail = std::move(what);
    return c;
  };
  const uint32_t size = expected.size;
  if (Get<uint64_t>(found + kMagicOff) != kRecordMagic) {
    size_t nonzero = 0;
    for (uint32_t i = 0; i < size; ++i) nonzero += found[i] != 0;
    if (nonzero == 0) return say(RecordCheck::kZero, "all zero bytes");
    return say(RecordCheck::kBadMagic, "no record magic; " + std::to_string(nonzero) + " of " +
                                           std::to_string(size) + " bytes non-zero");
  }
  // A record of another size may sit here (runs with another --record-size on a kept
  // pool); only trust its fields after the CRC over its own claimed size matched.
  const uint32_t stored_size = Get<uint32_t>(found + kSizeOff);
  const uint64_t trial = Get<uint64_t>(found + kTrialOff);
  const uint64_t seq = Get<uint64_t>(found + kSeqOff);
  const uint64_t position = Get<uint64_t>(found + kPositionOff);
  const std::string fields = "trial " + std::to_string(trial) + " seq " + std::to_string(seq) +
                             " position " + std::to_string(position) + " size " +
                             std::to_string(stored_size);
  if (stored_size != size) {
    return say(trial == expected.trial_id ? RecordCheck::kWrongIdentity : RecordCheck::kOtherTrial,
               "a record header claiming " + fields);
  }
  const uint32_t crc = Crc32c(found, size - 4);
  const uint32_t stored_crc = Get<uint32_t>(found + size - 4);
  if (crc != stored_crc) {
    return say(RecordCheck::kBadCrc, "CRC mismatch (stored " + std::to_string(stored_crc) +
                                         ", computed " + std::to_string(crc) +
                                         ") in a record "
                                         "header claiming " +
                                         fields);
  }
  if (trial != expected.trial_id) return say(RecordCheck::kOtherTrial, "record of " + fields);
  if (seq != expected.seq || position != expected.position) {
    return say(RecordCheck::kWrongIdentity, "record of " + fields);
  }
  uint8_t want[kMaxRecordSize];
  EncodeRecord(expected, want);
  if (std::memcmp(want, found, size) != 0) {
    return say(RecordCheck::kBadPayload, "valid CRC but unexpected payload in record of " + fields);
  }
  return say(RecordCheck::kOk, "record of " + fields);
}

}  // namespace dpmfs::powerloss
