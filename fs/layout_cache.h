// The client's cache of one file's layout (its extent map, as the metadata server
// reported it), so that reads and overwrites of mapped blocks need no metadata RPC.
//
// The cache is authoritative only for the ranges it was told about ("known" ranges):
// there, cached extents are the file's extents and gaps are holes. Elsewhere the
// caller must ask the server (Layout) first.
//
// Staleness: a Layout reply is computed before it arrives; if the cache changed
// meanwhile (a commit cleared kUnwritten, a truncate cleared everything), inserting
// the older reply could resurrect freed blocks or make written blocks look unwritten
// (and a later write would then zero-pad over data). Every change bumps epoch(); a
// reply fetched at an older epoch is not inserted (InsertFetched returns false).
//
// Expiry: what the server reported is trusted until `valid_until` (the caller passes
// the time its request was SENT plus the layout TTL); after that the whole cache counts
// as unknown and the next insert replaces it. Another client may truncate or delete the
// file and the server reuse its blocks; it keeps freed blocks out of use for longer
// than the TTL (metadata server --free-quarantine-ms), so a layout this old can no
// longer name blocks of another file.
//
// Thread-safety: thread-safe (one internal mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <vector>

#include "common/mutex.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

// A piece of a file range and where its bytes are.
struct Segment {
  enum class Kind : uint8_t { kHole, kUnwritten, kWritten };
  Kind kind = Kind::kHole;
  uint64_t file_offset = 0;
  uint64_t length = 0;
  uint32_t server = 0;       // kUnwritten/kWritten: data server index
  uint64_t pool_offset = 0;  // of file_offset, in that server's data area
};

class LayoutCache {
 public:
  using Clock = std::chrono::steady_clock;

  uint64_t epoch() const;
  // Forgets everything (open for close-to-open, truncate, fallocate, punch hole).
  void Clear();

  // Records extents the server reported together with the range [known_begin,
  // known_end) the reply was authoritative for (extent ranges are always known), unless
  // the cache changed since `epoch` was read. Returns whether it was inserted.
  // Trusted until `valid_until` (see Expiry above).
  bool InsertFetched(uint64_t epoch, std::span<const meta::Extent> extents, uint64_t known_begin,
                     uint64_t known_end, Clock::time_point valid_until = Clock::time_point::max());
  // Records extents just returned by Allocate (the caller serializes writes that
  // change extents, so these are current).
  void Insert(std::span<const meta::Extent> extents,
              Clock::time_point valid_until = Clock::time_point::max());

  bool IsKnown(uint64_t begin, uint64_t end, Clock::time_point now = Clock::now()) const;
  // Splits [begin, end) into segments in file order (holes included). False if part
  // of the range is not known (or the cache expired at `now`).
  bool Map(uint64_t begin, uint64_t end, std::vector<Segment>* out,
           Clock::time_point now = Clock::now()) const;
  // The blocks of [begin, end) were committed as written: clear their flags.
  void MarkWritten(uint64_t begin, uint64_t end);

  size_t extent_count() const;

 private:
  void InsertLocked(const meta::Extent& e) REQUIRES(mu_);
  // Before an insert: an expired cache is emptied (nothing of it may survive into the
  // fresh one), then the validity becomes the earliest of what the cache holds.
  void RenewLocked(Clock::time_point valid_until) REQUIRES(mu_);
  void MarkKnownLocked(uint64_t begin, uint64_t end) REQUIRES(mu_);
  // Splits the extent containing `offset` (if any, and not starting there) in two.
  void SplitAtLocked(uint64_t offset) REQUIRES(mu_);
  void CoalesceLocked(uint64_t begin, uint64_t end) REQUIRES(mu_);

  mutable Mutex mu_;
  uint64_t epoch_ GUARDED_BY(mu_) = 0;
  // By file_offset; never overlapping.
  std::map<uint64_t, meta::Extent> extents_ GUARDED_BY(mu_);
  std::map<uint64_t, uint64_t> known_ GUARDED_BY(mu_);  // begin -> end; merged, disjoint
  // Of everything held.
  Clock::time_point valid_until_ GUARDED_BY(mu_) = Clock::time_point::max();
};

}  // namespace dpmfs::fs
