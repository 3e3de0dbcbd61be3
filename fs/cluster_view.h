// The client's view of the cluster map (docs/replication.md, "Cluster map, epochs,
// failure"): which data servers are up, down or resyncing in which epoch, and which
// stripe units this client has already reported written while a copy was down in that
// epoch (MarkDegraded is sent once per unit per epoch).
//
// The I/O engine (file_io.h) asks it, for a replicated write, to drop the copies on
// down servers from each piece (every copy down: EIO at once, no waiting) and to name
// the units the metadata server must record before the write goes out; for a read, to
// keep only copies in the read set (up: a resyncing server may still be stale).
//
// Thread-safety: thread-safe (one mutex; writes of an unreplicated cluster never get
// here).
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "datapath/transfer.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

class ClusterView {
 public:
  // `unit_bytes`: the dirty-record unit (the stripe unit), as the metadata server's.
  ClusterView(uint32_t servers, uint64_t unit_bytes);

  uint64_t epoch() const;
  // Takes a map from the metadata server (GetClusterMap, ReportDataServer) if it is
  // newer than the one held. A map naming another number of servers is ignored.
  void Update(const meta::ClusterMapReply& map);
  bool IsUp(uint32_t server) const;
  bool IsDown(uint32_t server) const;

  // Write: removes from each piece the copies on down servers (the first copy left
  // becomes `where`). `*to_mark` gets the primary ranges of pieces that lost a copy and
  // hold units not yet marked in this epoch, `*epoch` the epoch the decision was made
  // in. EIO (nothing changed) when a piece has no copy left.
  Status DropDownCopies(std::vector<datapath::WritePiece>& pieces,
                        std::vector<meta::PrimaryRange>* to_mark, uint64_t* epoch) const;
  // The units of `ranges` were recorded by the metadata server in `epoch`.
  void Marked(uint64_t epoch, const std::vector<meta::PrimaryRange>& ranges);

  // Read: keeps only the copies that are up (the first one left becomes `where`), or
  // where a piece has none, the resyncing ones. EIO (nothing changed) when every copy
  // of a piece is down.
  Status KeepReadableCopies(std::vector<datapath::ReadPiece>& pieces) const;

 private:
  template <class Piece>
  static void Keep(Piece& p, const std::vector<bool>& keep_server);
  bool UnitsMarkedLocked(const meta::PrimaryRange& r) const;

  const uint64_t unit_bytes_;
  mutable std::mutex mu_;
  uint64_t epoch_ = 0;  // 0: no map yet (everything taken as up)
  std::vector<meta::DataServerState> states_;
  std::unordered_set<uint64_t> marked_;  // (server << 40 | unit), of epoch_
};

}  // namespace dpmfs::fs
