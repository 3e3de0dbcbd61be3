// MetaService's check of which pool a data server serves (docs/replication.md, "Full
// rebuild"). A data server whose pool was deleted and formatted again comes back at the
// same index, in the same cluster, with the same geometry: the identity check at connect
// (datapath/data_server_identity.h) takes it, and a resync of its dirty set alone would
// leave every block written before it went down as zeros there, silently, until the
// other copy is lost. The pool header's creation time tells the two apart: every format
// writes a new one, and the data server states it at connect (ServerInfo::pool_instance).
// The map records it per server (a journaled record, carried by the checkpoint); a probe
// that sees another one takes the server out of the read set (down, if it was not) and
// back as resyncing with a full rebuild: every unit of every region whose copies live on
// it is copied from a healthy copy before it is up again.
//
// R = 1 is left as it was: there is no other copy to rebuild from.
#include <spdlog/spdlog.h>

#include "metadata/meta_service.h"
#include "metadata/mutation.h"

namespace dpmfs::meta {

bool MetaService::CheckPoolInstance(uint32_t server) {
  const uint64_t seen = options_.data_access->PoolInstance(server);
  if (seen == 0) return false;  // a data server that does not say it
  {
    ReaderLock lock(mu_);
    const ClusterMap& m = ns_->cluster_map();
    if (m.replicas() == 1 || m.pool_instance(server) == seen) return false;
  }
  MutexLock check(pool_check_mu_);
  DataServerState state;
  uint64_t recorded = 0;
  {
    ReaderLock lock(mu_);
    state = ns_->cluster_map().state(server);
    recorded = ns_->cluster_map().pool_instance(server);
  }
  if (recorded == seen) return false;  // another probe decided meanwhile
  if (recorded == 0) {
    // First sight (a fresh map, or a checkpoint from before instances): this is the
    // pool its copies are on from now on.
    if (MutateClusterMap(kOpSetPoolInstance, EncodeSetPoolInstance(server, seen)) != 0) {
      spdlog::warn("data server {}: its pool instance {} was not recorded", server, seen);
    }
    return false;
  }
  if (state != DataServerState::kDown) {
    // Serving a pool without the map's copies: out of the read set at once, before it
    // answers one more read with zeros.
    if (ChangeServerState(server, DataServerState::kDown) != 0) return true;
    spdlog::error("data server {} serves another pool than the one it had (instance {}, was "
                  "{}: deleted and formatted again?): down, to be rebuilt in full (epoch {})",
                  server, seen, recorded, cluster_map().epoch);
  }
  // The rebuild and the pool it is for in one record: a restart resumes it, and never
  // takes the new pool for the old one. If the fence is refused it stays down with the
  // old instance recorded, and the next probe decides again.
  if (ChangeServerState(server, DataServerState::kResyncing, /*full_rebuild=*/true, seen) == 0) {
    const ClusterMapReply map = cluster_map();
    spdlog::info("data server {} answers with a freshly formatted pool (instance {}, was {}): "
                 "rebuilding all {} MiB of its copies (epoch {})",
                 server, seen, recorded, map.servers[server].resync_total_bytes >> 20, map.epoch);
  }
  return true;
}

}  // namespace dpmfs::meta
