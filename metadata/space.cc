#include "metadata/space.h"

#include <algorithm>
#include <chrono>
#include <string>

namespace dpmfs::meta {

namespace {
// How long an allocation that waits for scrubbed space sleeps before it looks again.
constexpr int64_t kScrubRetryMs = 2;
}  // namespace

Space::Space(const std::vector<DataPoolGeometry>& pools, SpaceOptions options)
    : options_(std::move(options)), quarantine_(pools.size()) {
  Reset(pools);
}

void Space::Reset(const std::vector<DataPoolGeometry>& pools) {
  allocators_.clear();
  for (const DataPoolGeometry& p : pools) allocators_.emplace_back(p.index, p.data_size, p.block_size);
  quarantine_.Reset(pools.size());
  scrub_queue_.assign(pools.size(), {});
  scrub_queued_.assign(pools.size(), 0);
  scrubbing_.assign(pools.size(), 0);
}

int64_t Space::NowMs() const {
  if (options_.clock_ms) return options_.clock_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t Space::free_bytes() const {
  uint64_t n = 0;
  for (const BlockAllocator& a : allocators_) n += a.free_bytes();
  return n + scrub_queued_bytes();
}

uint64_t Space::scrub_queued_bytes() const {
  uint64_t n = 0;
  for (uint64_t b : scrub_queued_) n += b;
  for (uint64_t b : scrubbing_) n += b;
  return n;
}

uint64_t Space::total_bytes() const {
  uint64_t n = 0;
  for (const BlockAllocator& a : allocators_) n += a.total_bytes();
  return n;
}

void Space::ScrubAllFree() {
  if (!options_.scrub_freed) return;
  auto& queues = scrub_queue_;
  for (size_t s = 0; s < allocators_.size(); ++s) {
    std::vector<PoolRange> all;
    const uint64_t n = allocators_[s].free_bytes();
    if (n == 0 || !allocators_[s].Allocate(n, BlockAllocator::kNoHint, &all)) continue;
    for (PoolRange& r : all) {
      r.server = static_cast<uint32_t>(s);
      queues[s].push_back(r);
      scrub_queued_[s] += r.length;
    }
  }
}

bool Space::TakeScrubWork(uint32_t server, uint64_t max_bytes, uint64_t max_range,
                          std::vector<PoolRange>* out) {
  ReleaseQuarantine();
  // During the restart hold a client may still write a block freed before the restart
  // through its cached layout: zeroing it now could be undone by such a write, so the
  // scrub waits for the hold as allocations do.
  if (quarantine_.Holding(NowMs())) return false;
  auto& queues = scrub_queue_;
  if (server >= queues.size() || max_range == 0) return false;
  auto& q = queues[server];
  uint64_t taken = 0;
  while (!q.empty() && taken < max_bytes) {
    PoolRange& r = q.front();
    PoolRange piece = r;
    piece.length = std::min(r.length, max_range);
    r.pool_offset += piece.length;
    r.length -= piece.length;
    if (r.length == 0) q.pop_front();
    scrub_queued_[server] -= piece.length;
    scrubbing_[server] += piece.length;
    taken += piece.length;
    out->push_back(piece);
  }
  return taken > 0;
}

void Space::FinishScrub(const std::vector<PoolRange>& ranges, bool zeroed) {
  auto& queues = scrub_queue_;
  for (const PoolRange& r : ranges) {
    if (r.server >= queues.size()) continue;
    scrubbing_[r.server] -= r.length;
    if (zeroed) {
      allocators_[r.server].Free(r.pool_offset, r.length);
    } else {
      queues[r.server].push_back(r);
      scrub_queued_[r.server] += r.length;
    }
  }
}

void Space::Return(const std::vector<PoolRange>& ranges) {
  for (const PoolRange& r : ranges) {
    if (r.server < allocators_.size() && r.length > 0) {
      allocators_[r.server].Free(r.pool_offset, r.length);
    }
  }
}

void Space::Free(const std::vector<PoolRange>& ranges, const OpContext& ctx) {
  if (ctx.replay || (options_.free_quarantine_ms == 0 && !options_.scrub_freed)) {
    Return(ranges);
    return;
  }
  // A clock reading t stands for some moment in [t, t+1): +1 so that at least the full
  // quarantine passes in real time.
  const int64_t release = NowMs() + options_.free_quarantine_ms + 1;
  for (const PoolRange& r : ranges) {
    if (r.server < allocators_.size() && r.length > 0) quarantine_.Add(r, release);
  }
}

void Space::ReleaseQuarantine() {
  if (!options_.scrub_freed) {
    quarantine_.Release(NowMs(), allocators_);
    return;
  }
  std::vector<PoolRange> released;
  quarantine_.Release(NowMs(), &released);
  auto& queues = scrub_queue_;
  for (const PoolRange& r : released) {
    queues[r.server].push_back(r);
    scrub_queued_[r.server] += r.length;
  }
}

bool Space::Take(uint32_t server, uint64_t length, uint64_t hint, OpContext& ctx,
                 std::vector<PoolRange>* out) {
  out->clear();
  if (!ctx.replay) {
    const int64_t now = NowMs();
    ReleaseQuarantine();
    if (!quarantine_.Holding(now) && allocators_[server].Allocate(length, hint, out)) {
      for (PoolRange& r : *out) r.server = server;
      ctx.allocations.insert(ctx.allocations.end(), out->begin(), out->end());
      return true;
    }
    // ENOSPC. If quarantined space (or the end of the restart hold) would make it fit
    // soon enough, tell the caller when to retry instead of failing: an application that
    // deleted a file and writes at once must not see ENOSPC for up to a quarantine.
    // (Allocate fails only when fewer than `length` bytes are free, so SpaceAt's count
    // is exact for this piece; a later piece may still fail, and gets its own answer.)
    // Space waiting for its scrub comes back within milliseconds: it counts as free for
    // when to look again, but not before kScrubRetryMs.
    const uint64_t free_now = allocators_[server].free_bytes();
    const uint64_t scrub =
        options_.scrub_freed ? scrub_queued_[server] + scrubbing_[server] : 0;
    int64_t at = quarantine_.SpaceAt(server, length, free_now + scrub, now);
    if (at >= 0 && free_now < length && scrub > 0) at = std::max(at, now + kScrubRetryMs);
    if (at > now && at <= ctx.space_wait_limit_ms) ctx.retry_at_ms = at;
    return false;
  }
  uint64_t got = 0;
  while (got < length) {
    if (ctx.next_allocation >= ctx.allocations.size()) {
      ctx.replay_error = "the record has fewer allocated ranges than the operation needs";
      break;
    }
    const PoolRange& r = ctx.allocations[ctx.next_allocation++];
    if (r.server != server || r.length == 0 || r.length > length - got) {
      ctx.replay_error = "a recorded range (server " + std::to_string(r.server) + ", " +
                         std::to_string(r.length) + " bytes) does not fit the allocation of " +
                         std::to_string(length) + " bytes on server " + std::to_string(server);
      break;
    }
    if (!allocators_[server].MarkUsed(r.pool_offset, r.length)) {
      ctx.replay_error = "recorded range at " + std::to_string(r.pool_offset) + "+" +
                         std::to_string(r.length) + " of data pool " + std::to_string(server) +
                         " is already in use or outside the pool";
      break;
    }
    out->push_back(r);
    got += r.length;
  }
  if (got == length) return true;
  Return(*out);
  out->clear();
  return false;
}

Status Space::CheckUsage(const std::vector<uint64_t>& in_files) const {
  for (size_t i = 0; i < allocators_.size(); ++i) {
    // Quarantined and scrub-queued ranges are out of the allocator but in no file.
    const uint64_t scrub = scrub_queued_[i] + scrubbing_[i];
    const uint64_t held = quarantine_.bytes(static_cast<uint32_t>(i));
    const uint64_t in_use =
        allocators_[i].total_bytes() - allocators_[i].free_bytes() - held - scrub;
    const uint64_t files = i < in_files.size() ? in_files[i] : 0;
    if (in_use != files) {
      return Status::Internal("data pool " + std::to_string(i) + " has " + std::to_string(in_use) +
                              " bytes in use (" + std::to_string(held) +
                              " more quarantined) but the extent maps hold " +
                              std::to_string(files));
    }
  }
  return Status::OK();
}

}  // namespace dpmfs::meta
