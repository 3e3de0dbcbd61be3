#include "fs/file_io.h"

#include "fs/client_metrics.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <tuple>

namespace dpmfs::fs {

using meta::Extent;
using meta::InodeAttr;
using meta::Timespec;

namespace {

uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool Later(const Timespec& a, const Timespec& b) {
  return std::tie(a.sec, a.nsec) > std::tie(b.sec, b.nsec);
}

bool AllWritten(const std::vector<Segment>& segs) {
  for (const Segment& s : segs) {
    if (s.kind != Segment::Kind::kWritten) return false;
  }
  return true;
}

// The write pieces of this thread's current operation: cleared, capacity kept, so that
// building them allocates nothing once the thread has written as many pieces before.
// No operation nests another's write.
std::vector<datapath::WritePiece>& ScratchWritePieces() {
  thread_local std::vector<datapath::WritePiece> pieces;
  pieces.clear();
  return pieces;
}

bool AnyHole(const std::vector<Segment>& segs) {
  for (const Segment& s : segs) {
    if (s.kind == Segment::Kind::kHole) return true;
  }
  return false;
}

// How long a write or read keeps renewing a session token that data servers refuse as
// stale before it fails: the metadata server publishes the epoch right after the last
// fence is installed, but installing one may wait out a dying server's timeout.
constexpr std::chrono::seconds kStaleTokenWait{15};
constexpr std::chrono::milliseconds kStaleBackoffMin{10};
constexpr std::chrono::milliseconds kStaleBackoffMax{250};

// A data-path failure as the engine answers it: EIO whatever the transfer's code (a
// lost data server is ENOTCONN to the transfer, but to a file's reader or writer it is
// an I/O error), with the transfer's own Status kept in the message.
Status DataPathError(std::string_view what, const Status& transfer) {
  return Status::Posix(EIO, fmt::format("{}: {}", what, transfer.ToString()));
}

}  // namespace

Timespec Now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Timespec{ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec)};
}

FileIo::FileIo(ExtentService& meta, datapath::DataTransfer& data, const meta::ClusterInfo& cluster,
               const FileIoOptions& options)
    : meta_(meta),
      data_(data),
      cluster_(cluster),
      options_(options),
      block_size_(cluster.block_size != 0 ? cluster.block_size : 4096),
      stripe_unit_(cluster.stripe_unit != 0 ? cluster.stripe_unit : block_size_),
      placement_(PlacementOf(cluster, block_size_)),
      view_(placement_.servers(), stripe_unit_) {}

static_assert(datapath::kMaxReplicas == meta::kMaxReplicas);

meta::Placement FileIo::PlacementOf(const meta::ClusterInfo& cluster, uint32_t block_size) {
  Result<meta::Placement> p = meta::Placement::For(cluster);
  if (p.ok()) return std::move(p).value();
  if (!cluster.servers.empty()) {
    spdlog::error("the cluster's placement is unusable ({}); one copy of each block assumed",
                  p.status().ToString());
  }
  // A cluster description without servers (tests of the engine alone): one copy.
  std::vector<uint64_t> sizes(std::max<size_t>(1, cluster.servers.size()), 0);
  return meta::Placement::Make(1, block_size, sizes).value();
}

template <class Piece>
void FileIo::AddCopies(std::vector<Piece>* pieces) const {
  const uint32_t replicas = placement_.replicas();
  if (replicas == 1) return;
  for (Piece& p : *pieces) {
    p.more.count = replicas - 1;
    for (uint32_t k = 1; k < replicas; ++k) {
      const meta::ReplicaLocation at = placement_.Replica(p.where.server, p.where.pool_offset, k);
      p.more.at[k - 1] = datapath::PieceLocation{at.server, at.pool_offset};
    }
  }
}

