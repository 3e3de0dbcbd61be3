#include "datapath/data_server.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "datapath/data_protocol.h"
#include "datapath/persist/persist_strategy.h"
#include "datapath/session_token.h"
#include "transport/send_queue_credits.h"

namespace dpmfs::datapath {

using transport::Completion;

// Send-queue size of a data server connection: it only sends replies. Room for a full
// queue depth of replies plus the unsignaled ones (up to a quarter of the queue) a
// signaled reply retires: replies are posted from the receive thread, which cannot
// wait for send completions (it is what delivers them).
constexpr uint32_t kReplySendQueue = 2 * kMaxQueueDepth + 32;
using transport::Opcode;
using transport::WorkRequest;

// One client connection and the buffers its persist method needs. What the server does
// for the method (imm, rpc) is the method's strategy's (datapath/persist/).
class DataServer::Connection final : public persist::ServerConnection {
 public:
  // `token`: the session this connection serves, when the server checks tokens.
  Connection(DataServer* server, const ConnectRequest& req, std::optional<SessionToken> token)
      : server_(server),
        req_(req),
        strategy_(persist::Of(req.method)),
        token_(std::move(token)),
        admin_(req.purpose == ConnectPurpose::kAdmin),
        reply_size_(admin_ ? kMaxAdminReplySize : kReplySize) {
    // An admin connection has one request outstanding at a time (its reply buffer is
    // the large one); whatever depth it asked for.
    if (admin_) req_.queue_depth = 1;
  }

  ~Connection() {
    // The QP goes before the buffers: its destructor joins the transport thread that
    // calls OnRecv (verbs' Disconnect does not), which may still be handling a message
    // in them.
    qp_.reset();
    if (mr_.addr != nullptr) (void)server_->device_.DeregisterMemory(mr_);
    if (ring_mr_.addr != nullptr) (void)server_->device_.DeregisterMemory(ring_mr_);
    // The revocation: the connection's own remote key stops working (one-sided READs and
    // WRITEs with it now fail at the NIC), whatever the client still holds.
    if (pool_mr_.addr != nullptr) (void)server_->device_.DeregisterMemory(pool_mr_);
    server_->buffer_bytes_.fetch_sub(reserved_, std::memory_order_relaxed);
  }

  // Bytes of buffers a connection for `req` holds: what the limits are checked against.
  static uint64_t BufferBytes(const ConnectRequest& req, const persist::PersistStrategy& s) {
    if (req.purpose == ConnectPurpose::kAdmin) return kAdminRequestSize + kMaxAdminReplySize;
    const uint32_t receive = s.receive_size(req);
    const uint64_t qd = req.queue_depth;
    return qd * (receive != 0 ? receive : 8) + qd * kReplySize +
           (s.needs_ring() ? qd * kDescriptorSize : 0);
  }

