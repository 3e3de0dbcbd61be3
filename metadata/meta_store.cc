// MetaStore: superblock, journal and checkpoint slots of the metadata pool. The on-PM
// format and the recovery rules are documented in metadata/README.md ("Metadata pool
// format"); the comments here say why each store happens in the order it does.
//
// Durability model: a crash (kill -9, or power loss on real PM) may leave any prefix of
// the stores issued so far durable, except that (a) a range we persisted is durable and
// (b) an aligned 8-byte store is never torn. Every multi-word structure therefore carries
// a CRC, and every "commit" is either an aligned 8-byte store (the durable-LSN word) or a
// CRC-protected header written into a place that is not the current one (journal header
// copies, checkpoint slots), so that a torn write only ever damages something that is not
// yet in use.
#include "metadata/meta_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/crc32c.h"
#include "common/byte_codec.h"
#include "common/pool_lock.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {
namespace {

using namespace store_layout;  // NOLINT(google-build-using-namespace): layout constants

// Every on-PM structure below is described once, as a struct and a Fields function for
// common/byte_codec.h (little-endian whatever the host); its offsets are the order of
// its fields (the tables in metadata/README.md).

template <size_t N>
constexpr std::array<uint8_t, N> MagicBytes(std::string_view s) {
  std::array<uint8_t, N> a{};
  for (size_t i = 0; i < N; ++i) a[i] = static_cast<uint8_t>(s[i]);
  return a;
}

// --- Superblock (first kSuperblockSize bytes of the pool's data area) ---
constexpr auto kSuperMagic = MagicBytes<8>("DPMFSMS1");
// Version 2 added the replication factor at kSbReplicas; a version-1 superblock has zero
// there (reserved) and is read as one copy of each block, which is what it meant.
constexpr uint32_t kStoreVersion = 2;
constexpr uint32_t kFirstVersionWithReplicas = 2;
constexpr size_t kSbFixedSize = 64;  // the fields below; then reserved zero bytes
constexpr size_t kSbCrc = 60;        // u32, CRC32C of the 4 KiB, this field as zero
constexpr size_t kSbReplicas = 64;   // u32 (version >= 2): copies of each block, 1..3
constexpr size_t kSbPools = 128;     // count x [block_size u32][data_size u64]
constexpr size_t kSbPoolEntry = 12;
static_assert(kSbPools + kMaxDataServers * kSbPoolEntry <= kSuperblockSize);

struct RawSuperblock {
  std::array<uint8_t, 8> magic{};
  uint32_t version = 0;
  uint32_t stripe_unit = 0;
  uint64_t journal_offset = 0;  // pool file offsets
  uint64_t journal_size = 0;
  std::array<uint64_t, 2> slot_offset{};
  uint64_t slot_size = 0;
  uint32_t pool_count = 0;
  uint32_t crc = 0;  // at kSbCrc
};

template <class IO>
void SuperblockFields(IO& io, RawSuperblock& s) {
  io.Fixed("magic", s.magic);
  io.U32("version", s.version);
  io.U32("stripe_unit", s.stripe_unit);
  io.U64("journal_offset", s.journal_offset);
  io.U64("journal_size", s.journal_size);
  io.U64("checkpoint_offset[0]", s.slot_offset[0]);
  io.U64("checkpoint_offset[1]", s.slot_offset[1]);
  io.U64("checkpoint_slot_size", s.slot_size);
  io.U32("data pool count", s.pool_count);
  io.U32("crc", s.crc);
}

template <class IO>
void PoolEntryFields(IO& io, DataPoolGeometry& g) {
  io.U32("data pool block_size", g.block_size);
  io.U64("data pool data_size", g.data_size);
}

// --- Journal header copy (32 bytes used of a 64-byte line) ---
constexpr auto kJournalMagic = MagicBytes<8>("DPMFSJH1");
constexpr size_t kJhCrc = 24;  // u32 over the 32 bytes with this field zero
constexpr size_t kJhSize = 32;

struct RawJournalHeader {
  std::array<uint8_t, 8> magic{};
  uint64_t generation = 0;
  uint64_t base_lsn = 0;
  uint32_t crc = 0;  // at kJhCrc
  uint32_t zero = 0;
};

template <class IO>
void JournalHeaderFields(IO& io, RawJournalHeader& h) {
  io.Fixed("magic", h.magic);
  io.U64("generation", h.generation);
  io.U64("base_lsn", h.base_lsn);
  io.U32("crc", h.crc);
  io.U32("zero", h.zero);
}

// --- Record header (kRecordHeaderSize bytes before the payload) ---
constexpr size_t kRecCrc = 16;  // u32 over the header with this field zero, then payload

struct RawRecordHeader {
  uint32_t magic = 0;  // kRecordMagic
  uint32_t len = 0;    // payload bytes
  uint64_t lsn = 0;
  uint32_t crc = 0;  // at kRecCrc
  uint32_t pad = 0;  // zero
};

template <class IO>
void RecordHeaderFields(IO& io, RawRecordHeader& r) {
  io.U32("magic", r.magic);
  io.U32("len", r.len);
  io.U64("lsn", r.lsn);
  io.U32("crc", r.crc);
  io.U32("pad", r.pad);
}

// --- Checkpoint slot header (64 bytes at the start of the slot's first page) ---
constexpr auto kSlotMagic = MagicBytes<8>("DPMFSCK1");
constexpr size_t kCkHeaderCrc = 36;  // u32 over the 64 bytes with this field zero
constexpr size_t kCkHeaderSize = 64;
constexpr size_t kCkUsed = 40;  // the fields below; the rest of the 64 bytes is zero

struct RawSlotHeader {
  std::array<uint8_t, 8> magic{};
  uint64_t generation = 0;   // the journal generation this checkpoint starts
  uint64_t through_lsn = 0;  // state as of this LSN
  uint64_t length = 0;       // blob bytes
  uint32_t blob_crc = 0;
  uint32_t header_crc = 0;  // at kCkHeaderCrc
};

template <class IO>
void SlotHeaderFields(IO& io, RawSlotHeader& h) {
  io.Fixed("magic", h.magic);
  io.U64("generation", h.generation);
  io.U64("through_lsn", h.through_lsn);
  io.U64("length", h.length);
  io.U32("blob_crc", h.blob_crc);
  io.U32("header_crc", h.header_crc);
}

// Decodes a fixed structure of exactly its encoded size (cannot fail: the span is sized).
template <class Raw, class Fn>
Raw DecodeFixed(const uint8_t* p, size_t n, const char* what, Fn&& fields) {
  Raw raw;
  codec::ByteReader r({p, n}, what);
  fields(r, raw);
  assert(r.Finish().ok());
  return raw;
}

constexpr uint64_t kMinJournalSize = kRecordAreaOffset + kPage;  // header page + 1 page
constexpr uint64_t kMinSlotSize = kSlotBlobOffset + kPage;
constexpr uint64_t kMinDataArea = kSuperblockSize + kMinJournalSize + 2 * kMinSlotSize;

static_assert(kDurableLsnOffset % 64 == 0 && kDurableLsnOffset >= kJournalHeaderCopy[1] + 64);
static_assert(kReserveMarkOffset % 64 == 0 && kReserveMarkOffset >= kDurableLsnOffset + 64);
static_assert(kJhSize <= 64 && kRecordAreaOffset >= kReserveMarkOffset + 64);

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, v);
  return buf;
}

uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
uint64_t RecordSize(uint64_t payload) { return kRecordHeaderSize + (payload + 7) / 8 * 8; }

// CRC32C of `n` bytes with the 4-byte field at `crc_at` taken as zero.
uint32_t CrcWithHole(const uint8_t* p, size_t n, size_t crc_at) {
  static constexpr uint8_t kZero[4] = {0, 0, 0, 0};
  uint32_t crc = Crc32cExtend(0, p, crc_at);
  crc = Crc32cExtend(crc, kZero, sizeof(kZero));
  return Crc32cExtend(crc, p + crc_at + 4, n - crc_at - 4);
}

// Recover scans the whole unused part of the journal with this: 64 bytes per step.
bool AllZero(const uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint64_t w[8];
    std::memcpy(w, p + i, sizeof(w));
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  for (; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

bool ValidBlockSize(uint64_t bs) {
  return bs >= pool::kMinBlockSize && bs <= pool::kMaxBlockSize && std::has_single_bit(bs);
}

char SlotName(int slot) { return slot == 0 ? 'A' : 'B'; }

// The durable-LSN word is written with one aligned 8-byte store (never torn) and read the
// same way; only one thread writes it at a time.
uint64_t LoadWord(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_ACQUIRE);
}
void StoreWord(uint8_t* p, uint64_t v) {
  __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELEASE);
}

// Where Format puts the regions in a data area of `data_size` bytes at `data_offset`.
struct Layout {
  uint64_t journal_offset = 0;
  uint64_t journal_size = 0;
  uint64_t slot_offset[2] = {0, 0};
  uint64_t slot_size = 0;
};

Layout ComputeLayout(uint64_t data_offset, uint64_t data_size, double journal_fraction) {
  Layout l;
  uint64_t usable = AlignDown(data_size, kPage) - kSuperblockSize;
  l.journal_offset = data_offset + kSuperblockSize;
  l.journal_size = std::max<uint64_t>(
      kMinJournalSize,
      AlignDown(static_cast<uint64_t>(static_cast<double>(usable) * journal_fraction), kPage));
  uint64_t rest = usable > l.journal_size ? usable - l.journal_size : 0;
  l.slot_size = AlignDown(rest / 2, kPage);
  l.slot_offset[0] = l.journal_offset + l.journal_size;
  l.slot_offset[1] = l.slot_offset[0] + l.slot_size;
  return l;
}

void EncodeSuperblock(uint8_t* sb, const Superblock& s) {
  std::memset(sb, 0, kSuperblockSize);
  RawSuperblock raw;
  raw.magic = kSuperMagic;
  raw.version = s.version;
  raw.stripe_unit = s.stripe_unit;
  raw.journal_offset = s.journal_offset;
  raw.journal_size = s.journal_size;
  raw.slot_offset = s.checkpoint_offset;
  raw.slot_size = s.checkpoint_slot_size;
  raw.pool_count = static_cast<uint32_t>(s.data_pools.size());
  codec::ByteWriter w(sb);
  SuperblockFields(w, raw);  // CRC zero for now
  assert(w.position() == sb + kSbFixedSize);
  codec::ByteWriter replicas(sb + kSbReplicas);
  replicas.U32("replicas", s.replicas);
  codec::ByteWriter pools(sb + kSbPools);
  for (DataPoolGeometry g : s.data_pools) PoolEntryFields(pools, g);
  codec::ByteWriter crc(sb + kSbCrc);
  crc.U32("crc", CrcWithHole(sb, kSuperblockSize, kSbCrc));
}

// Validates the superblock bytes of the metadata pool at `path` described by `info`.
Result<Superblock> DecodeSuperblock(const std::string& path, const pool::PoolInfo& info,
                                    const uint8_t* sb) {
  const uint64_t at = info.data_offset;
  auto where = [&] {
    return "metadata superblock of " + path + " at pool offset " + std::to_string(at);
  };
  const RawSuperblock raw = DecodeFixed<RawSuperblock>(
      sb, kSbFixedSize, "metadata superblock",
      [](codec::ByteReader& r, RawSuperblock& v) { SuperblockFields(r, v); });
  if (raw.magic != kSuperMagic) {
    if (AllZero(sb, kSuperblockSize)) {
      return Status::Corruption(where() +
                                " is missing (all zero): the pool header says metadata pool "
                                "but mkfs.dpmfs meta did not finish; format it again");
    }
    return Status::Corruption(where() + ": bad magic (expected DPMFSMS1" +
                              "): the superblock is corrupt");
  }
  uint32_t stored = raw.crc;
  uint32_t computed = CrcWithHole(sb, kSuperblockSize, kSbCrc);
  if (stored != computed) {
    return Status::Corruption(where() + ": checksum mismatch (stored " + Hex32(stored) +
                              ", computed " + Hex32(computed) + "): the superblock is corrupt");
  }
  Superblock s;
  s.version = raw.version;
  if (s.version > kStoreVersion) {
    return Status::NotSupported(where() + ": metadata format version " + std::to_string(s.version) +
                                " is newer than this dpmfs supports (" +
                                std::to_string(kStoreVersion) + "); upgrade dpmfs");
  }
  auto bad = [&](const std::string& what) {
    return Status::Corruption(where() + ": inconsistent superblock: " + what);
  };
  if (s.version == 0) return bad("format version 0 does not exist");
  s.stripe_unit = raw.stripe_unit;
  s.journal_offset = raw.journal_offset;
  s.journal_size = raw.journal_size;
  s.checkpoint_offset = raw.slot_offset;
  s.checkpoint_slot_size = raw.slot_size;
  uint32_t count = raw.pool_count;
  if (count == 0 || count > kMaxDataServers) {
    return bad("data pool count " + std::to_string(count) + " is not in 1.." +
               std::to_string(kMaxDataServers));
  }
  if (s.stripe_unit == 0) return bad("stripe unit 0");
  if (s.version >= kFirstVersionWithReplicas) {
    codec::ByteReader rr({sb + kSbReplicas, 4}, "metadata superblock");
    rr.U32("replicas", s.replicas);
    if (s.replicas == 0 || s.replicas > kMaxReplicas || s.replicas > count) {
      return bad("replication factor " + std::to_string(s.replicas) + " is not in 1.." +
                 std::to_string(std::min(kMaxReplicas, count)) + " (" + std::to_string(count) +
                 " data pools)");
    }
  } else {
    s.replicas = 1;
  }
  codec::ByteReader pools({sb + kSbPools, count * kSbPoolEntry}, "metadata superblock");
  for (uint32_t i = 0; i < count; ++i) {
    DataPoolGeometry g{i, 0, 0};
    PoolEntryFields(pools, g);
    if (!ValidBlockSize(g.block_size)) {
      return bad("data pool " + std::to_string(i) + " has block size " +
                 std::to_string(g.block_size) + ", not a power of two in [512, 1 MiB]");
    }
    if (g.data_size == 0 || g.data_size % g.block_size != 0) {
      return bad("data pool " + std::to_string(i) + " has data size " +
                 std::to_string(g.data_size) + ", not a positive multiple of its block size");
    }
    if (s.stripe_unit % g.block_size != 0) {
      return bad("stripe unit " + std::to_string(s.stripe_unit) +
                 " is not a multiple of data pool " + std::to_string(i) + "'s block size " +
                 std::to_string(g.block_size));
    }
    s.data_pools.push_back(g);
  }
  // Regions: [superblock][journal][slot A][slot B], page aligned, inside the data area.
  const uint64_t end = info.data_offset + info.data_size;
  auto region_ok = [&](uint64_t off, uint64_t size, uint64_t min_off, uint64_t min_size) {
    return off % kPage == 0 && size % kPage == 0 && off >= min_off && size >= min_size &&
           off <= end && size <= end - off;
  };
  if (!region_ok(s.journal_offset, s.journal_size, info.data_offset + kSuperblockSize,
                 kMinJournalSize)) {
    return bad("journal region [" + std::to_string(s.journal_offset) + ", +" +
               std::to_string(s.journal_size) +
               ") is misaligned, too small or outside the "
               "data area");
  }
  for (int slot = 0; slot < 2; ++slot) {
    uint64_t min_off = slot == 0 ? s.journal_offset + s.journal_size
                                 : s.checkpoint_offset[0] + s.checkpoint_slot_size;
    if (!region_ok(s.checkpoint_offset[slot], s.checkpoint_slot_size, min_off, kMinSlotSize)) {
      return bad(std::string("checkpoint slot ") + SlotName(slot) + " [" +
                 std::to_string(s.checkpoint_offset[slot]) + ", +" +
                 std::to_string(s.checkpoint_slot_size) +
                 ") is misaligned, too small, overlaps another region or lies outside the "
                 "data area");
    }
  }
  return s;
}