Status FileIo::ValidateExtents(const std::vector<Extent>& extents) const {
  for (const Extent& e : extents) {
    const char* why = nullptr;
    if (e.length == 0) {
      why = "is empty";
    } else if (e.file_offset % block_size_ != 0 || e.length % block_size_ != 0 ||
               e.pool_offset % block_size_ != 0) {
      why = "is not block-aligned";
    } else if (e.file_offset > meta::kMaxFileSize ||
               e.length > meta::kMaxFileSize - e.file_offset) {
      why = "lies past the largest file size";
    } else if (e.server >= data_.num_servers()) {
      why = "names an unknown data server";
    } else if (e.server < cluster_.servers.size() && cluster_.servers[e.server].data_size != 0 &&
               (e.pool_offset > cluster_.servers[e.server].data_size ||
                e.length > cluster_.servers[e.server].data_size - e.pool_offset)) {
      why = "lies outside its data server's pool";
    } else if (placement_.replicas() > 1 &&
               !placement_.InPrimaryRegion(e.server, e.pool_offset, e.length)) {
      why = "lies outside its data server's primary region (metadata/placement.h)";
    }
    if (why != nullptr) {
      return Status::Posix(
          EIO, fmt::format("the metadata server sent an extent that {} (file offset {}, length "
                           "{}, server {}, pool offset {})",
                           why, e.file_offset, e.length, e.server, e.pool_offset));
    }
  }
  return Status::OK();
}

void FileIo::KnowEmptyLayout(Inode& inode) {
  LayoutCache& layout = inode.layout();
  (void)layout.InsertFetched(layout.epoch(), {}, 0, meta::kMaxFileSize,
                             LayoutCache::Clock::now() + options_.layout_ttl);
}

Status FileIo::WithinLayoutTtl(const char* what, const std::function<Status()>& request,
                               LayoutCache::Clock::time_point* valid_until) {
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    *valid_until = LayoutCache::Clock::now() + options_.layout_ttl;
    DPMFS_RETURN_IF_ERROR(request());
    if (LayoutCache::Clock::now() < *valid_until) return Status::OK();
    if (attempt == kAttempts) {
      return Status::Posix(EIO, fmt::format("{} replies took longer than the {} ms layout TTL "
                                            "{} times; giving up",
                                            what, options_.layout_ttl.count(), kAttempts));
    }
  }
}

Status FileIo::FetchLayout(Inode& inode, uint64_t begin, uint64_t end,
                           std::vector<Segment>* segs, uint64_t map_begin, uint64_t map_end) {
  uint64_t epoch = 0;
  std::vector<Extent> all;
  auto fetch = [&]() -> Status {
    epoch = inode.layout().epoch();
    all.clear();
    uint64_t pos = begin;
    while (pos < end) {
      meta::LayoutRequest req{inode.ino(), pos, end - pos};
      meta::LayoutReply rep;
      DPMFS_RETURN_IF_ERROR(meta_.Layout(req, &rep));
      DPMFS_RETURN_IF_ERROR(ValidateExtents(rep.extents));
      uint64_t known_end = end;
      if (rep.truncated) {
        if (rep.extents.empty() ||
            rep.extents.back().file_offset + rep.extents.back().length <= pos) {
          return Status::Posix(
              EIO, fmt::format("the metadata server's layout reply stopped without progress "
                               "at offset {}",
                               pos));
        }
        known_end = std::min(end, rep.extents.back().file_offset + rep.extents.back().length);
      }
      all.insert(all.end(), rep.extents.begin(), rep.extents.end());
      pos = known_end;
    }
    return Status::OK();
  };
  LayoutCache::Clock::time_point valid_until;
  DPMFS_RETURN_IF_ERROR(WithinLayoutTtl("layout", fetch, &valid_until));
  if (inode.layout().InsertFetched(epoch, all, begin, end, valid_until)) {
    if (inode.layout().Map(map_begin, map_end, segs)) return Status::OK();
  }
  // The inode's cache changed while the layout was on its way (a commit, a truncate):
  // this reply may be older than the cache, so it serves this operation only.
  LayoutCache scratch;
  (void)scratch.InsertFetched(scratch.epoch(), all, begin, end);
  if (!scratch.Map(map_begin, map_end, segs)) {  // cannot happen: all is known
    return Status::Posix(EIO, fmt::format("the layout fetched over [{}, {}) does not map [{}, {})",
                                          begin, end, map_begin, map_end));
  }
  return Status::OK();
}

Status FileIo::MapRange(Inode& inode, uint64_t begin, uint64_t end,
                        std::vector<Segment>* segs) {
  if (inode.layout().Map(begin, end, segs)) return Status::OK();
  uint64_t window = std::max<uint64_t>(AlignUp(options_.layout_window, stripe_unit_), stripe_unit_);
  uint64_t wb = AlignDown(begin, window);
  uint64_t we = std::min(AlignUp(end, window), AlignUp(meta::kMaxFileSize, window));
  return FetchLayout(inode, wb, we, segs, begin, end);
}

