#include "rpc/rpc_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <utility>

#include "transport/send_queue_credits.h"

namespace dpmfs::rpc {

using transport::Completion;
using transport::Opcode;
using transport::WorkRequest;

namespace {
// How often the maintenance thread looks for queued calls that could go out: credits
// come back with send completions, which wake nobody.
constexpr auto kMaintenancePeriod = std::chrono::milliseconds(5);
// How long the only call in flight polls for its reply before sleeping (about a small
// call's round trip on loopback; measured against 0 and 60 us, see the commit).
constexpr auto kLonePoll = std::chrono::microseconds(30);

uint64_t RandomSession() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) v = (uint64_t{rd()} << 32) ^ rd();
  return v;
}
}  // namespace

// One connection: its QP and registered buffers
// [depth receive buffers][depth request buffers], each max_message bytes as asked.
struct RpcClient::Link {
  transport::Device& device;
  std::unique_ptr<transport::QueuePair> qp;
  std::unique_ptr<uint8_t[]> memory;  // not zeroed: see MakeLink
  transport::MemoryRegion mr;
  uint32_t buffer_size = 0;  // what we asked for
  uint32_t asked_depth = 0;
  uint32_t max_message = 0;  // granted
  uint32_t depth = 0;        // granted
  datapath::SendQueueCredits credits;
  std::vector<uint32_t> free_slots;
  bool lost = false;  // a receive failed: the QP is going down (guarded by mu_)
  // Callers may read the QP themselves (DriveReceives); false once the transport said
  // they cannot (guarded by mu_).
  bool drivable = true;

  Link(transport::Device& d, uint32_t size, uint32_t asked)
      : device(d), buffer_size(size), asked_depth(asked), credits(2 * asked + 8) {}
  ~Link() {
    if (qp) qp->Disconnect();
    qp.reset();
    if (mr.addr != nullptr) (void)device.DeregisterMemory(mr);
  }
  uint8_t* recv_buffer(uint64_t i) { return memory.get() + i * buffer_size; }
  uint8_t* send_buffer(uint64_t slot) { return memory.get() + (asked_depth + slot) * buffer_size; }
};

struct RpcClient::Pending {
  uint16_t opcode = 0;
  uint64_t seq = 0;
  std::vector<uint8_t> payload;
  int64_t slot = -1;       // request buffer while sent and unanswered
  bool abandoned = false;  // the caller timed out; the reply only returns the credit
  // Set under mu_; read without it by a caller reading the connection (DriveReceives).
  std::atomic<bool> done{false};
  bool waiting = false;   // its caller is in AwaitReply (under mu_)
  bool promoted = false;  // the caller is to read the connection (under mu_)
  std::condition_variable done_cv;  // the caller waits here, alone
  Status status;
  std::vector<uint8_t> reply;

  void Finish() {
    done.store(true, std::memory_order_release);
    done_cv.notify_one();
  }
};

RpcClient::RpcClient(transport::Device& device, const Endpoint& server,
                     const RpcClientOptions& options, uint64_t session)
    : device_(device), server_(server), options_(options), session_(session) {}

Result<std::unique_ptr<RpcClient>> RpcClient::Connect(transport::Device& device,
                                                      const Endpoint& server,
                                                      const RpcClientOptions& options) {
  if (options.max_message < kMinMessageSize || options.max_message > kMaxMessageSizeCap) {
    return Status::InvalidArgument("rpc max message size must be " +
                                   std::to_string(kMinMessageSize) + ".." +
                                   std::to_string(kMaxMessageSizeCap));
  }
  if (options.depth == 0 || options.depth > kMaxDepth) {
    return Status::InvalidArgument("rpc depth must be 1.." + std::to_string(kMaxDepth));
  }
  uint64_t session = options.session != 0 ? options.session : RandomSession();
  std::unique_ptr<RpcClient> c(new RpcClient(device, server, options, session));
  DPMFS_ASSIGN_OR_RETURN(auto link, c->MakeLink());
  {
    MutexLock lock(c->mu_);  // no other thread sees the client yet
    c->link_ = std::move(link);
    c->max_payload_ = c->link_->max_message - static_cast<uint32_t>(kHeaderSize);
  }
  c->thread_ = std::thread([p = c.get()] { p->MaintenanceLoop(); });
  return c;
}

