// MetaService: dpmfs-meta's RPC service. Owns the Namespace and the MetaStore, runs
// every metadata opcode, makes each mutation durable before its reply leaves, keeps
// the durable reply cache, checkpoints, and expires lapsed client sessions.
//
// Request path:
//   reads (lookup, getattr, readdir, ...): shared lock, Namespace::Read.
//   heartbeat: shared lock, renews the session's lease (in memory only).
//   mutations: exclusive lock; (session, seq) already answered -> the cached reply;
//     else Namespace::Mutate (validate, then change memory), MetaStore::Append of the
//     record (durable when it returns), reply. The exclusive section holds no RPC and
//     no blocking I/O: the append is a memcpy and cache-line flushes into PM.
//   Checkpoint: after an append that took the journal past `checkpoint_fill`, the same
//     thread serializes the namespace and writes a checkpoint, still under the lock.
//   Allocate / fallocate that find space only in the free quarantine (or in the hold
//     after a restart): the handler waits OUTSIDE the lock until that space is released
//     (at most free_quarantine_ms) and runs the request again; see HandleMutation.
// A durable write that fails leaves memory ahead of the pool; the service then stops
// the process (fail-stop, exit status 70): restarting recovers the durable state.
//
// Thread-safety: Handle() and the handlers are thread-safe (called by the RPC workers);
// Open/AttachRpcServer/Start/Stop are called by the owner, Stop once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/cluster_key.h"
#include "common/live_histogram.h"
#include "common/mutex.h"
#include "common/shared_mutex.h"
#include "common/stats_report.h"
#include "common/status.h"
#include "metadata/block_scrubber.h"
#include "metadata/caller_policy.h"
#include "metadata/data_server_access.h"
#include "metadata/meta_store.h"
#include "metadata/namespace.h"
#include "metadata/placement.h"
#include "rpc/rpc_server.h"

namespace dpmfs::meta {

struct MetaServiceOptions {
  // Told what recovery is doing while Open runs (loading the checkpoint, every second of
  // journal replay, the checkpoint after it): dpmfs-meta passes it on to its supervisor
  // (common/service_notify.h), which then waits as long as progress continues.
  std::function<void(std::string_view what)> recovery_progress;
  // Data server addresses, in data pool index order (their count must equal the
  // superblock's data pools).
  std::vector<std::string> data_endpoints;
  uint32_t lease_ms = 10000;
  // Checkpoint when the journal is fuller than this after an append.
  double checkpoint_fill = 0.5;
  uint32_t reply_cache_entries = 128;
  // Stop() writes a checkpoint (a fast next start). Tests of replay turn it off.
  bool checkpoint_on_stop = true;
  // Freed blocks are not handed out again for this long, and after a start nothing is
  // allocated for this long (metadata/README.md, "Freed blocks and cached layouts").
  // Must exceed the clients' layout TTL (1 s) plus the time a WRITE may be in flight;
  // well under lease_ms, since a waiting allocation holds its connection. 0: off (tests
  // that need immediate reuse; unsafe with clients that cache layouts).
  uint32_t free_quarantine_ms = 3000;
  // Zeroes freed blocks (after the quarantine) before they are allocated again, and
  // the cut tail of a shrunk file's last block (metadata/block_scrubber.h). Null: no
  // scrubbing (unit tests without data servers); then freed blocks keep old bytes.
  // Must outlive the service.
  RangeZeroer* zeroer = nullptr;
  // root_squash and the uids each client host may act for (caller_policy.h), applied
  // to every request's caller before the permission checks.
  CallerPolicy caller_policy;
  // Set: every lease renewal (heartbeat) of a known session answers with a session
  // token lasting one lease, MACed with this key, which data servers require before
  // they register memory for a client (datapath/session_token.h). Null: no tokens.
  std::shared_ptr<const ClusterKey> token_key;
  // The data servers as the cluster map needs them (data_server_access.h): health
  // probes, the probe of a server a client reports, and resync. Null: no probes (every
  // server stays as the map says; unit tests without data servers). Must outlive the
  // service.
  DataServerAccess* data_access = nullptr;
  // How often each data server is probed; 0: lease_ms / 3. Two probes in a row that
  // fail take a server down.
  uint32_t probe_period_ms = 0;
  // Units a resync copies between two progress records (each one journal record).
  uint32_t resync_batch_units = 16;
};

struct MetaServiceStats {
  uint64_t mutations = 0;  // journaled (successful or errno replies)
  uint64_t reads = 0;
  uint64_t durable_cache_hits = 0;  // mutations answered from the durable reply cache
  uint64_t checkpoints = 0;
  uint64_t last_checkpoint_bytes = 0;
  double last_checkpoint_seconds = 0;
  uint64_t expired_sessions = 0;
  uint64_t refused_callers = 0;  // requests refused by the caller policy (EPERM)
  size_t inodes = 0;
  size_t sessions = 0;
};

class MetaService {
 public:
  // Recovers the namespace from `store` (checkpoint + journal replay), checks it, writes
  // a fresh checkpoint when anything was replayed, and gives every recovered session a
  // fresh lease. Errors: InvalidArgument (endpoints do not match the pools), Corruption
  // (journal/checkpoint damage or a namespace that does not add up, with the location).
  static Result<std::unique_ptr<MetaService>> Open(std::unique_ptr<MetaStore> store,
                                                   const MetaServiceOptions& options,
                                                   RecoveryStats* stats);
  ~MetaService();
  MetaService(const MetaService&) = delete;
  MetaService& operator=(const MetaService&) = delete;

