// MetaStore: the metadata pool's durable layout: a superblock, a redo journal of
// mutation records, and two checkpoint slots. The namespace above it is kept in DRAM;
// this class only makes bytes durable, in order, and gives them back after a crash.
//
// Layout (inside the pool's data area; documented in metadata/README.md):
//   superblock  4 KiB: magic "DPMFSMS1", version, stripe unit, replicas (version 2), the data pools of the
//               cluster (index, block size, data size), region offsets/sizes, CRC32C.
//   journal     a header (base LSN, generation, CRC; two copies written alternately, so
//               a torn header write never destroys the current one) + an 8-byte
//               durable-LSN word on its own cache line + records [magic u32][len u32]
//               [lsn u64][crc u32][pad][payload], 8-byte aligned, appended linearly from
//               the start.
//   checkpoint  two slots, A and B; each [header: magic, generation, through_lsn, length,
//               crc of the blob, crc of the header][blob]. The slot with the highest
//               generation is current and must be intact (an older one is no substitute:
//               the journal that led from it is gone).
//
// Durability: Append returns after the record and then the durable-LSN word are
// persisted through the persistent-memory seam (common/persistent_memory.h: Persist, i.e.
// pmem_persist on real PM; on a non-PM file the page cache survives kill -9, so only
// CPU-cache flushes are needed; or Sync, msync, with `msync=true`). Records up to the
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

#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/persistent_memory.h"
#include "common/pool.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace dpmfs::meta {

// Byte offsets inside the regions (full layout in metadata/README.md); exposed for tests,
// crash tools and fsck, which look at the media directly.
namespace store_layout {
inline constexpr uint64_t kPage = 4096;                 // every region is page aligned
inline constexpr uint64_t kSuperblockSize = 4096;       // at the start of the data area
inline constexpr uint64_t kJournalHeaderCopy[2] = {0, 64};  // two copies, by generation % 2
inline constexpr uint64_t kDurableLsnOffset = 128;      // u64 on its own 64-byte line
inline constexpr uint64_t kReserveMarkOffset = 192;     // u64: no record byte at or past it
inline constexpr uint64_t kReserveStep = 1 << 20;       // the mark moves in 1 MiB steps
inline constexpr uint64_t kRecordAreaOffset = 4096;     // records start here in the journal
inline constexpr uint64_t kRecordHeaderSize = 24;       // magic, len, lsn, crc, pad
inline constexpr uint32_t kRecordMagic = 0x31524a44;    // "DJR1" little-endian
inline constexpr uint64_t kSlotBlobOffset = 4096;       // blob after the slot header page
}  // namespace store_layout

struct DataPoolGeometry {
  uint32_t index = 0;
  uint32_t block_size = 0;
  uint64_t data_size = 0;  // bytes of that pool's data area
};

struct Superblock {
  uint32_t version = 1;
  uint32_t stripe_unit = 0;  // bytes; a multiple of every data pool's block size
  // Copies of each block, 1..kMaxReplicas and at most data_pools.size() (version 2; a
  // version-1 superblock reads as 1). docs/replication.md.
  uint32_t replicas = 1;
  std::vector<DataPoolGeometry> data_pools;  // index order, 1..kMaxDataServers
  // Where the regions lie, as byte offsets in the pool file (filled by Open and
  // ReadSuperblock; mkfs show prints them). Layout in metadata/README.md.
  uint64_t journal_offset = 0;
  uint64_t journal_size = 0;                     // header page + record area
  std::array<uint64_t, 2> checkpoint_offset{};  // slot A, slot B
  uint64_t checkpoint_slot_size = 0;             // header page + blob area, per slot
};

struct MetaFormatOptions {
  uint32_t stripe_unit = 1u << 20;
  uint32_t replicas = 1;  // 1..kMaxReplicas, at most data_pools.size()
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

// Checks `options` against a metadata pool data area of `data_area_size` bytes, as Format
// does, without touching anything (mkfs calls it before it formats the pool file).
Status ValidateFormatOptions(uint64_t data_area_size, const MetaFormatOptions& options);

class MetaStore {
 public:
  // Writes a superblock and empty journal/checkpoints into a pool that mkfs already
  // formatted with role metadata (FormatPool). InvalidArgument if the geometry does not
  // fit (names what and the minimum).
  static Status Format(pool::MappedPool& pool, const MetaFormatOptions& options);

  // Opens (maps) a metadata pool and validates its superblock: Corruption (with the
  // offset) / NotSupported (newer version) / InvalidArgument (not a metadata pool).
  // The store holds an exclusive flock on the pool file while it lives: a second Open of
  // the same pool (another dpmfs-meta, or the same process) is FailedPrecondition.
  static Result<std::unique_ptr<MetaStore>> Open(const std::string& path,
                                                 const pool::OpenExpectations& expect,
                                                 bool msync = false);
  // The same on a region already mapped (a test's pmem::FaultInjectingMemory holding a
  // metadata pool image): every byte the store makes durable goes through `memory`. No
  // lock: the region is this process's own.
  static Result<std::unique_ptr<MetaStore>> Open(std::unique_ptr<pmem::PersistentMemory> memory,
                                                 const pool::OpenExpectations& expect,
                                                 bool msync = false);
  ~MetaStore();

  const Superblock& superblock() const { return superblock_; }
  const pool::PoolInfo& pool_info() const { return pool_->info(); }

  // Hands the current checkpoint's blob to `load` (not called on a fresh file system),
  // then every journal record after it to `replay`, in LSN order. Errors from the
  // callbacks are returned as they are; journal/checkpoint damage is Corruption naming
  // the region, slot or record and its byte offset in the pool file.
  using LoadFn = std::function<Status(std::span<const uint8_t> blob)>;
  using ReplayFn = std::function<Status(uint64_t lsn, std::span<const uint8_t> rec)>;
  Status Recover(const LoadFn& load, const ReplayFn& replay, RecoveryStats* stats);

