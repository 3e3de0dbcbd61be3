// The files family (meta_ops.h): open, release, release_many, layout, allocate,
// commit, fallocate, statfs, and the truncate and hole-allocation helpers behind them.
// The block allocators, free quarantine and scrub queue are the Space component
// (space.h); the comment below is about how this family uses them.
//
// Freed blocks: clients overwrite file data through cached layouts without asking us
// (for at most the layout TTL after they sent the request that fetched the layout), so
// a block a file gives up may still receive WRITEs for a while. Every path that frees
// blocks (truncate, open O_TRUNC, punch hole, unlink / rename-over / rmdir at the last
// reference, the last release trimming speculative blocks, a lapsed session's handles)
// ends in Space::Free, which puts them in the quarantine while serving; only an
// allocation undone inside its own mutation (never shown to a client) bypasses it.
// Replay frees at once: the journal records the ranges every allocation got, so replay
// re-applies them (MarkUsed) and never re-decides placement; a block the live server
// held in quarantine is simply free during replay, which any recorded allocation fits.
//
// Bytes nobody wrote read as zeros, and no client writes bytes it was not asked to
// write (two clients extending one file must not zero each other's records). So the
// zeros are kept on the side that frees and shrinks, never on the side that grows:
//   - Every block an Allocate hands out reads as zeros: with scrub_freed, freed blocks
//     are zeroed on their data server (the service's BlockScrubber) after the
//     quarantine and before they return to the allocators. A client writes only its
//     own bytes into kUnwritten blocks; the rest of the block is already zero when
//     Commit marks it written.
//   - Shrinking a file frees every block past the one holding the new EOF; the service
//     zeroes [new size, min(old size, end of that block)) before it applies the
//     truncate (MetaService::ZeroTruncatedTail), so bytes past EOF stay zero and a
//     later extension (by any client, with any cached size) needs no zeroing.
//   - Zero range frees its whole blocks and allocates fresh (zeroed) unwritten ones;
//     punch hole frees them. The partial blocks at the edges are the client's to zero
//     (bytes it was asked to zero).
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"
#include "metadata/permissions.h"

