// ClusterMap: the metadata server's map of its data servers (docs/replication.md,
// "Cluster map, epochs, failure"), one component of the Namespace like Space and
// Sessions: an epoch, each data server's state (up | down | resyncing), and for each
// server the stripe units whose copy on it is stale (its dirty set), which a resync
// copies to it from an up copy.
//
// It is state: changed only by journaled mutations (Namespace::Mutate: the internal
// set-server-state and resync-progress records, MarkDegraded from clients, Allocate),
// carried by the checkpoint, and so recovered exactly. Every state change raises the
// epoch by one; a reply names an epoch only after the record that made it is durable
// (MetaService journals before it answers).
//
// Units: a dirty entry names a unit of a primary region, (primary server, pool offset /
// unit_bytes); the copy of that unit on server t is the placement's replica k with
// t = (primary + k) mod N (metadata/placement.h). Units are the stripe unit (1 MiB by
// default): one record per unit a client writes while a copy is down, one copy of the
// unit per resync step.
//
// Pool instances: each server's entry also names which format of its pool the map's
// copies are on (ServerInfo::pool_instance, the pool header's creation time), so that a
// pool deleted and formatted again at the same index is told from one that only missed
// some writes: it is rebuilt in full (docs/replication.md, "Full rebuild"). 0: not seen
// yet (a fresh map, a checkpoint from before the field).
//
// Thread-safety: none; guarded by the namespace lock like Namespace itself.
#pragma once

#include <compare>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/byte_codec.h"
#include "common/status.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

struct DirtyUnit {
  uint32_t primary = 0;  // the data server holding the unit's primary copy
  uint64_t unit = 0;     // primary pool offset / unit bytes
  auto operator<=>(const DirtyUnit&) const = default;
};

class ClusterMap {
 public:
  // `servers` data servers holding `replicas` copies of each block; dirty units of
  // `unit_bytes`; `primary_capacity` bytes of each server's primary region
  // (Placement::PrimaryCapacity). A fresh map: epoch 1, every server up.
  ClusterMap(uint32_t servers, uint32_t replicas, uint64_t unit_bytes, uint64_t primary_capacity);

  // Back to a fresh map (epoch 1, every server up, nothing dirty).
  void Reset();

  uint64_t epoch() const { return epoch_; }
  uint32_t servers() const { return static_cast<uint32_t>(states_.size()); }
  uint32_t replicas() const { return replicas_; }
  uint64_t unit_bytes() const { return unit_bytes_; }
  DataServerState state(uint32_t server) const { return states_[server].state; }
  bool all_up() const;

  // Whether `server` may go from its state to `to`: up -> down, down -> resyncing,
  // resyncing -> up (only with an empty dirty set), resyncing -> down. 0 or EINVAL
  // (unknown server, or not one of those moves).
  int CheckTransition(uint32_t server, DataServerState to) const;
  // Makes that move (checked first: CheckTransition must have said 0) and raises the
  // epoch. Entering resyncing starts a resync: its total is the dirty set then; and with
  // `full_rebuild` (a freshly formatted pool), every unit of the primary regions whose
  // copies live on the server is added first. A nonzero `pool_instance` becomes the
  // server's pool instance in the same step (the rebuild and the pool it is for are
  // recorded together: no replay sees one without the other).
  void SetState(uint32_t server, DataServerState to, bool full_rebuild = false,
                uint64_t pool_instance = 0);

  // ---- Pool instances ----
  // Which format of its pool `server`'s copies are on; 0: not seen yet.
  uint64_t pool_instance(uint32_t server) const { return states_[server].pool_instance; }
  // Records the pool instance first seen on `server` (changes no state and no epoch).
  // EINVAL for an unknown server or instance 0.
  int CheckSetPoolInstance(uint32_t server, uint64_t pool_instance) const;
  void SetPoolInstance(uint32_t server, uint64_t pool_instance);

  // The copies of primary range [pool_offset, pool_offset+length) of `primary` that lie
  // on down servers are stale from now on: their units join those servers' dirty sets.
  // Returns the number of units added. Nothing when every copy is up or resyncing.
  size_t NoteWrite(uint32_t primary, uint64_t pool_offset, uint64_t length);
  // Whether NoteWrite would accept the range (a known primary, inside its region).
  bool ValidPrimaryRange(uint32_t primary, uint64_t pool_offset, uint64_t length) const;

  // ---- Resync ----
  const std::set<DirtyUnit>& dirty(uint32_t server) const { return states_[server].dirty; }
  // Up to `max` units of `server`'s dirty set, in order.
  std::vector<DirtyUnit> NextDirty(uint32_t server, size_t max) const;
  // Those units are copied: out of the dirty set, counted as done. EINVAL (nothing
  // changed) when the server is not resyncing or a unit is not in its dirty set.
  int CheckResyncDone(uint32_t server, std::span<const DirtyUnit> units) const;
  void ResyncDone(uint32_t server, std::span<const DirtyUnit> units);
  // Where the copy of `u` on `server` lies (its offset in that pool) and how long it is.
  uint64_t CopyOffset(uint32_t server, const DirtyUnit& u) const;
  uint64_t UnitLength(const DirtyUnit& u) const;
  // The copy index k of `u` on `server` (0 = primary).
  uint32_t CopyIndex(uint32_t server, const DirtyUnit& u) const;

  // What a client sees: the epoch and each server's state and progress.
  ClusterMapReply Snapshot() const;

  // ---- Checkpoint (NamespaceCodec) ----
  template <class IO>
  void WriteTo(IO& w) const;
  // Replaces the map with one read from `r` (a checkpoint blob); stops at the first
  // problem (the reader carries it). `with_instances`: the blob carries each server's
  // pool instance (checkpoint version 3); without, they load as 0 (not seen yet).
  void ReadFrom(codec::ByteReader& r, bool with_instances);

 private:
  struct Server {
    DataServerState state = DataServerState::kUp;
    std::set<DirtyUnit> dirty;
    uint64_t resync_done_units = 0;
    uint64_t resync_total_units = 0;
    uint64_t pool_instance = 0;
  };
  uint64_t units_per_region() const { return (primary_capacity_ + unit_bytes_ - 1) / unit_bytes_; }

  uint32_t replicas_;
  uint64_t unit_bytes_;
  uint64_t primary_capacity_;
  uint64_t epoch_ = 1;
  std::vector<Server> states_;
};

template <class IO>
void ClusterMap::WriteTo(IO& w) const {
  w.U64("map epoch", epoch_);
  w.U32("map servers", servers());
  for (const Server& s : states_) {
    w.U8("map state", static_cast<uint8_t>(s.state));
    w.U64("map pool instance", s.pool_instance);
    w.U64("map resync done", s.resync_done_units);
    w.U64("map resync total", s.resync_total_units);
    w.U64("map dirty count", s.dirty.size());
    for (const DirtyUnit& u : s.dirty) {
      w.U32("map dirty primary", u.primary);
      w.U64("map dirty unit", u.unit);
    }
  }
}

}  // namespace dpmfs::meta