// A journal header copy as found on media.
struct JournalHeader {
  enum Kind { kEmpty, kBad, kValid } kind = kEmpty;
  std::string why;  // for kBad
  uint64_t generation = 0;
  uint64_t base_lsn = 0;
};

JournalHeader DecodeJournalHeader(const uint8_t* p, int copy) {
  JournalHeader h;
  if (AllZero(p, 64)) return h;
  h.kind = JournalHeader::kBad;
  const RawJournalHeader raw =
      DecodeFixed<RawJournalHeader>(p, kJhSize, "journal header", [](auto& r, auto& v) {
        JournalHeaderFields(r, v);
      });
  if (raw.magic != kJournalMagic) {
    h.why = "bad magic";
    return h;
  }
  uint32_t stored = raw.crc;
  uint32_t computed = CrcWithHole(p, kJhSize, kJhCrc);
  if (stored != computed) {
    h.why = "checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) + ")";
    return h;
  }
  h.generation = raw.generation;
  h.base_lsn = raw.base_lsn;
  if (h.generation == 0 || h.generation % 2 != static_cast<uint64_t>(copy) || h.base_lsn == 0) {
    h.why = "generation " + std::to_string(h.generation) + " / base LSN " +
            std::to_string(h.base_lsn) + " are impossible for copy " + std::to_string(copy);
    return h;
  }
  h.kind = JournalHeader::kValid;
  return h;
}

void EncodeJournalHeader(uint8_t* p, uint64_t generation, uint64_t base_lsn) {
  uint8_t h[64] = {};
  RawJournalHeader raw;
  raw.magic = kJournalMagic;
  raw.generation = generation;
  raw.base_lsn = base_lsn;
  codec::ByteWriter w(h);
  JournalHeaderFields(w, raw);
  assert(w.position() == h + kJhSize);
  codec::ByteWriter crc(h + kJhCrc);
  crc.U32("crc", CrcWithHole(h, kJhSize, kJhCrc));
  std::memcpy(p, h, sizeof(h));
}

// A checkpoint slot as found on media.
struct SlotState {
  enum Kind { kEmpty, kBadHeader, kHeaderOk } kind = kEmpty;
  std::string why;  // for kBadHeader
  uint64_t generation = 0;
  uint64_t through_lsn = 0;
  uint64_t length = 0;
  uint32_t blob_crc = 0;
};

SlotState DecodeSlotHeader(const uint8_t* p) {
  SlotState s;
  if (AllZero(p, kCkHeaderSize)) return s;
  s.kind = SlotState::kBadHeader;
  const RawSlotHeader raw = DecodeFixed<RawSlotHeader>(
      p, kCkUsed, "checkpoint slot header", [](auto& r, auto& v) { SlotHeaderFields(r, v); });
  if (raw.magic != kSlotMagic) {
    s.why = "header has a bad magic";
    return s;
  }
  uint32_t stored = raw.header_crc;
  uint32_t computed = CrcWithHole(p, kCkHeaderSize, kCkHeaderCrc);
  if (stored != computed) {
    s.why =
        "header checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) + ")";
    return s;
  }
  s.kind = SlotState::kHeaderOk;
  s.generation = raw.generation;
  s.through_lsn = raw.through_lsn;
  s.length = raw.length;
  s.blob_crc = raw.blob_crc;
  return s;
}

// One journal record as found on media.
struct RecordView {
  enum Kind { kOk, kZero, kTorn } kind = kZero;
  std::string why;  // for kTorn
  uint64_t lsn = 0;
  uint64_t size = 0;  // bytes the record occupies
  const uint8_t* payload = nullptr;
  uint32_t len = 0;
};

RecordView ParseRecord(const uint8_t* p, uint64_t room) {
  RecordView r;
  if (room < kRecordHeaderSize) {
    if (!AllZero(p, room)) {
      r.kind = RecordView::kTorn;
      r.why = "a partial record header at the end of the journal";
    }
    return r;
  }
  if (AllZero(p, kRecordHeaderSize)) return r;
  r.kind = RecordView::kTorn;
  const RawRecordHeader h = DecodeFixed<RawRecordHeader>(
      p, kRecordHeaderSize, "journal record header",
      [](auto& reader, auto& v) { RecordHeaderFields(reader, v); });
  if (h.magic != kRecordMagic) {
    r.why = "bad record magic " + Hex32(h.magic);
    return r;
  }
  r.len = h.len;
  r.lsn = h.lsn;
  r.size = RecordSize(r.len);
  if (r.size > room) {
    r.why = "length " + std::to_string(r.len) + " runs past the end of the journal";
    return r;
  }
  if (h.pad != 0) {
    r.why = "non-zero header padding";
    return r;
  }
  uint32_t stored = h.crc;
  uint32_t computed =
      Crc32cExtend(CrcWithHole(p, kRecordHeaderSize, kRecCrc), p + kRecordHeaderSize, r.len);
  if (stored != computed) {
    r.why = "checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) + ")";
    return r;
  }
  r.kind = RecordView::kOk;
  r.payload = p + kRecordHeaderSize;
  return r;
}

}  // namespace

// --- Format ---