RpcClient::~RpcClient() {
  {
    MutexLock lock(mu_);
    closed_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  link_.reset();
}

uint32_t RpcClient::max_payload() const {
  MutexLock lock(mu_);
  return max_payload_;
}

uint64_t RpcClient::reconnects() const {
  MutexLock lock(mu_);
  return reconnects_;
}

void RpcClient::DisconnectForTesting() {
  MutexLock lock(mu_);
  disconnect_requested_ = true;
  wake_cv_.notify_all();
}

Result<std::unique_ptr<RpcClient::Link>> RpcClient::MakeLink() {
  auto l = std::make_unique<Link>(device_, options_.max_message, options_.depth);
  // Every buffer is written before it is read: clearing them (16 MiB for MetaClient,
  // depth 32 of 256 KiB messages) only made connecting slow.
  const uint64_t bytes = uint64_t{2} * options_.depth * options_.max_message;
  l->memory = std::make_unique_for_overwrite<uint8_t[]>(bytes);
  DPMFS_ASSIGN_OR_RETURN(l->mr,
                         device_.RegisterMemory(l->memory.get(), bytes, transport::kLocalWrite));
  transport::QueuePairOptions qpo;
  qpo.max_send_wr = 2 * options_.depth + 8;
  qpo.max_recv_wr = options_.depth;
  Link* raw = l.get();
  // The link owns the QP, so it outlives every call of this handler.
  qpo.on_recv = [this, raw](const Completion& c) { OnRecv(*raw, c); };
  qpo.caller_driven_receives = true;  // the server only answers: callers read replies
  qpo.prepare = [raw](transport::QueuePair& qp) -> Status {
    for (uint32_t i = 0; i < raw->asked_depth; ++i) {
      WorkRequest wr;
      wr.opcode = Opcode::kRecv;
      wr.context = i;
      wr.local_addr = raw->recv_buffer(i);
      wr.length = raw->buffer_size;
      wr.lkey = raw->mr.lkey;
      DPMFS_RETURN_IF_ERROR(qp.PostRecv({&wr, 1}));
    }
    return Status::OK();
  };
  ConnectRequest req{session_, options_.max_message, options_.depth};
  auto qp =
      device_.Connect(server_, EncodeConnectRequest(req), qpo,
                      std::chrono::duration_cast<transport::Duration>(options_.connect_timeout));
  if (!qp.ok()) return qp.status().WithContext("connecting to rpc server " + server_.ToString());
  l->qp = std::move(qp).value();
  auto reply = DecodeConnectReply(l->qp->peer_private_data());
  if (!reply.ok()) return reply.status().WithContext("rpc server " + server_.ToString());
  if (reply->max_message > options_.max_message || reply->depth > options_.depth) {
    return Status::Corruption("rpc server " + server_.ToString() +
                              " granted more than this client asked for");
  }
  l->max_message = reply->max_message;
  l->depth = reply->depth;
  for (uint32_t i = 0; i < l->depth; ++i) l->free_slots.push_back(l->depth - 1 - i);
  return l;
}

RpcClient::Ticket RpcClient::Start(uint16_t opcode, std::span<const uint8_t> payload,
                                   std::chrono::milliseconds timeout) {
  Ticket t;
  t.timeout_ = timeout;
  t.deadline_ = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(mu_);
  if (payload.size() > max_payload_) {
    t.refused_ = Status::InvalidArgument("rpc request of " + std::to_string(payload.size()) +
                                         " bytes exceeds the " + std::to_string(max_payload_) +
                                         "-byte maximum payload of server " + server_.ToString());
    return t;
  }
  if (closed_) {
    t.refused_ = Status::Unavailable("rpc client is closed");
    return t;
  }
  if (broken_) {
    broken_ = false;
    reconnect_requested_ = true;
    wake_cv_.notify_all();
  }
  auto p = std::make_shared<Pending>();
  p->opcode = opcode;
  p->seq = next_seq_++;
  p->payload.assign(payload.begin(), payload.end());
  pending_[p->seq] = p;
  unsent_.push_back(p->seq);
  Pump();
  t.client_ = this;
  t.p_ = std::move(p);
  return t;
}

Result<std::vector<uint8_t>> RpcClient::Wait(Ticket& t) {
  if (t.client_ == nullptr) {
    return t.refused_.ok() ? Status::InvalidArgument("rpc: waiting for no call") : t.refused_;
  }
  std::shared_ptr<Pending> p = std::move(t.p_);
  t.client_ = nullptr;
  MutexLock lock(mu_);
  AwaitReply(lock, *p, t.deadline_);
  if (!p->done) {
    Forget(*p);
    return Status::TimedOut("rpc opcode " + std::to_string(p->opcode) + " to " +
                            server_.ToString() + ": no reply within " +
                            std::to_string(t.timeout_.count()) + " ms");
  }
  if (!p->status.ok()) return p->status;
  return std::move(p->reply);
}

RpcClient::Ticket& RpcClient::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    Drop();
    client_ = std::exchange(o.client_, nullptr);
    p_ = std::move(o.p_);
    deadline_ = o.deadline_;
    timeout_ = o.timeout_;
    refused_ = std::move(o.refused_);
  }
  return *this;
}

