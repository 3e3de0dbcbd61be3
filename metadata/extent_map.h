// ExtentMap: one file's map from file byte ranges to data-pool blocks (meta::Extent),
// kept sorted by file offset with no overlaps, adjacent compatible extents merged.
// No fixed extent limit (Octopus allowed 20 per file); lookups are O(log n).
//
// Ranges: every (offset, length) argument is [offset, offset+length); a length running
// past 2^64 is clipped there, so Remove(offset, UINT64_MAX, ...) means "to the end".
// Output vectors are appended to, never cleared; `freed` may be null.
// Asserted preconditions (Insert overlap, BlockAllocator::Free of free space, unaligned
// Allocate lengths) are checked in every build type and abort the process: continuing
// would map a block twice and corrupt files.
//
// Thread-safety: none; the namespace's lock for the inode guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

// A range of one data pool, as given back to its BlockAllocator.
struct PoolRange {
  uint32_t server = 0;
  uint64_t pool_offset = 0;
  uint64_t length = 0;
  bool operator==(const PoolRange&) const = default;
};

class ExtentMap {
 public:
  // Extents overlapping [offset, offset+length), clipped to it, in file order; at most
  // `max` (returns true if it stopped early because of `max`). length 0 = to the end.
  bool Find(uint64_t offset, uint64_t length, size_t max, std::vector<Extent>* out) const;
  // The uncovered sub-ranges of [offset, offset+length), in order (none when length 0).
  void Holes(uint64_t offset, uint64_t length, std::vector<ByteRange>* out) const;
  // Adds an extent that overlaps none present (asserted); merges with neighbours that
  // continue it (same server, contiguous file and pool offsets, same flags).
  void Insert(const Extent& e);
  // Removes [offset, offset+length) (splitting extents at the edges) and appends the pool
  // ranges that became free to `freed`. Returns the bytes removed. length 0: nothing.
  uint64_t Remove(uint64_t offset, uint64_t length, std::vector<PoolRange>* freed);
  // Clears kUnwritten and kSpeculative on the allocated parts of [offset, offset+length),
  // splitting at the edges and merging afterwards. Returns the bytes changed.
  uint64_t MarkWritten(uint64_t offset, uint64_t length);
  // Removes every extent (or part) at or past `offset` that still has kSpeculative and
  // kUnwritten; appends freed pool ranges. Returns the bytes removed.
  uint64_t TrimSpeculative(uint64_t offset, std::vector<PoolRange>* freed);
  // Whether [offset, offset+length) is fully allocated and written (no holes, no
  // kUnwritten): a client overwriting it needs no Allocate/Commit.
  bool FullyWritten(uint64_t offset, uint64_t length) const;

  uint64_t allocated_bytes() const { return allocated_bytes_; }
  size_t extent_count() const { return extents_.size(); }
  uint64_t end() const;  // end of the last extent, 0 when empty
  bool empty() const { return extents_.empty(); }
  void Clear() { extents_.clear(); allocated_bytes_ = 0; }
  // Every extent in file order (serialization, recovery, fsck).
  void ForEach(const std::function<void(const Extent&)>& fn) const;
  // SEEK_DATA: the first offset >= `offset` that lies inside an extent (written or
  // unwritten: both are allocated data) and is < `size`; -1 when there is none (also
  // when offset >= size). SEEK_HOLE is answered from Holes (EOF counts as a hole).
  int64_t SeekData(uint64_t offset, uint64_t size) const;

 private:
  std::map<uint64_t, Extent> extents_;  // by file_offset
  uint64_t allocated_bytes_ = 0;
};

// BlockAllocator: free space of one data pool, in blocks. Free space is derived state:
// after a crash it is rebuilt by MarkUsed over every file's extents (the journal and
// checkpoints hold the extent maps, which are the durable record of what is in use).
//
// Thread-safety: none; guarded by the caller (one allocator lock per data pool).
class BlockAllocator {
 public:
  // data_size is rounded down to whole blocks; block_size must be > 0.
  BlockAllocator(uint32_t server, uint64_t data_size, uint32_t block_size);

  // A hint that prefers nothing (any hint outside the pool does the same).
  static constexpr uint64_t kNoHint = ~uint64_t{0};

  // Allocates exactly `length` bytes (a multiple of the block size) as one or more
  // ranges, preferring to start at `hint` (a pool offset, e.g. the end of the file's
  // previous extent on this server) so a growing file stays contiguous; otherwise the
  // first free range that fits (next-fit from a roving cursor), splitting only when no
  // single range fits. Returns false and allocates nothing when there is not enough free
  // space (ENOSPC). The hint is rounded down to a block; when its block is free the
  // first range starts there and runs as far as both the free space and `length` allow,
  // the rest placed as above. Only the next-fit placement moves the cursor (to the end
  // of what it placed). length 0 succeeds with nothing.
  bool Allocate(uint64_t length, uint64_t hint, std::vector<PoolRange>* out);
  // Returns a range to the free pool (asserted: it was in use).
  void Free(uint64_t pool_offset, uint64_t length);
  // Marks a range in use while rebuilding; false if any part was already in use, the
  // range leaves the pool or is not block-aligned (a corrupt extent map): then nothing
  // changes.
  bool MarkUsed(uint64_t pool_offset, uint64_t length);

  uint32_t server() const { return server_; }
  uint32_t block_size() const { return block_size_; }
  uint64_t total_bytes() const { return total_; }
  uint64_t free_bytes() const { return free_; }
  // Every free range (offset, length) in offset order, coalesced (the offline check
  // compares them with the extent maps).
  void ForEachFreeRange(const std::function<void(uint64_t offset, uint64_t length)>& fn) const {
    for (const auto& [offset, length] : free_ranges_) fn(offset, length);
  }

 private:
  uint32_t server_;
  uint32_t block_size_;
  uint64_t total_;
  uint64_t free_;
  uint64_t cursor_ = 0;
  std::map<uint64_t, uint64_t> free_ranges_;  // offset -> length, coalesced
  // Every free range is shorter than this (a bound learnt from a failed next-fit scan,
  // raised by Free): lets Allocate skip the O(ranges) scan on a fragmented pool.
  uint64_t no_fit_ = ~uint64_t{0};
};

// Which data server holds stripe unit `unit` (file offset / stripe_unit) of inode `ino`:
// round-robin from a per-file start, so files spread over servers and a file's
// consecutive stripe units alternate.
inline uint32_t StripeServer(InodeId ino, uint64_t unit, uint32_t servers) {
  return static_cast<uint32_t>((ino + unit) % servers);
}

}  // namespace dpmfs::meta