  // Before accepting: reserve the buffers against the server's budget, allocate and
  // register them, post receives.
  Result<std::vector<uint8_t>> Prepare(transport::QueuePair& qp) {
    rx_qp_ = &qp;
    uint32_t qd = req_.queue_depth;
    const uint32_t receive = admin_ ? kAdminRequestSize : strategy_.receive_size(req_);
    recv_size_ = receive != 0 ? receive : 8;
    const DataServerLimits& lim = server_->options_.limits;
    const uint64_t need = BufferBytes(req_, strategy_);
    if (need > lim.max_connection_buffer_bytes) {
      return Status::ResourceExhausted(
          "a " + std::string(strategy_.name()) + " connection of queue depth " +
          std::to_string(qd) + " and " + std::to_string(req_.max_io_size) + "-byte I/Os needs " +
          std::to_string(need >> 10) + " KiB of buffers; this data server gives one connection "
          "at most " + std::to_string(lim.max_connection_buffer_bytes >> 10) +
          " KiB (--max-connection-buffer-bytes); ask for less");
    }
    const uint64_t held = server_->buffer_bytes_.fetch_add(need, std::memory_order_relaxed);
    reserved_ = need;  // released by the destructor
    if (held + need > lim.max_buffer_bytes) {
      server_->buffer_bytes_.fetch_sub(need, std::memory_order_relaxed);
      reserved_ = 0;
      return Status::ResourceExhausted(
          "this data server's connection buffers are at their limit (" +
          std::to_string(held >> 20) + " MiB held, --max-buffer-bytes " +
          std::to_string(lim.max_buffer_bytes >> 20) + " MiB); try again later or ask for a "
          "smaller queue depth or I/O size");
    }
    // [receive buffers][reply buffers]. Not zeroed: a receive buffer is written by the
    // message it receives before it is read, a reply buffer by its reply; untouched
    // pages of a large ring are then never committed.
    memory_size_ = uint64_t{qd} * recv_size_ + uint64_t{qd} * reply_size_;
    memory_ = std::make_unique_for_overwrite<uint8_t[]>(memory_size_);
    DPMFS_ASSIGN_OR_RETURN(mr_, server_->device_.RegisterMemory(memory_.get(), memory_size_,
                                                                transport::kLocalWrite));
    ServerInfo info;
    transport::MemoryRegion pool_mr = server_->pool_mr_;
    if (token_.has_value()) {
      // Its own registration, so that revoking it (the destructor) touches nobody else's.
      DPMFS_ASSIGN_OR_RETURN(pool_mr_, server_->device_.RegisterMemory(server_->pool_.data(),
                                                                       server_->pool_.data_size(),
                                                                       server_->pool_mr_.access));
      pool_mr = pool_mr_;
    }
    // An admin connection reads and writes no file data: it learns no remote key (and so
    // needs no session token, only the cluster key's handshake).
    if (!admin_) {
      info.pool = {reinterpret_cast<uint64_t>(pool_mr.addr), server_->pool_.data_size(),
                   pool_mr.rkey};
    }
    if (strategy_.needs_ring() && !admin_) {
      ring_.assign(uint64_t{qd} * kDescriptorSize, 0);
      DPMFS_ASSIGN_OR_RETURN(ring_mr_,
                             server_->device_.RegisterMemory(ring_.data(), ring_.size(),
                                                             transport::kLocalWrite |
                                                                 transport::kRemoteWrite));
      info.ring = {reinterpret_cast<uint64_t>(ring_.data()), ring_.size(), ring_mr_.rkey};
    }
    if (receive != 0) {
      for (uint32_t i = 0; i < qd; ++i) DPMFS_RETURN_IF_ERROR(PostRecv(qp, i));
    }
    const pool::PoolInfo& pi = server_->pool_.info();
    info.cluster = pi.cluster.bytes;
    info.pool_index = pi.index;
    info.block_size = pi.block_size;
    info.is_pmem = server_->pool_.is_pmem();
    info.pool_instance = pi.created_unix_ns;
    return EncodeServerInfo(info);
  }

  // Takes the connected QP. No thread of its own: messages (imm, rpc) reach OnRecv on
  // the transport's thread, one-sided methods never involve this server's CPU, and the
  // accept loop reaps the connection once its QP has failed (the client went away).
  void Run(std::unique_ptr<transport::QueuePair> qp) { qp_ = std::move(qp); }

  bool finished() const {
    return qp_ != nullptr && qp_->state() != transport::QpState::kConnected;
  }
  // Its session token expired at `now_ms` (Unix ms): time to revoke.
  bool expired(int64_t now_ms) const { return token_.has_value() && token_->expires_ms <= now_ms; }
  // Its session token's epoch is below `fence`: a stale writer, revoked like an expired one.
  // Connections without a token (admin; a server that checks none) are never fenced.
  bool fenced(uint64_t fence) const { return token_.has_value() && token_->epoch < fence; }
  const std::optional<SessionToken>& token() const { return token_; }
  std::string peer_description() const { return qp_ == nullptr ? "" : qp_->peer_description(); }
  // The peer's address without its port.
  std::string peer_host() const { return qp_ == nullptr ? "" : PeerHost(qp_->peer_description()); }
  static std::string PeerHost(const std::string& peer) {
    auto colon = peer.rfind(':');
    return colon == std::string::npos ? peer : peer.substr(0, colon);
  }