void RpcClient::Ticket::Drop() {
  if (client_ != nullptr && p_) client_->Abandon(*p_);
  client_ = nullptr;
  p_.reset();
}

void RpcClient::Abandon(Pending& p) {
  MutexLock lock(mu_);
  if (!p.done.load(std::memory_order_relaxed)) Forget(p);  // answered: already forgotten
}

void RpcClient::Forget(Pending& p) {
  if (p.slot < 0) {
    pending_.erase(p.seq);
    unsent_.erase(std::remove(unsent_.begin(), unsent_.end(), p.seq), unsent_.end());
  } else {
    p.abandoned = true;
  }
}

// Who reads the replies. A caller waiting for its reply reads the connection itself
// (the transport hands it every reply that arrives meanwhile, through OnRecv), so the
// reply wakes it directly instead of waking the transport's receive thread, which then
// wakes the caller: at one call in flight, one thread wake-up less per call, which on a
// machine with few cores is a large part of a small RPC's latency. One caller reads at
// a time; the others sleep until OnRecv finishes their call or the reader, leaving
// with its own reply, promotes one of them to read next.
void RpcClient::AwaitReply(MutexLock& lock, Pending& p,
                           std::chrono::steady_clock::time_point deadline) {
  // A caller that found the connection busy (the transport's thread reading it before
  // it parks) looks again this often; OnRecv still wakes it at once with its reply.
  constexpr auto kBusyRetry = std::chrono::milliseconds(1);
  using transport::QueuePair;
  p.waiting = true;
  while (!p.done.load(std::memory_order_relaxed)) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    Link* link = link_.get();
    if (link != nullptr && link->drivable && driven_link_ == nullptr && !link->lost) {
      driven_link_ = link;
      p.promoted = false;
      // The only call in flight polls for its reply for about a round trip before it
      // sleeps. With others in flight the reader has replies to deliver anyway, and a
      // polling thread would take a core from the callers it wakes.
      const auto poll_first = pending_.size() == 1 ? kLonePoll : transport::Duration(0);
      QueuePair::DriveResult r;
      {
        MutexUnlock unlocked(lock, mu_);
        r = link->qp->DriveReceives(
            std::chrono::duration_cast<transport::Duration>(deadline - now), poll_first,
            [&p] { return p.done.load(std::memory_order_acquire); });
      }
      driven_link_ = nullptr;
      drive_cv_.notify_all();
      if (r == QueuePair::DriveResult::kUnsupported) link->drivable = false;
      if (r == QueuePair::DriveResult::kBusy) {
        lock.WaitUntil(p.done_cv, std::min(deadline, now + kBusyRetry),
                       [&] { return p.done.load(std::memory_order_relaxed); });
      }
      continue;
    }
    // Another caller reads (it finishes this call or promotes this caller when it
    // leaves), or callers cannot read this link: its receive thread finishes the call.
    lock.WaitUntil(p.done_cv, deadline, [&]() REQUIRES(mu_) {
      return p.done.load(std::memory_order_relaxed) || p.promoted ||
             (driven_link_ == nullptr && link_ && link_->drivable && !link_->lost);
    });
    p.promoted = false;
  }
  p.waiting = false;
  PromoteWaiter(p);
}