Status ValidateFormatOptions(uint64_t data_area_size, const MetaFormatOptions& options) {
  if (!(options.journal_fraction > 0 && options.journal_fraction < 1)) {
    return Status::InvalidArgument("journal fraction " + std::to_string(options.journal_fraction) +
                                   " is not strictly between 0 and 1");
  }
  if (options.data_pools.empty()) {
    return Status::InvalidArgument("a cluster needs at least one data pool");
  }
  if (options.data_pools.size() > kMaxDataServers) {
    return Status::InvalidArgument(std::to_string(options.data_pools.size()) +
                                   " data pools are more than the " +
                                   std::to_string(kMaxDataServers) + " a cluster may have");
  }
  if (options.stripe_unit == 0) return Status::InvalidArgument("stripe unit 0 is invalid");
  if (options.replicas == 0 || options.replicas > kMaxReplicas) {
    return Status::InvalidArgument("replication factor " + std::to_string(options.replicas) +
                                   " is not in 1.." + std::to_string(kMaxReplicas));
  }
  if (options.replicas > options.data_pools.size()) {
    return Status::InvalidArgument(
        "replication factor " + std::to_string(options.replicas) + " needs at least " +
        std::to_string(options.replicas) + " data pools (each copy of a block on a different "
        "one), the cluster has " + std::to_string(options.data_pools.size()));
  }
  for (size_t i = 0; i < options.data_pools.size(); ++i) {
    const DataPoolGeometry& g = options.data_pools[i];
    std::string name = "data pool " + std::to_string(i);
    if (g.index != i) {
      return Status::InvalidArgument("data pools must be given in index order 0..N-1: entry " +
                                     std::to_string(i) + " has index " + std::to_string(g.index));
    }
    if (!ValidBlockSize(g.block_size)) {
      return Status::InvalidArgument(name + " has block size " + std::to_string(g.block_size) +
                                     ", not a power of two from 512 to 1 MiB");
    }
    if (g.data_size == 0 || g.data_size % g.block_size != 0) {
      return Status::InvalidArgument(name + " has data size " + std::to_string(g.data_size) +
                                     ", not a positive multiple of its block size");
    }
    if (options.stripe_unit % g.block_size != 0) {
      return Status::InvalidArgument("stripe unit " + std::to_string(options.stripe_unit) + " (" +
                                     pool::FormatSize(options.stripe_unit) +
                                     ") is not a multiple of " + name + "'s block size " +
                                     std::to_string(g.block_size));
    }
  }
  if (AlignDown(data_area_size, kPage) < kMinDataArea) {
    return Status::InvalidArgument(
        "the metadata pool's data area of " + std::to_string(data_area_size) +
        " bytes is too small: it needs at least " + std::to_string(kMinDataArea) + " bytes (" +
        pool::FormatSize(kMinDataArea) +
        ": a 4 KiB superblock, an 8 KiB journal and two 8 KiB checkpoint slots)");
  }
  Layout l = ComputeLayout(0, data_area_size, options.journal_fraction);
  if (l.slot_size < kMinSlotSize) {
    return Status::InvalidArgument("journal fraction " + std::to_string(options.journal_fraction) +
                                   " leaves " + std::to_string(l.slot_size) +
                                   " bytes per checkpoint slot in a data area of " +
                                   std::to_string(data_area_size) +
                                   " bytes; a slot needs at least " + std::to_string(kMinSlotSize));
  }
  return Status::OK();
}

Status MetaStore::Format(pool::MappedPool& pool, const MetaFormatOptions& options) {
  const pool::PoolInfo& info = pool.info();
  if (info.role != pool::Role::kMetadata) {
    return Status::InvalidArgument("cannot write a metadata superblock into " + pool.path() +
                                   ": it is a " + std::string(pool::RoleName(info.role)) + " pool");
  }
  if (Status st = ValidateFormatOptions(info.data_size, options); !st.ok()) {
    return st.WithContext("cannot format metadata pool " + pool.path());
  }
  Layout l = ComputeLayout(info.data_offset, info.data_size, options.journal_fraction);
  Superblock s;
  s.version = kStoreVersion;
  s.stripe_unit = options.stripe_unit;
  s.replicas = options.replicas;
  s.data_pools = options.data_pools;
  s.journal_offset = l.journal_offset;
  s.journal_size = l.journal_size;
  s.checkpoint_offset = {l.slot_offset[0], l.slot_offset[1]};
  s.checkpoint_slot_size = l.slot_size;
  auto with_path = [&](const Status& st) {
    return st.WithContext("formatting metadata pool " + pool.path());
  };

  // 1. Invalidate any old superblock first: from here until step 4 a crash leaves a pool
  //    Open refuses ("superblock missing"), never one that mixes old and new regions.
  uint8_t* sb = pool.base() + info.data_offset;
  std::memset(sb, 0, kSuperblockSize);
  if (Status st = pool.memory().Sync(sb, kSuperblockSize); !st.ok()) return with_path(st);

  // 2. An empty journal: zero records (Recover relies on zeros after the last record),
  //    durable LSN 0, header copy 1 = generation 1 starting at LSN 1; copy 0 stays zero.
  uint8_t* journal = pool.base() + l.journal_offset;
  std::memset(journal, 0, l.journal_size);
  EncodeJournalHeader(journal + kJournalHeaderCopy[1], 1, 1);
  if (Status st = pool.memory().Sync(journal, l.journal_size); !st.ok()) return with_path(st);

  // 3. No checkpoint: both slot headers zero (the blobs are only read through a header).
  for (int slot = 0; slot < 2; ++slot) {
    uint8_t* p = pool.base() + l.slot_offset[slot];
    std::memset(p, 0, kSlotBlobOffset);
    if (Status st = pool.memory().Sync(p, kSlotBlobOffset); !st.ok()) return with_path(st);
  }

  // 4. The superblock last: it makes the pool usable.
  EncodeSuperblock(sb, s);
  if (Status st = pool.memory().Sync(sb, kSuperblockSize); !st.ok()) return with_path(st);
  // Read back through the validation Open uses.
  Result<Superblock> check = DecodeSuperblock(pool.path(), info, sb);
  if (!check.ok()) {
    return Status::Internal("the metadata superblock just written fails validation: " +
                            check.status().ToString());
  }
  spdlog::debug(
      "formatted metadata pool {}: journal {} bytes at {}, checkpoint slots {} bytes "
      "at {} and {}, {} data pools, stripe unit {}",
      pool.path(), l.journal_size, l.journal_offset, l.slot_size, l.slot_offset[0],
      l.slot_offset[1], s.data_pools.size(), s.stripe_unit);
  return Status::OK();
}

// --- Open ---

Result<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& path,
                                                   const pool::OpenExpectations& expect,
                                                   bool msync) {
  pool::OpenExpectations e = expect;
  e.role = pool::Role::kMetadata;
  DPMFS_ASSIGN_OR_RETURN(pool::MappedPool mapped, pool::MappedPool::Open(path, e));

  // Two writers of one journal would interleave records and destroy it: hold an exclusive
  // lock for the store's lifetime (released by the kernel if the process dies).
  UniqueFd lock_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!lock_fd) return Status::FromErrno(errno, "cannot open metadata pool " + path);
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      return Status::FailedPrecondition("metadata pool " + path + " is in use by " +
                                        pool::DescribeLockHolder(path) +
                                        " (another dpmfs-meta, or another open of it in this "
                                        "process, holds its lock)");
    }
    return Status::FromErrno(err, "cannot lock metadata pool " + path);
  }
  return OpenMapped(std::move(mapped), std::move(lock_fd), msync);
}

Result<std::unique_ptr<MetaStore>> MetaStore::Open(
    std::unique_ptr<pmem::PersistentMemory> memory, const pool::OpenExpectations& expect,
    bool msync) {
  pool::OpenExpectations e = expect;
  e.role = pool::Role::kMetadata;
  DPMFS_ASSIGN_OR_RETURN(pool::MappedPool mapped, pool::MappedPool::Attach(std::move(memory), e));
  return OpenMapped(std::move(mapped), UniqueFd(), msync);
}

