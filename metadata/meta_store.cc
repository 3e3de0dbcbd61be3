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
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/crc32c.h"
#include "common/little_endian.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {
namespace {

using namespace store_layout;  // NOLINT(google-build-using-namespace): layout constants

// --- Superblock layout (first kSuperblockSize bytes of the pool's data area) ---
constexpr std::string_view kSuperMagic = "DPMFSMS1";
constexpr uint32_t kStoreVersion = 1;
constexpr size_t kSbMagic = 0;                 // char[8]
constexpr size_t kSbVersion = 8;               // u32
constexpr size_t kSbStripeUnit = 12;           // u32
constexpr size_t kSbJournalOffset = 16;        // u64, pool file offset
constexpr size_t kSbJournalSize = 24;          // u64
constexpr size_t kSbSlotOffset[2] = {32, 40};  // u64 each, pool file offsets
constexpr size_t kSbSlotSize = 48;             // u64
constexpr size_t kSbPoolCount = 56;            // u32
constexpr size_t kSbCrc = 60;                  // u32, CRC32C of the 4 KiB, this field as zero
constexpr size_t kSbPools = 128;               // count x [block_size u32][data_size u64]
constexpr size_t kSbPoolEntry = 12;
static_assert(kSbPools + kMaxDataServers * kSbPoolEntry <= kSuperblockSize);

// --- Journal header copy (32 bytes used of a 64-byte line) ---
constexpr std::string_view kJournalMagic = "DPMFSJH1";
constexpr size_t kJhMagic = 0;       // char[8]
constexpr size_t kJhGeneration = 8;  // u64
constexpr size_t kJhBaseLsn = 16;    // u64
constexpr size_t kJhCrc = 24;        // u32 over the 32 bytes with this field zero
constexpr size_t kJhSize = 32;

// --- Record header ---
constexpr size_t kRecMagic = 0;  // u32
constexpr size_t kRecLen = 4;    // u32, payload bytes
constexpr size_t kRecLsn = 8;    // u64
constexpr size_t kRecCrc = 16;   // u32 over the header with this field zero, then payload
constexpr size_t kRecPad = 20;   // u32, zero

// --- Checkpoint slot header (64 bytes at the start of the slot's first page) ---
constexpr std::string_view kSlotMagic = "DPMFSCK1";
constexpr size_t kCkMagic = 0;       // char[8]
constexpr size_t kCkGeneration = 8;  // u64: the journal generation this checkpoint starts
constexpr size_t kCkThrough = 16;    // u64: state as of this LSN
constexpr size_t kCkLength = 24;     // u64: blob bytes
constexpr size_t kCkBlobCrc = 32;    // u32
constexpr size_t kCkHeaderCrc = 36;  // u32 over the 64 bytes with this field zero
constexpr size_t kCkHeaderSize = 64;

constexpr uint64_t kMinJournalSize = kRecordAreaOffset + kPage;  // header page + 1 page
constexpr uint64_t kMinSlotSize = kSlotBlobOffset + kPage;
constexpr uint64_t kMinDataArea = kSuperblockSize + kMinJournalSize + 2 * kMinSlotSize;

static_assert(kDurableLsnOffset % 64 == 0 && kDurableLsnOffset >= kJournalHeaderCopy[1] + 64);
static_assert(kReserveMarkOffset % 64 == 0 && kReserveMarkOffset >= kDurableLsnOffset + 64);
static_assert(kJhSize <= 64 && kRecordAreaOffset >= kReserveMarkOffset + 64);

using le::Get32;
using le::Get64;
using le::Put32;
using le::Put64;

using le::Hex32;

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
  std::memcpy(sb + kSbMagic, kSuperMagic.data(), kSuperMagic.size());
  Put32(sb + kSbVersion, s.version);
  Put32(sb + kSbStripeUnit, s.stripe_unit);
  Put64(sb + kSbJournalOffset, s.journal_offset);
  Put64(sb + kSbJournalSize, s.journal_size);
  Put64(sb + kSbSlotOffset[0], s.checkpoint_offset[0]);
  Put64(sb + kSbSlotOffset[1], s.checkpoint_offset[1]);
  Put64(sb + kSbSlotSize, s.checkpoint_slot_size);
  Put32(sb + kSbPoolCount, static_cast<uint32_t>(s.data_pools.size()));
  for (size_t i = 0; i < s.data_pools.size(); ++i) {
    uint8_t* e = sb + kSbPools + i * kSbPoolEntry;
    Put32(e, s.data_pools[i].block_size);
    Put64(e + 4, s.data_pools[i].data_size);
  }
  Put32(sb + kSbCrc, CrcWithHole(sb, kSuperblockSize, kSbCrc));
}

