// FreeQuarantine: see free_quarantine.h.
#include "metadata/free_quarantine.h"

#include <algorithm>
#include <limits>

namespace dpmfs::meta {

void FreeQuarantine::Reset(size_t pools) {
  pools_.assign(pools, {});
  bytes_.assign(pools, 0);
  hold_until_ms_ = 0;
}

void FreeQuarantine::Add(const PoolRange& r, int64_t release_ms) {
  if (r.length == 0) return;
  if (r.server >= pools_.size()) {
    pools_.resize(r.server + 1);
    bytes_.resize(r.server + 1, 0);
  }
  auto& q = pools_[r.server];
  if (!q.empty()) {
    Held& last = q.back();
    release_ms = std::max(release_ms, last.release_ms);
    // One truncate of a fragmented file frees many neighbouring ranges at once: keep
    // them as one entry.
    if (last.release_ms == release_ms && last.pool_offset + last.length == r.pool_offset) {
      last.length += r.length;
      bytes_[r.server] += r.length;
      return;
    }
  }
  q.push_back(Held{release_ms, r.pool_offset, r.length});
  bytes_[r.server] += r.length;
}

uint64_t FreeQuarantine::Release(int64_t now_ms, std::vector<BlockAllocator>& allocators) {
  std::vector<PoolRange> out;
  const uint64_t released = Release(now_ms, &out);
  for (const PoolRange& r : out) {
    if (r.server < allocators.size()) allocators[r.server].Free(r.pool_offset, r.length);
  }
  return released;
}

uint64_t FreeQuarantine::Release(int64_t now_ms, std::vector<PoolRange>* out) {
  uint64_t released = 0;
  for (size_t s = 0; s < pools_.size(); ++s) {
    auto& q = pools_[s];
    while (!q.empty() && q.front().release_ms <= now_ms) {
      out->push_back(PoolRange{static_cast<uint32_t>(s), q.front().pool_offset, q.front().length});
      bytes_[s] -= q.front().length;
      released += q.front().length;
      q.pop_front();
    }
  }
  return released;
}

int64_t FreeQuarantine::SpaceAt(uint32_t server, uint64_t length, uint64_t free_bytes,
                                int64_t now_ms) const {
  const int64_t not_before = std::max(now_ms, hold_until_ms_);
  if (free_bytes >= length) return not_before;
  if (server >= pools_.size()) return -1;
  uint64_t have = free_bytes;
  for (const Held& h : pools_[server]) {
    have += h.length;
    if (have >= length) return std::max(not_before, h.release_ms);
  }
  return -1;
}

uint64_t FreeQuarantine::bytes() const {
  uint64_t n = 0;
  for (uint64_t b : bytes_) n += b;
  return n;
}

int64_t FreeQuarantine::next_release_ms() const {
  int64_t t = std::numeric_limits<int64_t>::max();
  for (const auto& q : pools_) {
    if (!q.empty()) t = std::min(t, q.front().release_ms);
  }
  return t;
}

}  // namespace dpmfs::meta