 private:
  Status PostRecv(transport::QueuePair& qp, uint32_t i) {
    WorkRequest wr;
    wr.opcode = Opcode::kRecv;
    wr.context = i;
    wr.local_addr = memory_.get() + uint64_t{i} * recv_size_;
    wr.length = recv_size_;
    wr.lkey = mr_.lkey;
    return qp.PostRecv({&wr, 1});
  }

 public:
  // A receive completion, on the transport's receive thread (QueuePairOptions::on_recv):
  // the message is validated, persisted and answered right there, so no thread wakes
  // per write (soft: the rx thread that read the message sends the reply; measured in
  // transport/README.md). Flushed receives of a closing connection are ignored.
  void OnRecv(const Completion& c) {
    if (!c.ok() || rx_qp_ == nullptr) return;
    ReapSends();
    Handle(c);
  }

 private:
  void Handle(const Completion& c) {
    uint32_t buf_index = static_cast<uint32_t>(c.context);
    const uint8_t* buf = memory_.get() + uint64_t{buf_index} * recv_size_;
    if (admin_) {
      HandleAdmin(buf_index, {buf, std::min<uint32_t>(c.byte_len, recv_size_)});
      return;
    }
    WriteDescriptor d;
    const auto start = std::chrono::steady_clock::now();
    Status st = strategy_.Handle(c, {buf, recv_size_}, *this, &d);
    // Per request kind: what the server's CPU did for it (check, copy, persist), not
    // the round trip (the client's histograms have that).
    const DataServer::RequestKind kind = (d.flags & kDescriptorZero) != 0
                                             ? DataServer::RequestKind::kZero
                                         : req_.method == PersistMethod::kImm
                                             ? DataServer::RequestKind::kImmWrite
                                             : DataServer::RequestKind::kRpcWrite;
    server_->Record(kind, st.ok() ? d.length : 0, start);
    if (!st.ok()) {
      server_->n_refused_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("refusing a write from {}: {}", rx_qp_->peer_description(), st.ToString());
    }
    // Repost the receive buffer before replying, so the client's next message has one.
    Status rp = PostRecv(*rx_qp_, buf_index);
    if (!rp.ok()) return;
    if (d.slot >= req_.queue_depth) return;  // cannot even name the slot: let it time out
    uint8_t* reply = memory_.get() + uint64_t{req_.queue_depth} * recv_size_ +
                     uint64_t{d.slot} * reply_size_;
    EncodeReply(Reply{d.slot, st.code()}, reply);
    WorkRequest wr;
    wr.opcode = Opcode::kSend;
    wr.signaled = credits_.ShouldSignal(1);  // now and then, to get send-queue room back
    wr.local_addr = reply;
    wr.length = kReplySize;
    wr.lkey = mr_.lkey;
    // No waiting for room here: this thread delivers the completions that return it.
    // The queue holds every reply a client's queue depth allows (kReplySendQueue); a
    // client that never acknowledges gets its connection refused by the transport.
    Status posted = rx_qp_->PostSend({&wr, 1});
    if (posted.ok()) {
      credits_.Posted(1, wr.signaled);
    } else {
      spdlog::warn("replying to {}: {}", rx_qp_->peer_description(), posted.ToString());
    }
  }