// Validates the superblock bytes of the metadata pool at `path` described by `info`.
Result<Superblock> DecodeSuperblock(const std::string& path, const pool::PoolInfo& info,
                                    const uint8_t* sb) {
  const uint64_t at = info.data_offset;
  auto where = [&] {
    return "metadata superblock of " + path + " at pool offset " + std::to_string(at);
  };
  if (std::memcmp(sb + kSbMagic, kSuperMagic.data(), kSuperMagic.size()) != 0) {
    if (AllZero(sb, kSuperblockSize)) {
      return Status::Corruption(where() +
                                " is missing (all zero): the pool header says metadata pool "
                                "but mkfs.dpmfs meta did not finish; format it again");
    }
    return Status::Corruption(where() + ": bad magic (expected " + std::string(kSuperMagic) +
                              "): the superblock is corrupt");
  }
  uint32_t stored = Get32(sb + kSbCrc);
  uint32_t computed = CrcWithHole(sb, kSuperblockSize, kSbCrc);
  if (stored != computed) {
    return Status::Corruption(where() + ": checksum mismatch (stored " + Hex32(stored) +
                              ", computed " + Hex32(computed) + "): the superblock is corrupt");
  }
  Superblock s;
  s.version = Get32(sb + kSbVersion);
  if (s.version > kStoreVersion) {
    return Status::NotSupported(where() + ": metadata format version " + std::to_string(s.version) +
                                " is newer than this dpmfs supports (" +
                                std::to_string(kStoreVersion) + "); upgrade dpmfs");
  }
  auto bad = [&](const std::string& what) {
    return Status::Corruption(where() + ": inconsistent superblock: " + what);
  };
  if (s.version == 0) return bad("format version 0 does not exist");
  s.stripe_unit = Get32(sb + kSbStripeUnit);
  s.journal_offset = Get64(sb + kSbJournalOffset);
  s.journal_size = Get64(sb + kSbJournalSize);
  s.checkpoint_offset[0] = Get64(sb + kSbSlotOffset[0]);
  s.checkpoint_offset[1] = Get64(sb + kSbSlotOffset[1]);
  s.checkpoint_slot_size = Get64(sb + kSbSlotSize);
  uint32_t count = Get32(sb + kSbPoolCount);
  if (count == 0 || count > kMaxDataServers) {
    return bad("data pool count " + std::to_string(count) + " is not in 1.." +
               std::to_string(kMaxDataServers));
  }
  if (s.stripe_unit == 0) return bad("stripe unit 0");
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* e = sb + kSbPools + i * kSbPoolEntry;
    DataPoolGeometry g{i, Get32(e), Get64(e + 4)};
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
  if (std::memcmp(p + kJhMagic, kJournalMagic.data(), kJournalMagic.size()) != 0) {
    h.why = "bad magic";
    return h;
  }
  uint32_t stored = Get32(p + kJhCrc);
  uint32_t computed = CrcWithHole(p, kJhSize, kJhCrc);
  if (stored != computed) {
    h.why = "checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) + ")";
    return h;
  }
  h.generation = Get64(p + kJhGeneration);
  h.base_lsn = Get64(p + kJhBaseLsn);
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
  std::memcpy(h + kJhMagic, kJournalMagic.data(), kJournalMagic.size());
  Put64(h + kJhGeneration, generation);
  Put64(h + kJhBaseLsn, base_lsn);
  Put32(h + kJhCrc, CrcWithHole(h, kJhSize, kJhCrc));
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
  if (std::memcmp(p + kCkMagic, kSlotMagic.data(), kSlotMagic.size()) != 0) {
    s.why = "header has a bad magic";
    return s;
  }
  uint32_t stored = Get32(p + kCkHeaderCrc);
  uint32_t computed = CrcWithHole(p, kCkHeaderSize, kCkHeaderCrc);
  if (stored != computed) {
    s.why =
        "header checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) + ")";
    return s;
  }
  s.kind = SlotState::kHeaderOk;
  s.generation = Get64(p + kCkGeneration);
  s.through_lsn = Get64(p + kCkThrough);
  s.length = Get64(p + kCkLength);
  s.blob_crc = Get32(p + kCkBlobCrc);
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
  if (Get32(p + kRecMagic) != kRecordMagic) {
    r.why = "bad record magic " + Hex32(Get32(p + kRecMagic));
    return r;
  }
  r.len = Get32(p + kRecLen);
  r.lsn = Get64(p + kRecLsn);
  r.size = RecordSize(r.len);
  if (r.size > room) {
    r.why = "length " + std::to_string(r.len) + " runs past the end of the journal";
    return r;
  }
  if (Get32(p + kRecPad) != 0) {
    r.why = "non-zero header padding";
    return r;
  }
  uint32_t stored = Get32(p + kRecCrc);
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
  if (Status st = pool.Persist(sb, kSuperblockSize); !st.ok()) return with_path(st);

  // 2. An empty journal: zero records (Recover relies on zeros after the last record),
  //    durable LSN 0, header copy 1 = generation 1 starting at LSN 1; copy 0 stays zero.
  uint8_t* journal = pool.base() + l.journal_offset;
  std::memset(journal, 0, l.journal_size);
  EncodeJournalHeader(journal + kJournalHeaderCopy[1], 1, 1);
  if (Status st = pool.Persist(journal, l.journal_size); !st.ok()) return with_path(st);

  // 3. No checkpoint: both slot headers zero (the blobs are only read through a header).
  for (int slot = 0; slot < 2; ++slot) {
    uint8_t* p = pool.base() + l.slot_offset[slot];
    std::memset(p, 0, kSlotBlobOffset);
    if (Status st = pool.Persist(p, kSlotBlobOffset); !st.ok()) return with_path(st);
  }

  // 4. The superblock last: it makes the pool usable.
  EncodeSuperblock(sb, s);
  if (Status st = pool.Persist(sb, kSuperblockSize); !st.ok()) return with_path(st);
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

  std::unique_ptr<MetaStore> store(new MetaStore());
  // Two writers of one journal would interleave records and destroy it: hold an exclusive
  // lock for the store's lifetime (released by the kernel if the process dies).
  store->lock_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (store->lock_fd_ < 0) return Status::FromErrno(errno, "cannot open metadata pool " + path);
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::FailedPrecondition("metadata pool " + path +
                                        " is in use (another dpmfs-meta, or another open of "
                                        "it in this process, holds its lock)");
    }
    return Status::FromErrno(errno, "cannot lock metadata pool " + path);
  }

  DPMFS_ASSIGN_OR_RETURN(
      store->superblock_,
      DecodeSuperblock(path, mapped.info(), mapped.base() + mapped.info().data_offset));
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
  return store;
}

