// ExtentMap: see extent_map.h.
//
// Invariants kept by every mutation (the randomized test checks them after each step):
//   - extents_ is keyed by file_offset, no two extents overlap, every length is > 0;
//   - the map is canonical: no extent "continues" its successor (same server and flags,
//     contiguous in the file and in the pool), i.e. compatible neighbours are merged, so
//     a given set of mapped bytes has exactly one representation;
//   - allocated_bytes_ is the sum of the lengths.
// Mutations that act on a sub-range split the extents at the range's edges first, change
// the whole extents inside, then re-merge around the range, which restores canonicity.
#include "metadata/extent_map.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <limits>

namespace dpmfs::meta {
namespace {

// Invariant checks stay on in release builds: a violated one means the metadata server
// is about to map one block twice or lose track of one, which corrupts files; stopping
// is safer (the journal makes a restart consistent).
#define DPMFS_EXTENT_CHECK(cond, ...)                 \
  do {                                                \
    if (!(cond)) [[unlikely]] {                       \
      spdlog::critical("extent map: " __VA_ARGS__);   \
      spdlog::default_logger()->flush();              \
      std::abort();                                   \
    }                                                 \
  } while (0)

using Map = std::map<uint64_t, Extent>;

constexpr uint64_t kMaxOffset = std::numeric_limits<uint64_t>::max();

uint64_t EndOf(const Extent& e) { return e.file_offset + e.length; }

// offset + length, saturated: a length running past 2^64 means "to the end".
uint64_t RangeEnd(uint64_t offset, uint64_t length) {
  return length > kMaxOffset - offset ? kMaxOffset : offset + length;
}

// The extent containing `pos`, else the first extent after it (end() if none).
template <typename M>
auto FirstEndingAfter(M& m, uint64_t pos) {
  auto it = m.upper_bound(pos);
  if (it != m.begin()) {
    auto prev = std::prev(it);
    if (EndOf(prev->second) > pos) return prev;
  }
  return it;
}

// Whether `b` continues `a` so the two may be one extent.
bool Continues(const Extent& a, const Extent& b) {
  return a.server == b.server && a.flags == b.flags && EndOf(a) == b.file_offset &&
         a.pool_offset + a.length == b.pool_offset;
}

// Splits the extent that strictly contains `pos` (if any) so an extent boundary falls
// at `pos`. Leaves the map non-canonical until MergeAround.
void SplitAt(Map& m, uint64_t pos) {
  auto it = m.upper_bound(pos);
  if (it == m.begin()) return;
  --it;
  Extent& e = it->second;
  if (e.file_offset >= pos || EndOf(e) <= pos) return;
  const uint64_t head = pos - e.file_offset;
  Extent tail = e;
  tail.file_offset = pos;
  tail.pool_offset = e.pool_offset + head;
  tail.length = e.length - head;
  e.length = head;
  m.emplace_hint(std::next(it), pos, tail);
}

// Merges every pair of neighbours that continue each other among the extents from the
// one before `lo` through the one starting at `hi`.
void MergeAround(Map& m, uint64_t lo, uint64_t hi) {
  auto it = m.lower_bound(lo);
  if (it != m.begin()) --it;
  if (it == m.end()) return;
  for (;;) {
    auto next = std::next(it);
    if (next == m.end() || next->first > hi) return;
    if (Continues(it->second, next->second)) {
      it->second.length += next->second.length;
      m.erase(next);
    } else {
      it = next;
    }
  }
}

PoolRange PoolRangeOf(const Extent& e) { return {e.server, e.pool_offset, e.length}; }

}  // namespace

bool ExtentMap::Find(uint64_t offset, uint64_t length, size_t max,
                     std::vector<Extent>* out) const {
  const uint64_t stop = length == 0 ? kMaxOffset : RangeEnd(offset, length);
  size_t appended = 0;
  for (auto it = FirstEndingAfter(extents_, offset);
       it != extents_.end() && it->first < stop; ++it) {
    if (appended == max) return true;
    Extent e = it->second;
    if (e.file_offset < offset) {  // clip the head, moving into the pool alike
      const uint64_t skip = offset - e.file_offset;
      e.file_offset += skip;
      e.pool_offset += skip;
      e.length -= skip;
    }
    if (EndOf(e) > stop) e.length = stop - e.file_offset;
    out->push_back(e);
    ++appended;
  }
  return false;
}

void ExtentMap::Holes(uint64_t offset, uint64_t length, std::vector<ByteRange>* out) const {
  if (length == 0) return;
  const uint64_t stop = RangeEnd(offset, length);
  uint64_t pos = offset;
  for (auto it = FirstEndingAfter(extents_, offset);
       it != extents_.end() && it->first < stop; ++it) {
    if (it->first > pos) out->push_back({pos, it->first - pos});
    pos = EndOf(it->second);
  }
  if (pos < stop) out->push_back({pos, stop - pos});
}

void ExtentMap::Insert(const Extent& e) {
  DPMFS_EXTENT_CHECK(e.length > 0, "empty extent inserted at file offset {}", e.file_offset);
  DPMFS_EXTENT_CHECK(e.length <= kMaxOffset - e.file_offset,
                     "extent at file offset {} length {} wraps around", e.file_offset,
                     e.length);
  auto next = extents_.lower_bound(e.file_offset);
  DPMFS_EXTENT_CHECK(next == extents_.end() || next->first >= EndOf(e),
                     "inserted extent [{}, +{}) overlaps the one at {}", e.file_offset,
                     e.length, next->first);
  auto cur = extents_.end();
  if (next != extents_.begin()) {
    auto prev = std::prev(next);
    DPMFS_EXTENT_CHECK(EndOf(prev->second) <= e.file_offset,
                       "inserted extent [{}, +{}) overlaps the one at {}", e.file_offset,
                       e.length, prev->first);
    if (Continues(prev->second, e)) {
      prev->second.length += e.length;
      cur = prev;
    }
  }
  if (cur == extents_.end()) cur = extents_.emplace_hint(next, e.file_offset, e);
  if (next != extents_.end() && Continues(cur->second, next->second)) {
    cur->second.length += next->second.length;
    extents_.erase(next);
  }
  allocated_bytes_ += e.length;
}

uint64_t ExtentMap::Remove(uint64_t offset, uint64_t length, std::vector<PoolRange>* freed) {
  if (length == 0) return 0;
  const uint64_t stop = RangeEnd(offset, length);
  // Splitting is safe without re-merging: the pieces inside the range all go, and the
  // pieces left outside it are no longer adjacent to anything they could merge with.
  SplitAt(extents_, offset);
  SplitAt(extents_, stop);
  uint64_t removed = 0;
  auto it = extents_.lower_bound(offset);
  while (it != extents_.end() && it->first < stop) {
    if (freed != nullptr) freed->push_back(PoolRangeOf(it->second));
    removed += it->second.length;
    it = extents_.erase(it);
  }
  allocated_bytes_ -= removed;
  return removed;
}

uint64_t ExtentMap::MarkWritten(uint64_t offset, uint64_t length) {
  if (length == 0) return 0;
  const uint64_t stop = RangeEnd(offset, length);
  constexpr uint32_t kCleared = Extent::kUnwritten | Extent::kSpeculative;
  SplitAt(extents_, offset);
  SplitAt(extents_, stop);
  uint64_t changed = 0;
  for (auto it = extents_.lower_bound(offset); it != extents_.end() && it->first < stop;
       ++it) {
    if ((it->second.flags & kCleared) != 0) {
      it->second.flags &= ~kCleared;
      changed += it->second.length;
    }
  }
  MergeAround(extents_, offset, stop);
  return changed;
}

uint64_t ExtentMap::TrimSpeculative(uint64_t offset, std::vector<PoolRange>* freed) {
  constexpr uint32_t kTrimmed = Extent::kUnwritten | Extent::kSpeculative;
  auto it = FirstEndingAfter(extents_, offset);
  if (it != extents_.end() && it->first < offset) {
    // Straddles `offset`: only its part at/after `offset` goes, if it goes at all.
    if ((it->second.flags & kTrimmed) == kTrimmed) {
      SplitAt(extents_, offset);
      it = extents_.find(offset);
    } else {
      ++it;
    }
  }
  uint64_t removed = 0;
  while (it != extents_.end()) {
    if ((it->second.flags & kTrimmed) == kTrimmed) {
      if (freed != nullptr) freed->push_back(PoolRangeOf(it->second));
      removed += it->second.length;
      it = extents_.erase(it);
    } else {
      ++it;
    }
  }
  allocated_bytes_ -= removed;
  return removed;
}

bool ExtentMap::FullyWritten(uint64_t offset, uint64_t length) const {
  if (length == 0) return true;
  const uint64_t stop = RangeEnd(offset, length);
  uint64_t pos = offset;
  for (auto it = FirstEndingAfter(extents_, offset); pos < stop; ++it) {
    if (it == extents_.end() || it->first > pos) return false;  // a hole at pos
    if ((it->second.flags & Extent::kUnwritten) != 0) return false;
    pos = EndOf(it->second);
  }
  return true;
}

uint64_t ExtentMap::end() const {
  return extents_.empty() ? 0 : EndOf(extents_.rbegin()->second);
}

void ExtentMap::ForEach(const std::function<void(const Extent&)>& fn) const {
  for (const auto& [offset, e] : extents_) fn(e);
}

int64_t ExtentMap::SeekData(uint64_t offset, uint64_t size) const {
  if (offset >= size) return -1;
  auto it = FirstEndingAfter(extents_, offset);
  if (it == extents_.end()) return -1;
  const uint64_t pos = std::max(offset, it->first);
  if (pos >= size || pos > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return -1;
  return static_cast<int64_t>(pos);
}

}  // namespace dpmfs::meta