  // An admin request (ConnectPurpose::kAdmin): answered from this receive thread like a
  // write, with an AdminReply in the connection's one large reply buffer.
  void HandleAdmin(uint32_t buf_index, std::span<const uint8_t> msg) {
    const auto start = std::chrono::steady_clock::now();
    AdminReply reply;
    auto req = DecodeAdminRequest(msg);
    spdlog::debug("admin request {} from {}",
                  !req.ok()                         ? "(refused)"
                  : req->kind == AdminKind::kStats  ? "stats"
                  : req->kind == AdminKind::kFence  ? "fence"
                                                    : "log_level",
                  rx_qp_->peer_description());
    if (!req.ok()) {
      server_->n_refused_.fetch_add(1, std::memory_order_relaxed);
      reply.code = req.status().code();
      reply.message = req.status().message().substr(0, kMaxAdminMessage);
    } else if (req->kind == AdminKind::kStats) {
      const std::vector<uint8_t> report = metrics::EncodeStatsReport(server_->Report());
      reply.body.assign(report.begin(), report.end());
    } else if (req->kind == AdminKind::kFence) {
      // Answered only once the older connections are gone: the metadata server publishes
      // the new epoch after this reply, and by then no stale writer may be left here.
      reply.body = EncodeFenceBody(server_->RaiseFence(req->epoch));
    } else {
      Status st = SetLogLevel(req->level);
      reply.code = st.code();
      reply.message = st.message().substr(0, kMaxAdminMessage);
    }
    if (!PostRecv(*rx_qp_, buf_index).ok()) return;
    std::vector<uint8_t> bytes = EncodeAdminReply(reply);
    if (bytes.size() > reply_size_) {
      reply = AdminReply{StatusCode::kResourceExhausted, "the stats report is over the reply size", {}};
      bytes = EncodeAdminReply(reply);
    }
    uint8_t* out = memory_.get() + uint64_t{req_.queue_depth} * recv_size_;
    std::memcpy(out, bytes.data(), bytes.size());
    WorkRequest wr;
    wr.opcode = Opcode::kSend;
    wr.signaled = credits_.ShouldSignal(1);
    wr.local_addr = out;
    wr.length = static_cast<uint32_t>(bytes.size());
    wr.lkey = mr_.lkey;
    Status posted = rx_qp_->PostSend({&wr, 1});
    if (posted.ok()) credits_.Posted(1, wr.signaled);
    server_->Record(DataServer::RequestKind::kAdmin, 0, start);
  }

  // Reply sends complete only to return send-queue room; a failure shows in the QP state.
  void ReapSends() {
    Completion sc[32];
    while (size_t n = rx_qp_->PollSend(sc)) {
      for (size_t i = 0; i < n; ++i) {
        if (sc[i].ok()) credits_.Completed();
      }
    }
  }

  // persist::ServerConnection, for the method's strategy.
  const ConnectRequest& request() const override { return req_; }
  std::span<const uint8_t> ring() const override { return ring_; }
  uint8_t* pool_data() override { return server_->pool_.data(); }
  void Count(Counter c, uint64_t n) override {
    switch (c) {
      case Counter::kImmWrites: server_->n_imm_.fetch_add(n, std::memory_order_relaxed); break;
      case Counter::kRpcWrites: server_->n_rpc_.fetch_add(n, std::memory_order_relaxed); break;
      case Counter::kZeroedBytes: server_->n_zeroed_.fetch_add(n, std::memory_order_relaxed); break;
    }
  }

  Status CheckRange(const WriteDescriptor& d) const override {
    uint64_t size = server_->pool_.data_size();
    if (d.length > req_.max_io_size || d.offset > size || d.length > size - d.offset) {
      return Status::OutOfRange("write [" + std::to_string(d.offset) + ", +" +
                                std::to_string(d.length) + ") outside the pool's data area");
    }
    return Status::OK();
  }

  // Makes [p, p+len) read as zeros, as durably as Persist. Whole pages of a pool that
  // is not real PM become a hole (MADV_REMOVE): a pool on tmpfs gives the memory back
  // and a sparse one stays sparse; anything else (device DAX, partial pages) is
  // overwritten with zeros.
  void Zero(uint8_t* p, size_t len) override {
    if (len == 0) return;
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    const uintptr_t lo = (begin + page - 1) / page * page;
    const uintptr_t hi = (begin + len) / page * page;
    if (!server_->pool_.is_pmem() && lo < hi &&
        ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_REMOVE) == 0) {
      ZeroBytes(p, lo - begin);
      ZeroBytes(reinterpret_cast<uint8_t*>(hi), begin + len - hi);
      return;
    }
    ZeroBytes(p, len);
  }
  void ZeroBytes(uint8_t* p, size_t len) {
    if (len == 0) return;
    std::memset(p, 0, len);
    Persist(p, len);
  }

