// FreeQuarantine: pool ranges that were freed but may still be written by clients, kept
// away from the block allocators until their release time.
//
// Why: clients cache layouts (extent -> data server, pool offset) and overwrite file data
// with one-sided RDMA WRITEs without asking the metadata server. A client may use a
// cached layout for at most the layout TTL (1 s) after it SENT the request that fetched
// it. Blocks freed by a truncate, punch, unlink, speculative reclaim or lease expiry can
// therefore still receive stale WRITEs for up to TTL plus the time a WRITE spends in
// flight after that. Handing them to another file in that window would let those WRITEs
// corrupt it silently. So every freed range waits here for `free_quarantine` (default
// 3 s > TTL + margin) before the allocator may hand it out again.
//
// Time is a steady clock in milliseconds supplied by the caller (Namespace's clock), so
// tests can drive it. Release times of one pool never decrease (a range freed later is
// released later), so each pool's ranges form a FIFO and release is O(released).
//
// Not durable: after a restart nobody knows which free blocks were freed recently.
// HoldAllUntil() covers that (the restart rule in metadata/README.md): every allocation
// waits until the server has served for one quarantine.
//
// Thread-safety: none; guarded like the allocators (the namespace lock).
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "metadata/extent_map.h"

namespace dpmfs::meta {

class FreeQuarantine {
 public:
  explicit FreeQuarantine(size_t pools = 0) { Reset(pools); }

  // Forgets everything (held ranges and the hold) and sizes for `pools` data pools.
  void Reset(size_t pools);
  // Keeps `r` from its allocator until `release_ms`. A release time earlier than one
  // already queued for the pool is raised to it (keeps the FIFO ordered; only ever
  // holds a range longer).
  void Add(const PoolRange& r, int64_t release_ms);
  // Gives every range whose release time is at or before `now_ms` back to its allocator
  // (allocators indexed by server). Returns the bytes released.
  uint64_t Release(int64_t now_ms, std::vector<BlockAllocator>& allocators);
  // The same, appending the released ranges to `out` instead (to be scrubbed first).
  uint64_t Release(int64_t now_ms, std::vector<PoolRange>* out);
  // Refuses every allocation until `until_ms` (see Holding).
  void HoldAllUntil(int64_t until_ms) { hold_until_ms_ = until_ms; }
  // Whether allocations must wait at `now_ms` (the restart rule is in force).
  bool Holding(int64_t now_ms) const { return now_ms < hold_until_ms_; }
  // An allocation of `length` bytes on `server` failed at `now_ms` with `free_bytes`
  // free in the allocator: the earliest time at which the hold is over and the ranges
  // released by then make `length` fit; -1 when even the whole quarantine would not.
  int64_t SpaceAt(uint32_t server, uint64_t length, uint64_t free_bytes, int64_t now_ms) const;

  uint64_t bytes(uint32_t server) const { return server < bytes_.size() ? bytes_[server] : 0; }
  uint64_t bytes() const;
  // The earliest release time of any held range; INT64_MAX when nothing is held.
  int64_t next_release_ms() const;

 private:
  struct Held {
    int64_t release_ms;
    uint64_t pool_offset;
    uint64_t length;
  };
  std::vector<std::deque<Held>> pools_;  // by server, in release order
  std::vector<uint64_t> bytes_;          // held bytes, by server
  int64_t hold_until_ms_ = 0;
};

}  // namespace dpmfs::meta