Status FileIo::Read(Inode& inode, uint64_t offset, size_t len, uint8_t* buf, size_t* n) {
  *n = 0;
  uint64_t size = inode.size();
  if (len == 0 || offset >= size) return Status::OK();
  uint64_t end = offset + std::min<uint64_t>(len, size - offset);
  std::vector<Segment> segs;
  DPMFS_RETURN_IF_ERROR(MapRange(inode, offset, end, &segs));

  // Holes and unwritten blocks read as zeros here; written extents are one-sided
  // READs, all servers at once (datapath::DataTransfer).
  thread_local std::vector<datapath::ReadPiece> pieces;  // keeps its capacity
  pieces.clear();
  for (const Segment& s : segs) {
    uint8_t* dst = buf + (s.file_offset - offset);
    if (s.kind != Segment::Kind::kWritten) {
      std::memset(dst, 0, s.length);
      continue;
    }
    pieces.push_back(datapath::ReadPiece{{s.server, s.pool_offset}, s.length, dst});
  }
  AddCopies(&pieces);
  Status read_st;
  {
    metrics::ScopedLatency timed(ClientMetrics::Get().data_read());
    read_st = placement_.replicas() > 1 ? ReadReplicated(pieces) : data_.Read(pieces);
  }
  ClientMetrics::Get().AddRead(end - offset, read_st.ok());
  if (Status st = std::move(read_st); !st.ok()) {
    return DataPathError(fmt::format("read of {} bytes at {}", end - offset, offset), st);
  }
  *n = end - offset;
  return Status::OK();
}

void FileIo::AddPiece(uint32_t server, uint64_t pool_offset, uint64_t begin, uint64_t end,
                      uint64_t data_offset, const uint8_t* data,
                      std::vector<datapath::WritePiece>* pieces) {
  if (begin >= end) return;
  const uint8_t* source = data != nullptr ? data + (begin - data_offset) : nullptr;
  // Continue the previous piece when this one follows it, on the same server and in
  // the same source (the transfer splits pieces into I/Os itself).
  if (!pieces->empty()) {
    datapath::WritePiece& last = pieces->back();
    if (last.where.server == server &&
        last.where.pool_offset + last.length == pool_offset &&
        (last.source == nullptr ? source == nullptr
                                : source != nullptr && last.source + last.length == source)) {
      last.length += end - begin;
      return;
    }
  }
  pieces->push_back(datapath::WritePiece{{server, pool_offset}, end - begin, source});
}

Status FileIo::WritePieces(std::vector<datapath::WritePiece>& pieces) {
  AddCopies(&pieces);
  uint64_t bytes = 0;
  for (const datapath::WritePiece& p : pieces) bytes += p.length;  // the file's bytes, copies aside
  Status st;
  {
    metrics::ScopedLatency timed(ClientMetrics::Get().data_write());
    st = placement_.replicas() > 1 ? WriteReplicated(pieces) : data_.Write(pieces);
  }
  ClientMetrics::Get().AddWritten(bytes, st.ok());
  if (!st.ok()) return DataPathError("write", st);
  return Status::OK();
}

void FileIo::RefreshClusterView(bool force) {
  if (!force && meta_.latest_epoch() <= view_.epoch()) return;
  meta::ClusterMapReply map;
  if (Status st = meta_.GetClusterMap(&map); st.ok()) {
    view_.Update(map);
  } else if (st.posix_errno() != ENOSYS) {
    spdlog::warn("fetching the cluster map: {}", st.ToString());
  }
}

bool FileIo::RecheckDownServers() {
  bool changed = false;
  for (uint32_t server = 0; server < placement_.servers(); ++server) {
    if (view_.IsDown(server) && Reachable(server)) {
      meta::ClusterMapReply map;
      const uint64_t before = view_.epoch();
      if (meta_.ReportDataServer(meta::ReportDataServerRequest{server, before}, &map).ok()) {
        view_.Update(map);
        changed |= view_.epoch() != before;
      }
    }
  }
  return changed;
}