  void Persist(uint8_t* p, size_t len) override {
    if (len == 0) return;
    if (server_->options_.msync && !server_->pool_.is_pmem()) {
      Status st = server_->pool_.Persist(p, len);
      if (!st.ok()) spdlog::error("persisting a client write failed: {}", st.ToString());
    } else {
      server_->pool_.PersistAfterCrash(p, len);
    }
  }

  DataServer* server_;
  ConnectRequest req_;
  const persist::PersistStrategy& strategy_;
  const std::optional<SessionToken> token_;
  transport::MemoryRegion pool_mr_;  // with a token: this connection's registration of the data area
  const bool admin_;          // ConnectPurpose::kAdmin
  const uint32_t reply_size_;  // of each reply buffer
  std::unique_ptr<transport::QueuePair> qp_;
  // The same QP, known from Prepare on: messages may arrive before Run takes ownership.
  transport::QueuePair* rx_qp_ = nullptr;
  std::unique_ptr<uint8_t[]> memory_;
  uint64_t memory_size_ = 0;
  uint64_t reserved_ = 0;  // bytes of server_->buffer_bytes_ this connection holds
  std::vector<uint8_t> ring_;
  transport::MemoryRegion mr_, ring_mr_;
  uint32_t recv_size_ = 0;
  SendQueueCredits credits_{kReplySendQueue};
};

DataServer::DataServer(transport::Device& device, DataServerOptions options,
                       pool::MappedPool pool)
    : device_(device), options_(std::move(options)), pool_(std::move(pool)) {}

Result<std::unique_ptr<DataServer>> DataServer::Start(transport::Device& device,
                                                      const DataServerOptions& options) {
  pool::OpenExpectations expect = options.expect;
  expect.role = pool::Role::kData;
  // One server per pool: a second would hand out the same blocks under its own sessions.
  DPMFS_ASSIGN_OR_RETURN(pool::PoolLock lock, pool::PoolLock::Acquire(options.pool_path));
  DPMFS_ASSIGN_OR_RETURN(pool::MappedPool pool, pool::MappedPool::Open(options.pool_path, expect));
  std::unique_ptr<DataServer> s(new DataServer(device, options, std::move(pool)));
  s->lock_ = std::move(lock);
  uint32_t access = transport::kLocalWrite | transport::kRemoteRead | transport::kRemoteWrite;
  if (device.SupportsFlush()) access |= transport::kRemoteFlush;
  auto mr = device.RegisterMemory(s->pool_.data(), s->pool_.data_size(), access);
  if (!mr.ok()) return mr.status().WithContext("registering pool " + options.pool_path);
  s->pool_mr_ = *mr;
  auto listener = device.Listen(options.listen);
  if (!listener.ok()) return listener.status();
  s->listener_ = std::move(listener).value();
  s->endpoint_ = s->listener_->local_endpoint();
  s->accept_thread_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  spdlog::info("serving pool {} (index {}, {} MiB data, {}) on {}", options.pool_path,
               s->pool_.info().index, s->pool_.data_size() >> 20,
               s->pool_.is_pmem() ? "real PM" : "not PM: page cache", s->endpoint_.ToString());
  return s;
}

DataServer::~DataServer() {
  Stop();
  if (pool_mr_.addr != nullptr) (void)device_.DeregisterMemory(pool_mr_);
}

void DataServer::Stop() {
  if (stop_.exchange(true)) return;
  if (listener_) listener_->Shutdown();
  if (accept_thread_.joinable()) accept_thread_.join();
  // Destroyed outside the lock: a connection's destructor joins its receive thread, and
  // an admin request on it (stats, a fence) may be waiting for this lock.
  std::list<std::unique_ptr<Connection>> gone;
  {
    MutexLock lock(connections_mu_);
    gone.swap(connections_);
  }
}

void DataServer::Record(RequestKind kind, uint64_t bytes,
                        std::chrono::steady_clock::time_point start) {
  const auto k = static_cast<size_t>(kind);
  latency_[k].Record(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count()));
  if (bytes != 0) bytes_[k].fetch_add(bytes, std::memory_order_relaxed);
}

