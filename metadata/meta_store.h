// MetaStore: the metadata pool's durable layout: a superblock, a redo journal of
// mutation records, and two checkpoint slots. The namespace above it is kept in DRAM;
// this class only makes bytes durable, in order, and gives them back after a crash.
//
// Layout (inside the pool's data area; documented in metadata/README.md):
//   superblock  4 KiB: magic "DPMFSMS1", version, stripe unit, the data pools of the
//               cluster (index, block size, data size), region offsets/sizes, CRC32C.
//   journal     a header (base LSN, generation, CRC) + an 8-byte durable-LSN word on its
//               own cache line + records [magic u32][len u32][lsn u64][crc u32][pad]
//               [payload], 8-byte aligned, appended linearly from the start.
//   checkpoint  two slots, A and B; each [header: magic, through_lsn, length, crc of
//               the blob, crc of the header][blob]. The valid slot with the highest
//               through_lsn is current.
//
// Durability: Append returns after the record and then the durable-LSN word are
// persisted (pmem_persist on real PM; on a non-PM file the page cache survives kill -9,
// so only CPU-cache flushes are needed, or msync with `msync=true`). Records up to the
// durable LSN must be intact: a bad one there is reported as Corruption with its byte
// offset in the pool. Records after it (written, never acknowledged) are accepted while
// they are intact and consecutive; the first torn one ends the journal.
//
// Checkpoint: the caller serialises its state as of LSN L (no Append may run
// concurrently), WriteCheckpoint writes it into the older slot, persists it, and only
// then starts a new journal generation whose base LSN is L+1. A crash at any point
// leaves either the old checkpoint + old journal or the new checkpoint + new journal.
//
// Thread-safety: Append is thread-safe (appends are ordered by LSN in the order their
// calls took the internal lock). Recover and WriteCheckpoint must not run concurrently
// with anything else.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/pool.h"
#include "common/status.h"

namespace dpmfs::meta {

struct DataPoolGeometry {
  uint32_t index = 0;
  uint32_t block_size = 0;
  uint64_t data_size = 0;  // bytes of that pool's data area
};

struct Superblock {
  uint32_t version = 1;
  uint32_t stripe_unit = 0;  // bytes; a multiple of every data pool's block size
  std::vector<DataPoolGeometry> data_pools;  // index order, 1..kMaxDataServers
};

struct MetaFormatOptions {
  uint32_t stripe_unit = 1u << 20;
  std::vector<DataPoolGeometry> data_pools;
  // Fraction of the metadata pool's data area given to the journal; the rest is split
  // evenly between the two checkpoint slots.
  double journal_fraction = 0.25;
};

struct RecoveryStats {
  uint64_t checkpoint_lsn = 0;      // 0: no checkpoint yet (a fresh file system)
  uint64_t checkpoint_bytes = 0;
  uint64_t records_replayed = 0;
  uint64_t last_lsn = 0;            // the last LSN recovered (checkpoint or journal)
  bool dropped_torn_tail = false;   // an unacknowledged torn record ended the journal
  double seconds = 0;
};

class MetaStore {
 public:
  // Writes a superblock and empty journal/checkpoints into a pool that mkfs already
  // formatted with role metadata (FormatPool). InvalidArgument if the geometry does not
  // fit (names what and the minimum).
  static Status Format(pool::MappedPool& pool, const MetaFormatOptions& options);

  // Opens (maps) a metadata pool and validates its superblock: Corruption (with the
  // offset) / NotSupported (newer version) / InvalidArgument (not a metadata pool).
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& path,
                                                 const pool::OpenExpectations& expect,
                                                 bool msync = false);
  ~MetaStore();

  const Superblock& superblock() const { return superblock_; }
  const pool::PoolInfo& pool_info() const { return pool_->info(); }

  // Hands the current checkpoint's blob to `load` (not called on a fresh file system),
  // then every journal record after it to `replay`, in LSN order. Errors from the
  // callbacks are returned as they are; journal/checkpoint damage is Corruption naming
  // the region, slot or record and its byte offset in the pool file.
  Status Recover(const std::function<Status(std::span<const uint8_t> blob)>& load,
                 const std::function<Status(uint64_t lsn, std::span<const uint8_t> rec)>& replay,
                 RecoveryStats* stats);

  // Appends one record and returns its LSN once it is durable. ResourceExhausted when
  // the journal has no room (the caller checkpoints and retries).
  Result<uint64_t> Append(std::span<const uint8_t> record);
  // Fraction of the journal in use, 0..1: the caller checkpoints when it passes its
  // threshold.
  double journal_fill() const;
  uint64_t last_lsn() const;
  uint64_t journal_capacity() const;
  uint64_t checkpoint_capacity() const;  // largest blob a slot holds

  // See the class comment. ResourceExhausted (with both sizes) if the blob does not fit.
  Status WriteCheckpoint(uint64_t through_lsn, std::span<const uint8_t> blob);

 private:
  MetaStore() = default;
  // Implementation state (the helper that writes meta_store.cc adds what it needs).
  std::optional<pool::MappedPool> pool_;
  Superblock superblock_;
  mutable std::mutex mu_;
};

// Reads the superblock of the metadata pool at `path` (for mkfs show / dpmfs status).
Result<Superblock> ReadSuperblock(const std::string& path);

}  // namespace dpmfs::meta