MetaStore::~MetaStore() {
  pool_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Result<Superblock> ReadSuperblock(const std::string& path) {
  DPMFS_ASSIGN_OR_RETURN(pool::PoolInfo info, pool::ReadPoolHeader(path));
  DPMFS_RETURN_IF_ERROR(pool::CheckExpectations(path, info, {pool::Role::kMetadata, {}, {}}));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "cannot open metadata pool " + path);
  uint8_t sb[kSuperblockSize];
  size_t done = 0;
  while (done < sizeof(sb)) {
    ssize_t r =
        ::pread(fd, sb + done, sizeof(sb) - done, static_cast<off_t>(info.data_offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  int err = errno;
  ::close(fd);
  if (done < sizeof(sb)) {
    return Status::FromErrno(err, "cannot read the metadata superblock of " + path);
  }
  return DecodeSuperblock(path, info, sb);
}

// --- Persistence helpers ---

Status MetaStore::PersistRange(const void* addr, size_t len) {
  if (msync_) return pool_->Persist(addr, len);
  pool_->PersistAfterCrash(addr, len);
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
  std::memset(records_ + from, 0, end - from);
  return PersistRange(records_ + from, end - from);
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
    std::memset(records_, 0, used);
    DPMFS_RETURN_IF_ERROR(PersistRange(records_, used));
  }
  // (d) Only now that nothing is left below it may the reserve mark go down: a crash
  //     before this keeps the old, higher mark, so Recover still zeroes the leftovers.
  DPMFS_RETURN_IF_ERROR(SetReserveMark(0));
  generation_ = generation;
  tail_ = 0;
  return Status::OK();
}

// --- Recover ---

Status MetaStore::Recover(
    const std::function<Status(std::span<const uint8_t> blob)>& load,
    const std::function<Status(uint64_t lsn, std::span<const uint8_t> rec)>& replay,
    RecoveryStats* stats) {
  // No lock while reading and replaying: Recover runs alone (see the header), and the
  // callbacks may call the const accessors, which take mu_.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string& path = pool_->path();
  const uint64_t journal_off = superblock_.journal_offset;
  RecoveryStats local;
  {
    std::lock_guard lock(mu_);
    recovered_ = false;
  }

  // 1. The current journal header: the valid copy with the highest generation.
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
  const uint64_t jgen = jh[cur].generation;
  const uint64_t base = jh[cur].base_lsn;
  const uint64_t durable = LoadWord(journal_ + kDurableLsnOffset);
  // No record byte was ever written at or past the reserve mark (Append raises it before
  // it reserves space beyond it), so the scans below stop there. A damaged mark larger
  // than the journal only costs a longer scan.
  const uint64_t mark = std::min(LoadWord(journal_ + kReserveMarkOffset), records_capacity_);
  if (durable + 1 < base) {
    return Status::Corruption("journal of " + path + ": the durable-LSN word at pool offset " +
                              std::to_string(journal_off + kDurableLsnOffset) + " holds " +
                              std::to_string(durable) + ", below the journal's base LSN " +
                              std::to_string(base) + " (generation " + std::to_string(jgen) + ")");
  }

  // 2. The checkpoint: the slot whose valid header has the highest generation.
  SlotState slot[2];
  int newest = -1;
  for (int i = 0; i < 2; ++i) {
    slot[i] = DecodeSlotHeader(slots_[i]);
    if (slot[i].kind == SlotState::kHeaderOk &&
        (newest < 0 || slot[i].generation > slot[newest].generation)) {
      newest = i;
    }
  }
  auto slot_where = [&](int i) {
    return std::string("checkpoint slot ") + SlotName(i) + " of " + path + " at pool offset " +
           std::to_string(superblock_.checkpoint_offset[i]);
  };
  if (newest >= 0 && slot[1 - newest].kind == SlotState::kHeaderOk &&
      slot[0].generation == slot[1].generation) {
    return Status::Corruption(slot_where(0) + " and slot B both claim checkpoint generation " +
                              std::to_string(slot[0].generation));
  }
  uint64_t ckpt_gen = 1;  // a fresh file system: generation 1 starts with no checkpoint
  uint64_t ckpt_lsn = 0;
  std::span<const uint8_t> blob;
  if (newest >= 0) {
    // The newest checkpoint must be intact: the journal that led up to it may already be
    // gone, so falling back to the older slot could silently lose acknowledged state.
    const SlotState& s = slot[newest];
    std::string what = slot_where(newest) + " (generation " + std::to_string(s.generation) +
                       ", through LSN " + std::to_string(s.through_lsn) + ", " +
                       std::to_string(s.length) + " bytes)";
    if (s.length > slot_capacity_) {
      return Status::Corruption(what + " is corrupt: its length exceeds the slot's capacity of " +
                                std::to_string(slot_capacity_) + " bytes");
    }
    if (s.generation < 2) {
      return Status::Corruption(what + " is corrupt: checkpoint generations start at 2");
    }
    uint32_t computed = Crc32c(slots_[newest] + kSlotBlobOffset, s.length);
    if (computed != s.blob_crc) {
      std::string other;
      if (slot[1 - newest].kind == SlotState::kBadHeader) {
        other = "; " + slot_where(1 - newest) + " is damaged too: " + slot[1 - newest].why;
      }
      return Status::Corruption(what + " is corrupt: blob checksum mismatch (stored " +
                                Hex32(s.blob_crc) + ", computed " + Hex32(computed) +
                                "); the journal before it may be gone, so an older "
                                "checkpoint cannot stand in for it" +
                                other);
    }
    ckpt_gen = s.generation;
    ckpt_lsn = s.through_lsn;
    blob = {slots_[newest] + kSlotBlobOffset, s.length};
  }
  auto damaged_slots = [&] {
    std::string out;
    for (int i = 0; i < 2; ++i) {
      if (slot[i].kind == SlotState::kBadHeader) {
        out += "; " + slot_where(i) + " is damaged: " + slot[i].why;
      }
    }
    return out;
  };

  // 3. The checkpoint and the journal must belong together. A checkpoint of generation G
  //    was written for the journal generation G that starts at through_lsn + 1.
  bool roll_forward = false;
  if (ckpt_gen == jgen) {
    if (ckpt_lsn + 1 != base) {
      return Status::Corruption("metadata pool " + path + ": checkpoint generation " +
                                std::to_string(ckpt_gen) + " ends at LSN " +
                                std::to_string(ckpt_lsn) + " but journal generation " +
                                std::to_string(jgen) + " starts at LSN " + std::to_string(base));
    }
  } else if (ckpt_gen == jgen + 1) {
    // WriteCheckpoint persisted the slot but crashed before the new journal header was
    // durable. Everything acknowledged was in the checkpoint (it is written only when no
    // Append is in flight), so the old journal holds nothing after it: finish the reset.
    if (ckpt_lsn + 1 < base || durable > ckpt_lsn) {
      return Status::Corruption(
          "metadata pool " + path + ": checkpoint generation " + std::to_string(ckpt_gen) +
          " through LSN " + std::to_string(ckpt_lsn) + " does not follow journal generation " +
          std::to_string(jgen) + " (base LSN " + std::to_string(base) + ", durable LSN " +
          std::to_string(durable) + "): the journal header or the checkpoint is damaged");
    }
    roll_forward = true;
  } else if (ckpt_gen < jgen) {
    std::string have = newest >= 0 ? "the newest valid checkpoint is slot " +
                                         std::string(1, SlotName(newest)) + " of generation " +
                                         std::to_string(ckpt_gen)
                                   : std::string("no slot holds a valid checkpoint");
    return Status::Corruption("metadata pool " + path + ": journal generation " +
                              std::to_string(jgen) + " starts at LSN " + std::to_string(base) +
                              " and needs the checkpoint through LSN " + std::to_string(base - 1) +
                              ", but " + have + damaged_slots());
  } else {
    return Status::Corruption("metadata pool " + path + ": checkpoint generation " +
                              std::to_string(ckpt_gen) + " is ahead of journal generation " +
                              std::to_string(jgen) + " by more than one");
  }
  if (slot[0].kind == SlotState::kBadHeader || slot[1].kind == SlotState::kBadHeader) {
    // An interrupted WriteCheckpoint (its slot header is written last) or damage to the
    // older checkpoint, which nothing needs any more.
    spdlog::warn("metadata pool {}: ignoring a damaged checkpoint slot that is not current{}", path,
                 damaged_slots());
  }

  // 4. Load the checkpoint.
  if (newest >= 0) {
    DPMFS_RETURN_IF_ERROR(load(blob));
    local.checkpoint_lsn = ckpt_lsn;
    local.checkpoint_bytes = blob.size();
  }

  // 5. Replay the journal.
  uint64_t last = ckpt_lsn;
  uint64_t tail = 0;
  if (roll_forward) {
    spdlog::warn(
        "metadata pool {}: finishing an interrupted checkpoint (slot {}, generation {}, "
        "through LSN {})",
        path, SlotName(newest), ckpt_gen, ckpt_lsn);
    DPMFS_RETURN_IF_ERROR(ResetJournal(ckpt_gen, ckpt_lsn + 1, mark));
  } else {
    uint64_t expected = base;
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
      ++local.records_replayed;
      ++expected;
      off += r.size;
    }
    last = expected - 1;
    if (last < durable) {
      return Status::Corruption("journal of " + path + ": record at pool offset " +
                                std::to_string(journal_off + kRecordAreaOffset + off) + " (LSN " +
                                std::to_string(expected) + " expected) is " + stop +
                                ", but every record up to the "
                                "durable LSN " +
                                std::to_string(durable) +
                                " was acknowledged: the journal is damaged");
    }
    if (r.kind == RecordView::kTorn) {
      local.dropped_torn_tail = true;
      spdlog::warn(
          "metadata pool {}: the journal ends with an unacknowledged torn record at "
          "pool offset {} (LSN {}): {}; dropped",
          path, journal_off + kRecordAreaOffset + off, expected, r.why);
    }
    // Whatever follows the last record (a torn record, records of the crashed run that
    // were written after a gap, stale records) must go before Append writes there: a
    // leftover intact record could otherwise line up with a new one and be taken for the
    // next LSN by a later Recover.
    DPMFS_RETURN_IF_ERROR(ZeroRecordTail(off, std::max(mark, off)));
    tail = off;
    // Everything from `off` on is zero now: the mark may come down to it (or must go up
    // to it, if the word was damaged).
    if (mark != off) {
      DPMFS_RETURN_IF_ERROR(SetReserveMark(off));
    } else {
      reserve_mark_ = off;
    }
    if (last > durable) {
      // Intact records nobody acknowledged are now part of the state the caller rebuilt;
      // make them acknowledged so that a later crash cannot take them away again.
      StoreWord(journal_ + kDurableLsnOffset, last);
      DPMFS_RETURN_IF_ERROR(PersistRange(journal_ + kDurableLsnOffset, 8));
    }
    generation_ = jgen;
  }

  std::lock_guard lock(mu_);
  current_slot_ = newest;
  tail_ = tail;
  next_lsn_ = last + 1;
  written_lsn_ = last;
  durable_lsn_ = last;
  persisting_ = false;
  done_.fill(0);
  failed_ = Status::OK();
  recovered_ = true;

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
    std::unique_lock lock(mu_);
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
      cv_.wait(lock);
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
  uint8_t header[kRecordHeaderSize] = {};
  Put32(header + kRecMagic, kRecordMagic);
  Put32(header + kRecLen, static_cast<uint32_t>(record.size()));
  Put64(header + kRecLsn, lsn);
  Put32(header + kRecCrc,
        Crc32cExtend(Crc32c(header, sizeof(header)), record.data(), record.size()));
  std::memcpy(dst, header, sizeof(header));
  if (!record.empty()) std::memcpy(dst + kRecordHeaderSize, record.data(), record.size());
  std::memset(dst + kRecordHeaderSize + record.size(), 0, size - kRecordHeaderSize - record.size());
  Status written = PersistRange(dst, size);

  std::unique_lock lock(mu_);
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
      cv_.wait(lock);
      continue;
    }
    persisting_ = true;
    const uint64_t target = written_lsn_;
    lock.unlock();
    uint8_t* word = journal_ + kDurableLsnOffset;
    StoreWord(word, target);  // aligned 8-byte store: a crash sees old or new, never torn
    Status st = PersistRange(word, 8);
    lock.lock();
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
  std::lock_guard lock(mu_);
  return records_capacity_ == 0
             ? 0.0
             : static_cast<double>(tail_) / static_cast<double>(records_capacity_);
}

