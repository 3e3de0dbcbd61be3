// libFuzzer target for the metadata pool's own structures (metadata/meta_store.h): the
// superblock, the two journal header copies, the durable-LSN and reserve-mark words, the
// record framing and the checkpoint slot headers, as MetaStore::Open and Recover read
// them after a restart, with the records and the checkpoint blob going on to
// ApplyRecord and Namespace::Load as in dpmfs-meta.
//
// Input: [flags u8] then patches [u16 offset][u8 length][bytes], applied to a small valid
// metadata pool image (meta_store_image.h: a checkpoint and a journal of real records).
// With flags bit 0 every checksum is recomputed after patching (superblock, journal
// header copies, slot headers and blobs, records), so the fuzzer also reaches what a
// crafted pool, not a torn one, would hit behind the CRCs. Properties:
//   - a refusal is a clean Status (fuzz_check.h); ASan sees every byte read;
//   - after a recovery that succeeds the namespace's invariants hold;
//   - recovery is idempotent: recovering again from the image the first recovery left
//     succeeds and yields the same namespace and last LSN;
//   - the recovered store takes a new record, or says cleanly that the journal is full.
#include <spdlog/spdlog.h>

#include <cstring>

#include "common/crc32c.h"
#include "fuzz_check.h"
#include "meta_store_image.h"

namespace {

using namespace dpmfs;
using namespace dpmfs::meta;
using fuzz::Le;
using fuzz::PutLe;

const fuzz::MetaStoreImage& Template() {
  static const fuzz::MetaStoreImage image = [] {
    fuzz::MetaStoreImage i = fuzz::BuildMetaStoreImage();
    FUZZ_CHECK(!i.bytes.empty(), "cannot build the template metadata pool");
    return i;
  }();
  return image;
}

uint32_t CrcWithHole(const uint8_t* p, size_t n, size_t at) {
  static constexpr uint8_t kZero[4] = {};
  uint32_t crc = Crc32cExtend(0, p, at);
  crc = Crc32cExtend(crc, kZero, 4);
  return Crc32cExtend(crc, p + at + 4, n - at - 4);
}

// Recomputes every checksum of the image, at the template's region offsets (the layout
// in metadata/README.md).
void FixChecksums(std::vector<uint8_t>& img, const Superblock& sb) {
  namespace S = store_layout;
  uint8_t* super = img.data() + fuzz::kImageDataOffset;
  PutLe(super + 60, CrcWithHole(super, S::kSuperblockSize, 60), 4);
  uint8_t* journal = img.data() + sb.journal_offset;
  for (uint64_t copy : S::kJournalHeaderCopy) {
    PutLe(journal + copy + 24, CrcWithHole(journal + copy, 32, 24), 4);
  }
  for (uint64_t slot_off : sb.checkpoint_offset) {
    uint8_t* slot = img.data() + slot_off;
    const uint64_t room = sb.checkpoint_slot_size - S::kSlotBlobOffset;
    const uint64_t len = std::min<uint64_t>(Le(slot + 24, 8), room);
    PutLe(slot + 32, Crc32c(slot + S::kSlotBlobOffset, len), 4);
    PutLe(slot + 36, CrcWithHole(slot, 64, 36), 4);
  }
  uint8_t* rec = journal + S::kRecordAreaOffset;
  const uint64_t cap = sb.journal_size - S::kRecordAreaOffset;
  for (uint64_t off = 0; off + S::kRecordHeaderSize <= cap;) {
    uint8_t* p = rec + off;
    if (Le(p, 4) != S::kRecordMagic) break;
    const uint64_t len = Le(p + 4, 4);
    const uint64_t size = S::kRecordHeaderSize + (len + 7) / 8 * 8;
    if (size > cap - off) break;
    PutLe(p + 16, Crc32cExtend(CrcWithHole(p, S::kRecordHeaderSize, 16),
                               p + S::kRecordHeaderSize, len),
          4);
    off += size;
  }
}

struct Recovered {
  Status status;
  std::unique_ptr<Namespace> ns;
  std::unique_ptr<MetaStore> store;
  pmem::FaultInjectingMemory* mem = nullptr;
  RecoveryStats stats;
};

Recovered Recover(const std::vector<uint8_t>& img) {
  Recovered r;
  auto mem = std::make_unique<pmem::FaultInjectingMemory>(img, "fuzz-meta.pool");
  r.mem = mem.get();
  Result<std::unique_ptr<MetaStore>> store =
      MetaStore::Open(std::move(mem), {.role = pool::Role::kMetadata});
  if (!store.ok()) {
    r.status = store.status();
    return r;
  }
  r.store = std::move(*store);
  r.ns = std::make_unique<Namespace>(fuzz::FuzzNamespaceConfig());
  Namespace& ns = *r.ns;
  r.status = r.store->Recover([&](std::span<const uint8_t> blob) { return ns.Load(blob); },
                              [&](uint64_t lsn, std::span<const uint8_t> rec) {
                                return ApplyRecord(ns, lsn, fuzz::Exact(rec));
                              },
                              &r.stats);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // recovery warns about every torn tail
  Template();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const fuzz::MetaStoreImage& t = Template();
  std::vector<uint8_t> img = t.bytes;
  for (size_t at = 1; at + 3 <= size;) {
    const size_t off = Le(data + at, 2) * img.size() / 65536;
    const size_t len = std::min<size_t>({data[at + 2], size - at - 3, img.size() - off});
    std::memcpy(img.data() + off, data + at + 3, len);
    at += 3 + len;
  }
  if ((data[0] & 1) != 0) FixChecksums(img, t.superblock);

  Recovered first = Recover(img);
  if (!first.status.ok()) {
    fuzz::CheckRefusal(first.status, "MetaStore::Open/Recover");
    return 0;
  }
  FUZZ_CHECK(first.ns->CheckInvariants().ok(), "recovered an inconsistent namespace");
  const std::vector<uint8_t> state = first.ns->Serialize();
  std::vector<uint8_t> after = first.mem->DurableImage();
  const uint64_t last = first.stats.last_lsn;
  first = Recovered{};

  Recovered second = Recover(after);
  if (!second.status.ok()) std::fprintf(stderr, "second: %s\n", second.status.ToString().c_str());
  FUZZ_CHECK(second.status.ok(), "a recovered pool does not recover again");
  FUZZ_CHECK(second.stats.last_lsn == last, "second recovery ends at another LSN");
  FUZZ_CHECK(second.ns->Serialize() == state, "second recovery gives another namespace");
  MutationRecord rec;
  rec.op = static_cast<uint16_t>(Opcode::kMkdir);
  rec.session = 0x5e55;
  rec.seq = 1000;
  rec.err = EEXIST;
  std::vector<uint8_t> bytes;
  EncodeMutation(rec, &bytes);
  Result<uint64_t> lsn = second.store->Append(bytes);
  if (!lsn.ok()) {
    FUZZ_CHECK(lsn.status().code() == StatusCode::kResourceExhausted,
               "a recovered store refuses an append for another reason than a full journal");
  } else {
    FUZZ_CHECK(*lsn == last + 1, "the next append does not follow the recovered LSN");
  }
  return 0;
}
