#include "metadata/meta_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "datapath/session_token.h"
#include "metadata/mutation.h"

namespace dpmfs::meta {

namespace {

// How much longer than a quarantine an allocation may wait when freed space still has
// to be zeroed (MetaService::ScrubLoop): a restart's scrub of a 512 MiB pool on tmpfs
// takes ~0.1 s; the bound keeps a waiting connection well inside the lease.
constexpr int64_t kScrubWaitMs = 2000;

// Memory is ahead of the pool and nothing can bring them back in step: stop, so that a
// restart recovers exactly the durable state (whose replies were the only ones sent).
[[noreturn]] void FailStop(const Status& st) {
  spdlog::critical(
      "metadata pool write failed: {}; stopping dpmfs-meta so that recovery "
      "restores the last durable state",
      st.ToString());
  spdlog::shutdown();
  std::_Exit(70);
}

}  // namespace

MetaService::MetaService(std::unique_ptr<MetaStore> store, const MetaServiceOptions& options)
    : store_(std::move(store)), options_(options) {}

MetaService::~MetaService() { (void)Stop(); }

int64_t MetaService::SteadyMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<MetaService>> MetaService::Open(std::unique_ptr<MetaStore> store,
                                                       const MetaServiceOptions& options,
                                                       RecoveryStats* stats) {
  const Superblock& sb = store->superblock();
  const pool::PoolInfo& info = store->pool_info();
  const std::string path = "metadata pool (cluster " + info.cluster.ToString() + ")";
  if (sb.data_pools.empty()) {
    return Status::Corruption(path + " describes no data pools");
  }
  if (options.data_endpoints.size() != sb.data_pools.size()) {
    return Status::InvalidArgument(
        path + " describes " + std::to_string(sb.data_pools.size()) + " data pools but " +
        std::to_string(options.data_endpoints.size()) +
        " data server addresses were given; pass one --data HOST:PORT per data pool, in "
        "index order");
  }
  NamespaceConfig cfg;
  cfg.block_size = sb.data_pools[0].block_size;
  for (const DataPoolGeometry& p : sb.data_pools) {
    if (p.block_size != cfg.block_size) {
      return Status::NotSupported(path + ": data pools with different block sizes (" +
                                  std::to_string(cfg.block_size) + " and " +
                                  std::to_string(p.block_size) + ") are not supported");
    }
  }
  if (sb.stripe_unit == 0 || sb.stripe_unit % cfg.block_size != 0) {
    return Status::Corruption(path + ": stripe unit " + std::to_string(sb.stripe_unit) +
                              " is not a multiple of the block size");
  }
  cfg.stripe_unit = sb.stripe_unit;
  std::vector<uint64_t> data_sizes;
  for (const DataPoolGeometry& p : sb.data_pools) data_sizes.push_back(p.data_size);
  Result<Placement> placement = Placement::Make(sb.replicas, cfg.block_size, data_sizes);
  if (!placement.ok()) return placement.status().WithContext(path);
  // The allocators hand out each server's primary region only (placement.h); the copies
  // go where the placement puts them.
  cfg.pools = sb.data_pools;
  for (DataPoolGeometry& p : cfg.pools) p.data_size = placement->PrimaryCapacity(p.index);
  cfg.root_time = Timespec{static_cast<int64_t>(info.created_unix_ns / 1000000000ull),
                           static_cast<uint32_t>(info.created_unix_ns % 1000000000ull)};
  // statfs's inode total: what the checkpoint slots could hold at ~256 bytes an inode.
  cfg.max_inodes = std::max<uint64_t>(1024, store->checkpoint_capacity() / 256);
  cfg.reply_cache_entries = options.reply_cache_entries;
  cfg.lease_ms = options.lease_ms;
  cfg.free_quarantine_ms = options.free_quarantine_ms;
  cfg.scrub_freed = options.zeroer != nullptr;
  cfg.cluster.cluster_uuid = info.cluster.bytes;
  cfg.cluster.block_size = cfg.block_size;
  cfg.cluster.stripe_unit = cfg.stripe_unit;
  cfg.cluster.replicas = sb.replicas;
  for (size_t i = 0; i < sb.data_pools.size(); ++i) {
    cfg.cluster.servers.push_back(DataServerInfo{sb.data_pools[i].index, options.data_endpoints[i],
                                                 sb.data_pools[i].data_size});
  }

  std::unique_ptr<MetaService> svc(new MetaService(std::move(store), options));
  svc->placement_ = std::make_unique<Placement>(*placement);
  {
    MutexLock plock(svc->probe_mu_);
    svc->probe_failures_.assign(sb.data_pools.size(), 0);
    svc->resync_copy_start_ms_.assign(sb.data_pools.size(), 0);
  }
  MetaService* s = svc.get();
  // Nobody else has the service yet; the lock is for the analysis (and costs nothing).
  WriterLock lock(s->mu_);
  s->ns_ = std::make_unique<Namespace>(std::move(cfg));
  RecoveryStats local;
  if (stats == nullptr) stats = &local;
  auto progress = [&options](const std::string& what) {
    if (options.recovery_progress) options.recovery_progress(what);
  };
  // Replay reports once a second, so a supervisor sees a long replay move.
  uint64_t replayed = 0;
  auto last_report = std::chrono::steady_clock::now();
  progress("loading the metadata checkpoint");
  Status st = s->store_->Recover(
      [s, &progress](std::span<const uint8_t> blob) REQUIRES(s->mu_) {  // Open holds it
        Status loaded = s->ns_->Load(blob);
        progress("checkpoint loaded (" + std::to_string(blob.size()) +
                 " bytes); replaying the journal");
        return loaded;
      },
      [s, &progress, &replayed, &last_report](uint64_t lsn, std::span<const uint8_t> rec)
          REQUIRES(s->mu_) {  // Open holds it
        ++replayed;
        auto now = std::chrono::steady_clock::now();
        if (now - last_report >= std::chrono::seconds(1)) {
          last_report = now;
          progress("replaying the journal: " + std::to_string(replayed) +
                   " records so far (LSN " + std::to_string(lsn) + ")");
        }
        return s->ReplayRecord(lsn, rec);
      },
      stats);
  if (!st.ok()) return st;
  progress("journal replayed: " + std::to_string(stats->records_replayed) + " records");
  if (stats->records_replayed > 0) {
    st = s->ns_->CheckInvariants();
    if (!st.ok()) {
      return Status::Corruption(
          "the namespace recovered from the metadata journal does not "
          "add up: " +
          st.message());
    }
  }
  // A checkpoint now makes the next recovery short, and on a fresh file system puts the
  // root directory on the pool.
  if (stats->checkpoint_lsn == 0 || stats->records_replayed > 0) {
    progress("writing a checkpoint of the recovered namespace");
    Status ck = s->CheckpointLocked();
    if (ck.code() == StatusCode::kResourceExhausted) {
      // The journal still holds everything: serve (growth refused with ENOSPC until
      // removals make the namespace fit a checkpoint slot again).
      spdlog::warn("{}; serving from the journal", ck.ToString());
    } else if (!ck.ok()) {
      return ck;
    }
  } else {
    s->last_blob_bytes_ = stats->checkpoint_bytes;
  }
  // Which free blocks hold old bytes is not recorded: after a restart all of them are
  // scrubbed before they are allocated (on a tmpfs pool a never-written range costs
  // next to nothing). A file system that never journaled anything has handed out no
  // block: its pools are as mkfs left them, zeroed.
  if (stats->last_lsn > 0) {
    s->ns_->ScrubAllFree();
    if (options.zeroer != nullptr) {
      spdlog::info("zeroing {} MiB of free space before reuse (which free blocks hold old bytes "
                   "is not recorded across a restart); allocations wait for it",
                   s->ns_->scrub_queued_bytes() >> 20);
    }
  }
  s->ready_ = true;
  // Grace: every session known before the restart gets a whole lease to come back.
  s->ns_->RenewAllLeases(s->SteadyMs() + options.lease_ms);
  // The restart rule. The quarantine is memory only, so we cannot tell which free
  // blocks were freed just before the crash (and may still be written by clients,
  // which keep their cached layouts across our restart). Treat every free block as
  // freed now: allocate nothing until one quarantine has passed since we started
  // serving. Any block freed before the stop was freed before now, so its quarantine
  // ends before ours. An Allocate in that window waits for it (HandleMutation) rather
  // than failing; reads and other mutations are not affected. Holding everything costs
  // at most free_quarantine_ms of stalled appends per restart; remembering free times
  // durably would cost a journal write per free, for a rare event.
  // A file system that never journaled anything has never handed out a block, so no
  // client can hold a layout naming one: no hold (a new cluster writes at once).
  // Nor when no session survived: sessions end only by Unregister (the client is done,
  // e.g. unmounted) or by lease expiry, a whole lease after the client's last contact;
  // with the lease at least one quarantine long, every layout such a client fetched has
  // expired, and its writes in flight have landed, by then. So a clean `dpmfs down`
  // (clients unmount first) and `up` does not stall the first writes.
  const bool clients_may_hold_layouts =
      s->ns_->session_count() > 0 || options.lease_ms < options.free_quarantine_ms;
  if (options.free_quarantine_ms > 0 && stats->last_lsn > 0 && clients_may_hold_layouts) {
    // (+1: SteadyMs truncates, see Namespace::FreeRanges.)
    s->ns_->HoldAllocationsUntil(s->SteadyMs() + options.free_quarantine_ms + 1);
  }
  return svc;
}

Status MetaService::ReplayRecord(uint64_t lsn, std::span<const uint8_t> bytes) {
  return ApplyRecord(*ns_, lsn, bytes);
}

const ClusterInfo& MetaService::cluster() const {
  ReaderLock lock(mu_);  // fixed at Open: the lock is for the analysis
  return ns_->config().cluster;
}

std::map<uint16_t, rpc::RpcHandler> MetaService::Handlers() {
  // Every row of meta_ops.h, nothing else: the RPC server refuses any other opcode
  // before it reaches us.
  std::map<uint16_t, rpc::RpcHandler> h;
  for (const OpInfo& op : kMetaOps) {
    h[static_cast<uint16_t>(op.op)] = [this](const rpc::RpcRequest& r) { return Handle(r); };
  }
  return h;
}

void MetaService::AttachRpcServer(rpc::RpcServer* server) { rpc_ = server; }

Result<std::vector<uint8_t>> MetaService::Handle(const rpc::RpcRequest& req) {
  const OpInfo* op = FindOp(req.opcode);
  if (op == nullptr) {
    return Status::InvalidArgument("opcode " + std::to_string(req.opcode) +
                                   " is no metadata operation");
  }
  // Every request starts with the caller it acts for; the policy maps it (root_squash)
  // or refuses it (a uid its host may not send), then every check is against it.
  Credentials caller;
  std::span<const uint8_t> body;
  DPMFS_RETURN_IF_ERROR(SplitCall(req.payload, &caller, &body));
  // Every row's latency, from here to the reply (a refused caller and an errno count too).
  metrics::ScopedLatency timed(op_latency_[static_cast<size_t>(ops_internal::kOpIndex[req.opcode])]);
  if (op->kind == OpKind::kAdmin) return HandleAdmin(req, body);
  const bool acts_for_a_user = op->kind == OpKind::kRead || op->kind == OpKind::kMutation;
  const auto opcode = static_cast<Opcode>(req.opcode);
  if (options_.caller_policy.active() && acts_for_a_user && opcode != Opcode::kRelease &&
      opcode != Opcode::kReleaseMany) {
    if (int err = options_.caller_policy.Map(req.peer, &caller); err != 0) {
      RefusedCaller(req, caller);
      return EncodeErrorReply(err);
    }
  }
  if (op->kind == OpKind::kLease) {
    HeartbeatRequest hb;
    DPMFS_RETURN_IF_ERROR(Decode(body, &hb));
    HeartbeatReply reply;
    ReaderLock lock(mu_);
    if (Session* s = ns_->FindSession(req.session)) {
      s->lease_deadline_ms.store(SteadyMs() + options_.lease_ms, std::memory_order_relaxed);
      reply.known = true;
      if (options_.token_key != nullptr) {
        // As long as the lease just renewed: a session that stops renewing (or is ended)
        // holds no token beyond the moment its lease lapses, so data servers revoke its
        // access within one lease with no message from here (docs/security.md).
        datapath::SessionToken t;
        t.session = req.session;
        t.client = s->client_name;
        t.issued_ms = datapath::UnixMs();
        t.expires_ms = t.issued_ms + options_.lease_ms;
        // The map's epoch, read under the same lock as the reply's: a data server whose
        // fence is above it refuses the token (docs/replication.md, "Fencing"), and the
        // fence is installed before the epoch it names is published here.
        t.epoch = ns_->cluster_map().epoch();
        std::vector<uint8_t> token = datapath::IssueSessionToken(*options_.token_key, t);
        reply.data_token.assign(token.begin(), token.end());
      }
    }
    reply.epoch = ns_->cluster_map().epoch();
    return EncodeReply(reply);
  }
  if (op->kind == OpKind::kMutation || op->kind == OpKind::kSession) {
    return HandleMutation(req, caller, body);
  }
  if (opcode == Opcode::kReportDataServer) return HandleReport(body);
  n_reads_.fetch_add(1, std::memory_order_relaxed);
  ReaderLock lock(mu_);
  return ns_->Read(req.opcode, body, caller);
}

void MetaService::RefusedCaller(const rpc::RpcRequest& req, const Credentials& caller) {
  n_refused_callers_.fetch_add(1, std::memory_order_relaxed);
  // Once per (host, uid): a misconfigured host would otherwise fill the log.
  std::string key = std::string(PeerHost(req.peer)) + "/" + std::to_string(caller.uid);
  {
    MutexLock lock(refused_mu_);
    if (refused_logged_.size() >= 1024 || !refused_logged_.insert(std::move(key)).second) return;
  }
  spdlog::warn("refused {} for uid {} from {}: that host may not act for this uid "
               "(--allow-uids); answering EPERM (logged once per host and uid)",
               OpcodeName(static_cast<Opcode>(req.opcode)), caller.uid, req.peer);
}

Result<std::vector<uint8_t>> MetaService::HandleMutation(const rpc::RpcRequest& req,
                                                         const Credentials& caller,
                                                         std::span<const uint8_t> body) {
  WriterLock lock(mu_);
  bool too_old = false;
  if (auto cached = ns_->CachedReply(req.session, req.seq, &too_old)) {
    n_cache_hits_.fetch_add(1, std::memory_order_relaxed);
    return std::move(*cached);
  }
  if (too_old) {
    return Status::Aborted("request seq " + std::to_string(req.seq) + " of session " +
                           std::to_string(req.session) +
                           " is older than the durable reply cache; it may or may not have "
                           "executed");
  }
  SetattrRequest sa;
  if (options_.zeroer != nullptr && static_cast<Opcode>(req.opcode) == Opcode::kSetattr &&
      Decode(body, &sa).ok() && (sa.valid & SetattrRequest::kSize) != 0) {
    lock.Unlock();
    if (int err = ZeroTruncatedTail(sa, caller); err != 0) return EncodeErrorReply(err);
    lock.Lock();
    if (auto cached = ns_->CachedReply(req.session, req.seq, &too_old)) {
      n_cache_hits_.fetch_add(1, std::memory_order_relaxed);
      return std::move(*cached);
    }
  }
  // An allocation that fails only because the space it needs is quarantined (or held
  // after a start) gets ctx.retry_at_ms: we wait for that moment without the namespace
  // lock (other requests go on; only this handler, i.e. this connection when handlers
  // run inline, waits) and run the request again from scratch: a failed mutation
  // changed nothing, was not journaled and not cached. We wait at most one quarantine
  // from the request's arrival, which covers every range quarantined before it came; if
  // even that space is not enough, the answer is ENOSPC at once, no waiting.
  // With scrubbing, space also waits for its zeroing, which after a restart can only
  // start when the hold ends (a stale client write could undo it before): allow for it.
  const int64_t scrub_allowance = options_.zeroer != nullptr ? kScrubWaitMs : 0;
  const int64_t wait_limit =
      options_.free_quarantine_ms == 0 && scrub_allowance == 0
          ? 0
          : SteadyMs() + options_.free_quarantine_ms + 1 + scrub_allowance;
  OpContext ctx;
  int err = 0;
  Result<std::vector<uint8_t>> reply = Status::Internal("unset");
  for (;;) {
    ctx = OpContext{};
    ctx.now = NowTimespec();
    ctx.session = req.session;
    ctx.seq = req.seq;
    ctx.caller = caller;
    ctx.metadata_full = MetadataFull();
    ctx.lease_deadline_ms = SteadyMs() + options_.lease_ms;
    ctx.space_wait_limit_ms = StopRequested() ? 0 : wait_limit;
    err = 0;
    reply = ns_->Mutate(req.opcode, body, ctx, &err);
    if (!reply.ok()) return reply.status();  // did not decode: nothing changed
    if (ctx.retry_at_ms == 0) break;
    lock.Unlock();
    WaitUntil(ctx.retry_at_ms);
    lock.Lock();
    // Nothing of this request was cached, but a re-send of it may have been answered
    // meanwhile on another thread.
    if (auto cached = ns_->CachedReply(req.session, req.seq, &too_old)) {
      n_cache_hits_.fetch_add(1, std::memory_order_relaxed);
      return std::move(*cached);
    }
  }
  Journal(req.opcode, ctx, err, body);
  lock.Unlock();
  n_mutations_.fetch_add(1, std::memory_order_relaxed);
  if (static_cast<Opcode>(req.opcode) == Opcode::kUnregister && rpc_ != nullptr) {
    rpc_->DropSession(req.session);
  }
  return reply;
}

void MetaService::Journal(uint16_t op, const OpContext& ctx, int err,
                          std::span<const uint8_t> request) {
  EncodeMutation(RecordOf(op, ctx, err, request), &record_buf_);
  auto lsn = store_->Append(record_buf_);
  if (!lsn.ok()) {
    if (lsn.status().code() != StatusCode::kResourceExhausted) FailStop(lsn.status());
    // The journal is full: a checkpoint captures this mutation (memory already has it)
    // along with everything before it.
    Status st = CheckpointLocked();
    if (!st.ok()) FailStop(st);
    return;
  }
  if (store_->journal_fill() > options_.checkpoint_fill) {
    Status st = CheckpointLocked();
    if (!st.ok()) {
      // The journal still has room; MetadataFull() now refuses growth (ENOSPC), and a
      // later append retries the checkpoint.
      spdlog::error("checkpoint failed: {}", st.ToString());
    }
  }
}

Status MetaService::CheckpointLocked() {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint8_t> blob = ns_->Serialize();
  Status st = store_->WriteCheckpoint(store_->last_lsn(), blob);
  if (!st.ok()) {
    if (st.code() == StatusCode::kResourceExhausted) {
      last_blob_bytes_ = std::max<uint64_t>(last_blob_bytes_, blob.size());
    }
    return st;
  }
  last_blob_bytes_ = blob.size();
  last_checkpoint_bytes_ = blob.size();
  last_checkpoint_steady_ms_ = SteadyMs();
  last_checkpoint_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Heartbeats waited for the lock meanwhile: the clients are not to blame.
  ns_->ExtendAllLeases(static_cast<int64_t>(last_checkpoint_seconds_ * 1000) + 1);
  n_checkpoints_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("checkpoint: {} bytes through LSN {} ({} inodes, {} sessions) in {:.3f} s",
               blob.size(), store_->last_lsn(), ns_->inode_count(), ns_->session_count(),
               last_checkpoint_seconds_);
  return Status::OK();
}

Status MetaService::Checkpoint() {
  WriterLock lock(mu_);
  return CheckpointLocked();
}

bool MetaService::MetadataFull() const {
  // The next checkpoint must fit a slot. It is at most the last one plus what the
  // records since then added; a record adds less than twice its own size to the state.
  const double journal_bytes = store_->journal_fill() * double(store_->journal_capacity());
  return double(last_blob_bytes_) + 2 * journal_bytes > 0.9 * double(store_->checkpoint_capacity());
}

void MetaService::Start() {
  MutexLock lock(lease_mu_);
  if (lease_thread_.joinable() || stopped_) return;
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  if (options_.zeroer != nullptr) scrub_thread_ = std::thread([this] { ScrubLoop(); });
  if (options_.data_access != nullptr) health_thread_ = std::thread([this] { HealthLoop(); });
}

int MetaService::ZeroTruncatedTail(const SetattrRequest& sa, const Credentials& caller) {
  PoolRange tail;
  {
    ReaderLock lock(mu_);
    // A caller who may not truncate must not get the bytes zeroed either.
    if (!ns_->TruncatedTail(sa, caller, &tail)) return 0;
  }
  // The bytes are the truncate's to remove: a write racing it lands before it (and is
  // cut) or after it (past the new EOF, where it extends the file again). Zeroing after
  // the truncate could destroy such a later write; zeroing before cannot.
  Status st = ZeroEveryCopy(tail);
  if (!st.ok()) {
    spdlog::warn("truncate of inode {} to {}: {}; answering EIO", sa.ino, sa.size, st.ToString());
    return EIO;
  }
  return 0;
}

Status MetaService::ZeroEveryCopy(const PoolRange& primary) {
  for (uint32_t k = 0; k < placement_->replicas(); ++k) {
    const ReplicaLocation at = placement_->Replica(primary.server, primary.pool_offset, k);
    DPMFS_RETURN_IF_ERROR(options_.zeroer->Zero(at.server, at.pool_offset, primary.length));
  }
  return Status::OK();
}

void MetaService::ScrubLoop() {
  // How much one round takes from one server's queue, and how long a server that
  // failed is left alone.
  constexpr uint64_t kRoundBytes = 256ull << 20;
  constexpr int64_t kBackoffMs = 1000, kIdleMs = 100;
  const size_t servers = [&] {
    ReaderLock lock(mu_);
    return ns_->config().pools.size();
  }();
  std::vector<int64_t> retry_at(servers, 0);
  std::vector<bool> warned(servers, false);
  // A long scrub (after a restart, or of a big file's blocks) reports when it is done.
  constexpr uint64_t kReportBytes = 256ull << 20;
  uint64_t burst_bytes = 0;
  int64_t burst_start = 0;
  while (!StopRequested()) {
    bool worked = false;
    for (uint32_t server = 0; server < servers && !StopRequested(); ++server) {
      if (SteadyMs() < retry_at[server]) continue;
      std::vector<PoolRange> work;
      {
        // Idle most of the time: look under the shared lock before taking the
        // exclusive one (which every request of the server would wait for).
        ReaderLock look(mu_);
        if (ns_->scrub_queued_bytes() == 0 && ns_->next_quarantine_release_ms() > SteadyMs()) {
          continue;
        }
      }
      {
        WriterLock lock(mu_);
        ns_->TakeScrubWork(server, kRoundBytes, kRoundBytes, &work);
      }
      if (work.empty()) continue;
      size_t done = 0;
      Status st;
      for (; done < work.size(); ++done) {
        st = ZeroEveryCopy(work[done]);
        if (!st.ok()) break;
      }
      {
        WriterLock lock(mu_);
        ns_->FinishScrub({work.begin(), work.begin() + done}, true);
        ns_->FinishScrub({work.begin() + done, work.end()}, false);
      }
      if (burst_bytes == 0) burst_start = SteadyMs();
      for (size_t i = 0; i < done; ++i) burst_bytes += work[i].length;
      if (!st.ok()) {
        // Allocations on this server wait (and fail with ENOSPC after a quarantine)
        // until it answers again: handing out unscrubbed blocks would show old bytes.
        if (!warned[server]) {
          spdlog::warn("{}; freed space of data pool {} stays unusable until it is zeroed "
                       "(retrying every {} ms)", st.ToString(), server, kBackoffMs);
        }
        warned[server] = true;
        retry_at[server] = SteadyMs() + kBackoffMs;
        continue;
      }
      if (warned[server]) spdlog::info("data pool {}: scrubbing freed space again", server);
      warned[server] = false;
      worked = true;
    }
    if (worked) continue;
    if (burst_bytes >= kReportBytes) {
      spdlog::info("zeroed {} MiB of freed space on the data servers in {:.2f} s",
                   burst_bytes >> 20, double(SteadyMs() - burst_start) / 1000);
    }
    burst_bytes = 0;
    int64_t wake = SteadyMs() + kIdleMs;
    {
      ReaderLock lock(mu_);
      wake = std::min(wake, ns_->next_quarantine_release_ms());
    }
    WaitUntil(std::max(wake, SteadyMs() + 1));
  }
}

Status MetaService::Stop() {
  {
    MutexLock lock(lease_mu_);
    if (stopped_) return Status::OK();
    stopped_ = true;
    stop_ = true;
  }
  lease_cv_.notify_all();
  if (lease_thread_.joinable()) lease_thread_.join();
  if (scrub_thread_.joinable()) scrub_thread_.join();
  if (health_thread_.joinable()) health_thread_.join();
  // Only a namespace that recovered completely is worth a checkpoint: one that failed
  // its checks must not overwrite the evidence.
  if (!ready_ || !options_.checkpoint_on_stop) return Status::OK();
  return Checkpoint();
}

void MetaService::LeaseLoop() {
  const auto period =
      std::chrono::milliseconds(std::clamp<uint32_t>(options_.lease_ms / 4, 10, 1000));
  MutexLock lk(lease_mu_);
  while (!stop_) {
    lk.WaitFor(lease_cv_, period);
    if (stop_) break;
    lk.Unlock();
    std::vector<uint64_t> expired;
    bool release = false;
    {
      ReaderLock lock(mu_);
      expired = ns_->ExpiredSessions(SteadyMs());
      release = ns_->next_quarantine_release_ms() <= SteadyMs();
    }
    if (release) {
      // Allocations release what is due themselves; this keeps statfs's free count
      // current (within a period) when nothing allocates.
      WriterLock lock(mu_);
      ns_->ReleaseQuarantine();
    }
    for (uint64_t id : expired) {
      size_t handles = 0;
      std::string name;
      {
        WriterLock lock(mu_);
        Session* s = ns_->FindSession(id);
        // A heartbeat may have come in between.
        if (s == nullptr || s->lease_deadline_ms.load() > SteadyMs()) continue;
        handles = s->handles.size();
        name = s->client_name;
        OpContext ctx;
        ctx.now = NowTimespec();
        uint8_t payload[8];
        for (int i = 0; i < 8; ++i) payload[i] = static_cast<uint8_t>(id >> (8 * i));
        int err = 0;
        auto r = ns_->Mutate(kOpExpireSession, payload, ctx, &err);
        if (!r.ok()) {
          spdlog::error("expiring session {}: {}", id, r.status().ToString());
          continue;
        }
        Journal(kOpExpireSession, ctx, err, payload);
      }
      n_expired_.fetch_add(1, std::memory_order_relaxed);
      if (rpc_ != nullptr) rpc_->DropSession(id);
      spdlog::info("session {:#x} ({}) lease lapsed: ended it and released its {} open handles", id,
                   name.empty() ? "unnamed" : name, handles);
    }
    lk.Lock();
  }
}

bool MetaService::StopRequested() {
  MutexLock lock(lease_mu_);
  return stop_;
}

void MetaService::WaitUntil(int64_t steady_ms) {
  const auto deadline = std::chrono::steady_clock::time_point(std::chrono::milliseconds(steady_ms));
  MutexLock lk(lease_mu_);
  lk.WaitUntil(lease_cv_, deadline, [this]() REQUIRES(lease_mu_) { return stop_; });
}

MetaServiceStats MetaService::stats() const {
  MetaServiceStats s;
  s.mutations = n_mutations_.load();
  s.reads = n_reads_.load();
  s.durable_cache_hits = n_cache_hits_.load();
  s.checkpoints = n_checkpoints_.load();
  s.expired_sessions = n_expired_.load();
  s.refused_callers = n_refused_callers_.load();
  ReaderLock lock(mu_);
  s.last_checkpoint_bytes = last_checkpoint_bytes_;
  s.last_checkpoint_seconds = last_checkpoint_seconds_;
  s.inodes = ns_->inode_count();
  s.sessions = ns_->session_count();
  return s;
}

}  // namespace dpmfs::meta
