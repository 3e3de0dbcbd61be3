#include "fs/layout_cache.h"

#include <algorithm>

namespace dpmfs::fs {

using meta::Extent;

uint64_t LayoutCache::epoch() const {
  MutexLock lock(mu_);
  return epoch_;
}

void LayoutCache::Clear() {
  MutexLock lock(mu_);
  ++epoch_;
  extents_.clear();
  known_.clear();
  valid_until_ = Clock::time_point::max();
}

void LayoutCache::RenewLocked(Clock::time_point valid_until) {
  if (known_.empty() && extents_.empty()) {
    valid_until_ = valid_until;
    return;
  }
  if (Clock::now() >= valid_until_) {
    extents_.clear();
    known_.clear();
    valid_until_ = valid_until;
    return;
  }
  valid_until_ = std::min(valid_until_, valid_until);
}

size_t LayoutCache::extent_count() const {
  MutexLock lock(mu_);
  return extents_.size();
}

void LayoutCache::SplitAtLocked(uint64_t offset) {
  auto it = extents_.upper_bound(offset);
  if (it == extents_.begin()) return;
  --it;
  Extent& e = it->second;
  if (e.file_offset >= offset || e.file_offset + e.length <= offset) return;
  Extent tail = e;
  uint64_t head_len = offset - e.file_offset;
  tail.file_offset = offset;
  tail.length = e.length - head_len;
  tail.pool_offset = e.pool_offset + head_len;
  e.length = head_len;
  extents_.emplace(offset, tail);
}

void LayoutCache::CoalesceLocked(uint64_t begin, uint64_t end) {
  // Neighbours that continue each other (same server, contiguous pool space, same
  // flags) become one extent, so that appends block by block do not leave a file cut
  // into thousands of pieces that each cost a READ.
  auto it = extents_.upper_bound(begin);
  if (it != extents_.begin()) --it;
  if (it != extents_.begin()) --it;
  while (it != extents_.end()) {
    auto next = std::next(it);
    if (next == extents_.end() || it->first > end) break;
    Extent& a = it->second;
    const Extent& b = next->second;
    if (a.file_offset + a.length == b.file_offset && a.server == b.server &&
        a.pool_offset + a.length == b.pool_offset && a.flags == b.flags) {
      a.length += b.length;
      extents_.erase(next);
    } else {
      it = next;
    }
  }
}

void LayoutCache::InsertLocked(const Extent& e) {
  if (e.length == 0) return;
  uint64_t end = e.file_offset + e.length;
  SplitAtLocked(e.file_offset);
  SplitAtLocked(end);
  auto first = extents_.lower_bound(e.file_offset);
  auto last = extents_.lower_bound(end);
  extents_.erase(first, last);
  extents_.emplace(e.file_offset, e);
  MarkKnownLocked(e.file_offset, end);
  CoalesceLocked(e.file_offset, end);
}

void LayoutCache::MarkKnownLocked(uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  // Merge with every known range that overlaps or touches [begin, end).
  auto it = known_.upper_bound(begin);
  if (it != known_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= begin) it = prev;
  }
  while (it != known_.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    it = known_.erase(it);
  }
  known_.emplace(begin, end);
}

bool LayoutCache::InsertFetched(uint64_t epoch, std::span<const Extent> extents,
                                uint64_t known_begin, uint64_t known_end,
                                Clock::time_point valid_until) {
  MutexLock lock(mu_);
  if (epoch != epoch_) return false;
  RenewLocked(valid_until);
  for (const Extent& e : extents) InsertLocked(e);
  MarkKnownLocked(known_begin, known_end);
  return true;
}

void LayoutCache::Insert(std::span<const Extent> extents, Clock::time_point valid_until) {
  MutexLock lock(mu_);
  ++epoch_;
  RenewLocked(valid_until);
  for (const Extent& e : extents) InsertLocked(e);
}

bool LayoutCache::IsKnown(uint64_t begin, uint64_t end, Clock::time_point now) const {
  MutexLock lock(mu_);
  if (begin >= end) return true;
  if (now >= valid_until_) return false;
  auto it = known_.upper_bound(begin);
  if (it == known_.begin()) return false;
  --it;
  return it->first <= begin && it->second >= end;
}

bool LayoutCache::Map(uint64_t begin, uint64_t end, std::vector<Segment>* out,
                      Clock::time_point now) const {
  out->clear();
  if (begin >= end) return true;
  MutexLock lock(mu_);
  if (now >= valid_until_) return false;
  {
    auto k = known_.upper_bound(begin);
    if (k == known_.begin()) return false;
    --k;
    if (k->first > begin || k->second < end) return false;
  }
  uint64_t pos = begin;
  auto it = extents_.upper_bound(begin);
  if (it != extents_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.file_offset + prev->second.length > begin) it = prev;
  }
  for (; it != extents_.end() && it->first < end; ++it) {
    const Extent& e = it->second;
    uint64_t e_end = e.file_offset + e.length;
    if (e.file_offset > pos) {
      out->push_back(Segment{Segment::Kind::kHole, pos, e.file_offset - pos, 0, 0});
      pos = e.file_offset;
    }
    uint64_t seg_end = std::min(e_end, end);
    Segment s;
    s.kind = (e.flags & Extent::kUnwritten) ? Segment::Kind::kUnwritten : Segment::Kind::kWritten;
    s.file_offset = pos;
    s.length = seg_end - pos;
    s.server = e.server;
    s.pool_offset = e.pool_offset + (pos - e.file_offset);
    out->push_back(s);
    pos = seg_end;
  }
  if (pos < end) out->push_back(Segment{Segment::Kind::kHole, pos, end - pos, 0, 0});
  return true;
}

void LayoutCache::MarkWritten(uint64_t begin, uint64_t end) {
  MutexLock lock(mu_);
  if (begin >= end) return;
  ++epoch_;
  SplitAtLocked(begin);
  SplitAtLocked(end);
  for (auto it = extents_.lower_bound(begin); it != extents_.end() && it->first < end; ++it) {
    it->second.flags &= ~(Extent::kUnwritten | Extent::kSpeculative);
  }
  CoalesceLocked(begin, end);
}

}  // namespace dpmfs::fs
