#include "rpc/rpc_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_set>

#include "rpc/reply_cache.h"
#include "transport/send_queue_credits.h"

namespace dpmfs::rpc {

using transport::Completion;
using transport::Opcode;
using transport::WorkRequest;

namespace {
// Reply buffers beyond the receive depth: a reply holds its buffer until its SEND
// completion is polled, so a few spares keep workers from waiting on the poll.
constexpr uint32_t kSpareReplySlots = 8;
// How long a worker waits for a reply buffer before it gives the reply up.
constexpr int kReplySlotWaitRounds = 200;  // x 10 ms

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string PeerHost(const std::string& peer) {
  auto colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}
}  // namespace

struct RpcServer::Task {
  std::shared_ptr<Connection> conn;
  MessageHeader header;
  std::vector<uint8_t> payload;
  // A reply the receive thread could not send (no free reply buffer, and it cannot wait
  // for one: it is the thread that would see the buffers come back). A worker sends
  // header.status and `payload` as the reply; nothing is executed.
  bool deferred_reply = false;
};

struct RpcServer::Session {
  Session(size_t capacity, uint64_t max_bytes) : cache(capacity, max_bytes) {}
  SessionReplyCache cache;
  int64_t unconnected_since_ms = 0;  // 0: a connection of the session is live
};

// The connection whose receive completion the current thread is handling, if any: its
// reply must not wait for a reply buffer (see Task::deferred_reply).
thread_local const void* t_receiving_for = nullptr;

// Requests arrive through the QP's on_recv handler (OnRecv), on the transport's
// receive thread: with inline handlers they execute right there, so a request costs
// no thread wake-up on the server beyond the one the data's arrival costs anyway.
class RpcServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Made before the connection is accepted (its receive handler must exist by then);
  // Prepare() sizes it from the client's request.
  explicit Connection(RpcServer* server) : server_(server) {}

  ~Connection() {
    Shutdown();
    owned_qp_.reset();  // joins the receive thread while every member is still alive
    if (mr_.addr != nullptr) (void)server_->device_.DeregisterMemory(mr_);
    server_->buffer_bytes_.fetch_sub(reserved_, std::memory_order_relaxed);
  }

  // Before accepting: allocate and register the buffers, post every receive.
  Result<std::vector<uint8_t>> Prepare(const ConnectRequest& req, transport::QueuePair& qp) {
    session_ = req.session;
    max_message_ = std::min(req.max_message, server_->options_.max_message);
    depth_ = std::min(req.recv_depth, server_->options_.depth);
    reply_slots_ = depth_ + kSpareReplySlots;
    qp_ = &qp;
    peer_ = qp.peer_description();
    // Not zeroed: every buffer is written before it is read, and a connection's 18 MiB
    // (the metadata server's: 32 receive + 40 reply buffers of 256 KiB) would otherwise
    // be cleared at every connect.
    const uint64_t bytes = uint64_t{depth_ + reply_slots_} * max_message_;
    const uint64_t held = server_->buffer_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    reserved_ = bytes;  // released by the destructor
    if (held + bytes > server_->options_.max_buffer_bytes) {
      server_->buffer_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
      reserved_ = 0;
      return Status::ResourceExhausted(
          "rpc server " + server_->endpoint_.ToString() + ": connection buffers at their limit (" +
          std::to_string(held >> 20) + " MiB held, max " +
          std::to_string(server_->options_.max_buffer_bytes >> 20) +
          " MiB); try again later");
    }
    last_request_ms_.store(SteadyMs());
    memory_ = std::make_unique_for_overwrite<uint8_t[]>(bytes);
    DPMFS_ASSIGN_OR_RETURN(
        mr_, server_->device_.RegisterMemory(memory_.get(), bytes, transport::kLocalWrite));
    for (uint32_t i = 0; i < depth_; ++i) DPMFS_RETURN_IF_ERROR(PostRecv(qp, i));
    {
      MutexLock lock(send_mu_);  // nobody else sees the connection yet
      credits_.emplace(depth_ + 2 * kSpareReplySlots);
      for (uint32_t i = 0; i < reply_slots_; ++i) free_slots_.push_back(i);
    }
    return EncodeConnectReply(ConnectReply{max_message_, depth_});
  }