void RpcClient::PromoteWaiter(const Pending& leaving) {
  if (driven_link_ != nullptr || !link_ || !link_->drivable) return;
  for (auto& [seq, q] : pending_) {
    // Only a call whose caller waits for it (a started call may not be waited for yet),
    // and not the leaving caller's own: it is still here when that one timed out.
    if (q.get() != &leaving && q->waiting && !q->done.load(std::memory_order_relaxed) &&
        !q->abandoned) {
      q->promoted = true;
      q->done_cv.notify_one();
      return;
    }
  }
}

void RpcClient::ReapSends(Link& link) {
  Completion sc[32];
  while (size_t n = link.qp->PollSend(sc)) {
    for (size_t i = 0; i < n; ++i) {
      if (sc[i].ok()) link.credits.Completed();
    }
  }
}

void RpcClient::Pump() {
  if (!link_) return;
  Link& link = *link_;
  ReapSends(link);
  while (!unsent_.empty() && !link.free_slots.empty() &&
         link.qp->state() == transport::QpState::kConnected) {
    if (!link.credits.CanPost(1)) break;  // the next reply or maintenance tick pumps again
    auto it = pending_.find(unsent_.front());
    if (it == pending_.end()) {
      unsent_.pop_front();
      continue;
    }
    Pending& p = *it->second;
    if (p.payload.size() > link.max_message - kHeaderSize) {
      // The server granted less after a reconnect.
      p.status = Status::InvalidArgument("rpc request of " + std::to_string(p.payload.size()) +
                                         " bytes exceeds the server's maximum payload");
      p.Finish();
      pending_.erase(it);
      unsent_.pop_front();
      continue;
    }
    uint32_t slot = link.free_slots.back();
    uint8_t* buf = link.send_buffer(slot);
    MessageHeader h;
    h.kind = MessageKind::kRequest;
    h.opcode = p.opcode;
    h.request_id = p.seq;
    h.session = session_;
    h.seq = p.seq;
    h.payload_len = static_cast<uint32_t>(p.payload.size());
    EncodeHeader(h, buf);
    if (!p.payload.empty()) std::memcpy(buf + kHeaderSize, p.payload.data(), p.payload.size());
    WorkRequest wr;
    wr.opcode = Opcode::kSend;
    wr.signaled = link.credits.ShouldSignal(1);
    wr.context = slot;
    wr.local_addr = buf;
    wr.length = static_cast<uint32_t>(kHeaderSize + p.payload.size());
    wr.lkey = link.mr.lkey;
    if (!link.qp->PostSend({&wr, 1}).ok()) break;  // the maintenance thread sees the loss
    link.credits.Posted(1, wr.signaled);
    link.free_slots.pop_back();
    p.slot = slot;
    unsent_.pop_front();
  }
}

void RpcClient::HandleReply(Link& link, const Completion& c) {
  if (c.context >= link.asked_depth) return;
  uint8_t* buf = link.recv_buffer(c.context);
  bool id_readable = false;
  MessageHeader h;
  auto msg = DecodeMessage({buf, std::min(c.byte_len, link.buffer_size)}, link.max_message,
                           &id_readable, &h);
  if (!msg.ok()) {
    spdlog::warn("rpc: ignoring a malformed reply from {}: {}", server_.ToString(),
                 msg.status().ToString());
  } else if (msg->header.kind != MessageKind::kResponse || msg->header.session != session_) {
    spdlog::warn("rpc: ignoring a message from {} that is not a reply of this session",
                 server_.ToString());
  } else {
    auto it = pending_.find(msg->header.request_id);
    if (it == pending_.end() || it->second->slot < 0 || it->second->seq != msg->header.seq) {
      spdlog::warn("rpc: ignoring a reply from {} to no outstanding request ({})",
                   server_.ToString(), msg->header.request_id);
    } else {
      Pending& p = *it->second;
      link.free_slots.push_back(static_cast<uint32_t>(p.slot));
      p.slot = -1;
      if (!p.abandoned) {
        if (msg->header.status == 0) {
          p.reply.assign(msg->payload.begin(), msg->payload.end());
        } else {
          p.status = Status(static_cast<StatusCode>(msg->header.status),
                            std::string(msg->payload.begin(), msg->payload.end()));
        }
        p.Finish();
      }
      pending_.erase(it);
    }
  }
  WorkRequest wr;
  wr.opcode = Opcode::kRecv;
  wr.context = c.context;
  wr.local_addr = buf;
  wr.length = link.buffer_size;
  wr.lkey = link.mr.lkey;
  (void)link.qp->PostRecv({&wr, 1});  // a failure shows in the QP state
}