bool FileIo::Reachable(uint32_t server) {
  uint8_t byte = 0;
  const datapath::ReadPiece probe{{server, 0}, 1, &byte};
  const Status st = data_.Read({&probe, 1});
  // A server that refuses this client's token as stale answered: it is this client that
  // is behind (the caller renews the token), not the server that is gone.
  return st.ok() || datapath::IsStaleEpoch(st);
}

uint64_t FileIo::TokenEpoch() const {
  const std::shared_ptr<datapath::SessionTokenSource>& token = data_.options().client.token;
  return token != nullptr ? token->epoch() : 0;
}

bool FileIo::RecoverFromStaleToken(std::chrono::steady_clock::time_point deadline,
                                   std::chrono::milliseconds* backoff) {
  const uint64_t before = TokenEpoch();
  if (Status st = meta_.RenewDataToken(); !st.ok() && st.posix_errno() != ENOSYS) {
    spdlog::warn("renewing the session token after a data server refused it as stale: {}",
                 st.ToString());
  }
  RefreshClusterView(true);
  if (TokenEpoch() > before) return true;
  if (std::chrono::steady_clock::now() + *backoff > deadline) return false;
  std::this_thread::sleep_for(*backoff);
  *backoff = std::min(*backoff * 2, kStaleBackoffMax);
  return true;
}

template <class Piece>
bool FileIo::ReportUnreachable(const std::vector<Piece>& pieces, uint64_t epoch,
                               const Status& failure) {
  bool reported = false;
  uint32_t checked[64];
  size_t n_checked = 0;
  for (const Piece& p : pieces) {
    for (uint32_t c = 0; c <= p.more.count; ++c) {
      const uint32_t server = c == 0 ? p.where.server : p.more.at[c - 1].server;
      if (std::find(checked, checked + n_checked, server) != checked + n_checked) continue;
      if (n_checked < std::size(checked)) checked[n_checked++] = server;
      if (Reachable(server)) continue;
      meta::ClusterMapReply map;
      Status st = meta_.ReportDataServer(meta::ReportDataServerRequest{server, epoch}, &map);
      if (st.ok()) view_.Update(map);
      spdlog::warn("data server {} does not answer ({}); reported it to the metadata server, "
                   "which has it {}",
                   server, failure.ToString(),
                   st.ok() && server < map.servers.size()
                       ? std::string(meta::DataServerStateName(map.servers[server].state))
                       : st.ToString());
      reported = true;
    }
  }
  return reported;
}

Status FileIo::ReadReplicated(std::vector<datapath::ReadPiece>& pieces) {
  // The copies as placed; each attempt keeps those its map lets it read.
  thread_local std::vector<datapath::ReadPiece> all;
  all.assign(pieces.begin(), pieces.end());
  Status last;
  const auto stale_deadline = std::chrono::steady_clock::now() + kStaleTokenWait;
  std::chrono::milliseconds backoff = kStaleBackoffMin;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // A resyncing server may still hold stale bytes, a down one none: read the up
    // copies. A second attempt (the first failed on copies the map had up) decides with
    // a fresh map: a server that came back may be up by now.
    RefreshClusterView(attempt > 0);
    pieces.assign(all.begin(), all.end());
    Status st = view_.KeepReadableCopies(pieces);
    if (!st.ok() && RecheckDownServers()) {
      pieces.assign(all.begin(), all.end());
      st = view_.KeepReadableCopies(pieces);
    }
    DPMFS_RETURN_IF_ERROR(st);
    last = data_.Read(pieces);
    if (last.ok()) return last;
    // Refused as stale (the fence rose): not an attempt; a fresh token and map first.
    if (datapath::IsStaleEpoch(last) && RecoverFromStaleToken(stale_deadline, &backoff)) {
      --attempt;
      continue;
    }
    if (attempt == 0) ReportUnreachable(pieces, view_.epoch(), last);
  }
  return last;
}

