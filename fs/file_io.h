// The client's striped I/O engine: reads and writes a byte range of a file over its
// extents, one-sided to the data servers, with the metadata server involved only when
// the layout must change (DESIGN.md, "Write, read and create").
//
// Read: the range is clipped at the cached size and split at extent boundaries; holes
// and kUnwritten extents read as zeros; written extents are one-sided READs.
//
// Write:
//   - overwrite: the cached layout covers the range with written extents and the file
//     does not grow -> WRITE + persist to each data server, no metadata RPC. The mtime
//     is kept locally and committed lazily (FlushMtime at flush/fsync/release).
//   - otherwise (append, hole fill, unwritten blocks): under the inode's write mutex,
//     Allocate (if the layout is unknown or has holes) -> WRITE + persist -> Commit
//     (written blocks, new size if it grew, mtime). Only the caller's bytes are
//     written: the metadata server hands out blocks that read as zeros and keeps the
//     bytes past EOF zero, so no write pads or zeroes anything (two clients extending
//     one file must not zero each other's acknowledged bytes).
// Every write returns only after its data is durable under the persist method. The
// engine turns a range into a list of pieces (server, pool offset, length, buffer) and
// hands it to the transfer API (datapath/transfer.h), which moves every server's pieces
// at once; connections, slots, pipelining and retry are below it.
//
// Errors: every operation returns a Status carrying the POSIX errno it fails with
// (common/status.h), and says in its message what failed; the FUSE operations turn it
// into the kernel's errno and log the message, once (ErrnoAtEdge, fs/fuse_ops.h). The
// errnos: the metadata server's answer as it gave it; EIO for a data-path failure (a
// data server unreachable or failing the request; the transfer's own Status is in the
// message) and for a layout the server should never have sent; EFBIG past
// meta::kMaxFileSize; ENXIO from Seek. An OK Status allocates nothing: the read and
// write paths stay allocation-free.
//
// Thread-safety: thread-safe; any number of operations at once, on any inodes.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapath/transfer.h"
#include "fs/cluster_view.h"
#include "fs/inode_table.h"
#include "fs/layout_cache.h"
#include "metadata/meta_protocol.h"
#include "metadata/placement.h"

namespace dpmfs::fs {

// The metadata operations the engine needs: the mount's MetaApi (MetaExtentService in
// fs/fuse_ops.h), a fake in tests. Same contract as meta::MetaApi: a Status carrying
// the POSIX errno of a failure. Must be thread-safe.
class ExtentService {
 public:
  virtual ~ExtentService() = default;
  virtual Status Layout(const meta::LayoutRequest& req, meta::LayoutReply* reply) = 0;
  virtual Status Allocate(const meta::AllocateRequest& req, meta::AllocateReply* reply) = 0;
  virtual Status Commit(const meta::CommitRequest& req, meta::InodeAttr* attr) = 0;
  // The cluster map (replicated clusters only; meta::MetaApi's, same defaults).
  virtual Status GetClusterMap(meta::ClusterMapReply* /*reply*/) {
    return Status::Posix(ENOSYS, "no cluster map");
  }
  virtual Status ReportDataServer(const meta::ReportDataServerRequest& /*req*/,
                                  meta::ClusterMapReply* /*reply*/) {
    return Status::Posix(ENOSYS, "no cluster map");
  }
  virtual Status MarkDegraded(const meta::MarkDegradedRequest& /*req*/) {
    return Status::Posix(ENOSYS, "no cluster map");
  }
  virtual uint64_t latest_epoch() const { return 0; }
  virtual Status RenewDataToken() {
    return Status::Posix(ENOSYS, "no session tokens");
  }
};

struct FileIoOptions {
  // Bytes of layout fetched around a read that misses the cache (rounded to stripe
  // units): one Layout RPC then serves many later reads and overwrites.
  uint64_t layout_window = 64ull << 20;
  // How long a layout the server reported is trusted, from the moment its request was
  // sent (fs/layout_cache.h, "Expiry"). Must stay below the metadata server's
  // --free-quarantine-ms (3 s by default): the margin covers writes in flight.
  std::chrono::milliseconds layout_ttl{1000};
};

class FileIo {
 public:
  // `cluster` gives the block size, stripe unit and the data servers' sizes (the pool
  // indexes them the same way). Both references outlive the engine.
  FileIo(ExtentService& meta, datapath::DataTransfer& data, const meta::ClusterInfo& cluster,
         const FileIoOptions& options = {});

  // A file this client just created has no blocks: its whole layout is known without
  // asking (saves the first write a Layout RPC).
  void KnowEmptyLayout(Inode& inode);