namespace dpmfs::meta {

namespace {
constexpr uint64_t kNoHint = std::numeric_limits<uint64_t>::max();
}  // namespace

int Namespace::DoOpen(const OpenRequest& req, OpContext& ctx, OpenReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (in->is_dir() && ((req.flags & O_ACCMODE) != O_RDONLY || (req.flags & O_TRUNC))) {
    return EISDIR;
  }
  if (int e = perm::MayOpen(ctx.caller, AclXattrs::SubjectOf(*in), req.flags)) return e;
  if ((req.flags & O_TRUNC) && in->is_reg()) {
    Truncate(*in, 0, ctx);
    in->attr.mode = perm::ModeAfterWrite(ctx.caller, in->attr.mode);
    Touch(*in, ctx.now, true, true);
  }
  reply->handle = OpenHandle(*in, ctx);
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::DoRelease(const ReleaseRequest& req, OpContext& ctx, EmptyReply*) {
  Session* s = client_sessions_.HolderOf(req.handle);
  if (s == nullptr) return EBADF;
  auto it = s->handles.find(req.handle);
  if (it == s->handles.end()) return EBADF;
  if (it->second != req.ino) return EINVAL;
  CloseHandle(*s, req.handle, ctx);
  return 0;
}

int Namespace::DoReleaseMany(const ReleaseManyRequest& req, OpContext& ctx,
                             ReleaseManyReply* reply) {
  for (const ReleaseRequest& r : req.handles) {
    EmptyReply none;
    if (DoRelease(r, ctx, &none) != 0) ++reply->refused;
  }
  return 0;  // never an errno: the journal must replay exactly what was released
}

bool Namespace::TruncatedTail(const SetattrRequest& sa, const Credentials& caller,
                              PoolRange* out) const {
  const uint64_t new_size = sa.size;
  const Inode* in = Find(sa.ino);
  const uint64_t bs = config_.block_size;
  if (in == nullptr || !in->is_reg() || new_size >= in->attr.size || new_size % bs == 0) {
    return false;
  }
  uint32_t mode = 0;
  if (perm::MaySetattr(caller, AclXattrs::SubjectOf(*in), sa, &mode) != 0) return false;
  const uint64_t end = std::min(in->attr.size, RoundUp(new_size, bs));
  std::vector<Extent> found;
  in->extents.Find(new_size, end - new_size, 1, &found);
  if (found.empty()) return false;
  const Extent& e = found[0];  // clipped to [new_size, end): one block, one extent
  *out = PoolRange{e.server, e.pool_offset, e.length};
  return true;
}

int Namespace::AllocateHoles(Inode& inode, uint64_t start, uint64_t end, uint64_t spec_from,
                             OpContext& ctx) {
  if (end <= start) return 0;
  const uint64_t su = config_.stripe_unit;
  const uint32_t nservers = static_cast<uint32_t>(space_.pool_count());
  if (nservers == 0) return ENOSPC;
  std::vector<ByteRange> holes;
  inode.extents.Holes(start, end - start, &holes);
  std::vector<Extent> inserted;
  std::vector<PoolRange> ranges;
  for (const ByteRange& hole : holes) {
    uint64_t pos = hole.offset;
    const uint64_t hole_end = hole.offset + hole.length;
    while (pos < hole_end) {
      // One piece: inside one stripe unit, and either all before or all after spec_from.
      uint64_t piece_end = std::min(hole_end, RoundDown(pos, su) + su);
      if (pos < spec_from && spec_from < piece_end) piece_end = spec_from;
      const uint64_t unit = pos / su;
      const uint32_t server = StripeServer(inode.attr.ino, unit, nservers);
      // Keep the file contiguous on its server: continue after the extent holding the
      // block before this piece (same unit), else after the last block this file has in
      // its previous stripe unit on the same server.
      uint64_t hint = kNoHint;
      std::vector<Extent> prev;
      if (pos % su != 0) {
        inode.extents.Find(pos - config_.block_size, config_.block_size, 1, &prev);
      } else if (unit >= nservers) {
        inode.extents.Find((unit - nservers) * su + su - config_.block_size, config_.block_size, 1,
                           &prev);
      }
      if (!prev.empty() && prev[0].server == server) hint = prev[0].pool_offset + prev[0].length;
      if (!space_.Take(server, piece_end - pos, hint, ctx, &ranges)) {
        // All or nothing: give back what this call took.
        std::vector<PoolRange> freed;
        for (const Extent& e : inserted) inode.extents.Remove(e.file_offset, e.length, &freed);
        // Nobody has seen these blocks (the reply is ENOSPC): no quarantine.
        space_.Return(freed);
        // (A failed mutation is journaled by its errno alone, so the ranges this call
        // recorded in ctx.allocations are never written anywhere.)
        return ENOSPC;
      }
      const uint32_t flags = Extent::kUnwritten | (pos >= spec_from ? Extent::kSpeculative : 0u);
      uint64_t off = pos;
      for (const PoolRange& r : ranges) {
        Extent e{off, r.length, r.pool_offset, server, flags};
        inode.extents.Insert(e);
        inserted.push_back(e);
        off += r.length;
      }
      pos = piece_end;
    }
  }
  // Blocks handed out while a copy's server is down: that copy is stale (it may hold a
  // freed file's bytes, since the scrub zeroed only the reachable copies), so it joins
  // the down server's dirty set (docs/replication.md, "Degraded-write records").
  for (const Extent& e : inserted) cluster_map_.NoteWrite(e.server, e.pool_offset, e.length);
  return 0;
}

void Namespace::TrimSpeculative(Inode& inode, const OpContext& ctx) {
  std::vector<PoolRange> freed;
  inode.extents.TrimSpeculative(RoundUp(inode.attr.size, config_.block_size), &freed);
  // The Allocate reply named these blocks: the client may be writing them.
  space_.Free(freed, ctx);
}

void Namespace::Truncate(Inode& inode, uint64_t size, OpContext& ctx) {
  if (size < inode.attr.size) {
    const uint64_t keep = RoundUp(size, config_.block_size);
    const uint64_t end = inode.extents.end();
    if (end > keep) {
      std::vector<PoolRange> freed;
      inode.extents.Remove(keep, end - keep, &freed);
      space_.Free(freed, ctx);
    }
  }
  inode.attr.size = size;
}

// Changes the flags of the allocated parts of [start, end) to (flags | set) & ~clear,
// keeping their blocks.
static void Reflag(ExtentMap& map, uint64_t start, uint64_t end, uint32_t set, uint32_t clear) {
  if (end <= start) return;
  std::vector<Extent> found;
  map.Find(start, end - start, std::numeric_limits<size_t>::max(), &found);
  for (Extent e : found) {
    const uint32_t flags = (e.flags | set) & ~clear;
    if (flags == e.flags) continue;
    std::vector<PoolRange> ignored;  // the blocks stay with the file
    map.Remove(e.file_offset, e.length, &ignored);
    e.flags = flags;
    map.Insert(e);
  }
}

int Namespace::DoAllocate(const AllocateRequest& req, OpContext& ctx, AllocateReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (in->is_dir()) return EISDIR;
  if (!in->is_reg()) return EINVAL;
  // The data operations name an inode, not an open handle: they need the modes'
  // permission, with the owner's override (permissions.h).
  if (int e = perm::MayAccessOwnerOverride(ctx.caller, AclXattrs::SubjectOf(*in), perm::kWrite)) return e;
  if (req.length == 0) return EINVAL;
  if (req.offset > kMaxFileSize || req.length > kMaxFileSize - req.offset) return EFBIG;
  const uint64_t bs = config_.block_size;
  // One reply must be able to describe the range even if every block were its own
  // extent.
  const uint64_t max_len = uint64_t{kMaxExtentsPerReply / 2} * bs;
  if (req.length > max_len) return EINVAL;
  if (ctx.metadata_full) return ENOSPC;
  const uint64_t start = RoundDown(req.offset, bs);
  const uint64_t end = RoundUp(req.offset + req.length, bs);
  uint64_t alloc_end = end;
  if (req.offset + req.length > in->attr.size) {
    // An append: allocate to the end of the stripe unit so that the next small appends
    // need no Allocate.
    alloc_end = std::min(RoundUp(end, config_.stripe_unit), RoundUp(kMaxFileSize, bs));
    alloc_end = std::max(alloc_end, end);
  }
  // Blocks past EOF are speculative until committed: if the commit never comes, the last
  // release (or the lease's expiry) gives them back.
  const uint64_t spec_from = std::max(start, RoundUp(in->attr.size, bs));
  if (int e = AllocateHoles(*in, start, alloc_end, spec_from, ctx)) return e;
  bool truncated = in->extents.Find(start, alloc_end - start, kMaxExtentsPerReply, &reply->extents);
  if (truncated) {
    // Pathological fragmentation past the asked range: answer for the range itself.
    reply->extents.clear();
    in->extents.Find(start, end - start, kMaxExtentsPerReply, &reply->extents);
  }
  return 0;
}

int Namespace::DoCommit(const CommitRequest& req, OpContext& ctx, AttrReply* reply) {
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (in->is_dir()) return EISDIR;
  if (!in->is_reg()) return EINVAL;
  if (int e = perm::MayAccessOwnerOverride(ctx.caller, AclXattrs::SubjectOf(*in), perm::kWrite)) return e;
  const uint64_t bs = config_.block_size;
  if ((req.valid & CommitRequest::kSize) && req.new_size > kMaxFileSize) return EFBIG;
  if (req.written.size() > kMaxWrittenRanges) return EINVAL;
  std::vector<ByteRange> holes;
  for (const ByteRange& r : req.written) {
    if (r.length == 0 || r.offset % bs != 0 || r.length % bs != 0) return EINVAL;
    if (r.offset > RoundUp(kMaxFileSize, bs) || r.length > RoundUp(kMaxFileSize, bs) - r.offset) {
      return EFBIG;
    }
    // Only blocks allocated to this file can be committed (a stale layout after a
    // truncate, or a confused client, must not mark anything).
    holes.clear();
    in->extents.Holes(r.offset, r.length, &holes);
    if (!holes.empty()) return EINVAL;
  }
  for (const ByteRange& r : req.written) in->extents.MarkWritten(r.offset, r.length);
  if (req.valid & CommitRequest::kSize) in->attr.size = std::max(in->attr.size, req.new_size);
  const Timespec t = (req.mtime == Timespec{}) ? ctx.now : req.mtime;
  in->attr.mtime = t;
  in->attr.ctime = t;
  // A write by anyone but root takes the file's set-ID privileges away.
  in->attr.mode = perm::ModeAfterWrite(ctx.caller, in->attr.mode);
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::DoFallocate(const FallocateRequest& req, OpContext& ctx, AttrReply* reply) {
  const uint32_t mode = req.mode;
  const bool keep = mode & FALLOC_FL_KEEP_SIZE;
  const uint32_t kind = mode & ~uint32_t{FALLOC_FL_KEEP_SIZE};
  if (kind != 0 && kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE) return EOPNOTSUPP;
  if (kind == FALLOC_FL_PUNCH_HOLE && !keep) return EOPNOTSUPP;  // as vfs_fallocate
  Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (in->is_dir()) return EISDIR;
  if (!in->is_reg()) return ENODEV;
  if (int e = perm::MayAccessOwnerOverride(ctx.caller, AclXattrs::SubjectOf(*in), perm::kWrite)) return e;
  if (req.length == 0) return EINVAL;
  if (req.offset > kMaxFileSize || req.length > kMaxFileSize - req.offset) return EFBIG;
  const uint64_t bs = config_.block_size;
  const uint64_t end = req.offset + req.length;
  // Whole blocks inside the range (punch / zero) and the blocks touching it (allocate).
  const uint64_t inner_start = RoundUp(req.offset, bs);
  const uint64_t inner_end = RoundDown(end, bs);
  const uint64_t outer_start = RoundDown(req.offset, bs);
  const uint64_t outer_end = RoundUp(end, bs);
  if (kind == FALLOC_FL_PUNCH_HOLE) {
    if (inner_end > inner_start) {
      std::vector<PoolRange> freed;
      in->extents.Remove(inner_start, inner_end - inner_start, &freed);
      space_.Free(freed, ctx);
    }
  } else {
    // A record lists every allocated range; keep one fallocate's record bounded.
    const uint64_t pieces = (outer_end - outer_start) / config_.stripe_unit + 2;
    if (pieces > (1u << 16)) return EFBIG;
    if (ctx.metadata_full) return ENOSPC;
    // Zero range: the whole blocks get fresh (zeroed) ones. Marking the old ones
    // unwritten would keep their bytes, which a later partial write would bring back to
    // light, since a client writes only its own bytes into an unwritten block.
    std::vector<Extent> replaced;
    std::vector<PoolRange> freed;
    if (kind == FALLOC_FL_ZERO_RANGE && inner_end > inner_start) {
      in->extents.Find(inner_start, inner_end - inner_start,
                       std::numeric_limits<size_t>::max(), &replaced);
      in->extents.Remove(inner_start, inner_end - inner_start, &freed);
    }
    if (int e =
            AllocateHoles(*in, outer_start, outer_end, std::numeric_limits<uint64_t>::max(), ctx)) {
      // A failed mutation changes nothing (it is journaled by its errno alone).
      for (const Extent& x : replaced) in->extents.Insert(x);
      return e;
    }
    space_.Free(freed, ctx);
    // fallocate'd blocks are never reclaimed as speculative.
    Reflag(in->extents, outer_start, outer_end, 0, Extent::kSpeculative);
    if (!keep) in->attr.size = std::max(in->attr.size, end);
  }
  in->attr.mode = perm::ModeAfterFallocate(ctx.caller, in->attr.mode, in->attr.gid);
  in->attr.mtime = ctx.now;
  in->attr.ctime = ctx.now;
  reply->attr = AttrOf(*in);
  return 0;
}

int Namespace::ReadLayout(const LayoutRequest& req, const Credentials& caller,
                          LayoutReply* reply) const {
  const Inode* in = Find(req.ino);
  if (in == nullptr) return ENOENT;
  if (in->is_dir()) return EISDIR;
  if (!in->is_reg()) return EINVAL;
  // Where the bytes are is as good as the bytes (who may ask: permissions.h).
  if (int e = perm::MayReadLayout(caller, AclXattrs::SubjectOf(*in))) return e;
  reply->attr = AttrOf(*in);
  // Extents are block-aligned on the wire (meta_protocol.h): widen an unaligned range
  // to whole blocks, since Find clips extents to the range it is given.
  const uint64_t bs = config_.block_size;
  const uint64_t start = req.offset / bs * bs;
  uint64_t end;
  if (req.length == 0) {
    end = in->extents.end();
    if (end <= start) return 0;
  } else {
    const uint64_t last = req.offset + std::min(req.length, ~uint64_t{0} - req.offset);
    end = last > ~uint64_t{0} - (bs - 1) ? last / bs * bs : (last + bs - 1) / bs * bs;
    if (end <= start) return 0;
  }
  reply->truncated = in->extents.Find(start, end - start, kMaxExtentsPerReply, &reply->extents);
  return 0;
}

int Namespace::ReadStatfs(const StatfsRequest&, const Credentials& /*caller*/,
                          StatfsReply* reply) const {
  const uint64_t bs = config_.block_size;
  reply->block_size = static_cast<uint32_t>(bs);
  reply->total_blocks = total_bytes() / bs;
  reply->free_blocks = free_bytes() / bs;
  reply->total_inodes = config_.max_inodes;
  reply->free_inodes =
      config_.max_inodes > inodes_.size() ? config_.max_inodes - inodes_.size() : 0;
  reply->name_max = kMaxNameLength;
  return 0;
}

}  // namespace dpmfs::meta