  // The handler table for rpc::RpcServer::Start (every opcode of meta_protocol.h).
  std::map<uint16_t, rpc::RpcHandler> Handlers();
  // Lets lease expiry drop the RPC layer's reply cache of an expired session. Call
  // before Start; the server must outlive Stop().
  void AttachRpcServer(rpc::RpcServer* server);
  // Starts the lease-expiry thread.
  void Start();
  // Stops the lease thread and (checkpoint_on_stop) writes a checkpoint. Idempotent.
  Status Stop();

  Result<std::vector<uint8_t>> Handle(const rpc::RpcRequest& req);
  // This server's live metrics (counters, gauges, a latency histogram per row of
  // meta_ops.h): what `dpmfs stats` and /metrics show (docs/monitoring.md).
  metrics::StatsReport Report() const;
  // Serializes the namespace and writes a checkpoint now.
  Status Checkpoint();
  MetaServiceStats stats() const;
  const ClusterInfo& cluster() const;
  // The cluster map as a client sees it (GetClusterMap).
  ClusterMapReply cluster_map() const;

 private:
  MetaService(std::unique_ptr<MetaStore> store, const MetaServiceOptions& options);
  // `body`: the request after its caller (meta_protocol.h, SplitCall).
  Result<std::vector<uint8_t>> HandleMutation(const rpc::RpcRequest& req, const Credentials& caller,
                                              std::span<const uint8_t> body);
  // Journals the mutation just applied (mu_ held exclusively); fail-stop on failure.
  void Journal(uint16_t op, const OpContext& ctx, int err, std::span<const uint8_t> request)
      REQUIRES(mu_);
  Status CheckpointLocked() REQUIRES(mu_);
  Status ReplayRecord(uint64_t lsn, std::span<const uint8_t> bytes) REQUIRES(mu_);
  bool MetadataFull() const REQUIRES_SHARED(mu_);
  void LeaseLoop();
  // The scrub thread: zeroes the namespace's scrub queue through options_.zeroer.
  void ScrubLoop();
  // Before a setattr that shrinks a file to a size inside a block: zeroes the bytes of
  // that block the truncate cuts off, so that bytes past EOF read as zeros when anyone
  // extends the file again. EIO when the data server cannot do it.
  // Nothing when `caller` may not truncate the file (the setattr then fails).
  int ZeroTruncatedTail(const SetattrRequest& sa, const Credentials& caller);
  // Zeroes the range on its primary and every copy (placement.h).
  Status ZeroEveryCopy(const PoolRange& primary);
  int64_t SteadyMs() const;
  // kAdmin rows (meta_service_stats.cc): stats, a client's pushed stats, the log level.
  Result<std::vector<uint8_t>> HandleAdmin(const rpc::RpcRequest& req, std::span<const uint8_t> body);
  // Encoded: Report() and the fresh pushed client reports, as many as fit one reply.
  std::vector<uint8_t> StatsBundleBytes();
  // Counts and logs (once per host and uid) a request the caller policy refused.
  void RefusedCaller(const rpc::RpcRequest& req, const Credentials& caller);
  // ---- The cluster map (cluster_health.cc) ----
  // ReportDataServer: probes the server (outside the lock), takes it down when two
  // probes fail, answers with the map.
  Result<std::vector<uint8_t>> HandleReport(std::span<const uint8_t> body);
  // Journals a server-internal record of the cluster map (kOpSetServerState,
  // kOpResyncProgress) under the exclusive lock: the errno the map answered (0, or
  // EINVAL when the move is no longer allowed: nothing changed, nothing journaled).
  int MutateClusterMap(uint16_t op, const std::vector<uint8_t>& payload);
  // Moves `server` to `to` in the map: the only way an epoch changes (cluster_fence.cc).
  // A move that adds the server to the write set (down -> resyncing, R > 1) first
  // installs the new epoch as the fence of every server of the new write set, so that
  // no client can learn the epoch before every stale writer is refused there. 0, the
  // map's errno (EINVAL: the move is not allowed now), or EAGAIN when the server itself
  // would not take the fence (it stays down; the next probe tries again).
  // `full_rebuild` and a nonzero `pool_instance` go into the same record (entering
  // resyncing with a freshly formatted pool: ClusterMap::SetState).
  int ChangeServerState(uint32_t server, DataServerState to, bool full_rebuild = false,
                        uint64_t pool_instance = 0) EXCLUDES(epoch_mu_);
  // After a start: the current epoch as the fence of every server that is not down
  // (a data server that restarted while this one was away has none). Best effort.
  void InstallCurrentFence() EXCLUDES(epoch_mu_);
  // Probes one server and moves it in the map as the result says: up -> down after
  // two failures, down -> resyncing when it answers (with a full rebuild when it
  // answers with another pool than the map's: CheckPoolInstance).
  void ProbeAndUpdate(uint32_t server);
  // After a probe of `server` answered (pool_instance.cc): records the pool instance
  // it serves when the map has none yet; when the map names another one (the pool was
  // deleted and formatted again), takes the server down if it is not, then back as
  // resyncing with a full rebuild. True when it handled the server (the caller's move
  // down -> resyncing is not to be made again); false for the same pool, R = 1, or a
  // data server that does not say its pool instance.
  bool CheckPoolInstance(uint32_t server) EXCLUDES(pool_check_mu_);
  // One batch of a resyncing server's dirty set copied and journaled; up when nothing
  // is left. False when there was nothing to do or it failed (retried next period).
  bool ResyncBatch(uint32_t server);
  // The health thread: probes every period, resyncs in between.
  void HealthLoop();
  // Sleeps until `steady_ms` (steady clock) or until Stop().
  void WaitUntil(int64_t steady_ms);
  bool StopRequested();