  // Appends one record and returns its LSN once it is durable. ResourceExhausted when
  // the journal has no room (the caller checkpoints and retries), or when the record is
  // larger than the whole journal (then only a checkpoint can hold it). FailedPrecondition
  // before Recover. After a failed persist (IOError, msync mode only) every later call
  // fails too: the store cannot tell what reached the media.
  Result<uint64_t> Append(std::span<const uint8_t> record);
  // Fraction of the journal in use, 0..1: the caller checkpoints when it passes its
  // threshold.
  double journal_fill() const;
  uint64_t last_lsn() const;
  uint64_t journal_capacity() const;
  uint64_t checkpoint_capacity() const;  // largest blob a slot holds

  // See the class comment. ResourceExhausted (with both sizes) if the blob does not fit;
  // FailedPrecondition unless through_lsn == last_lsn() with no Append in flight.
  Status WriteCheckpoint(uint64_t through_lsn, std::span<const uint8_t> blob);

 private:
  MetaStore() = default;
  static Result<std::unique_ptr<MetaStore>> OpenMapped(pool::MappedPool mapped, UniqueFd lock_fd,
                                                       bool msync);
  // Implementation state.
  std::optional<pool::MappedPool> pool_;
  Superblock superblock_;
  mutable Mutex mu_;

  // Makes a range durable through the seam (common/persistent_memory.h): Persist, or Sync
  // (msync) in msync mode.
  Status PersistRange(const void* addr, size_t len);
  // memcpy / zero-fill, then as PersistRange (MemcpyPersist / MemsetPersist, or Sync).
  Status CopyDurable(uint8_t* dst, const void* src, size_t len);
  Status ZeroDurable(uint8_t* dst, size_t len);
  // Starts journal generation `generation` at `base_lsn` (the last step of a checkpoint,
  // also finished by Recover after a crash inside it). `used`: bytes of records to zero,
  // UINT64_MAX to find them.
  Status ResetJournal(uint64_t generation, uint64_t base_lsn, uint64_t used) REQUIRES(mu_);
  // Zeroes the record area in [from, limit) up to its last non-zero byte.
  Status ZeroRecordTail(uint64_t from, uint64_t limit);
  // Sets the reserve mark word (and reserve_mark_) to `mark` and persists it.
  Status SetReserveMark(uint64_t mark) REQUIRES(mu_);

  // The steps of Recover, in order (metadata/README.md, "Recover"; meta_store.cc).
  struct JournalFound;     // the current journal header, durable word, reserve mark
  struct CheckpointFound;  // the current checkpoint slot and its blob
  Result<JournalFound> FindJournalHeader() const;                         // 1
  Result<CheckpointFound> FindCheckpoint() const;                         // 2
  Result<bool> CheckCheckpointFitsJournal(const JournalFound& journal,     // 3 (true: finish
                                          const CheckpointFound& checkpoint) const;  // it)
  Status ReplayJournal(const JournalFound& journal, const ReplayFn& replay,  // 5
                       RecoveryStats* stats, uint64_t* last, uint64_t* end);
  Status TrimJournalTail(const JournalFound& journal, uint64_t last, uint64_t end)  // 6
      REQUIRES(mu_);
  void ResumeAppends(int current_slot, uint64_t tail, uint64_t last);     // 7
  std::string SlotWhere(int slot) const;
  std::string DamagedSlots(const CheckpointFound& checkpoint) const;

  // Fixed after Open.
  UniqueFd lock_fd_;  // the pool's exclusive lock (flock); none for an attached memory
  bool msync_ = false;
  pmem::PersistentMemory* mem_ = nullptr;  // pool_'s memory
  uint8_t* journal_ = nullptr;  // journal region (header page, then records)
  uint8_t* records_ = nullptr;  // record area
  uint64_t records_capacity_ = 0;
  uint8_t* slots_[2] = {nullptr, nullptr};
  uint64_t slot_capacity_ = 0;  // blob bytes per slot

  // Journal state (set by Recover). Recover runs alone, but takes mu_ for the steps
  // that change it all the same, so that the analysis sees every access under it.
  static constexpr uint64_t kCompletionRing = 1024;  // appends in flight at most
  std::condition_variable cv_;
  bool recovered_ GUARDED_BY(mu_) = false;
  Status failed_ GUARDED_BY(mu_);            // sticky persist failure
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // current journal generation
  int current_slot_ GUARDED_BY(mu_) = -1;    // slot of the current checkpoint; -1: none yet
  uint64_t tail_ GUARDED_BY(mu_) = 0;        // next free byte of the record area
  // The reserve mark word on media holds this (>= tail_).
  uint64_t reserve_mark_ GUARDED_BY(mu_) = 0;
  uint64_t next_lsn_ GUARDED_BY(mu_) = 1;     // LSN the next Append gets
  uint64_t written_lsn_ GUARDED_BY(mu_) = 0;  // every record <= this is written and flushed
  uint64_t durable_lsn_ GUARDED_BY(mu_) = 0;  // the durable-LSN word on media holds this
  bool persisting_ GUARDED_BY(mu_) = false;   // a thread is persisting the durable-LSN word
  // Written flags for LSNs > written_lsn_.
  std::array<uint8_t, kCompletionRing> done_ GUARDED_BY(mu_){};
};

// Reads the superblock of the metadata pool at `path` (for mkfs show / dpmfs status).
Result<Superblock> ReadSuperblock(const std::string& path);

}  // namespace dpmfs::meta
