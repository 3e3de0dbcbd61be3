// A small metadata pool image in memory, shared by meta_store_fuzz and the seed
// generator: a pool header whose data area starts right after it (mkfs aligns it to
// 2 MiB, which every reader accepts but would make each fuzz input cost 2 MiB of copying),
// MetaStore::Format's superblock and the smallest journal and checkpoint slots, then the
// workload of meta_workload.h appended, with a checkpoint after its fourth record.
#pragma once

#include <cstring>
#include <memory>
#include <vector>

#include "common/fault_injecting_memory.h"
#include "common/pool.h"
#include "metadata/meta_store.h"
#include "metadata/mutation.h"
#include "metadata/namespace.h"
#include "meta_workload.h"
#include "namespace_config.h"

namespace dpmfs::fuzz {

inline constexpr uint64_t kImageDataOffset = 4096;
// Superblock + journal (header page + one page of records) + two slots (header page +
// one page of blob): MetaStore's minimum.
inline constexpr uint64_t kImageDataSize = 4096 + 2 * 4096 + 2 * 2 * 4096;
inline constexpr uint64_t kImageSize = kImageDataOffset + kImageDataSize;

inline void PutLe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// The pool header of mkfs/README.md, written from its table.
inline std::vector<uint8_t> BlankMetaPoolImage() {
  namespace L = pool::layout;
  std::vector<uint8_t> img(kImageSize, 0);
  uint8_t* h = img.data();
  std::memcpy(h + L::kMagicOffset, pool::kMagic.data(), pool::kMagic.size());
  PutLe(h + L::kVersionOffset, pool::kFormatVersion, 4);
  PutLe(h + L::kRoleOffset, static_cast<uint32_t>(pool::Role::kMetadata), 4);
  for (int i = 0; i < 16; ++i) h[L::kClusterOffset + i] = static_cast<uint8_t>(0x11 * (i + 1));
  PutLe(h + L::kIndexOffset, 0, 4);
  PutLe(h + L::kBlockSizeOffset, kFuzzBlock, 4);
  PutLe(h + L::kPoolSizeOffset, kImageSize, 8);
  PutLe(h + L::kDataOffsetOffset, kImageDataOffset, 8);
  PutLe(h + L::kDataSizeOffset, kImageDataSize, 8);
  PutLe(h + L::kCreatedOffset, 1600000000ull * 1000000000ull, 8);
  PutLe(h + L::kHeaderCrcOffset, pool::HeaderCrc(h), 4);
  return img;
}

struct MetaStoreImage {
  std::vector<uint8_t> bytes;
  meta::Superblock superblock;
};

// Empty on failure (with the reason on stderr): the caller aborts.
inline MetaStoreImage BuildMetaStoreImage() {
  using namespace meta;
  MetaStoreImage out;
  auto fail = [&](const Status& st, const char* step) {
    std::fprintf(stderr, "meta store image: %s: %s\n", step, st.ToString().c_str());
    return MetaStoreImage{};
  };
  std::vector<uint8_t> img = BlankMetaPoolImage();
  {
    auto mem = std::make_unique<pmem::FaultInjectingMemory>(img, "fuzz-meta.pool");
    pmem::FaultInjectingMemory* raw = mem.get();
    Result<pool::MappedPool> mapped = pool::MappedPool::Attach(std::move(mem), {});
    if (!mapped.ok()) return fail(mapped.status(), "attach");
    MetaFormatOptions mo;
    mo.stripe_unit = kFuzzStripeUnit;
    for (const DataPoolGeometry& g : FuzzNamespaceConfig().pools) mo.data_pools.push_back(g);
    Status st = MetaStore::Format(*mapped, mo);
    if (!st.ok()) return fail(st, "format");
    img = raw->DurableImage();
  }
  auto mem = std::make_unique<pmem::FaultInjectingMemory>(img, "fuzz-meta.pool");
  pmem::FaultInjectingMemory* raw = mem.get();
  Result<std::unique_ptr<MetaStore>> store = MetaStore::Open(std::move(mem), {});
  if (!store.ok()) return fail(store.status(), "open");
  RecoveryStats stats;
  Status st = (*store)->Recover([](std::span<const uint8_t>) { return Status::OK(); },
                                [](uint64_t, std::span<const uint8_t>) { return Status::OK(); },
                                &stats);
  if (!st.ok()) return fail(st, "recover");
  MetaWorkload w = RunMetaWorkload();
  for (size_t i = 0; i < w.records.size(); ++i) {
    Result<uint64_t> lsn = (*store)->Append(w.records[i]);
    if (!lsn.ok()) return fail(lsn.status(), "append");
    if (i == 3) {
      st = (*store)->WriteCheckpoint(*lsn, w.states[i]);
      if (!st.ok()) return fail(st, "checkpoint");
    }
  }
  out.superblock = (*store)->superblock();
  out.bytes = raw->DurableImage();
  return out;
}

}  // namespace dpmfs::fuzz
