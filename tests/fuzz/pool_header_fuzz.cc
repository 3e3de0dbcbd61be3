// libFuzzer target for the pool header (common/pool.h): the first 4 KiB of every pool
// file, which the data and metadata servers, mkfs and the launcher validate before they
// trust anything in the pool. The input is [flags u8][the pool image]; with flags bit 0
// the header's CRC32C is recomputed first, so the fuzzer also reaches the checks behind
// the checksum (what a crafted pool file, not a torn one, would hit). The image is
// attached as in-memory persistent memory (MappedPool::Attach: the same validation as
// MappedPool::Open after its plain read). Properties:
//   - an accepted header satisfies the rules of mkfs/README.md, restated here from the
//     raw bytes: magic, version 1, a known role, a non-nil cluster, a power-of-two block
//     size in [512, 1 MiB], pool size == image size, a block-aligned data area after the
//     header and inside the pool;
//   - PoolInfo holds exactly the header's fields;
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read.
#include <bit>
#include <cstring>
#include <memory>

#include "common/fault_injecting_memory.h"
#include "common/pool.h"
#include "fuzz_check.h"

namespace {

using namespace dpmfs;
using namespace dpmfs::pool;
using fuzz::Le;

void CheckAccepted(const std::vector<uint8_t>& img, const PoolInfo& info) {
  namespace L = layout;
  const uint8_t* h = img.data();
  const uint64_t bs = Le(h + L::kBlockSizeOffset, 4);
  const uint64_t pool_size = Le(h + L::kPoolSizeOffset, 8);
  const uint64_t data_offset = Le(h + L::kDataOffsetOffset, 8);
  const uint64_t data_size = Le(h + L::kDataSizeOffset, 8);
  const uint64_t role = Le(h + L::kRoleOffset, 4);
  bool nil = true;
  for (size_t i = 0; i < 16; ++i) nil = nil && h[L::kClusterOffset + i] == 0;
  FUZZ_CHECK(std::memcmp(h, kMagic.data(), kMagic.size()) == 0, "accepted without magic");
  FUZZ_CHECK(Le(h + L::kVersionOffset, 4) == kFormatVersion, "accepted another version");
  FUZZ_CHECK(role == 1 || role == 2, "accepted an unknown role");
  FUZZ_CHECK(!nil, "accepted a nil cluster");
  FUZZ_CHECK(bs >= kMinBlockSize && bs <= kMaxBlockSize && std::has_single_bit(bs),
             "accepted a bad block size");
  FUZZ_CHECK(pool_size == img.size(), "accepted a pool size that is not the image's");
  FUZZ_CHECK(data_offset >= kHeaderSize && data_offset % bs == 0 && data_offset < pool_size,
             "accepted a bad data offset");
  FUZZ_CHECK(data_size > 0 && data_size % bs == 0 && data_size <= pool_size - data_offset,
             "accepted a data area outside the pool");
  FUZZ_CHECK(Le(h + L::kHeaderCrcOffset, 4) == HeaderCrc(h), "accepted a bad checksum");
  FUZZ_CHECK(info.block_size == bs && info.pool_size == pool_size &&
                 info.data_offset == data_offset && info.data_size == data_size &&
                 static_cast<uint64_t>(info.role) == role &&
                 info.index == Le(h + L::kIndexOffset, 4) &&
                 std::memcmp(info.cluster.bytes.data(), h + L::kClusterOffset, 16) == 0,
             "PoolInfo differs from the header's fields");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> img(data + 1, data + size);
  if ((data[0] & 1) != 0 && img.size() >= kHeaderSize) {
    const uint32_t crc = HeaderCrc(img.data());
    for (int i = 0; i < 4; ++i) img[layout::kHeaderCrcOffset + i] = static_cast<uint8_t>(crc >> (8 * i));
  }
  auto mem = std::make_unique<pmem::FaultInjectingMemory>(img, "fuzz.pool");
  Result<MappedPool> pool = MappedPool::Attach(std::move(mem), {});
  if (!pool.ok()) {
    fuzz::CheckRefusal(pool.status(), "MappedPool::Attach");
    return 0;
  }
  CheckAccepted(img, pool->info());
  return 0;
}