Status FileIo::WriteReplicated(std::vector<datapath::WritePiece>& pieces) {
  // Each failed attempt either finds a server that does not answer (reported: the
  // metadata server probes it and takes it down, and the next attempt writes without
  // it) or refreshes the map; a server that answers probes but keeps failing writes
  // ends in EIO after these many.
  constexpr int kAttempts = 4;
  thread_local std::vector<datapath::WritePiece> live;       // this attempt's copies
  thread_local std::vector<meta::PrimaryRange> to_mark;      // units losing a copy
  Status last;
  const auto stale_deadline = std::chrono::steady_clock::now() + kStaleTokenWait;
  std::chrono::milliseconds backoff = kStaleBackoffMin;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    RefreshClusterView(false);
    live.assign(pieces.begin(), pieces.end());
    uint64_t epoch = 0;
    if (Status st = view_.DropDownCopies(live, &to_mark, &epoch); !st.ok()) {
      if (RecheckDownServers()) continue;
      return st;
    }
    if (!to_mark.empty()) {
      // Recorded before the write goes out: once the data is on the survivors only,
      // the down server's copy is stale, and its resync must know (docs/replication.md).
      Status st;
      for (size_t i = 0; i < to_mark.size() && st.ok(); i += meta::kMaxDegradedRanges) {
        meta::MarkDegradedRequest req;
        req.epoch = epoch;
        req.ranges.assign(to_mark.begin() + i,
                          to_mark.begin() + std::min(to_mark.size(), i + meta::kMaxDegradedRanges));
        st = meta_.MarkDegraded(req);
      }
      if (st.posix_errno() == ESTALE) {  // the map moved on: decide again with the new one
        RefreshClusterView(true);
        continue;
      }
      if (!st.ok()) {
        return Status::Posix(EIO, fmt::format("recording a write with a copy down: {}",
                                              st.ToString()));
      }
      view_.Marked(epoch, to_mark);
    }
    last = data_.Write(live);
    if (last.ok()) {
      // Fencing (docs/replication.md): every connection this write used carried a token
      // of an epoch <= the token's epoch now. Not above the epoch the copies were chosen
      // in: every server of the current write set either has the write or is fenced
      // above that epoch, which refused or revoked the connection (it would have failed).
      // Above it: the token moved on while the copies were chosen from an older map,
      // and a change in between may have added a server that this write skipped, so
      // it goes again, to the copies of the new map (a write is idempotent).
      if (TokenEpoch() <= epoch) return Status::OK();
      last = Status::Unavailable(fmt::format(
          "the write's copies were chosen in epoch {} and the cluster map moved on to {} "
          "before it could be confirmed", epoch, TokenEpoch()));
      RefreshClusterView(true);
      continue;
    }
    if (datapath::IsStaleEpoch(last) && RecoverFromStaleToken(stale_deadline, &backoff)) {
      // The fence rose above this client's token: not a failure of any server, and not
      // an attempt. Written again to the new map's copies with the fresh token.
      --attempt;
      continue;
    }
    // Which of the servers failed? The pool dropped the failed connections, so a
    // one-byte read connects afresh.
    const bool reported = ReportUnreachable(live, epoch, last);
    if (!reported) RefreshClusterView(true);
  }
  return last;  // Write makes it the file's EIO, as for one copy
}

Status FileIo::Write(Inode& inode, uint64_t offset, const uint8_t* data, size_t len) {
  if (len == 0) return Status::OK();
  if (offset > meta::kMaxFileSize || len > meta::kMaxFileSize - offset) {
    return Status::Posix(EFBIG, fmt::format("a write of {} bytes at {} ends past the largest "
                                            "file size ({})",
                                            len, offset, meta::kMaxFileSize));
  }
  const uint64_t end = offset + len;
  const Timespec now = Now();
  std::vector<Segment> segs;
  DPMFS_RETURN_IF_ERROR(MapRange(inode, offset, end, &segs));
  if (end <= inode.size() && AllWritten(segs)) {
    // Overwrite of written blocks: data servers only (DESIGN.md "overwrite").
    std::vector<datapath::WritePiece>& pieces = ScratchWritePieces();
    for (const Segment& s : segs) {
      AddPiece(s.server, s.pool_offset, s.file_offset, s.file_offset + s.length, offset, data,
               &pieces);
    }
    DPMFS_RETURN_IF_ERROR(WritePieces(pieces));
    inode.NoteOverwrite(now);
    return Status::OK();
  }
  std::lock_guard<std::mutex> lock(inode.write_mutex());
  return SlowWrite(inode, offset, data, len, now);
}

