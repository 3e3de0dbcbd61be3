// BlockAllocator: see extent_map.h.
//
// free_ranges_ holds the free space as maximal ranges (offset -> length; neighbours never
// touch), so "is this range free" is one lookup and Free coalesces with at most two
// neighbours. Allocation in the common case (the range at the cursor or the hint fits)
// is O(log ranges) and allocates no memory: carving the head of a range re-keys its node.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>

#include "metadata/extent_map.h"

namespace dpmfs::meta {
namespace {

// Checked in every build type: freeing free space or allocating partial blocks is a bug
// in the caller that would hand one block to two files.
#define DPMFS_ALLOC_CHECK(cond, ...)                     \
  do {                                                   \
    if (!(cond)) [[unlikely]] {                          \
      spdlog::critical("block allocator: " __VA_ARGS__); \
      spdlog::default_logger()->flush();                 \
      std::abort();                                      \
    }                                                    \
  } while (0)

using FreeMap = std::map<uint64_t, uint64_t>;

// Removes [start, start+len) from the free range `it`, which must contain it.
void Carve(FreeMap& m, FreeMap::iterator it, uint64_t start, uint64_t len) {
  const uint64_t range_start = it->first;
  const uint64_t range_end = it->first + it->second;
  const uint64_t carve_end = start + len;
  if (start == range_start) {
    if (carve_end == range_end) {
      m.erase(it);
      return;
    }
    // The hot path (allocating from the front of a range): move the node's key to the
    // remaining tail instead of erasing and allocating a new node.
    auto hint = std::next(it);
    auto node = m.extract(it);
    node.key() = carve_end;
    node.mapped() = range_end - carve_end;
    m.insert(hint, std::move(node));
    return;
  }
  it->second = start - range_start;
  if (carve_end < range_end) m.emplace_hint(std::next(it), carve_end, range_end - carve_end);
}

}  // namespace

BlockAllocator::BlockAllocator(uint32_t server, uint64_t data_size, uint32_t block_size)
    : server_(server),
      block_size_(block_size),
      total_(block_size == 0 ? 0 : data_size / block_size * block_size),
      free_(total_) {
  DPMFS_ALLOC_CHECK(block_size > 0, "server {}: block size 0", server);
  if (total_ > 0) free_ranges_.emplace(0, total_);
}

bool BlockAllocator::Allocate(uint64_t length, uint64_t hint, std::vector<PoolRange>* out) {
  DPMFS_ALLOC_CHECK(length % block_size_ == 0,
                    "server {}: allocation of {} bytes is not a multiple of the block size {}",
                    server_, length, block_size_);
  if (length == 0) return true;
  if (length > free_) return false;  // ENOSPC: nothing taken
  uint64_t remaining = length;

  // 1. Continue at the hint (a growing file stays contiguous), as far as it is free.
  if (hint < total_) {
    hint -= hint % block_size_;
    auto it = free_ranges_.upper_bound(hint);
    if (it != free_ranges_.begin()) {
      --it;
      const uint64_t range_end = it->first + it->second;
      if (range_end > hint) {
        const uint64_t take = std::min(remaining, range_end - hint);
        Carve(free_ranges_, it, hint, take);
        free_ -= take;
        out->push_back({server_, hint, take});
        remaining -= take;
        if (remaining == 0) return true;
      }
    }
  }

  // 2. Next-fit: the first range from the cursor on (wrapping once) that holds the rest
  // whole; inside the range that contains the cursor, from the cursor itself. The ranges
  // a scan skips lie behind the new cursor, so one sweep of the pool skips each about
  // once (amortized O(log n) per call); no_fit_ saves the full sweep that would fail.
  if (remaining < no_fit_) {
    auto take_at = [&](FreeMap::iterator it, uint64_t start) {
      Carve(free_ranges_, it, start, remaining);
      free_ -= remaining;
      out->push_back({server_, start, remaining});
      cursor_ = start + remaining;
    };
    auto after = free_ranges_.upper_bound(cursor_);
    if (after != free_ranges_.begin()) {
      auto at = std::prev(after);
      const uint64_t range_end = at->first + at->second;
      if (range_end > cursor_ && range_end - cursor_ >= remaining) {
        take_at(at, cursor_);
        return true;
      }
    }
    for (auto it = after; it != free_ranges_.end(); ++it) {
      if (it->second >= remaining) {
        take_at(it, it->first);
        return true;
      }
    }
    for (auto it = free_ranges_.begin(); it != after; ++it) {
      if (it->second >= remaining) {
        take_at(it, it->first);
        return true;
      }
    }
    no_fit_ = remaining;  // every range is shorter: remember, so we skip this next time
  }

  // 3. No single range fits: take whole ranges in address order from the cursor on
  // (wrapping), the last one partly. free_ >= remaining guarantees this ends.
  auto it = free_ranges_.lower_bound(cursor_);
  while (remaining > 0) {
    if (it == free_ranges_.end()) it = free_ranges_.begin();
    const uint64_t start = it->first;
    const uint64_t take = std::min(remaining, it->second);
    out->push_back({server_, start, take});
    free_ -= take;
    remaining -= take;
    cursor_ = start + take;
    if (take == it->second) {
      it = free_ranges_.erase(it);
    } else {
      Carve(free_ranges_, it, start, take);
    }
  }
  return true;
}

void BlockAllocator::Free(uint64_t pool_offset, uint64_t length) {
  DPMFS_ALLOC_CHECK(pool_offset % block_size_ == 0 && length % block_size_ == 0,
                    "server {}: free of [{}, +{}) is not block-aligned (block size {})",
                    server_, pool_offset, length, block_size_);
  if (length == 0) return;
  DPMFS_ALLOC_CHECK(pool_offset <= total_ && length <= total_ - pool_offset,
                    "server {}: free of [{}, +{}) leaves the pool of {} bytes", server_,
                    pool_offset, length, total_);
  const uint64_t end = pool_offset + length;
  auto next = free_ranges_.lower_bound(pool_offset);
  DPMFS_ALLOC_CHECK(next == free_ranges_.end() || next->first >= end,
                    "server {}: free of [{}, +{}) overlaps free space at {}", server_,
                    pool_offset, length, next->first);
  auto merged = free_ranges_.end();
  if (next != free_ranges_.begin()) {
    auto prev = std::prev(next);
    const uint64_t prev_end = prev->first + prev->second;
    DPMFS_ALLOC_CHECK(prev_end <= pool_offset,
                      "server {}: free of [{}, +{}) overlaps free space at {}", server_,
                      pool_offset, length, prev->first);
    if (prev_end == pool_offset) {
      prev->second += length;
      merged = prev;
    }
  }
  if (merged == free_ranges_.end()) merged = free_ranges_.emplace_hint(next, pool_offset, length);
  if (next != free_ranges_.end() && next->first == end) {
    merged->second += next->second;
    free_ranges_.erase(next);
  }
  free_ += length;
  // The coalesced range may be the new longest: widen the bound.
  no_fit_ = std::max(no_fit_, merged->second + 1);
}

bool BlockAllocator::MarkUsed(uint64_t pool_offset, uint64_t length) {
  if (pool_offset % block_size_ != 0 || length % block_size_ != 0) return false;
  if (pool_offset > total_ || length > total_ - pool_offset) return false;
  if (length == 0) return true;
  // Free ranges are maximal, so the range is all free iff one free range contains it.
  auto it = free_ranges_.upper_bound(pool_offset);
  if (it == free_ranges_.begin()) return false;
  --it;
  if (it->first + it->second < pool_offset + length) return false;
  Carve(free_ranges_, it, pool_offset, length);
  free_ -= length;
  return true;
}

}  // namespace dpmfs::meta
