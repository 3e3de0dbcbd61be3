// MetaService's epoch changes and the fence that goes before them (docs/replication.md,
// "Fencing: the data servers refuse stale writers").
//
// One-sided WRITEs never reach a CPU that could check an epoch per request, so the data
// servers check it per connection: a client's session token carries the cluster map's
// epoch at issue, and a data server refuses and revokes connections whose token is below
// its fence. Only one kind of change needs it: one that adds a server to the write set
// (down -> resyncing), since a writer that missed it would skip the newcomer. For every
// other change the old write set is a superset of the new one, and a writer still using
// it does no harm (its write to a server that went down fails and it learns the map);
// fencing those too would revoke every client's connections at every failure, exactly
// when the cluster can least use the churn.
//
// Order, for a change to epoch E+1 that grows the write set:
//   1. the returning server takes fence E+1 (if it cannot, nothing else was touched: it
//      stays down and the next probe tries again);
//   2. every other server that is not down takes it; one that cannot is going down
//      itself: it is taken down first (its own change, a shrinking one, needs no fence;
//      it publishes an epoch >= every fence installed so far, so clients' fresh tokens
//      are served again), and the growth starts over at the next epoch;
//   3. only then the record is journaled and the epoch visible to anyone (heartbeats,
//      GetClusterMap, tokens).
// Fence installs are network calls: they run under epoch_mu_ (one change at a time, so
// the fence installed is the epoch journaled), never under the namespace lock.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <vector>

#include "metadata/meta_service.h"
#include "metadata/mutation.h"

namespace dpmfs::meta {

int MetaService::ChangeServerState(uint32_t server, DataServerState to, bool full_rebuild,
                                   uint64_t pool_instance) {
  MutexLock change(epoch_mu_);
  // Each round either publishes the change or takes one more server down first: at most
  // one round per server.
  for (;;) {
    uint64_t next = 0;
    bool grows = false;
    std::vector<uint32_t> others;  // the rest of the new write set
    {
      ReaderLock lock(mu_);
      const ClusterMap& m = ns_->cluster_map();
      if (int err = m.CheckTransition(server, to); err != 0) return err;
      next = m.epoch() + 1;
      grows = m.replicas() > 1 && to == DataServerState::kResyncing;
      for (uint32_t s = 0; s < m.servers(); ++s) {
        if (s != server && m.state(s) != DataServerState::kDown) others.push_back(s);
      }
    }
    if (!grows || options_.data_access == nullptr) {
      return MutateClusterMap(kOpSetServerState, EncodeSetServerState(server, to, full_rebuild, pool_instance));
    }
    if (Status st = options_.data_access->InstallFence(server, next); !st.ok()) {
      spdlog::warn("data server {} answers probes but did not take fence {}: it stays down "
                   "({})", server, next, st.ToString());
      return EAGAIN;
    }
    std::optional<uint32_t> failed;
    Status why;
    for (uint32_t s : others) {
      why = options_.data_access->InstallFence(s, next);
      if (!why.ok()) {
        failed = s;
        break;
      }
    }
    if (!failed) {
      return MutateClusterMap(kOpSetServerState, EncodeSetServerState(server, to, full_rebuild, pool_instance));
    }
    // A server that cannot take the fence could serve a stale writer that skips the
    // returning one: it leaves the write set before the returning server enters it.
    const int err = MutateClusterMap(kOpSetServerState,
                                     EncodeSetServerState(*failed, DataServerState::kDown, false));
    spdlog::warn("data server {} did not take fence {} ({}): {} before data server {} rejoins "
                 "(epoch {})",
                 *failed, next, why.ToString(), err == 0 ? "taken down" : "could not take it down",
                 server, cluster_map().epoch);
    if (err != 0) return err;
  }
}

void MetaService::InstallCurrentFence() {
  MutexLock change(epoch_mu_);
  uint64_t epoch = 0;
  std::vector<uint32_t> targets;
  {
    ReaderLock lock(mu_);
    const ClusterMap& m = ns_->cluster_map();
    if (m.replicas() == 1) return;  // one copy: there is no copy to skip
    epoch = m.epoch();
    for (uint32_t s = 0; s < m.servers(); ++s) {
      if (m.state(s) != DataServerState::kDown) targets.push_back(s);
    }
  }
  for (uint32_t s : targets) {
    if (Status st = options_.data_access->InstallFence(s, epoch); !st.ok()) {
      // Its probes decide about it; a stale writer still finds the fence on the others.
      spdlog::warn("data server {}: fence {} not installed at start: {}", s, epoch, st.ToString());
    }
  }
}

}  // namespace dpmfs::meta