Status FileIo::SlowWrite(Inode& inode, uint64_t offset, const uint8_t* data, size_t len,
                         const Timespec& now) {
  const uint64_t end = offset + len;
  const uint64_t bstart = AlignDown(offset, block_size_);
  const uint64_t bend = AlignUp(end, block_size_);
  std::vector<Segment> segs;
  // Under the mutex the cache may have moved on (another writer committed): look again.
  if (!inode.layout().Map(offset, end, &segs) || AnyHole(segs)) {
    meta::AllocateRequest req{inode.ino(), bstart, bend - bstart};
    meta::AllocateReply rep;
    // The server may hold an Allocate back while the space it needs is quarantined
    // (up to --free-quarantine-ms, longer than the layout TTL); the repeat of a late
    // reply finds the blocks allocated already and returns at once.
    LayoutCache::Clock::time_point valid_until;
    DPMFS_RETURN_IF_ERROR(WithinLayoutTtl(
        "allocate",
        [&]() -> Status {
          DPMFS_RETURN_IF_ERROR(meta_.Allocate(req, &rep));
          return ValidateExtents(rep.extents);
        },
        &valid_until));
    inode.layout().Insert(rep.extents, valid_until);
    if (!inode.layout().Map(offset, end, &segs) || AnyHole(segs)) {
      return Status::Posix(
          EIO, fmt::format("the metadata server's allocate reply does not cover [{}, {})", bstart,
                           bend));
    }
  }
  // Only the caller's bytes are written, also into unwritten blocks and past EOF: an
  // allocated block reads as zeros wherever nobody wrote it, and bytes past EOF are
  // zero (the metadata server keeps both so: metadata/namespace_files.cc). Zeroing
  // anything here, on the strength of a cached size or a cached unwritten flag, could
  // destroy what another client wrote and had acknowledged meanwhile.
  const uint64_t old_size = inode.size();
  std::vector<datapath::WritePiece>& pieces = ScratchWritePieces();
  std::vector<meta::ByteRange> written;
  for (const Segment& s : segs) {
    AddPiece(s.server, s.pool_offset, s.file_offset, s.file_offset + s.length, offset, data,
             &pieces);
    if (s.kind == Segment::Kind::kWritten) continue;
    // Commit marks whole blocks written (extents are block-aligned); the rest of each
    // block is zero already.
    uint64_t b0 = AlignDown(s.file_offset, block_size_);
    uint64_t b1 = AlignUp(s.file_offset + s.length, block_size_);
    if (!written.empty() && written.back().offset + written.back().length >= b0) {
      written.back().length = std::max(written.back().offset + written.back().length, b1) -
                              written.back().offset;
    } else {
      written.push_back(meta::ByteRange{b0, b1 - b0});
    }
  }
  if (written.size() > meta::kMaxWrittenRanges) {
    return Status::Posix(EIO, fmt::format("a write of {} bytes spans {} unwritten ranges (limit {})",
                                          len, written.size(), meta::kMaxWrittenRanges));
  }
  spdlog::trace("inode {}: write [{}, +{}): {} segments, {} pieces, {} unwritten ranges",
                inode.ino(), offset, len, segs.size(), pieces.size(), written.size());
  DPMFS_RETURN_IF_ERROR(WritePieces(pieces));

  const bool grows = end > old_size;
  if (written.empty() && !grows) {
    inode.NoteOverwrite(now);
    return Status::OK();
  }
  // The data is durable; now make it part of the file (DESIGN.md "append / hole fill").
  meta::CommitRequest commit;
  commit.ino = inode.ino();
  commit.valid = grows ? meta::CommitRequest::kSize : 0;
  commit.new_size = grows ? end : 0;
  // Now, not `now`: a writer that queued for the mutex must not commit an mtime older
  // than the one committed before it.
  commit.mtime = Now();
  commit.written = written;
  InodeAttr attr;
  DPMFS_RETURN_IF_ERROR(meta_.Commit(commit, &attr));
  for (const meta::ByteRange& r : written)
    inode.layout().MarkWritten(r.offset, r.offset + r.length);
  inode.SetAttr(attr);
  if (grows) inode.GrowSize(end);
  return Status::OK();
}

Status FileIo::ZeroRange(Inode& inode, uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(inode.write_mutex());
  return ZeroRangeLocked(inode, offset, len);
}