  // The connect failed: the QP Prepare was given is gone (the listener owned it), so
  // the destructor must not touch it.
  void Detach() { qp_ = nullptr; }

  // Takes ownership of the accepted QP (the one Prepare was given).
  void Run(std::unique_ptr<transport::QueuePair> qp) {
    owned_qp_ = std::move(qp);
    peer_ = owned_qp_->peer_description();
  }

  // Tears the connection down; requests still arriving are dropped. Idempotent.
  void Shutdown() {
    stop_.store(true);
    Close();
  }

  // Tears the QP down. Not under send_mu_: a receive handler running a request may be
  // waiting for that lock, and Disconnect waits for the receive thread. (Posting on a
  // QP that is going down is safe; it fails.)
  void Close() {
    if (qp_ != nullptr) qp_->Disconnect();
  }

  bool finished() const {
    return finished_.load() || (qp_ != nullptr && qp_->state() != transport::QpState::kConnected);
  }
  const std::string& peer() const { return peer_; }
  uint64_t session() const { return session_; }
  int64_t last_request_ms() const { return last_request_ms_.load(std::memory_order_relaxed); }

  // The QP's on_recv handler: one request (or the failure that ends the connection),
  // on the transport's receive thread.
  void OnRecv(const Completion& c) {
    if (finished_.load() || stop_.load()) return;
    last_request_ms_.store(SteadyMs(), std::memory_order_relaxed);
    t_receiving_for = this;
    // A failed receive: the client went away (or sent more than a buffer holds).
    bool ok = c.ok() && Handle(c);
    t_receiving_for = nullptr;
    if (!ok) {
      spdlog::debug("rpc: client {} (session {:#x}) disconnected", peer_, session_);
      finished_.store(true);
    }
  }

  // Sends one response. A payload too large for this connection becomes an error reply.
  // Thread-safe (serialised on the send side).
  void SendReply(uint64_t request_id, uint16_t opcode, uint64_t seq, int32_t status,
                 std::span<const uint8_t> payload) {
    std::string too_big;
    if (payload.size() > max_message_ - kHeaderSize) {
      too_big = "reply of " + std::to_string(payload.size()) + " bytes exceeds the " +
                std::to_string(max_message_ - kHeaderSize) + "-byte maximum payload";
      status = static_cast<int32_t>(StatusCode::kResourceExhausted);
      payload = {reinterpret_cast<const uint8_t*>(too_big.data()), too_big.size()};
    }
    const bool receiving = t_receiving_for == this;
    MutexLock lock(send_mu_);
    for (int round = 0;; ++round) {
      if (!qp_ || qp_->state() != transport::QpState::kConnected) return;
      ReapSends();
      if (!free_slots_.empty() && credits_->CanPost(1)) break;
      if (receiving) {
        // This thread is the one that would read the completions that free a buffer.
        lock.Unlock();
        spdlog::debug("rpc: no free reply buffer for {}; a worker sends the reply", peer_);
        MessageHeader h;
        h.request_id = request_id;
        h.opcode = opcode;
        h.seq = seq;
        h.status = status;
        server_->Enqueue(Task{shared_from_this(), h,
                              std::vector<uint8_t>(payload.begin(), payload.end()), true});
        return;
      }
      if (round == kReplySlotWaitRounds) {
        spdlog::warn("rpc: no reply buffer for {} after 2 s; dropping a reply", peer_);
        return;
      }
      // Wait without send_mu_: the receive thread may be answering a request meanwhile.
      lock.Unlock();
      Completion sc[32];
      size_t n = qp_->WaitSend(sc, std::chrono::milliseconds(10));
      lock.Lock();
      Retire({sc, n});
    }
    uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    uint8_t* buf = reply_buffer(slot);
    MessageHeader h;
    h.kind = MessageKind::kResponse;
    h.opcode = opcode;
    h.request_id = request_id;
    h.session = session_;
    h.seq = seq;
    h.status = status;
    h.payload_len = static_cast<uint32_t>(payload.size());
    EncodeHeader(h, buf);
    if (!payload.empty()) std::memcpy(buf + kHeaderSize, payload.data(), payload.size());
    WorkRequest wr;
    wr.opcode = Opcode::kSend;
    // Signal one reply in several: its completion frees its buffer and those of the
    // unsignaled replies before it (RC completes in order). Each signaled reply costs
    // the client an acknowledgement and this connection a receive; most replies need
    // neither. Signal early enough that the buffers held by unsignaled replies never
    // starve the connection: a quarter of them at most.
    wr.signaled = credits_->ShouldSignal(1) || unsignaled_ + 1 >= std::max(1u, reply_slots_ / 4);
    wr.context = slot;
    wr.local_addr = buf;
    wr.length = static_cast<uint32_t>(kHeaderSize + payload.size());
    wr.lkey = mr_.lkey;
    if (qp_->PostSend({&wr, 1}).ok()) {
      credits_->Posted(1, wr.signaled);
      in_flight_.push_back(InFlightReply{slot, wr.signaled});
      unsignaled_ = wr.signaled ? 0 : unsignaled_ + 1;
    } else {
      free_slots_.push_back(slot);
    }
  }

