// Space: the metadata server's space management as one component of the Namespace —
// the block allocators (one per data pool), the free quarantine (freed blocks held back
// while clients may still write them through cached layouts) and the scrub queue
// (released blocks waiting to be zeroed on their data server before reuse).
//
// None of it is state of its own: the allocators are derived from the extent maps when a
// checkpoint is loaded (MarkUsed), the quarantine and the scrub queue are memory only
// (see free_quarantine.h and metadata/README.md, "Freed blocks and cached layouts").
// Which ranges a file holds is the Namespace's business; this component only hands out,
// takes back and holds pool ranges.
//
// Thread-safety: none; guarded by the namespace lock like Namespace itself.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "common/status.h"
#include "metadata/extent_map.h"
#include "metadata/free_quarantine.h"
#include "metadata/meta_store.h"
#include "metadata/op_context.h"

namespace dpmfs::meta {

struct SpaceOptions {
  // Freed blocks return to the allocators this long after the free (0: at once).
  uint32_t free_quarantine_ms = 0;
  // Freed blocks are zeroed before they are allocated again (the scrub queue).
  bool scrub_freed = false;
  // The steady clock in milliseconds. Empty: std::chrono::steady_clock.
  std::function<int64_t()> clock_ms;
};

class Space {
 public:
  Space(const std::vector<DataPoolGeometry>& pools, SpaceOptions options);

  size_t pool_count() const { return allocators_.size(); }
  int64_t NowMs() const;

  // ---- Allocation and freeing ----
  // One allocator call of `length` bytes on `server` near `hint`, live or (ctx.replay)
  // from the ranges the record carries. Live: the ranges are appended to
  // ctx.allocations; on ENOSPC that quarantined space (or the end of the restart hold)
  // would cure by ctx.space_wait_limit_ms, ctx.retry_at_ms says when. Replay: a record
  // that does not fit sets ctx.replay_error. False: no space (or a bad record).
  bool Take(uint32_t server, uint64_t length, uint64_t hint, OpContext& ctx,
            std::vector<PoolRange>* out);
  // THE way blocks a file gave up are freed: while serving they go into the quarantine;
  // in replay, and with the quarantine off, straight back to the allocators.
  void Free(const std::vector<PoolRange>& ranges, const OpContext& ctx);
  // Back to the allocators at once: only for ranges no client has seen.
  void Return(const std::vector<PoolRange>& ranges);

  // ---- The free quarantine ----
  // Releases what is due (to the allocators, or with scrub_freed to the scrub queue).
  void ReleaseQuarantine();
  int64_t next_quarantine_release_ms() const { return quarantine_.next_release_ms(); }
  void HoldAllocationsUntil(int64_t until_ms) { quarantine_.HoldAllUntil(until_ms); }
  uint64_t quarantined_bytes() const { return quarantine_.bytes(); }

  // ---- The scrub queue ----
  // Every free block to the scrub queue (after recovery).
  void ScrubAllFree();
  bool TakeScrubWork(uint32_t server, uint64_t max_bytes, uint64_t max_range,
                     std::vector<PoolRange>* out);
  void FinishScrub(const std::vector<PoolRange>& ranges, bool zeroed);
  uint64_t scrub_queued_bytes() const;

  // ---- Accounting ----
  // Free in the allocators or waiting to be scrubbed; quarantined bytes are neither.
  uint64_t free_bytes() const;
  uint64_t total_bytes() const;
  // Every byte is free, quarantined, queued for scrubbing or in a file: `in_files` is
  // what the extent maps hold, by server. Internal error naming the first pool that
  // does not add up.
  Status CheckUsage(const std::vector<uint64_t>& in_files) const;

  // Every block free in fresh allocators, nothing quarantined or queued: where loading a
  // checkpoint starts. The quarantine and the scrub queue are not state (see
  // free_quarantine.h; MetaService scrubs every free block after recovery).
  void Reset(const std::vector<DataPoolGeometry>& pools);
  // The allocators, for the checkpoint codec (which marks the extents' blocks used).
  std::vector<BlockAllocator>& allocators() { return allocators_; }
  const std::vector<BlockAllocator>& allocators() const { return allocators_; }

 private:
  SpaceOptions options_;
  std::vector<BlockAllocator> allocators_;  // one per data pool, by index
  FreeQuarantine quarantine_;               // freed, not yet back in allocators_
  // scrub_freed: released from the quarantine, not yet zeroed (by server), and the
  // bytes the scrubber has taken out and not yet finished; sized with allocators_.
  std::vector<std::deque<PoolRange>> scrub_queue_;
  std::vector<uint64_t> scrub_queued_;
  std::vector<uint64_t> scrubbing_;
};

}  // namespace dpmfs::meta