Status FileIo::ModifyLayout(Inode& inode, const std::vector<meta::ByteRange>& zero_before,
                            const std::function<Status()>& op,
                            const std::vector<meta::ByteRange>& zero_after) {
  std::lock_guard<std::mutex> lock(inode.write_mutex());
  for (const meta::ByteRange& r : zero_before) {
    DPMFS_RETURN_IF_ERROR(ZeroRangeLocked(inode, r.offset, r.length));
  }
  Status st = op();
  inode.layout().Clear();  // even on error: the server may have done part of it
  if (!st.ok()) return st;
  for (const meta::ByteRange& r : zero_after) {
    DPMFS_RETURN_IF_ERROR(ZeroRangeLocked(inode, r.offset, r.length));
  }
  return Status::OK();
}

Status FileIo::ZeroRangeLocked(Inode& inode, uint64_t offset, uint64_t len) {
  if (len == 0 || offset >= meta::kMaxFileSize) return Status::OK();
  uint64_t end = offset + std::min(len, meta::kMaxFileSize - offset);
  std::vector<Segment> segs;
  DPMFS_RETURN_IF_ERROR(MapRange(inode, offset, end, &segs));
  std::vector<datapath::WritePiece>& pieces = ScratchWritePieces();
  for (const Segment& s : segs) {
    if (s.kind != Segment::Kind::kWritten) continue;
    AddPiece(s.server, s.pool_offset, s.file_offset, s.file_offset + s.length, 0, nullptr,
             &pieces);
  }
  if (pieces.empty()) return Status::OK();
  return WritePieces(pieces);
}

Status FileIo::FlushMtime(Inode& inode) {
  // Its reply carries the size: like every size this engine learns, it is taken under
  // the write mutex (see Inode::SetAttr).
  std::lock_guard<std::mutex> lock(inode.write_mutex());
  Timespec t;
  if (!inode.TakePendingMtime(&t)) return Status::OK();
  if (!Later(t, inode.server_attr().mtime)) return Status::OK();
  meta::CommitRequest commit;
  commit.ino = inode.ino();
  commit.mtime = t;
  InodeAttr attr;
  if (Status st = meta_.Commit(commit, &attr); !st.ok()) {
    inode.NoteOverwrite(t);  // still pending: the next flush tries again
    return st;
  }
  inode.SetAttr(attr);
  return Status::OK();
}

Status FileIo::Seek(Inode& inode, uint64_t offset, bool data, uint64_t* result) {
  std::vector<Extent> extents;
  uint64_t size = 0;
  uint64_t pos = offset;
  for (bool first = true;; first = false) {
    meta::LayoutRequest req{inode.ino(), pos, 0};
    meta::LayoutReply rep;
    DPMFS_RETURN_IF_ERROR(meta_.Layout(req, &rep));
    DPMFS_RETURN_IF_ERROR(ValidateExtents(rep.extents));
    if (first) size = rep.attr.size;
    extents.insert(extents.end(), rep.extents.begin(), rep.extents.end());
    if (!rep.truncated) break;
    if (rep.extents.empty() || rep.extents.back().file_offset + rep.extents.back().length <= pos) {
      return Status::Posix(
          EIO, fmt::format("the metadata server's layout reply stopped without progress at "
                           "offset {}",
                           pos));
    }
    pos = rep.extents.back().file_offset + rep.extents.back().length;
  }
  auto no_more = [&] {
    return Status::Posix(ENXIO, fmt::format("no {} at or after offset {} (size {})",
                                            data ? "data" : "hole", offset, size));
  };
  if (offset >= size) return no_more();
  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.file_offset < b.file_offset; });
  auto is_data = [](const Extent& e) { return (e.flags & Extent::kUnwritten) == 0; };
  if (data) {
    for (const Extent& e : extents) {
      if (!is_data(e) || e.file_offset + e.length <= offset) continue;
      uint64_t at = std::max(e.file_offset, offset);
      if (at >= size) return no_more();
      *result = at;
      return Status::OK();
    }
    return no_more();
  }
  uint64_t hole = offset;
  for (const Extent& e : extents) {
    if (e.file_offset + e.length <= hole) continue;
    if (e.file_offset > hole || !is_data(e)) break;
    hole = e.file_offset + e.length;
  }
  *result = std::min(hole, size);
  return Status::OK();
}

}  // namespace dpmfs::fs