 private:
  uint8_t* recv_buffer(uint32_t i) { return memory_.get() + uint64_t{i} * max_message_; }
  uint8_t* reply_buffer(uint32_t slot) {
    return memory_.get() + uint64_t{depth_ + slot} * max_message_;
  }

  Status PostRecv(transport::QueuePair& qp, uint32_t i) {
    WorkRequest wr;
    wr.opcode = Opcode::kRecv;
    wr.context = i;
    wr.local_addr = recv_buffer(i);
    wr.length = max_message_;
    wr.lkey = mr_.lkey;
    return qp.PostRecv({&wr, 1});
  }

  // Caller holds send_mu_. A signaled reply's completion returns its buffer and
  // send-queue entry and those of the unsignaled replies posted before it.
  void ReapSends() REQUIRES(send_mu_) {
    Completion sc[32];
    while (size_t n = qp_->PollSend(sc)) Retire({sc, n});
  }
  void Retire(std::span<const Completion> done) REQUIRES(send_mu_) {
    for (const Completion& c : done) {
      (void)c;
      credits_->Completed();
      while (!in_flight_.empty()) {
        InFlightReply r = in_flight_.front();
        in_flight_.pop_front();
        free_slots_.push_back(r.slot);
        if (r.signaled) break;
      }
    }
  }

  // Returns false when the connection must close.
  bool Handle(const Completion& c) {
    if (c.context >= depth_) return false;  // not one of ours: a transport bug
    uint32_t index = static_cast<uint32_t>(c.context);
    uint32_t len = std::min(c.byte_len, max_message_);
    bool id_readable = false;
    MessageHeader h;
    auto msg = DecodeMessage({recv_buffer(index), len}, max_message_, &id_readable, &h);
    Status st = msg.status();
    if (st.ok() && msg->header.kind != MessageKind::kRequest) {
      st = Status::InvalidArgument("rpc server received a response message");
    } else if (st.ok() && msg->header.session != session_) {
      st = Status::PermissionDenied("request names session " + std::to_string(h.session) +
                                    " but this connection belongs to session " +
                                    std::to_string(session_));
    } else if (st.ok() && msg->header.seq == 0) {
      st = Status::InvalidArgument("request with sequence number 0");
    }
    if (!st.ok()) {
      server_->n_malformed_.fetch_add(1, std::memory_order_relaxed);
      if (!id_readable) {
        spdlog::warn("rpc: closing connection of {}: {}", peer_, st.ToString());
        server_->n_dropped_.fetch_add(1, std::memory_order_relaxed);
        Close();
        return false;
      }
      spdlog::warn("rpc: refusing a request from {}: {}", peer_, st.ToString());
      if (!PostRecv(*qp_, index).ok()) return false;
      const std::string& m = st.message();
      SendReply(h.request_id, h.opcode, h.seq, static_cast<int32_t>(st.code()),
                {reinterpret_cast<const uint8_t*>(m.data()), m.size()});
      return true;
    }
    Task t{shared_from_this(), msg->header,
           std::vector<uint8_t>(msg->payload.begin(), msg->payload.end()), false};
    // Repost before the request can be answered: the reply returns the client's credit.
    if (!PostRecv(*qp_, index).ok()) return false;
    if (server_->options_.inline_handlers) {
      server_->Execute(t);
    } else {
      server_->Enqueue(std::move(t));
    }
    return true;
  }

