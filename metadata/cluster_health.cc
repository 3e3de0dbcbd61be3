// MetaService's part in the cluster map (docs/replication.md, "Cluster map, epochs,
// failure" and "Resync"): health probes of the data servers, the probe of a server a
// client reports, and the resync of a returning server. The map itself is a component
// of the namespace (cluster_map.h); every change to it is a journaled record applied
// through Namespace::Mutate under the exclusive lock, so a reply (or a heartbeat) names
// an epoch only once the record that made it is durable, and recovery restores it.
//
// Threads: the health thread (HealthLoop) probes every server each period and copies
// resync batches in between; RPC workers run HandleReport. Probes and copies run
// outside the namespace lock. Every state change goes through ChangeServerState
// (cluster_fence.cc), which fences the data servers before a change that needs it.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>

#include "metadata/meta_service.h"
#include "metadata/mutation.h"

namespace dpmfs::meta {

namespace {
// Failed probes in a row that take a server down: one lost probe (a connection reset
// by a restart of the server, a stall) is not a failure of the server.
constexpr uint32_t kProbesToDown = 2;
}  // namespace

ClusterMapReply MetaService::cluster_map() const {
  ReaderLock lock(mu_);
  return ns_->cluster_map().Snapshot();
}

int MetaService::MutateClusterMap(uint16_t op, const std::vector<uint8_t>& payload) {
  WriterLock lock(mu_);
  OpContext ctx;
  ctx.now = NowTimespec();
  int err = 0;
  auto r = ns_->Mutate(op, payload, ctx, &err);
  if (!r.ok()) {
    spdlog::error("cluster map record did not apply: {}", r.status().ToString());
    return EINVAL;
  }
  // A refused move changed nothing: no record (replay would refuse it the same way, but
  // it would only fill the journal).
  if (err != 0) return err;
  Journal(op, ctx, err, payload);
  n_mutations_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

void MetaService::ProbeAndUpdate(uint32_t server) {
  DataServerState state;
  {
    ReaderLock lock(mu_);
    state = ns_->cluster_map().state(server);
  }
  const Status st = options_.data_access->Probe(server);
  uint32_t failures = 0;
  {
    MutexLock lock(probe_mu_);
    failures = probe_failures_[server] = st.ok() ? 0 : probe_failures_[server] + 1;
  }
  // It answered with another pool than the map's: rebuilt in full, not resynced.
  if (st.ok() && CheckPoolInstance(server)) return;
  if (state == DataServerState::kDown) {
    if (!st.ok()) return;
    // Fenced first (cluster_fence.cc): once the epoch that puts it back in the write set
    // is visible, no writer of an older one is served anywhere in that set, so the copy
    // may start at once.
    if (ChangeServerState(server, DataServerState::kResyncing) == 0) {
      const ClusterMapReply map = cluster_map();
      spdlog::info("data server {} answers again: resyncing {} MiB it missed (epoch {})", server,
                   map.servers[server].resync_total_bytes >> 20, map.epoch);
    }
    return;
  }
  if (failures < kProbesToDown) return;
  if (ChangeServerState(server, DataServerState::kDown) == 0) {
    spdlog::warn("data server {} is down ({} probes failed, the last: {}); writes go to the "
                 "other copies and are recorded for its resync (epoch {})",
                 server, failures, st.ToString(), cluster_map().epoch);
  }
}

Result<std::vector<uint8_t>> MetaService::HandleReport(std::span<const uint8_t> body) {
  ReportDataServerRequest req;
  DPMFS_RETURN_IF_ERROR(Decode(body, &req));
  uint32_t servers = 0;
  {
    ReaderLock lock(mu_);
    servers = ns_->cluster_map().servers();
  }
  if (req.server < servers && options_.data_access != nullptr) {
    // A client's word is not enough to take a server out of the write set (its own
    // network may be at fault): probe it twice now, on fresh connections.
    spdlog::info("a client reports data server {} unreachable (its map: epoch {}); probing it",
                 req.server, req.epoch);
    for (uint32_t i = 0; i < kProbesToDown; ++i) {
      ProbeAndUpdate(req.server);
      ReaderLock lock(mu_);
      if (ns_->cluster_map().state(req.server) != DataServerState::kUp) break;
    }
  }
  n_reads_.fetch_add(1, std::memory_order_relaxed);
  ReaderLock lock(mu_);
  return ns_->Read(static_cast<uint16_t>(Opcode::kReportDataServer), body, Credentials{});
}

bool MetaService::ResyncBatch(uint32_t server) {
  std::vector<DirtyUnit> units;
  ClusterMapReply map;
  {
    ReaderLock lock(mu_);
    const ClusterMap& m = ns_->cluster_map();
    if (m.state(server) != DataServerState::kResyncing) return false;
    units = m.NextDirty(server, std::max<uint32_t>(1, options_.resync_batch_units));
    map = m.Snapshot();
  }
  int64_t copy_started = 0;
  {
    MutexLock lock(probe_mu_);
    if (resync_copy_start_ms_[server] == 0) resync_copy_start_ms_[server] = SteadyMs();
    copy_started = resync_copy_start_ms_[server];
  }
  if (units.empty()) {
    if (ChangeServerState(server, DataServerState::kUp) == 0) {
      // The rate counts the copying only (from the first batch), not the wait before it.
      const double seconds = std::max<double>(1e-3, double(SteadyMs() - copy_started) / 1000);
      const uint64_t bytes = map.servers[server].resync_done_bytes;
      spdlog::info("data server {} resynced ({} MiB copied in {:.2f} s, {:.1f} MiB/s): up again "
                   "(epoch {})",
                   server, bytes >> 20, seconds, double(bytes) / (1 << 20) / seconds,
                   cluster_map().epoch);
    }
    MutexLock lock(probe_mu_);
    resync_copy_start_ms_[server] = 0;
    return false;
  }
  const ClusterMap* m = nullptr;
  {
    ReaderLock lock(mu_);
    m = &ns_->cluster_map();  // geometry only below (never changes)
  }
  std::vector<DirtyUnit> done;
  for (const DirtyUnit& u : units) {
    const uint64_t length = m->UnitLength(u);
    const uint64_t to = m->CopyOffset(server, u);
    bool copied = false;
    Status last = Status::Unavailable("no up copy of the unit");
    // From a copy that holds the acknowledged bytes: one that is up, or one that is
    // resyncing itself but not stale in this unit (two servers that came back together).
    for (uint32_t k = 0; k < m->replicas() && !copied; ++k) {
      const uint32_t from = (u.primary + k) % m->servers();
      if (from == server || map.servers[from].state == DataServerState::kDown) continue;
      if (map.servers[from].state == DataServerState::kResyncing) {
        ReaderLock lock(mu_);
        if (ns_->cluster_map().dirty(from).count(u)) continue;
      }
      last = options_.data_access->Copy(from, m->CopyOffset(from, u), server, to, length);
      copied = last.ok();
    }
    if (!copied) {
      spdlog::warn("resync of data server {}: unit {} of server {}'s primaries: {}", server,
                   u.unit, u.primary, last.ToString());
      break;
    }
    done.push_back(u);
    if (StopRequested()) break;
  }
  if (done.empty()) return false;
  // Journaled per batch: a restart resumes with what is left.
  return MutateClusterMap(kOpResyncProgress, EncodeResyncProgress(server, done)) == 0 &&
         done.size() == units.size();
}

void MetaService::HealthLoop() {
  const int64_t period = options_.probe_period_ms != 0
                             ? options_.probe_period_ms
                             : std::max<uint32_t>(options_.lease_ms / 3, 10);
  uint32_t servers = 0;
  {
    ReaderLock lock(mu_);
    servers = ns_->cluster_map().servers();
  }
  // A data server that restarted while this process was away lost its fence. After a
  // restart a resync in progress resumes (its progress was journaled) at once: the
  // fence, not a grace period, keeps stale writers out.
  InstallCurrentFence();
  while (!StopRequested()) {
    const int64_t next_probe = SteadyMs() + period;
    for (uint32_t s = 0; s < servers && !StopRequested(); ++s) ProbeAndUpdate(s);
    // Resync between probes, one batch per resyncing server at a time.
    bool busy = true;
    while (busy && SteadyMs() < next_probe && !StopRequested()) {
      busy = false;
      for (uint32_t s = 0; s < servers; ++s) busy |= ResyncBatch(s);
    }
    WaitUntil(next_probe);
  }
}

}  // namespace dpmfs::meta