uint64_t MetaStore::last_lsn() const {
  std::lock_guard lock(mu_);
  return next_lsn_ - 1;
}

uint64_t MetaStore::journal_capacity() const { return records_capacity_; }

uint64_t MetaStore::checkpoint_capacity() const { return slot_capacity_; }

// --- Checkpoint ---

Status MetaStore::WriteCheckpoint(uint64_t through_lsn, std::span<const uint8_t> blob) {
  std::lock_guard lock(mu_);  // holds off Append for the whole checkpoint
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
  auto fail = [&](const Status& st) {
    failed_ = st.WithContext("checkpoint of metadata pool " + path);
    return failed_;
  };

  // 1. Invalidate the target slot (it holds the previous-but-one checkpoint, which nothing
  //    needs: the current one is in the other slot and the journal follows that one).
  //    Crash after this: the slot is empty or has a torn (bad CRC) header; Recover uses
  //    the current slot and the journal, and ignores this one.
  std::memset(slot, 0, kCkHeaderSize);
  if (Status st = PersistRange(slot, kCkHeaderSize); !st.ok()) return fail(st);
  // 2. The blob. Crash: as in 1 (the header is still zero; blob bytes are never read
  //    without a valid header).
  if (!blob.empty()) std::memcpy(slot + kSlotBlobOffset, blob.data(), blob.size());
  if (Status st = PersistRange(slot + kSlotBlobOffset, blob.size()); !st.ok()) return fail(st);
  // 3. The header, with the blob's CRC. Crash while it is written: torn header (bad CRC),
  //    as in 1. Crash after: the slot is a valid checkpoint of generation G+1 while the
  //    journal is still generation G; Recover loads it and finishes step 4 (the journal
  //    holds nothing after through_lsn, since no Append was in flight).
  uint8_t h[kCkHeaderSize] = {};
  std::memcpy(h + kCkMagic, kSlotMagic.data(), kSlotMagic.size());
  Put64(h + kCkGeneration, generation);
  Put64(h + kCkThrough, through_lsn);
  Put64(h + kCkLength, blob.size());
  Put32(h + kCkBlobCrc, Crc32c(blob.data(), blob.size()));
  Put32(h + kCkHeaderCrc, CrcWithHole(h, kCkHeaderSize, kCkHeaderCrc));
  std::memcpy(slot, h, sizeof(h));
  if (Status st = PersistRange(slot, kCkHeaderSize); !st.ok()) return fail(st);
  // 4. New journal generation starting at through_lsn + 1 (see ResetJournal for its
  //    steps). From its commit point on, the new checkpoint + an empty journal are current.
  if (Status st = ResetJournal(generation, through_lsn + 1, tail_); !st.ok()) return fail(st);
  current_slot_ = target;
  spdlog::debug("metadata pool {}: checkpoint generation {} through LSN {} ({} bytes) in slot {}",
                path, generation, through_lsn, blob.size(), SlotName(target));
  return Status::OK();
}

}  // namespace dpmfs::meta