metrics::StatsReport DataServer::Report() const {
  static constexpr const char* kKindNames[kRequestKinds] = {"imm_write", "rpc_write", "zero", "admin"};
  const DataServerStats s = stats();
  metrics::StatsReport r;
  r.role = "data";
  r.instance = endpoint_.ToString();
  r.Gauge("up", "", 1);
  r.Gauge("uptime_seconds", "",
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                    std::chrono::steady_clock::now() - started_)
                                    .count()));
  r.Gauge("pool_index", "", pool_.info().index);
  r.Gauge("pool_data_bytes", "", pool_.data_size());
  r.Gauge("fence_epoch", "", s.fence);
  r.Counter("connections_accepted", "", s.connections);
  r.Gauge("connections_open", "", s.open_connections);
  r.Counter("refused", "", s.refused);
  r.Gauge("connection_buffer_bytes", "", s.buffer_bytes);
  r.Counter("zeroed_bytes", "", s.zeroed_bytes);
  for (size_t k = 0; k < kRequestKinds; ++k) {
    r.Histogram("request_latency", kKindNames[k], latency_[k]);
    r.Counter("request_bytes", kKindNames[k], bytes_[k].load(std::memory_order_relaxed));
  }
  for (const metrics::HistogramValue& h : r.histograms) r.Counter("requests", h.op, h.snapshot.count);
  return r;
}

DataServerStats DataServer::stats() const {
  uint64_t open = 0;
  {
    MutexLock lock(connections_mu_);
    open = connections_.size();
  }
  return DataServerStats{n_connections_.load(), n_imm_.load(), n_rpc_.load(), n_refused_.load(),
                         n_zeroed_.load(), open, buffer_bytes_.load(), n_revoked_.load(),
                         fence_.load()};
}

uint64_t DataServer::RaiseFence(uint64_t epoch) {
  uint64_t before = fence_.load();
  while (epoch > before && !fence_.compare_exchange_weak(before, epoch)) {
  }
  const uint64_t fence = std::max(before, epoch);
  // Out of the list under the lock, destroyed after it: a connection's destructor joins
  // its QP's receive thread.
  std::list<std::unique_ptr<Connection>> revoked;
  {
    MutexLock lock(connections_mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if ((*it)->fenced(fence)) revoked.splice(revoked.end(), connections_, it);
      it = next;
    }
  }
  for (const auto& c : revoked) LogFenced(*c, fence);
  n_revoked_.fetch_add(revoked.size(), std::memory_order_relaxed);
  if (fence != before) {
    spdlog::info("fence raised from epoch {} to {}: {} connection(s) of older epochs revoked",
                 before, fence, revoked.size());
  }
  return fence;
}

void DataServer::LogFenced(const Connection& c, uint64_t fence) {
  spdlog::info("session {:#x} ({}) from {}: its token is of epoch {}, below the fence {}; "
               "registration revoked and connection closed",
               c.token()->session, c.token()->client, c.peer_description(), c.token()->epoch,
               fence);
}

void DataServer::ReapFinishedLocked() {
  const int64_t now = options_.token_key != nullptr ? UnixMs() : 0;
  const uint64_t fence = fence_.load();
  connections_.remove_if([&](const std::unique_ptr<Connection>& c) {
    if (c->finished()) {
      spdlog::info("client {} disconnected", c->peer_description());
      return true;
    }
    if (c->fenced(fence)) {
      n_revoked_.fetch_add(1, std::memory_order_relaxed);
      LogFenced(*c, fence);
      return true;
    }
    if (!c->expired(now)) return false;
    // Closing it deregisters its memory: one-sided access ends here, not at the next
    // connect. A live client has replaced the connection before this (token_due).
    n_revoked_.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("session {:#x} ({}) from {}: its token expired {} ms ago; registration revoked "
                 "and connection closed",
                 c->token()->session, c->token()->client, c->peer_description(),
                 now - c->token()->expires_ms);
    return true;
  });
}