  std::unique_ptr<MetaStore> store_;
  const MetaServiceOptions options_;
  // Set by Open, never changed; the namespace itself is read under mu_ shared, changed
  // under mu_ exclusive.
  std::unique_ptr<Namespace> ns_ PT_GUARDED_BY(mu_);
  std::unique_ptr<Placement> placement_;  // set by Open, never changed
  rpc::RpcServer* rpc_ = nullptr;
  bool ready_ = false;  // Open completed: the namespace is whole

  mutable SharedMutex mu_;  // the namespace lock
  std::vector<uint8_t> record_buf_ GUARDED_BY(mu_);
  uint64_t last_blob_bytes_ GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> n_mutations_{0}, n_reads_{0}, n_cache_hits_{0}, n_checkpoints_{0},
      n_expired_{0}, n_refused_callers_{0};
  Mutex refused_mu_;
  std::set<std::string> refused_logged_ GUARDED_BY(refused_mu_);  // "host/uid" logged
  uint64_t last_checkpoint_bytes_ GUARDED_BY(mu_) = 0;
  int64_t last_checkpoint_steady_ms_ GUARDED_BY(mu_) = 0;  // 0: none since the start
  const int64_t started_steady_ms_ = SteadyMs();
  // One per row of meta_ops.h (index: ops_internal::kOpIndex), every request timed from
  // arrival in Handle to its reply (lock waits included: that is what a client sees).
  std::array<metrics::LiveHistogram, kMetaOps.size()> op_latency_;
  // The last report each client pushed (PushStats), checked on arrival; dropped when
  // older than three leases (the client is gone) and capped in number.
  struct PushedStats {
    std::vector<uint8_t> bytes;
    int64_t steady_ms = 0;
  };
  Mutex pushed_mu_;
  std::map<uint64_t, PushedStats> pushed_ GUARDED_BY(pushed_mu_);
  uint64_t n_pushes_refused_ GUARDED_BY(pushed_mu_) = 0;
  double last_checkpoint_seconds_ GUARDED_BY(mu_) = 0;

  Mutex lease_mu_;
  std::condition_variable lease_cv_;
  bool stop_ GUARDED_BY(lease_mu_) = false;
  bool stopped_ GUARDED_BY(lease_mu_) = false;
  std::thread lease_thread_;
  std::thread scrub_thread_;
  std::thread health_thread_;
  // Held across an epoch change (ChangeServerState): the fence installed and the epoch
  // journaled are the same number only if no other change runs in between. Never held
  // with mu_ across a network call (mu_ is taken inside it, briefly).
  Mutex epoch_mu_ ACQUIRED_BEFORE(mu_);
  // One decision about a changed pool instance at a time (the health thread and
  // HandleReport may probe the same server at once: one rebuild, not two).
  Mutex pool_check_mu_ ACQUIRED_BEFORE(epoch_mu_);
  // Failed probes in a row, per data server (the health thread and HandleReport).
  Mutex probe_mu_;
  std::vector<uint32_t> probe_failures_ GUARDED_BY(probe_mu_);
  // When a resync's first batch started (steady ms; 0: none running), for its rate.
  std::vector<int64_t> resync_copy_start_ms_ GUARDED_BY(probe_mu_);
};

}  // namespace dpmfs::meta