void RpcClient::OnRecv(Link& link, const Completion& c) {
  MutexLock lock(mu_);
  if (link_.get() != &link || link.lost) return;  // a link being torn down
  if (!c.ok()) {
    link.lost = true;  // the maintenance thread reconnects
    wake_cv_.notify_all();
    return;
  }
  HandleReply(link, c);
  Pump();
}

void RpcClient::MaintenanceLoop() {
  MutexLock lock(mu_);
  while (!closed_) {
    if (!link_) {
      if (reconnect_requested_) {
        reconnect_requested_ = false;
        lock.Unlock();
        Reconnect();
        lock.Lock();
      } else {
        lock.WaitFor(wake_cv_, std::chrono::milliseconds(100));
      }
      continue;
    }
    if (disconnect_requested_) {
      disconnect_requested_ = false;
      link_->lost = true;
    }
    if (link_->lost || link_->qp->state() != transport::QpState::kConnected) {
      lock.Unlock();
      HandleLoss();
      Reconnect();
      lock.Lock();
      continue;
    }
    if (!unsent_.empty()) Pump();
    lock.WaitFor(wake_cv_, kMaintenancePeriod);
  }
}

void RpcClient::HandleLoss() {
  std::unique_ptr<Link> old;
  {
    MutexLock lock(mu_);
    old = std::move(link_);
    unsent_.clear();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second->abandoned) {
        it = pending_.erase(it);
        continue;
      }
      it->second->slot = -1;
      unsent_.push_back(it->first);  // in seq order: re-sent as first sent
      ++it;
    }
  }
  spdlog::warn("rpc: lost the connection to {}; reconnecting", server_.ToString());
  if (old) {
    // A caller may be reading this QP: shut it down so the caller returns, and destroy
    // it only once that caller has left it.
    old->qp->Disconnect();
    MutexLock lock(mu_);
    lock.Wait(drive_cv_, [&]() REQUIRES(mu_) { return driven_link_ != old.get(); });
  }
  old.reset();
}

void RpcClient::Reconnect() {
  auto backoff = options_.reconnect_backoff_initial;
  Status last;
  for (uint32_t attempt = 0; attempt < options_.reconnect_attempts; ++attempt) {
    {
      MutexLock lock(mu_);
      if (closed_) return;
    }
    auto l = MakeLink();
    if (l.ok()) {
      {
        MutexLock lock(mu_);
        link_ = std::move(l).value();
        max_payload_ = link_->max_message - static_cast<uint32_t>(kHeaderSize);
        ++reconnects_;
        Pump();
      }
      spdlog::info("rpc: reconnected to {} (session {:#x})", server_.ToString(), session_);
      return;
    }
    last = l.status();
    spdlog::debug("rpc: reconnect attempt {} failed: {}", attempt + 1, last.ToString());
    MutexLock lock(mu_);
    lock.WaitFor(wake_cv_, backoff, [&]() REQUIRES(mu_) { return closed_; });
    backoff = std::min(backoff * 2, options_.reconnect_backoff_max);
  }
  MutexLock lock(mu_);
  broken_ = true;
  for (auto& [seq, p] : pending_) {
    if (p->abandoned) continue;
    p->status =
        Status::Unavailable("rpc server " + server_.ToString() + " unreachable after " +
                            std::to_string(options_.reconnect_attempts) + " reconnect attempts (" +
                            last.ToString() + "); the request may or may not have executed");
    p->Finish();
  }
  pending_.clear();
  unsent_.clear();
  spdlog::warn("rpc: giving up reconnecting to {} for now", server_.ToString());
}

}  // namespace dpmfs::rpc