  RpcServer* server_;
  // Set by Prepare, before the QP can deliver anything.
  uint64_t session_ = 0;
  uint32_t max_message_ = 0;
  uint32_t depth_ = 0;
  uint32_t reply_slots_ = 0;
  transport::QueuePair* qp_ = nullptr;             // from Prepare; owned_qp_ once accepted
  std::unique_ptr<transport::QueuePair> owned_qp_;
  std::string peer_;
  // [depth_ receive buffers][reply_slots_ reply buffers], max_message_ bytes each
  std::unique_ptr<uint8_t[]> memory_;
  transport::MemoryRegion mr_;
  Mutex send_mu_;
  std::optional<datapath::SendQueueCredits> credits_ GUARDED_BY(send_mu_);
  std::vector<uint32_t> free_slots_ GUARDED_BY(send_mu_);
  // Replies posted and not yet known complete, in posting order; guarded by send_mu_.
  struct InFlightReply {
    uint32_t slot;
    bool signaled;
  };
  std::deque<InFlightReply> in_flight_ GUARDED_BY(send_mu_);
  uint32_t unsignaled_ GUARDED_BY(send_mu_) = 0;  // replies posted unsignaled since the last signaled one
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<int64_t> last_request_ms_{0};  // steady ms of the last message (or connect)
  uint64_t reserved_ = 0;  // bytes of server_->buffer_bytes_ this connection holds
};

RpcServer::RpcServer(transport::Device& device, RpcServerOptions options,
                     std::map<uint16_t, RpcHandler> handlers)
    : device_(device), options_(std::move(options)), handlers_(std::move(handlers)) {}

Result<std::unique_ptr<RpcServer>> RpcServer::Start(transport::Device& device,
                                                    const RpcServerOptions& options,
                                                    std::map<uint16_t, RpcHandler> handlers) {
  if (options.max_message < kMinMessageSize || options.max_message > kMaxMessageSizeCap) {
    return Status::InvalidArgument("rpc max message size must be " +
                                   std::to_string(kMinMessageSize) + ".." +
                                   std::to_string(kMaxMessageSizeCap));
  }
  if (options.depth == 0 || options.depth > kMaxDepth) {
    return Status::InvalidArgument("rpc depth must be 1.." + std::to_string(kMaxDepth));
  }
  if (options.worker_threads == 0 || options.reply_cache_per_session == 0) {
    return Status::InvalidArgument("rpc server needs at least one worker and cache entry");
  }
  std::unique_ptr<RpcServer> s(new RpcServer(device, options, std::move(handlers)));
  auto listener = device.Listen(options.listen);
  if (!listener.ok()) {
    return listener.status().WithContext("rpc server listening on " + options.listen.ToString());
  }
  s->listener_ = std::move(listener).value();
  s->endpoint_ = s->listener_->local_endpoint();
  for (uint32_t i = 0; i < options.worker_threads; ++i) {
    s->workers_.emplace_back([p = s.get()] { p->WorkerLoop(); });
  }
  s->accept_thread_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  spdlog::info("rpc server on {} ({} workers, {} byte messages, depth {})", s->endpoint_.ToString(),
               options.worker_threads, options.max_message, options.depth);
  return s;
}

RpcServer::~RpcServer() { Stop(); }

void RpcServer::Stop() {
  if (stop_.exchange(true)) return;
  if (listener_) listener_->Shutdown();
  if (accept_thread_.joinable()) accept_thread_.join();
  std::list<std::shared_ptr<Connection>> conns;
  {
    MutexLock lock(conns_mu_);
    conns.swap(conns_);
  }
  for (auto& c : conns) c->Shutdown();
  queue_cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  {
    MutexLock lock(queue_mu_);
    queue_.clear();
  }
  conns.clear();
}