  // Reads up to `len` bytes at `offset` into `buf`; *n gets the bytes read (short at EOF).
  Status Read(Inode& inode, uint64_t offset, size_t len, uint8_t* buf, size_t* n);
  // Writes `len` bytes at `offset`; durable on return.
  Status Write(Inode& inode, uint64_t offset, const uint8_t* data, size_t len);
  // Makes [offset, offset+len) read as zeros where the file has written blocks (holes
  // and unwritten blocks already do), with data writes. Used for the partial blocks
  // at the edges of a truncate, punch hole or zero range.
  Status ZeroRange(Inode& inode, uint64_t offset, uint64_t len);
  // Changes the file's layout on the server (truncate, fallocate, punch hole, zero
  // range) with `op`, under the inode's write mutex: first makes `zero_before` read as
  // zeros, then runs `op` (its failure is returned), drops the layout cache (the server
  // freed or added blocks), then zeros `zero_after`. Punch hole and zero range zero
  // their partial edge blocks after (the server frees or zeroes only whole blocks);
  // growing needs nothing (bytes past EOF are zero).
  Status ModifyLayout(Inode& inode, const std::vector<meta::ByteRange>& zero_before,
                      const std::function<Status()>& op,
                      const std::vector<meta::ByteRange>& zero_after);
  // Commits the mtime of lazily-committed overwrites, if one is pending and newer than
  // the server's.
  Status FlushMtime(Inode& inode);
  // lseek SEEK_DATA (data=true) / SEEK_HOLE from `offset`; kUnwritten counts as a hole.
  // ENXIO at or past EOF, or (SEEK_DATA) when no data follows.
  Status Seek(Inode& inode, uint64_t offset, bool data, uint64_t* result);

  uint32_t block_size() const { return block_size_; }

 private:
  // Maps [begin, end) from the cache, fetching the layout around it on a miss.
  Status MapRange(Inode& inode, uint64_t begin, uint64_t end, std::vector<Segment>* segs);
  // Layout RPCs over [begin, end) into `cache` (the inode's, at `epoch`, or a scratch
  // one when the inode's moved on).
  // Runs `request` (one metadata exchange whose reply names blocks: Layout, Allocate)
  // until its reply arrives within the layout TTL, i.e. before *valid_until (request
  // send time + TTL): a later reply may name blocks the server freed right after
  // answering. Returns request's failure, or EIO after 3 late replies.
  Status WithinLayoutTtl(const char* what, const std::function<Status()>& request,
                         LayoutCache::Clock::time_point* valid_until);
  Status FetchLayout(Inode& inode, uint64_t begin, uint64_t end, std::vector<Segment>* segs,
                     uint64_t map_begin, uint64_t map_end);
  // Checks extents from the server (alignment, bounds, server index); EIO if bad.
  Status ValidateExtents(const std::vector<meta::Extent>& extents) const;
  Status SlowWrite(Inode& inode, uint64_t offset, const uint8_t* data, size_t len,
                   const meta::Timespec& now);
  // Appends the write piece of file range [begin, end) at pool_offset of `server`,
  // continuing the previous piece when it is contiguous on the same server. Its source
  // is `data` at file offset `data_offset`, or zeros when data is null.
  static void AddPiece(uint32_t server, uint64_t pool_offset, uint64_t begin, uint64_t end,
                       uint64_t data_offset, const uint8_t* data,
                       std::vector<datapath::WritePiece>* pieces);
  // Writes the pieces through the transfer API; EIO on any data-path failure. Every
  // piece (built with its primary location) gets its other copies first.
  Status WritePieces(std::vector<datapath::WritePiece>& pieces);
  // WritePieces with more than one copy (docs/replication.md): to the copies that are
  // not down in the cluster map, after MarkDegraded of the units that lose a copy; a
  // failure makes it find the server that failed (a one-byte read), report it to the
  // metadata server and try again with the map that comes back.
  Status WriteReplicated(std::vector<datapath::WritePiece>& pieces);
  // Read with more than one copy: from the copies the map has up (or, for a piece with
  // none, resyncing), once more with a fresh map when that fails.
  Status ReadReplicated(std::vector<datapath::ReadPiece>& pieces);
  // Reports to the metadata server every server of `pieces` that does not answer a
  // one-byte read; takes the map it answers with. True when one was reported.
  template <class Piece>
  bool ReportUnreachable(const std::vector<Piece>& pieces, uint64_t epoch, const Status& failure);
  // Fetches the cluster map when the metadata server mentioned a newer epoch.
  void RefreshClusterView(bool force);
  // The epoch of the session token this client's new data connections carry (0: none).
  uint64_t TokenEpoch() const;
  // A data server refused the token as older than its fence (docs/replication.md,
  // "Fencing"): renews it now and fetches the map. When the renewal brought no newer
  // token (the metadata server is between installing a fence and publishing its
  // epoch), waits a little, longer each time (`*backoff`). False once `deadline` passed.
  bool RecoverFromStaleToken(std::chrono::steady_clock::time_point deadline,
                             std::chrono::milliseconds* backoff);
  // Whether data server `server` answers a one-byte read now.
  bool Reachable(uint32_t server);
  // Every copy of something is down in the view: reports the down servers that answer
  // again (the metadata server probes them and lets them back in, resyncing), so that
  // the first request after a server returns succeeds. True when the map changed.
  bool RecheckDownServers();
  // Fills each piece's other copies from the placement (nothing with one copy).
  template <class Piece>
  void AddCopies(std::vector<Piece>* pieces) const;
  static meta::Placement PlacementOf(const meta::ClusterInfo& cluster, uint32_t block_size);
  Status ZeroRangeLocked(Inode& inode, uint64_t offset, uint64_t len);

  ExtentService& meta_;
  datapath::DataTransfer& data_;
  const meta::ClusterInfo& cluster_;
  const FileIoOptions options_;
  const uint32_t block_size_;
  const uint32_t stripe_unit_;
  const meta::Placement placement_;  // where the copies of a block are
  ClusterView view_;                 // which copies are up (replicated clusters)
};

// The current time as the metadata protocol carries it (CLOCK_REALTIME).
meta::Timespec Now();

}  // namespace dpmfs::fs