void DataServer::AcceptLoop() {
  while (!stop_.load()) {
    std::unique_ptr<Connection> conn;
    // The receive handler reaches the connection through this cell, filled in once the
    // connection exists (before the QP is connected, so before any message).
    auto target = std::make_shared<std::atomic<Connection*>>(nullptr);
    transport::AcceptHandler handler = [&](std::span<const uint8_t> data,
                                           transport::QueuePair& qp) -> Result<std::vector<uint8_t>> {
      // The caps first: a refused peer costs nothing but this check.
      {
        const DataServerLimits& lim = options_.limits;
        const std::string host = Connection::PeerHost(qp.peer_description());
        MutexLock lock(connections_mu_);
        ReapFinishedLocked();
        size_t from_host = 0;
        for (const auto& c : connections_) from_host += c->peer_host() == host ? 1 : 0;
        if (connections_.size() >= lim.max_connections) {
          return Status::ResourceExhausted(
              "data server " + endpoint_.ToString() + " is at its limit of " +
              std::to_string(lim.max_connections) + " connections (--max-connections)");
        }
        if (from_host >= lim.max_connections_per_peer) {
          return Status::ResourceExhausted(
              "data server " + endpoint_.ToString() + " already holds " +
              std::to_string(from_host) + " connections from " + host +
              ", its limit per peer address (--max-connections-per-peer)");
        }
      }
      DPMFS_ASSIGN_OR_RETURN(ConnectRequest req, DecodeConnectRequest(data));
      const persist::PersistStrategy& strategy = persist::Of(req.method);
      // An admin connection carries no writes: its method is not used.
      if (req.purpose == ConnectPurpose::kData) {
        if (strategy.needs_flush() && !device_.SupportsFlush()) {
          return Status::NotSupported("this data server's device has no RDMA FLUSH");
        }
        DPMFS_RETURN_IF_ERROR(strategy.Admit(req));
      }
      std::optional<SessionToken> token;
      if (options_.token_key != nullptr && req.purpose == ConnectPurpose::kData) {
        Result<SessionToken> t = VerifySessionToken(*options_.token_key, qp.peer_credential(), UnixMs());
        if (!t.ok()) return t.status();  // refused, logged and counted by the caller below
        // A writer whose token predates the fence may not know a server the write set
        // gained since (docs/replication.md, "Fencing"): no memory for it here.
        if (const uint64_t fence = fence_.load(); t->epoch < fence) {
          return StaleEpochStatus(t->epoch, fence);
        }
        token = std::move(t).value();
      }
      conn = std::make_unique<Connection>(this, req, std::move(token));
      target->store(conn.get(), std::memory_order_release);
      return conn->Prepare(qp);
    };
    transport::QueuePairOptions qpo;
    qpo.max_send_wr = kReplySendQueue;
    qpo.max_recv_wr = kMaxQueueDepth;
    qpo.on_recv = [target](const Completion& c) {
      if (Connection* conn = target->load(std::memory_order_acquire)) conn->OnRecv(c);
    };
    auto qp = listener_->Accept(handler, qpo, std::chrono::milliseconds(200));
    {
      MutexLock lock(connections_mu_);
      ReapFinishedLocked();
    }
    if (!qp.ok()) {
      if (qp.status().code() == StatusCode::kTimedOut) continue;
      if (stop_.load()) break;
      n_refused_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("connection refused: {}", qp.status().ToString());
      continue;
    }
    n_connections_.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("client {} connected", (*qp)->peer_description());
    conn->Run(std::move(qp).value());
    MutexLock lock(connections_mu_);
    // A fence raised between the check in the handler and here found the connection in
    // no list: it goes now, under the lock RaiseFence takes, so that once RaiseFence
    // returns no connection below the fence is served.
    if (conn->fenced(fence_.load())) {
      n_revoked_.fetch_add(1, std::memory_order_relaxed);
      LogFenced(*conn, fence_.load());
      continue;  // conn destroyed at the end of the iteration, after the lock
    }
    connections_.push_back(std::move(conn));
  }
}

}  // namespace dpmfs::datapath