RpcServerStats RpcServer::stats() const {
  RpcServerStats st{n_connections_.load(), n_executed_.load(), n_cache_hits_.load(),
                    n_malformed_.load(), n_dropped_.load()};
  st.refused_connections = n_refused_.load();
  st.idle_closed = n_idle_closed_.load();
  st.lingering_dropped = n_lingering_dropped_.load();
  st.buffer_bytes = buffer_bytes_.load();
  {
    MutexLock lock(conns_mu_);
    st.open_connections = conns_.size();
  }
  {
    MutexLock lock(sessions_mu_);
    st.sessions = sessions_.size();
    for (const auto& [id, session] : sessions_) st.reply_cache_bytes += session->cache.bytes();
  }
  return st;
}

void RpcServer::DropSession(uint64_t session) {
  MutexLock lock(sessions_mu_);
  sessions_.erase(session);
}

void RpcServer::AcceptLoop() {
  while (!stop_.load()) {
    auto conn = std::make_shared<Connection>(this);
    transport::AcceptHandler handler =
        [&](std::span<const uint8_t> data,
            transport::QueuePair& qp) -> Result<std::vector<uint8_t>> {
      DPMFS_RETURN_IF_ERROR(Admit(qp.peer_description()));
      DPMFS_ASSIGN_OR_RETURN(ConnectRequest req, DecodeConnectRequest(data));
      return conn->Prepare(req, qp);
    };
    transport::QueuePairOptions qpo;
    qpo.max_send_wr = options_.depth + 2 * kSpareReplySlots;
    qpo.max_recv_wr = options_.depth;
    // The connection owns the QP, so it outlives every call of this handler.
    qpo.on_recv = [c = conn.get()](const Completion& comp) { c->OnRecv(comp); };
    auto qp = listener_->Accept(handler, qpo, std::chrono::milliseconds(200));
    {
      MutexLock lock(conns_mu_);
      SweepLocked();
    }
    if (!qp.ok()) {
      conn->Detach();
      if (qp.status().code() == StatusCode::kTimedOut) continue;
      if (stop_.load()) break;
      n_refused_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("rpc: connection refused: {}", qp.status().ToString());
      continue;
    }
    n_connections_.fetch_add(1, std::memory_order_relaxed);
    conn->Run(std::move(qp).value());
    spdlog::debug("rpc: client {} connected", conn->peer());
    MutexLock lock(conns_mu_);
    conns_.push_back(std::move(conn));
  }
}

Status RpcServer::Admit(const std::string& peer) {
  const std::string host = PeerHost(peer);
  MutexLock lock(conns_mu_);
  SweepLocked();
  size_t from_host = 0;
  for (const auto& c : conns_) from_host += PeerHost(c->peer()) == host ? 1 : 0;
  if (conns_.size() >= options_.max_connections) {
    return Status::ResourceExhausted("rpc server " + endpoint_.ToString() + " is at its limit of " +
                                     std::to_string(options_.max_connections) +
                                     " connections (--max-connections)");
  }
  if (from_host >= options_.max_connections_per_peer) {
    return Status::ResourceExhausted("rpc server " + endpoint_.ToString() + " already holds " +
                                     std::to_string(from_host) + " connections from " + host +
                                     ", its limit per peer address (--max-connections-per-peer)");
  }
  return Status::OK();
}

void RpcServer::SweepLocked() {
  const int64_t now = SteadyMs();
  if (options_.idle_timeout_ms != 0) {
    for (auto& c : conns_) {
      if (!c->finished() && now - c->last_request_ms() > options_.idle_timeout_ms) {
        spdlog::info("rpc: closing connection of {} (session {:#x}): no request for {} ms",
                     c->peer(), c->session(), options_.idle_timeout_ms);
        n_idle_closed_.fetch_add(1, std::memory_order_relaxed);
        c->Shutdown();
      }
    }
  }
  conns_.remove_if([](const auto& c) { return c->finished(); });
  // Sessions whose client has not been connected for session_linger_ms go with their
  // reply caches: a client that reconnects does so within its retries (seconds).
  std::unordered_set<uint64_t> connected;
  for (const auto& c : conns_) connected.insert(c->session());
  MutexLock lock(sessions_mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& s = *it->second;
    if (connected.count(it->first) != 0) {
      s.unconnected_since_ms = 0;
    } else if (s.unconnected_since_ms == 0) {
      s.unconnected_since_ms = now;
    } else if (now - s.unconnected_since_ms > options_.session_linger_ms) {
      n_lingering_dropped_.fetch_add(1, std::memory_order_relaxed);
      it = sessions_.erase(it);
      continue;
    }
    ++it;
  }
}

