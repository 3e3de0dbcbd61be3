// Handlers of the cluster family (docs/replication.md, "Cluster map, epochs, failure"):
// the map as clients see it, their degraded-write records, and the server-internal
// records that move a data server between up, down and resyncing or log a resync's
// progress. All of them change only the ClusterMap component (cluster_map.h), and like
// every mutation decide everything before they change anything, so that replay of
// their records reproduces the map exactly.
#include <cerrno>

#include "common/byte_codec.h"
#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"

namespace dpmfs::meta {

std::vector<uint8_t> EncodeSetServerState(uint32_t server, DataServerState to, bool full_rebuild,
                                          uint64_t pool_instance) {
  std::vector<uint8_t> out(14);
  codec::ByteWriter w(out.data());
  w.U32("server", server);
  w.U8("state", static_cast<uint8_t>(to));
  w.U8("full rebuild", full_rebuild ? 1 : 0);
  w.U64("pool instance", pool_instance);
  return out;
}

std::vector<uint8_t> EncodeSetPoolInstance(uint32_t server, uint64_t pool_instance) {
  std::vector<uint8_t> out(12);
  codec::ByteWriter w(out.data());
  w.U32("server", server);
  w.U64("pool instance", pool_instance);
  return out;
}

std::vector<uint8_t> EncodeResyncProgress(uint32_t server, std::span<const DirtyUnit> units) {
  std::vector<uint8_t> out(8 + units.size() * 12);
  codec::ByteWriter w(out.data());
  w.U32("server", server);
  w.U32("count", static_cast<uint32_t>(units.size()));
  for (const DirtyUnit& u : units) {
    w.U32("primary", u.primary);
    w.U64("unit", u.unit);
  }
  return out;
}

int Namespace::ReadGetClusterMap(const GetClusterMapRequest&, const Credentials&,
                                 ClusterMapReply* reply) const {
  *reply = cluster_map_.Snapshot();
  return 0;
}

// MetaService probes the reported server itself (outside the namespace lock) and
// journals a state change as its own record before it gets here; this only answers
// with the map as it now stands.
int Namespace::ReadReportDataServer(const ReportDataServerRequest& req, const Credentials&,
                                    ClusterMapReply* reply) const {
  if (req.server >= cluster_map_.servers()) return EINVAL;
  *reply = cluster_map_.Snapshot();
  return 0;
}

int Namespace::DoMarkDegraded(const MarkDegradedRequest& req, OpContext&, EmptyReply*) {
  // A client that decided which copies are down from another epoch's map may have left
  // out a copy that is back (resyncing, in the write set): it must fetch the map again.
  if (req.epoch != cluster_map_.epoch()) return ESTALE;
  for (const PrimaryRange& r : req.ranges) {
    if (!cluster_map_.ValidPrimaryRange(r.server, r.pool_offset, r.length)) return EINVAL;
  }
  for (const PrimaryRange& r : req.ranges) cluster_map_.NoteWrite(r.server, r.pool_offset, r.length);
  return 0;
}

Result<std::vector<uint8_t>> Namespace::MutateClusterMap(uint16_t op,
                                                         std::span<const uint8_t> payload,
                                                         int* err) {
  codec::ByteReader r(payload, op == kOpSetServerState    ? "set-server-state record"
                               : op == kOpSetPoolInstance ? "set-pool-instance record"
                                                          : "resync-progress record");
  uint32_t server = 0;
  r.U32("server", server);
  if (op == kOpSetServerState) {
    uint8_t state = 0, full = 0;
    uint64_t instance = 0;
    r.U8("state", state);
    r.U8("full rebuild", full);
    // A record journaled before pool instances ends here.
    if (r.ok() && r.left() != 0) r.U64("pool instance", instance);
    r.Require(state <= static_cast<uint8_t>(DataServerState::kResyncing), "state",
              "is not up, down or resyncing");
    r.Require(full <= 1, "full rebuild", "is not 0 or 1");
    DPMFS_RETURN_IF_ERROR(r.Finish());
    const auto to = static_cast<DataServerState>(state);
    *err = cluster_map_.CheckTransition(server, to);
    if (*err == 0) cluster_map_.SetState(server, to, full != 0, instance);
  } else if (op == kOpSetPoolInstance) {
    uint64_t instance = 0;
    r.U64("pool instance", instance);
    DPMFS_RETURN_IF_ERROR(r.Finish());
    *err = cluster_map_.CheckSetPoolInstance(server, instance);
    if (*err == 0) cluster_map_.SetPoolInstance(server, instance);
  } else {
    uint32_t n = 0;
    r.U32("count", n);
    r.Require(n <= kMaxResyncUnitsPerRecord && uint64_t{n} * 12 <= r.left(), "count",
              "is more units than a record holds");
    std::vector<DirtyUnit> units(r.ok() ? n : 0);
    for (DirtyUnit& u : units) {
      r.U32("primary", u.primary);
      r.U64("unit", u.unit);
    }
    DPMFS_RETURN_IF_ERROR(r.Finish());
    *err = cluster_map_.CheckResyncDone(server, units);
    if (*err == 0) cluster_map_.ResyncDone(server, units);
  }
  return *err != 0 ? EncodeErrorReply(*err) : EncodeReply(EmptyReply{});
}

}  // namespace dpmfs::meta