Result<std::unique_ptr<MetaStore>> MetaStore::OpenMapped(pool::MappedPool mapped, UniqueFd lock_fd,
                                                         bool msync) {
  std::unique_ptr<MetaStore> store(new MetaStore());
  store->lock_fd_ = std::move(lock_fd);  // closed with the store, also on the errors below
  DPMFS_ASSIGN_OR_RETURN(
      store->superblock_,
      DecodeSuperblock(mapped.path(), mapped.info(), mapped.base() + mapped.info().data_offset));
  const Superblock& s = store->superblock_;
  store->msync_ = msync;
  store->journal_ = mapped.base() + s.journal_offset;
  store->records_ = store->journal_ + kRecordAreaOffset;
  store->records_capacity_ = s.journal_size - kRecordAreaOffset;
  for (int slot = 0; slot < 2; ++slot) {
    store->slots_[slot] = mapped.base() + s.checkpoint_offset[slot];
  }
  store->slot_capacity_ = s.checkpoint_slot_size - kSlotBlobOffset;
  store->pool_.emplace(std::move(mapped));
  store->mem_ = &store->pool_->memory();
  return store;
}

MetaStore::~MetaStore() {
  pool_.reset();  // unmapped before the lock goes (lock_fd_ is closed after this body)
}

Result<Superblock> ReadSuperblock(const std::string& path) {
  DPMFS_ASSIGN_OR_RETURN(pool::PoolInfo info, pool::ReadPoolHeader(path));
  DPMFS_RETURN_IF_ERROR(pool::CheckExpectations(path, info, {pool::Role::kMetadata, {}, {}}));
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno(errno, "cannot open metadata pool " + path);
  uint8_t sb[kSuperblockSize];
  size_t done = 0;
  while (done < sizeof(sb)) {
    ssize_t r =
        ::pread(fd.get(), sb + done, sizeof(sb) - done, static_cast<off_t>(info.data_offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  int err = errno;
  fd.reset();
  if (done < sizeof(sb)) {
    return Status::FromErrno(err, "cannot read the metadata superblock of " + path);
  }
  return DecodeSuperblock(path, info, sb);
}

// --- Persistence helpers ---

Status MetaStore::PersistRange(const void* addr, size_t len) {
  if (msync_) return mem_->Sync(addr, len);
  mem_->Persist(addr, len);
  return Status::OK();
}

Status MetaStore::CopyDurable(uint8_t* dst, const void* src, size_t len) {
  if (msync_) {
    if (len != 0) std::memcpy(dst, src, len);
    return mem_->Sync(dst, len);
  }
  mem_->MemcpyPersist(dst, src, len);
  return Status::OK();
}

Status MetaStore::ZeroDurable(uint8_t* dst, size_t len) {
  if (msync_) {
    std::memset(dst, 0, len);
    return mem_->Sync(dst, len);
  }
  mem_->MemsetPersist(dst, 0, len);
  return Status::OK();
}

Status MetaStore::SetReserveMark(uint64_t mark) {
  StoreWord(journal_ + kReserveMarkOffset, mark);  // aligned 8-byte store: never torn
  DPMFS_RETURN_IF_ERROR(PersistRange(journal_ + kReserveMarkOffset, 8));
  reserve_mark_ = mark;
  return Status::OK();
}

Status MetaStore::ZeroRecordTail(uint64_t from, uint64_t limit) {
  // Find the last non-zero byte in [from, limit), page by page from the end: the area
  // past the last record is normally all zero, so this reads memory and writes nothing.
  uint64_t end = std::min(limit, records_capacity_);
  while (end > from) {
    uint64_t start = std::max(from, end > kPage ? AlignDown(end - 1, kPage) : 0);
    if (!AllZero(records_ + start, end - start)) {
      while (records_[end - 1] == 0) --end;
      break;
    }
    end = start;
  }
  if (end <= from) return Status::OK();
  spdlog::debug("metadata pool {}: zeroing {} bytes of journal after the last record",
                pool_->path(), end - from);
  return ZeroDurable(records_ + from, end - from);
}

Status MetaStore::ResetJournal(uint64_t generation, uint64_t base_lsn, uint64_t used) {
  // (a) The durable-LSN word must not be below base_lsn - 1 once the new header is current:
  //     otherwise Recover would see "acknowledged" LSNs (<= durable) before the base. It
  //     already equals base_lsn - 1 after a checkpoint (every record was acknowledged);
  //     this is for the roll-forward in Recover. One aligned 8-byte store: never torn.
  uint8_t* word = journal_ + kDurableLsnOffset;
  if (LoadWord(word) < base_lsn - 1) {
    StoreWord(word, base_lsn - 1);
    DPMFS_RETURN_IF_ERROR(PersistRange(word, 8));
  }
  // (b) The commit point: the header copy of the new generation goes into the copy that
  //     is NOT current (generation % 2). A crash while writing it leaves that copy torn
  //     (CRC mismatch) and the old copy current; the new checkpoint is then one generation
  //     ahead of the journal, which Recover finishes as a roll-forward.
  uint8_t* copy = journal_ + kJournalHeaderCopy[generation % 2];
  EncodeJournalHeader(copy, generation, base_lsn);
  DPMFS_RETURN_IF_ERROR(PersistRange(copy, 64));
  // (c) Records of the old generation are now dead (all LSNs < base_lsn). Zeroing them
  //     keeps "everything after the last record is zero", so the next Recover ends the
  //     journal on a clean zero and reports no torn tail. A crash in the middle leaves
  //     stale records whose LSNs can never be consecutive with base_lsn, all below the
  //     reserve mark; Recover zeroes whatever is left.
  if (used > 0) {
    used = std::min(used, records_capacity_);
    DPMFS_RETURN_IF_ERROR(ZeroDurable(records_, used));
  }
  // (d) Only now that nothing is left below it may the reserve mark go down: a crash
  //     before this keeps the old, higher mark, so Recover still zeroes the leftovers.
  DPMFS_RETURN_IF_ERROR(SetReserveMark(0));
  generation_ = generation;
  tail_ = 0;
  return Status::OK();
}

// --- Recover ---

// The steps of Recover (metadata/README.md, "Recover"), each a function of its own.

// What step 1 found: the current journal header and the two words beside it.
struct MetaStore::JournalFound {
  uint64_t generation = 0;  // Gj
  uint64_t base_lsn = 0;    // B
  uint64_t durable = 0;     // the durable-LSN word
  uint64_t mark = 0;        // the reserve mark, capped at the record area's size
};

// What step 2 found: the current checkpoint (or none).
struct MetaStore::CheckpointFound {
  SlotState slot[2];
  int newest = -1;          // -1: no valid slot (a fresh file system)
  uint64_t generation = 1;  // Gc; a fresh file system: generation 1 starts with no checkpoint
  uint64_t through_lsn = 0;
  std::span<const uint8_t> blob;
};

std::string MetaStore::SlotWhere(int slot) const {
  return std::string("checkpoint slot ") + SlotName(slot) + " of " + pool_->path() +
         " at pool offset " + std::to_string(superblock_.checkpoint_offset[slot]);
}

std::string MetaStore::DamagedSlots(const CheckpointFound& c) const {
  std::string out;
  for (int i = 0; i < 2; ++i) {
    if (c.slot[i].kind == SlotState::kBadHeader) {
      out += "; " + SlotWhere(i) + " is damaged: " + c.slot[i].why;
    }
  }
  return out;
}

// 1. The current journal header: the valid copy with the highest generation.
Result<MetaStore::JournalFound> MetaStore::FindJournalHeader() const {
  const std::string& path = pool_->path();
  const uint64_t journal_off = superblock_.journal_offset;
  JournalHeader jh[2];
  int cur = -1;
  for (int c = 0; c < 2; ++c) {
    jh[c] = DecodeJournalHeader(journal_ + kJournalHeaderCopy[c], c);
    if (jh[c].kind == JournalHeader::kValid && (cur < 0 || jh[c].generation > jh[cur].generation)) {
      cur = c;
    }
  }
  auto copy_desc = [&](int c) {
    return "copy " + std::to_string(c) + " at pool offset " +
           std::to_string(journal_off + kJournalHeaderCopy[c]) + ": " +
           (jh[c].kind == JournalHeader::kEmpty ? std::string("empty") : jh[c].why);
  };
  if (cur < 0) {
    return Status::Corruption("journal header of " + path + " is corrupt: no valid copy (" +
                              copy_desc(0) + "; " + copy_desc(1) + ")");
  }
  if (jh[1 - cur].kind == JournalHeader::kBad) {
    // The copy being written when a checkpoint was interrupted, or damage to the older
    // copy: harmless either way, the checks against the checkpoint below catch the rest.
    spdlog::warn("metadata pool {}: journal header {} (using copy {}, generation {})", path,
                 copy_desc(1 - cur), cur, jh[cur].generation);
  }
  JournalFound j;
  j.generation = jh[cur].generation;
  j.base_lsn = jh[cur].base_lsn;
  j.durable = LoadWord(journal_ + kDurableLsnOffset);
  // No record byte was ever written at or past the reserve mark (Append raises it before
  // it reserves space beyond it), so the scans below stop there. A damaged mark larger
  // than the journal only costs a longer scan.
  j.mark = std::min(LoadWord(journal_ + kReserveMarkOffset), records_capacity_);
  if (j.durable + 1 < j.base_lsn) {
    return Status::Corruption("journal of " + path + ": the durable-LSN word at pool offset " +
                              std::to_string(journal_off + kDurableLsnOffset) + " holds " +
                              std::to_string(j.durable) + ", below the journal's base LSN " +
                              std::to_string(j.base_lsn) + " (generation " +
                              std::to_string(j.generation) + ")");
  }
  return j;
}

// 2. The checkpoint: the slot whose valid header has the highest generation. It must be
//    intact: the journal that led up to it may already be gone, so falling back to the
//    older slot could silently lose acknowledged state.
Result<MetaStore::CheckpointFound> MetaStore::FindCheckpoint() const {
  CheckpointFound c;
  for (int i = 0; i < 2; ++i) {
    c.slot[i] = DecodeSlotHeader(slots_[i]);
    if (c.slot[i].kind == SlotState::kHeaderOk &&
        (c.newest < 0 || c.slot[i].generation > c.slot[c.newest].generation)) {
      c.newest = i;
    }
  }
  if (c.newest >= 0 && c.slot[1 - c.newest].kind == SlotState::kHeaderOk &&
      c.slot[0].generation == c.slot[1].generation) {
    return Status::Corruption(SlotWhere(0) + " and slot B both claim checkpoint generation " +
                              std::to_string(c.slot[0].generation));
  }
  if (c.newest < 0) return c;
  const SlotState& s = c.slot[c.newest];
  std::string what = SlotWhere(c.newest) + " (generation " + std::to_string(s.generation) +
                     ", through LSN " + std::to_string(s.through_lsn) + ", " +
                     std::to_string(s.length) + " bytes)";
  if (s.length > slot_capacity_) {
    return Status::Corruption(what + " is corrupt: its length exceeds the slot's capacity of " +
                              std::to_string(slot_capacity_) + " bytes");
  }
  if (s.generation < 2) {
    return Status::Corruption(what + " is corrupt: checkpoint generations start at 2");
  }
  uint32_t computed = Crc32c(slots_[c.newest] + kSlotBlobOffset, s.length);
  if (computed != s.blob_crc) {
    std::string other;
    if (c.slot[1 - c.newest].kind == SlotState::kBadHeader) {
      other = "; " + SlotWhere(1 - c.newest) + " is damaged too: " + c.slot[1 - c.newest].why;
    }
    return Status::Corruption(what + " is corrupt: blob checksum mismatch (stored " +
                              Hex32(s.blob_crc) + ", computed " + Hex32(computed) +
                              "); the journal before it may be gone, so an older "
                              "checkpoint cannot stand in for it" +
                              other);
  }
  c.generation = s.generation;
  c.through_lsn = s.through_lsn;
  c.blob = {slots_[c.newest] + kSlotBlobOffset, s.length};
  return c;
}

// 3. The checkpoint and the journal must belong together. A checkpoint of generation G
//    was written for the journal generation G that starts at through_lsn + 1. Returns
//    true for an interrupted checkpoint that Recover finishes (roll forward).
Result<bool> MetaStore::CheckCheckpointFitsJournal(const JournalFound& j,
                                                   const CheckpointFound& c) const {
  const std::string& path = pool_->path();
  bool roll_forward = false;
  if (c.generation == j.generation) {
    if (c.through_lsn + 1 != j.base_lsn) {
      return Status::Corruption("metadata pool " + path + ": checkpoint generation " +
                                std::to_string(c.generation) + " ends at LSN " +
                                std::to_string(c.through_lsn) + " but journal generation " +
                                std::to_string(j.generation) + " starts at LSN " +
                                std::to_string(j.base_lsn));
    }
  } else if (c.generation == j.generation + 1) {
    // WriteCheckpoint persisted the slot but crashed before the new journal header was
    // durable. Everything acknowledged was in the checkpoint (it is written only when no
    // Append is in flight), so the old journal holds nothing after it: finish the reset.
    if (c.through_lsn + 1 < j.base_lsn || j.durable > c.through_lsn) {
      return Status::Corruption(
          "metadata pool " + path + ": checkpoint generation " + std::to_string(c.generation) +
          " through LSN " + std::to_string(c.through_lsn) +
          " does not follow journal generation " + std::to_string(j.generation) +
          " (base LSN " + std::to_string(j.base_lsn) + ", durable LSN " +
          std::to_string(j.durable) + "): the journal header or the checkpoint is damaged");
    }
    roll_forward = true;
  } else if (c.generation < j.generation) {
    std::string have = c.newest >= 0 ? "the newest valid checkpoint is slot " +
                                           std::string(1, SlotName(c.newest)) +
                                           " of generation " + std::to_string(c.generation)
                                     : std::string("no slot holds a valid checkpoint");
    return Status::Corruption("metadata pool " + path + ": journal generation " +
                              std::to_string(j.generation) + " starts at LSN " +
                              std::to_string(j.base_lsn) + " and needs the checkpoint through LSN " +
                              std::to_string(j.base_lsn - 1) + ", but " + have +
                              DamagedSlots(c));
  } else {
    return Status::Corruption("metadata pool " + path + ": checkpoint generation " +
                              std::to_string(c.generation) + " is ahead of journal generation " +
                              std::to_string(j.generation) + " by more than one");
  }
  if (c.slot[0].kind == SlotState::kBadHeader || c.slot[1].kind == SlotState::kBadHeader) {
    // An interrupted WriteCheckpoint (its slot header is written last) or damage to the
    // older checkpoint, which nothing needs any more.
    spdlog::warn("metadata pool {}: ignoring a damaged checkpoint slot that is not current{}",
                 path, DamagedSlots(c));
  }
  return roll_forward;
}

// 5. Replays the records from the start of the record area, expecting LSN B, B+1, ...;
//    the first that is zero, torn or out of sequence ends the journal. Sets `*last` to the
//    last LSN replayed (B - 1 when none) and `*end` to the record area offset after it.
Status MetaStore::ReplayJournal(const JournalFound& j, const ReplayFn& replay,
                                RecoveryStats* stats, uint64_t* last, uint64_t* end) {
  const std::string& path = pool_->path();
  const uint64_t journal_off = superblock_.journal_offset;
  uint64_t expected = j.base_lsn;
  uint64_t off = 0;
  RecordView r;
  std::string stop;
  while (true) {
    r = ParseRecord(records_ + off, records_capacity_ - off);
    if (r.kind == RecordView::kZero) {
      stop = "zero (the end of the journal)";
      break;
    }
    if (r.kind == RecordView::kTorn) {
      stop = "torn: " + r.why;
      break;
    }
    if (r.lsn != expected) {
      stop = "has LSN " + std::to_string(r.lsn) + " (not consecutive)";
      break;
    }
    DPMFS_RETURN_IF_ERROR(replay(r.lsn, {r.payload, r.len}));
    ++stats->records_replayed;
    ++expected;
    off += r.size;
  }
  *last = expected - 1;
  *end = off;
  if (*last < j.durable) {
    return Status::Corruption("journal of " + path + ": record at pool offset " +
                              std::to_string(journal_off + kRecordAreaOffset + off) + " (LSN " +
                              std::to_string(expected) + " expected) is " + stop +
                              ", but every record up to the "
                              "durable LSN " +
                              std::to_string(j.durable) +
                              " was acknowledged: the journal is damaged");
  }
  if (r.kind == RecordView::kTorn) {
    stats->dropped_torn_tail = true;
    spdlog::warn(
        "metadata pool {}: the journal ends with an unacknowledged torn record at "
        "pool offset {} (LSN {}): {}; dropped",
        path, journal_off + kRecordAreaOffset + off, expected, r.why);
  }
  return Status::OK();
}

// 6. Leaves the journal as Append expects it: nothing but zeros after the last record
//    (`end`), the reserve mark there, and the durable word covering every record kept.
Status MetaStore::TrimJournalTail(const JournalFound& j, uint64_t last, uint64_t end) {
  // Whatever follows the last record (a torn record, records of the crashed run that
  // were written after a gap, stale records) must go before Append writes there: a
  // leftover intact record could otherwise line up with a new one and be taken for the
  // next LSN by a later Recover.
  DPMFS_RETURN_IF_ERROR(ZeroRecordTail(end, std::max(j.mark, end)));
  // Everything from `end` on is zero now: the mark may come down to it (or must go up
  // to it, if the word was damaged).
  if (j.mark != end) {
    DPMFS_RETURN_IF_ERROR(SetReserveMark(end));
  } else {
    reserve_mark_ = end;
  }
  if (last > j.durable) {
    // Intact records nobody acknowledged are now part of the state the caller rebuilt;
    // make them acknowledged so that a later crash cannot take them away again.
    StoreWord(journal_ + kDurableLsnOffset, last);
    DPMFS_RETURN_IF_ERROR(PersistRange(journal_ + kDurableLsnOffset, 8));
  }
  generation_ = j.generation;
  return Status::OK();
}

// 7. Appends continue after the last record.
void MetaStore::ResumeAppends(int current_slot, uint64_t tail, uint64_t last) {
  MutexLock lock(mu_);
  current_slot_ = current_slot;
  tail_ = tail;
  next_lsn_ = last + 1;
  written_lsn_ = last;
  durable_lsn_ = last;
  persisting_ = false;
  done_.fill(0);
  failed_ = Status::OK();
  recovered_ = true;
}

Status MetaStore::Recover(const LoadFn& load, const ReplayFn& replay, RecoveryStats* stats) {
  // No lock while reading and replaying: Recover runs alone (see the header), and the
  // callbacks may call the const accessors, which take mu_.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string& path = pool_->path();
  RecoveryStats local;
  {
    MutexLock lock(mu_);
    recovered_ = false;
  }

  DPMFS_ASSIGN_OR_RETURN(const JournalFound journal, FindJournalHeader());        // 1
  DPMFS_ASSIGN_OR_RETURN(const CheckpointFound checkpoint, FindCheckpoint());     // 2
  DPMFS_ASSIGN_OR_RETURN(const bool roll_forward,                                 // 3
                         CheckCheckpointFitsJournal(journal, checkpoint));
  if (checkpoint.newest >= 0) {                                                   // 4
    DPMFS_RETURN_IF_ERROR(load(checkpoint.blob));
    local.checkpoint_lsn = checkpoint.through_lsn;
    local.checkpoint_bytes = checkpoint.blob.size();
  }
  uint64_t last = checkpoint.through_lsn;
  uint64_t tail = 0;
  if (roll_forward) {
    spdlog::warn(
        "metadata pool {}: finishing an interrupted checkpoint (slot {}, generation {}, "
        "through LSN {})",
        path, SlotName(checkpoint.newest), checkpoint.generation, checkpoint.through_lsn);
    MutexLock lock(mu_);
    DPMFS_RETURN_IF_ERROR(
        ResetJournal(checkpoint.generation, checkpoint.through_lsn + 1, journal.mark));
  } else {
    DPMFS_RETURN_IF_ERROR(                                                        // 5
        ReplayJournal(journal, replay, &local, &last, &tail));  // unlocked: replay calls back
    MutexLock lock(mu_);
    DPMFS_RETURN_IF_ERROR(TrimJournalTail(journal, last, tail));                  // 6
  }
  ResumeAppends(checkpoint.newest, tail, last);                                   // 7

  local.last_lsn = last;
  local.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::debug(
      "metadata pool {}: recovered checkpoint through LSN {} ({} bytes) and {} journal "
      "records, last LSN {}, in {:.3f} s",
      path, local.checkpoint_lsn, local.checkpoint_bytes, local.records_replayed, local.last_lsn,
      local.seconds);
  if (stats != nullptr) *stats = local;
  return Status::OK();
}

// --- Append ---

Result<uint64_t> MetaStore::Append(std::span<const uint8_t> record) {
  const uint64_t size = RecordSize(record.size());
  uint64_t lsn = 0;
  uint64_t off = 0;
  {
    MutexLock lock(mu_);
    while (true) {
      if (!recovered_) {
        return Status::FailedPrecondition("metadata journal of " + pool_->path() +
                                          ": Append before Recover");
      }
      if (!failed_.ok()) return failed_;
      if (record.size() > UINT32_MAX || size > records_capacity_) {
        // Also ResourceExhausted: a caller whose state already holds the mutation can
        // still make it durable with a checkpoint. Retrying the append is pointless.
        return Status::ResourceExhausted("a journal record of " + std::to_string(record.size()) +
                                         " bytes can never fit the journal of " + pool_->path() +
                                         " (" + std::to_string(records_capacity_) +
                                         " bytes); only a checkpoint can hold it");
      }
      if (size > records_capacity_ - tail_) {
        return Status::ResourceExhausted(
            "metadata journal of " + pool_->path() + " is full: " + std::to_string(tail_) + " of " +
            std::to_string(records_capacity_) + " bytes used, a record of " + std::to_string(size) +
            " bytes does not fit; write a checkpoint");
      }
      // The completion flags form a ring indexed by LSN: wait for room in it (only with
      // more than kCompletionRing appends in flight).
      if (next_lsn_ - written_lsn_ <= kCompletionRing) break;
      lock.Wait(cv_);
    }
    if (tail_ + size > reserve_mark_) {
      // Once per MiB of journal: raise the reserve mark (durably) before any byte past
      // it is written, so Recover knows where the writes of a crashed run can end.
      Status st = SetReserveMark(std::min(records_capacity_, AlignUp(tail_ + size, kReserveStep)));
      if (!st.ok()) {
        failed_ = st.WithContext("metadata journal of " + pool_->path());
        cv_.notify_all();
        return failed_;
      }
    }
    lsn = next_lsn_++;
    off = tail_;
    tail_ += size;
  }

  // Write and flush the record outside the lock: appenders fill their own ranges in
  // parallel. The record is made durable by its own thread (a fence only orders the
  // flushes of the core that issues it) before it counts as written.
  uint8_t* dst = records_ + off;
  uint8_t header[kRecordHeaderSize];
  RawRecordHeader h{kRecordMagic, static_cast<uint32_t>(record.size()), lsn, 0, 0};
  codec::ByteWriter w(header);
  RecordHeaderFields(w, h);  // CRC zero for now
  h.crc = Crc32cExtend(Crc32c(header, sizeof(header)), record.data(), record.size());
  codec::ByteWriter crc(header + kRecCrc);
  crc.U32("crc", h.crc);
  std::memcpy(dst, header, sizeof(header));
  if (!record.empty()) std::memcpy(dst + kRecordHeaderSize, record.data(), record.size());
  std::memset(dst + kRecordHeaderSize + record.size(), 0, size - kRecordHeaderSize - record.size());
  Status written = PersistRange(dst, size);

  MutexLock lock(mu_);
  if (!written.ok()) {
    if (failed_.ok()) failed_ = written.WithContext("metadata journal of " + pool_->path());
    cv_.notify_all();
    return failed_;
  }
  done_[lsn % kCompletionRing] = 1;
  while (written_lsn_ + 1 < next_lsn_ && done_[(written_lsn_ + 1) % kCompletionRing] != 0) {
    done_[(written_lsn_ + 1) % kCompletionRing] = 0;
    ++written_lsn_;
  }
  // Group commit: one thread at a time persists the durable-LSN word, for every record
  // written so far; the others wait for it to cover them (or take over afterwards).
  while (durable_lsn_ < lsn) {
    if (!failed_.ok()) return failed_;
    if (persisting_ || written_lsn_ <= durable_lsn_) {
      lock.Wait(cv_);
      continue;
    }
    persisting_ = true;
    const uint64_t target = written_lsn_;
    lock.Unlock();
    uint8_t* word = journal_ + kDurableLsnOffset;
    StoreWord(word, target);  // aligned 8-byte store: a crash sees old or new, never torn
    Status st = PersistRange(word, 8);
    lock.Lock();
    persisting_ = false;
    if (!st.ok()) {
      if (failed_.ok()) failed_ = st.WithContext("metadata journal of " + pool_->path());
      cv_.notify_all();
      return failed_;
    }
    durable_lsn_ = target;
    cv_.notify_all();
  }
  return lsn;
}

double MetaStore::journal_fill() const {
  MutexLock lock(mu_);
  return records_capacity_ == 0
             ? 0.0
             : static_cast<double>(tail_) / static_cast<double>(records_capacity_);
}

uint64_t MetaStore::last_lsn() const {
  MutexLock lock(mu_);
  return next_lsn_ - 1;
}

uint64_t MetaStore::journal_capacity() const { return records_capacity_; }

uint64_t MetaStore::checkpoint_capacity() const { return slot_capacity_; }

// --- Checkpoint ---

Status MetaStore::WriteCheckpoint(uint64_t through_lsn, std::span<const uint8_t> blob) {
  MutexLock lock(mu_);  // holds off Append for the whole checkpoint
  const std::string& path = pool_->path();
  if (!recovered_) {
    return Status::FailedPrecondition("metadata pool " + path + ": checkpoint before Recover");
  }
  if (!failed_.ok()) return failed_;
  const uint64_t last = next_lsn_ - 1;
  if (written_lsn_ != last || durable_lsn_ != last || persisting_) {
    return Status::FailedPrecondition("metadata pool " + path +
                                      ": checkpoint while appends are in flight");
  }
  if (through_lsn != last) {
    return Status::FailedPrecondition(
        "metadata pool " + path + ": a checkpoint must cover every record: through LSN " +
        std::to_string(through_lsn) + " requested, the last LSN is " + std::to_string(last));
  }
  if (blob.size() > slot_capacity_) {
    return Status::ResourceExhausted(
        "metadata pool " + path + ": a checkpoint of " + std::to_string(blob.size()) + " bytes (" +
        pool::FormatSize(blob.size()) + ") does not fit a checkpoint slot of " +
        std::to_string(slot_capacity_) + " bytes (" + pool::FormatSize(slot_capacity_) +
        "); format a larger metadata pool");
  }
  const int target = current_slot_ == 0 ? 1 : 0;
  const uint64_t generation = generation_ + 1;
  uint8_t* slot = slots_[target];
  // A failure to persist (msync mode) leaves the media in one of the crash states below,
  // but this process no longer knows which: stop accepting work.
  auto fail = [&](const Status& st) REQUIRES(mu_) {
    failed_ = st.WithContext("checkpoint of metadata pool " + path);
    return failed_;
  };

  // 1. Invalidate the target slot (it holds the previous-but-one checkpoint, which nothing
  //    needs: the current one is in the other slot and the journal follows that one).
  //    Crash after this: the slot is empty or has a torn (bad CRC) header; Recover uses
  //    the current slot and the journal, and ignores this one.
  if (Status st = ZeroDurable(slot, kCkHeaderSize); !st.ok()) return fail(st);
  // 2. The blob. Crash: as in 1 (the header is still zero; blob bytes are never read
  //    without a valid header).
  if (Status st = CopyDurable(slot + kSlotBlobOffset, blob.data(), blob.size()); !st.ok()) {
    return fail(st);
  }
  // 3. The header, with the blob's CRC. Crash while it is written: torn header (bad CRC),
  //    as in 1. Crash after: the slot is a valid checkpoint of generation G+1 while the
  //    journal is still generation G; Recover loads it and finishes step 4 (the journal
  //    holds nothing after through_lsn, since no Append was in flight).
  uint8_t h[kCkHeaderSize] = {};
  RawSlotHeader raw;
  raw.magic = kSlotMagic;
  raw.generation = generation;
  raw.through_lsn = through_lsn;
  raw.length = blob.size();
  raw.blob_crc = Crc32c(blob.data(), blob.size());
  codec::ByteWriter w(h);
  SlotHeaderFields(w, raw);  // header CRC zero for now
  assert(w.position() == h + kCkUsed);
  codec::ByteWriter crc(h + kCkHeaderCrc);
  crc.U32("header_crc", CrcWithHole(h, kCkHeaderSize, kCkHeaderCrc));
  if (Status st = CopyDurable(slot, h, sizeof(h)); !st.ok()) return fail(st);
  // 4. New journal generation starting at through_lsn + 1 (see ResetJournal for its
  //    steps). From its commit point on, the new checkpoint + an empty journal are current.
  if (Status st = ResetJournal(generation, through_lsn + 1, tail_); !st.ok()) return fail(st);
  current_slot_ = target;
  spdlog::debug("metadata pool {}: checkpoint generation {} through LSN {} ({} bytes) in slot {}",
                path, generation, through_lsn, blob.size(), SlotName(target));
  return Status::OK();
}

}  // namespace dpmfs::meta