void RpcServer::Enqueue(Task task) {
  {
    MutexLock lock(queue_mu_);
    queue_.push_back(std::move(task));
  }
  queue_cv_.notify_one();
}

void RpcServer::WorkerLoop() {
  while (true) {
    Task task;
    {
      MutexLock lock(queue_mu_);
      lock.Wait(queue_cv_, [&]() REQUIRES(queue_mu_) { return stop_.load() || !queue_.empty(); });
      if (stop_.load()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    if (task.deferred_reply) {
      const MessageHeader& h = task.header;
      task.conn->SendReply(h.request_id, h.opcode, h.seq, h.status, task.payload);
    } else {
      Execute(task);
    }
  }
}

void RpcServer::Execute(Task& task) {
  const MessageHeader& h = task.header;
  auto reply_error = [&](const Status& st) {
    const std::string& m = st.message();
    task.conn->SendReply(h.request_id, h.opcode, h.seq, static_cast<int32_t>(st.code()),
                         {reinterpret_cast<const uint8_t*>(m.data()), m.size()});
  };
  // Idempotent requests bypass the cache: re-sent, they simply run again.
  const bool cached = !options_.at_most_once || options_.at_most_once(h.opcode);
  if (cached) {
    MutexLock lock(sessions_mu_);
    std::unique_ptr<Session>& s = sessions_[h.session];
    if (!s) {
      s = std::make_unique<Session>(options_.reply_cache_per_session,
                                    options_.reply_cache_bytes_per_session);
    }
    int32_t status = 0;
    std::vector<uint8_t> reply;
    switch (s->cache.Begin(h.seq, {task.conn, h.request_id}, &status, &reply)) {
      case SessionReplyCache::Start::kExecute:
        break;
      case SessionReplyCache::Start::kJoined:
        // A retry of a request still executing: answered too when it finishes.
        n_cache_hits_.fetch_add(1, std::memory_order_relaxed);
        return;
      case SessionReplyCache::Start::kCached:
        n_cache_hits_.fetch_add(1, std::memory_order_relaxed);
        lock.Unlock();
        task.conn->SendReply(h.request_id, h.opcode, h.seq, status, reply);
        return;
      case SessionReplyCache::Start::kTooOld:
        lock.Unlock();
        reply_error(Status::Aborted(
            "request seq " + std::to_string(h.seq) + " of session " + std::to_string(h.session) +
            " is older than the server's reply cache; it may or may not have executed"));
        return;
    }
  }

  Status st;
  std::vector<uint8_t> reply;
  auto handler = handlers_.find(h.opcode);
  if (handler == handlers_.end()) {
    st = Status::NotSupported("rpc server " + endpoint_.ToString() + " has no handler for opcode " +
                              std::to_string(h.opcode));
  } else {
    RpcRequest req{h.opcode, h.session, h.seq, task.payload, task.conn->peer()};
    n_executed_.fetch_add(1, std::memory_order_relaxed);
    Result<std::vector<uint8_t>> r = handler->second(req);
    if (r.ok()) {
      reply = std::move(r).value();
    } else {
      st = r.status();
    }
  }
  if (!st.ok()) reply.assign(st.message().begin(), st.message().end());
  int32_t status = static_cast<int32_t>(st.code());

  SessionReplyCache::Waiters waiters;
  if (!cached) {
    waiters.emplace_back(task.conn, h.request_id);
  } else {
    MutexLock lock(sessions_mu_);
    auto sit = sessions_.find(h.session);
    if (sit == sessions_.end()) {
      waiters.emplace_back(task.conn, h.request_id);  // the session was dropped meanwhile
    } else {
      sit->second->cache.Finish(h.seq, status, reply, &waiters);
    }
  }
  for (auto& [weak, request_id] : waiters) {
    if (auto c = std::static_pointer_cast<Connection>(weak.lock())) {
      c->SendReply(request_id, h.opcode, h.seq, status, reply);
    }
  }
}

}  // namespace dpmfs::rpc
