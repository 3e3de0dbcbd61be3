// OpContext: what one metadata operation carries besides its request — the facts replay
// takes from the journal instead of deciding anew (time, allocated ranges) and the live
// server's circumstances (lease deadline, how long an allocation may wait for space).
// Shared by the namespace, its components (sessions.h, space.h) and the handlers.
//
// Thread-safety: a value used by the one thread running the operation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "metadata/extent_map.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

// The per-mutation facts that replay takes from the journal rather than deciding anew.
struct OpContext {
  bool replay = false;
  Timespec now;
  // Who the operation acts for, after the server's mapping (root_squash, allowed
  // uids): every permission check (permissions.h) is against it. Journaled with the
  // record, so replay decides exactly as the live server did. Default: root (the
  // server's own mutations and tests that do not care).
  Credentials caller;
  uint64_t session = 0;  // 0 for server-internal mutations (no reply cache)
  uint64_t seq = 0;
  // Live: the pool ranges handed out, in order of allocation. Replay: the same ranges,
  // consumed in the same order.
  std::vector<PoolRange> allocations;
  size_t next_allocation = 0;
  // Live only: the metadata pool is nearly full; operations that grow the state fail
  // with ENOSPC (replay never refuses what was acknowledged).
  bool metadata_full = false;
  // Live: the lease deadline (steady-clock ms) a session created or registered by this
  // mutation gets. Replay leaves it 0; the service renews every lease after recovery.
  int64_t lease_deadline_ms = 0;
  // Live: the caller is willing to retry an allocation that fails with ENOSPC only
  // because space is quarantined (or held after a restart), if it can succeed by this
  // time (steady-clock ms). 0: ENOSPC is final.
  int64_t space_wait_limit_ms = 0;
  // Set on such an ENOSPC (live, within space_wait_limit_ms): when to retry. The reply
  // is then not final: Mutate does not put it in the reply cache and the caller must run
  // the request again (or cache the reply itself if it gives up).
  int64_t retry_at_ms = 0;
  // Replay: set when the record's facts do not fit the state (e.g. a recorded pool range
  // is already in use): the journal does not match its checkpoint.
  std::string replay_error;
};

}  // namespace dpmfs::meta

