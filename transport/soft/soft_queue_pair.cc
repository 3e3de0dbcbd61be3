// The soft RNIC's per-QP engine: posting, the output path, the rx thread that executes
// requests as the target and matches responses as the initiator. See soft_internal.h.
#include <libpmem.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "transport/soft/soft_internal.h"

namespace dpmfs::transport::soft {
namespace {

// Payloads at least this large are read straight into their destination.
constexpr size_t kDirectReadThreshold = 16 * 1024;
constexpr size_t kMaxIov = 256;
// Responses held back for one batched send: at most this many, each at most this big.
constexpr size_t kMaxHeldResponses = 64;
constexpr uint32_t kMaxHeldPayload = 64 * 1024;
// A WRITE's payload is read into the NIC buffer in pieces of at most this size, each
// allocated only when its bytes are about to arrive: a header announcing 1 GiB commits
// nothing it was merely told (a stalled sender holds one piece, then times out).
constexpr uint32_t kWritePiece = PieceBufferPool::kPieceSize;

bool IsRequest(FrameType t) { return static_cast<uint8_t>(t) <= 5; }

FrameType RequestType(Opcode op) {
  switch (op) {
    case Opcode::kWrite: return FrameType::kWrite;
    case Opcode::kWriteWithImm: return FrameType::kWriteWithImm;
    case Opcode::kRead: return FrameType::kRead;
    case Opcode::kSend: return FrameType::kSend;
    default: return FrameType::kFlush;
  }
}

}  // namespace

SoftQueuePair::SoftQueuePair(SoftDevice* device, UniqueFd fd, const QueuePairOptions& options)
    : device_(device), fd_(std::move(fd)), peer_(PeerName(fd_.get())), options_(options),
      pending_(std::make_shared<PendingWrites>(device->buffered_bytes(), device->piece_buffers())) {
  device_->Track(pending_);
}

SoftQueuePair::~SoftQueuePair() { Disconnect(); }

void SoftQueuePair::Start(std::vector<uint8_t> peer_private_data) {
  peer_private_data_ = std::move(peer_private_data);
  rx_buf_ = std::make_unique<uint8_t[]>(kRxBufferSize);
  placement_timer_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!placement_timer_) {
    // Without it the rx thread still places due WRITEs whenever a frame arrives, and
    // the device's drain thread places them once the connection ends; say so once.
    spdlog::warn("soft transport: timerfd_create failed ({}); buffered WRITEs of an idle "
                 "connection are placed late", std::strerror(errno));
  }
  rx_thread_ = std::thread([this] { RxLoop(); });
}

void SoftQueuePair::Disconnect() {
  if (!stopping_.exchange(true)) ::shutdown(fd_.get(), SHUT_RDWR);
  {
    MutexLock park_lock(park_mu_);  // a parked rx thread must see the shutdown
    unpark_ = true;
  }
  park_cv_.notify_all();
  {
    MutexLock lock(out_mu_);  // an rx thread waiting for output room must see stopping_
  }
  room_cv_.notify_all();
  // An on_recv handler may disconnect from the rx thread itself: that thread cannot join
  // itself; it leaves its loop once the handler returns (the socket is shut down) and
  // fails what is outstanding there. The destructor joins it.
  if (std::this_thread::get_id() == rx_thread_.get_id()) return;
  MutexLock join_lock(join_mu_);
  if (rx_thread_.joinable()) rx_thread_.join();
  // Output() starts the tx thread under out_mu_ only while not stopping: taken under
  // the same lock, no thread can appear after this join.
  std::thread tx;
  {
    MutexLock lock(out_mu_);
    tx = std::move(tx_thread_);
  }
  out_cv_.notify_all();
  if (tx.joinable()) tx.join();
  EnterError(CompletionStatus::kFlushed);
}

void SoftQueuePair::DeliverRecv(const Completion& c) {
  if (options_.on_recv) {
    // Handed over once this batch's acknowledgements are out (DeliverHeld): a handler
    // that makes the application send (an RPC caller woken by its reply posts its next
    // request) must not get ahead of the ACKs this QP owes the peer for the same data,
    // or the peer sees new requests while its sends still look outstanding.
    held_deliveries_.push_back(c);
  } else {
    recv_cq_.Push(c);
  }
}

void SoftQueuePair::DeliverHeld() {
  if (held_deliveries_.empty()) return;
  std::vector<Completion> batch;
  batch.swap(held_deliveries_);
  // What the handlers of one batch send (an RPC server's replies) leaves in one
  // sendmsg: one wake-up of the peer instead of one per message. Kept in posting
  // order with anything other threads post meanwhile (it queues behind the cork).
  const bool cork = batch.size() > 1;
  if (cork) Cork();
  for (const Completion& c : batch) options_.on_recv(c);
  if (cork) Uncork();
  if (held_deliveries_.empty()) {  // keep the capacity for the next batch
    batch.clear();
    held_deliveries_.swap(batch);
  }
}

// ---------------------------------------------------------------- posting

Status SoftQueuePair::PostSend(std::span<const WorkRequest> chain) {
  if (chain.empty()) return Status::OK();
  for (const WorkRequest& wr : chain) {
    switch (wr.opcode) {
      case Opcode::kWrite:
      case Opcode::kWriteWithImm:
      case Opcode::kRead:
      case Opcode::kSend:
      case Opcode::kFlush:
        break;
      default:
        return Status::InvalidArgument(std::string(OpcodeName(wr.opcode)) +
                                       " cannot be posted on a send queue");
    }
    if (wr.length > kMaxTransferSize) {
      return Status::InvalidArgument("work request of " + std::to_string(wr.length) +
                                     " bytes exceeds the transfer limit");
    }
    if (wr.opcode != Opcode::kFlush && wr.length > 0) {
      uint32_t need = wr.opcode == Opcode::kRead ? uint32_t{kLocalWrite} : 0u;
      if (device_->Check(wr.lkey, reinterpret_cast<uint64_t>(wr.local_addr), wr.length, need) ==
          nullptr) {
        return Status::PermissionDenied(
            std::string(OpcodeName(wr.opcode)) + " local buffer is not inside a region "
            "registered with lkey " + std::to_string(wr.lkey) +
            (need ? " with local write access" : ""));
      }
    }
  }

  // Small chains (the common persist chains) are built on the stack.
  OutFrame stack_frames[4];
  std::vector<OutFrame> heap_frames;
  std::span<OutFrame> frames;
  if (chain.size() <= 4) {
    frames = std::span<OutFrame>(stack_frames, chain.size());
  } else {
    heap_frames.resize(chain.size());
    frames = heap_frames;
  }
  // Sequence numbers are taken under out_mu_, so frames leave in sequence order; send_mu_
  // is held only while they are taken, not across the sendmsg. A poster preempted
  // inside sendmsg (loopback runs the peer's receive path and wakes it right there)
  // must not hold what the rx thread needs to complete the answer: that cost two
  // extra context switches per READ (measured with perf sched on 2 vCPUs).
  MutexLock out_lock(out_mu_);
  MutexLock lock(send_mu_);
  if (error_.load(std::memory_order_acquire)) {
    return Status::FailedPrecondition("queue pair to " + peer_ + " is in the error state");
  }
  if (outstanding_.size() + chain.size() > options_.max_send_wr) {
    return Status::ResourceExhausted("send queue full (" + std::to_string(outstanding_.size()) +
                                     " outstanding, max_send_wr " +
                                     std::to_string(options_.max_send_wr) + ")");
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const WorkRequest& wr = chain[i];
    uint64_t seq = next_seq_++;
    outstanding_.push_back(Outstanding{seq, wr.context, wr.opcode, wr.signaled,
                                       static_cast<uint8_t*>(wr.local_addr), wr.length});
    FrameHeader h;
    h.type = RequestType(wr.opcode);
    h.flags = wr.signaled ? kFlagSignaled : 0;
    h.seq = seq;
    h.remote_addr = wr.remote_addr;
    h.rkey = wr.rkey;
    h.imm = wr.imm;
    h.length = wr.length;
    bool carries = wr.opcode == Opcode::kWrite || wr.opcode == Opcode::kWriteWithImm ||
                   wr.opcode == Opcode::kSend;
    h.payload_len = carries ? wr.length : 0;
    EncodeHeader(h, frames[i].header);
    frames[i].payload = carries ? static_cast<const uint8_t*>(wr.local_addr) : nullptr;
    frames[i].payload_len = h.payload_len;
  }
  lock.Unlock();
  OutputLocked(out_lock, frames, /*copy_payload_if_queued=*/false);
  return Status::OK();
}

Status SoftQueuePair::PostRecv(std::span<const WorkRequest> recvs) {
  for (const WorkRequest& wr : recvs) {
    if (wr.opcode != Opcode::kRecv) {
      return Status::InvalidArgument("only RECV requests can be posted on a receive queue");
    }
    if (wr.length > 0 && device_->Check(wr.lkey, reinterpret_cast<uint64_t>(wr.local_addr),
                                        wr.length, kLocalWrite) == nullptr) {
      return Status::PermissionDenied("RECV buffer is not inside a region registered with lkey " +
                                      std::to_string(wr.lkey) + " with local write access");
    }
  }
  // Before the receive can be used: from now on the rx thread keeps reading (MayPark) -
  // unless callers read messages themselves (DriveReceives), which receives allow. A
  // hand-back there would only be a stale wake-up: the rx thread's first park would
  // end at once, and it would keep the socket in a blocking read until the next frame,
  // turning every caller away meanwhile.
  if (!receives_posted_.exchange(true, std::memory_order_seq_cst) &&
      !options_.caller_driven_receives) {
    HandBack();
  }
  MutexLock lock(recv_mu_);
  if (error_.load(std::memory_order_acquire)) {
    return Status::FailedPrecondition("queue pair to " + peer_ + " is in the error state");
  }
  if (posted_recvs_.size() + recvs.size() > options_.max_recv_wr) {
    return Status::ResourceExhausted("receive queue full (max_recv_wr " +
                                     std::to_string(options_.max_recv_wr) + ")");
  }
  for (const WorkRequest& wr : recvs) {
    posted_recvs_.push_back(PostedRecv{wr.context, static_cast<uint8_t*>(wr.local_addr), wr.length});
  }
  return Status::OK();
}

// ---------------------------------------------------------------- output path

void SoftQueuePair::Output(std::span<OutFrame> frames, bool copy_payload_if_queued) {
  MutexLock lock(out_mu_);
  OutputLocked(lock, frames, copy_payload_if_queued);
}

void SoftQueuePair::OutputLocked(MutexLock& lock, std::span<OutFrame> frames,
                                 bool copy_payload_if_queued) {
  (void)lock;  // held: it guards the socket's write side and out_queue_
  if (stopping_.load(std::memory_order_acquire)) return;
  size_t first_unsent = 0;
  if (out_queue_.empty() && !corked_) {
    // Fast path: write directly, without blocking.
    iovec iov[kMaxIov];
    size_t n = 0;
    for (size_t i = 0; i < frames.size() && n + 2 <= kMaxIov; ++i) {
      iov[n++] = {frames[i].header, kHeaderSize};
      if (frames[i].payload_len > 0) {
        iov[n++] = {const_cast<uint8_t*>(frames[i].bytes()), frames[i].payload_len};
      }
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t w = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return;  // the connection is broken; the rx thread sees it and fails the QP
    }
    size_t written = w > 0 ? static_cast<size_t>(w) : 0;
    while (first_unsent < frames.size()) {
      size_t total = kHeaderSize + frames[first_unsent].payload_len;
      if (written >= total) {
        written -= total;
        ++first_unsent;
      } else {
        frames[first_unsent].sent = written;
        break;
      }
    }
    if (first_unsent == frames.size()) return;
  }
  for (size_t i = first_unsent; i < frames.size(); ++i) {
    OutFrame& f = frames[i];
    if (copy_payload_if_queued) f.OwnPayload();
    f.queued_cost = kHeaderSize + (copy_payload_if_queued ? f.payload_len : 0);
    out_queued_cost_ += f.queued_cost;
    out_queue_.push_back(std::move(f));
  }
  if (corked_) return;  // Uncork sends it
  if (!tx_thread_.joinable()) tx_thread_ = std::thread([this] { TxLoop(); });
  out_cv_.notify_one();
}

void SoftQueuePair::Cork() {
  MutexLock lock(out_mu_);
  corked_ = true;
}

void SoftQueuePair::Uncork() {
  MutexLock lock(out_mu_);
  corked_ = false;
  if (out_queue_.empty() || stopping_.load(std::memory_order_acquire)) return;
  WriteQueuedLocked();
  if (out_queue_.empty()) return;
  if (!tx_thread_.joinable()) tx_thread_ = std::thread([this] { TxLoop(); });
  out_cv_.notify_one();
}

bool SoftQueuePair::WriteQueuedLocked() {
  iovec iov[kMaxIov];
  size_t n = 0;
  for (size_t i = 0; i < out_queue_.size() && n + 2 <= kMaxIov; ++i) {
    OutFrame& f = out_queue_[i];
    if (f.sent < kHeaderSize) iov[n++] = {f.header + f.sent, kHeaderSize - f.sent};
    size_t pay_off = f.sent > kHeaderSize ? f.sent - kHeaderSize : 0;
    if (f.payload_len > pay_off) {
      iov[n++] = {const_cast<uint8_t*>(f.bytes()) + pay_off, f.payload_len - pay_off};
    }
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  ssize_t w = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    out_queue_.clear();  // broken connection: the rx thread fails the QP
    out_queued_cost_ = 0;
    room_cv_.notify_all();
    return true;
  }
  size_t written = static_cast<size_t>(w);
  while (!out_queue_.empty() && written > 0) {
    OutFrame& f = out_queue_.front();
    size_t left = kHeaderSize + f.payload_len - f.sent;
    if (written >= left) {
      written -= left;
      out_queued_cost_ -= f.queued_cost;
      out_queue_.pop_front();
      room_cv_.notify_all();
    } else {
      f.sent += written;
      written = 0;
    }
  }
  return true;
}

void SoftQueuePair::TxLoop() {
  MutexLock lock(out_mu_);
  while (true) {
    lock.Wait(out_cv_, [&]() REQUIRES(out_mu_) { return !out_queue_.empty() || stopping_.load(); });
    if (stopping_.load()) return;
    if (!WriteQueuedLocked()) {  // the socket is full: wait until it drains
      lock.Unlock();
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, 100);
      lock.Lock();
    }
  }
}

bool SoftQueuePair::WaitForOutputRoom() {
  const DeviceOptions& o = device_->options();
  MutexLock lock(out_mu_);
  if (out_queued_cost_ <= o.soft_max_queued_bytes) return true;
  auto room = [&]() REQUIRES(out_mu_) {
    return out_queued_cost_ <= o.soft_max_queued_bytes || stopping_.load();
  };
  if (o.soft_stall_timeout_ms == 0) {
    lock.Wait(room_cv_, room);
  } else if (!lock.WaitUntil(room_cv_,
                             Clock::now() + std::chrono::milliseconds(o.soft_stall_timeout_ms),
                             room)) {
    spdlog::warn("soft transport: {} has not read {} bytes of responses for {} ms; closing the "
                 "connection",
                 peer_, out_queued_cost_, o.soft_stall_timeout_ms);
    return false;
  }
  return !stopping_.load();
}

void SoftQueuePair::OutFrame::OwnPayload() {
  if (payload_len == 0 || inline_payload || owned) return;
  if (payload_len <= kInlinePayload) {
    std::memcpy(inline_bytes, payload, payload_len);
    inline_payload = true;
  } else {
    owned = std::make_unique<uint8_t[]>(payload_len);
    std::memcpy(owned.get(), payload, payload_len);
    payload = owned.get();
  }
}

void SoftQueuePair::Respond(FrameType type, uint64_t seq, uint32_t imm, const uint8_t* payload,
                            uint32_t len) {
  OutFrame f;
  EncodeHeader(FrameHeader{type, 0, len, imm, seq, 0, 0, len}, f.header);
  f.payload = payload;
  f.payload_len = len;
  // Nothing else received (the QD1 case), or a large READ response: send at once,
  // straight from memory, behind whatever was held.
  bool last_of_batch = rx_begin_ == rx_end_;
  if ((last_of_batch && held_responses_.empty()) || len > kMaxHeldPayload) {
    FlushResponses();
    Output(std::span<OutFrame>(&f, 1), /*copy_payload_if_queued=*/true);
    DeliverHeld();
    return;
  }
  f.OwnPayload();  // snapshot: a later request of this batch may change the memory
  held_responses_.push_back(std::move(f));
  // Nothing more received: answer now. Otherwise the next blocking read flushes.
  if (last_of_batch || held_responses_.size() >= kMaxHeldResponses) {
    FlushResponses();
    DeliverHeld();
  }
}

void SoftQueuePair::FlushResponses() {
  if (held_responses_.empty()) return;
  Output(held_responses_, /*copy_payload_if_queued=*/true);
  held_responses_.clear();
}

// ---------------------------------------------------------------- rx path

Status SoftQueuePair::WaitReadableFor(bool bounded) {
  const uint32_t ms = device_->options().soft_stall_timeout_ms;
  if (!bounded || ms == 0) return Status::OK();  // the blocking recv waits
  pollfd p{fd_.get(), POLLIN, 0};
  while (true) {
    int rc = ::poll(&p, 1, static_cast<int>(ms));
    if (rc > 0) return Status::OK();
    if (rc == 0) {
      return Status::TimedOut("connection to " + peer_ + ": a frame begun " + std::to_string(ms) +
                              " ms ago is still incomplete (stalled sender); closing it");
    }
    if (errno != EINTR) return Status::FromErrno(errno, "poll on " + peer_);
  }
}

Status SoftQueuePair::ReadExact(void* dst, size_t n, bool frame_start) {
  auto* out = static_cast<uint8_t*>(dst);
  const size_t wanted = n;
  while (n > 0) {
    if (rx_begin_ < rx_end_) {
      size_t take = std::min(n, rx_end_ - rx_begin_);
      std::memcpy(out, rx_buf_.get() + rx_begin_, take);
      rx_begin_ += take;
      out += take;
      n -= take;
      continue;
    }
    // About to block: answer this batch, then place buffered WRITEs as they come due.
    FlushResponses();
    DeliverHeld();
    PlaceDueWhileIdle();
    // Between frames a connection may idle for as long as it likes; inside one, the
    // rest must keep coming.
    DPMFS_RETURN_IF_ERROR(WaitReadableFor(!frame_start || n != wanted));
    if (n >= kDirectReadThreshold) {
      ssize_t r = ::recv(fd_.get(), out, n, 0);
      if (r == 0) return Status::Unavailable("connection closed by " + peer_);
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::Unavailable("connection to " + peer_ + " failed: " + std::strerror(errno));
      }
      out += r;
      n -= static_cast<size_t>(r);
      continue;
    }
    ssize_t r = ::recv(fd_.get(), rx_buf_.get(), kRxBufferSize, 0);
    if (r == 0) return Status::Unavailable("connection closed by " + peer_);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable("connection to " + peer_ + " failed: " + std::strerror(errno));
    }
    rx_begin_ = 0;
    rx_end_ = static_cast<size_t>(r);
  }
  return Status::OK();
}

void SoftQueuePair::PlaceDueWhileIdle() {
  while (auto due = pending_->OldestDue()) {
    auto now = Clock::now();
    if (*due <= now) {
      pending_->Drain(false, now);
      continue;
    }
    if (!placement_timer_) return;
    if (placement_timer_at_ && *placement_timer_at_ <= now) {
      uint64_t expirations;  // consume the expiry so the timerfd stops polling readable
      (void)!::read(placement_timer_.get(), &expirations, sizeof expirations);
      placement_timer_at_.reset();
    }
    // steady_clock is CLOCK_MONOTONIC, the timerfd's clock. Placed between 1x and 2x
    // the delay after arrival, never earlier. While frames keep coming they place what
    // is due on arrival and the timer fires once per delay at most: a timer wake-up per
    // half delay (the drain thread's bound) kept `none` above `read` at 4 KiB QD1
    // (45 -> 30 us p50, 3 alternating runs each, medians of 3).
    const Clock::time_point latest = *due + device_->drain_delay();
    if (!placement_timer_at_ || *placement_timer_at_ > latest || *placement_timer_at_ < *due) {
      if (!ArmPlacementTimer(latest)) return;  // recv then; a later frame places them
    }
    pollfd p[2] = {{fd_.get(), POLLIN, 0}, {placement_timer_.get(), POLLIN, 0}};
    int rc = ::poll(p, 2, -1);
    if (rc < 0 && errno != EINTR) return;
    if (rc > 0 && p[0].revents != 0) return;  // data (or an error/EOF for recv to report)
  }
}

bool SoftQueuePair::ArmPlacementTimer(Clock::time_point at) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  if (::timerfd_settime(placement_timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
    placement_timer_at_.reset();
    return false;
  }
  placement_timer_at_ = at;
  return true;
}

bool SoftQueuePair::ReceiveFrame(CompletionStatus* why) {
  uint8_t raw[kHeaderSize];
  Status st = ReadExact(raw, kHeaderSize, /*frame_start=*/true);
  if (!st.ok()) {
    if (st.code() == StatusCode::kTimedOut) {
      spdlog::warn("soft transport: {}", st.message());
    } else if (!stopping_.load()) {
      spdlog::debug("soft transport: {}", st.ToString());
    }
    return false;
  }
  auto h = DecodeHeader(std::span<const uint8_t, kHeaderSize>(raw));
  if (!h.ok()) {
    spdlog::warn("soft transport: malformed frame from {}: {}; closing the connection", peer_,
                 h.status().message());
    return false;
  }
  if (IsRequest(h->type)) {
    // A peer that keeps asking but does not read the answers is read no further.
    if (!WaitForOutputRoom()) return false;
    // The rx thread serves the peer's requests from now on; SENDs to a QP opened for
    // caller-driven receives are what its callers wait for, and may read themselves.
    if (h->type != FrameType::kSend || !options_.caller_driven_receives) {
      peer_initiated_.store(true, std::memory_order_release);
    }
    st = HandleRequest(*h);
  } else if (h->type == FrameType::kAck || h->type == FrameType::kReadResponse ||
             h->type == FrameType::kNak) {
    st = HandleResponse(*h);
    if (h->type == FrameType::kNak) *why = CompletionStatus::kFlushed;
  } else {
    st = Status::Corruption("handshake frame on an established connection");
  }
  if (!st.ok()) {
    if (st.code() == StatusCode::kCorruption) {
      spdlog::warn("soft transport: protocol error from {}: {}; closing the connection", peer_,
                   st.message());
    }
    return false;
  }
  return true;
}

void SoftQueuePair::RxLoop() {
  // Wake precisely at due times: the default 50 us timer slack would stretch the delay.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  CompletionStatus why = CompletionStatus::kTransportError;
  std::unique_lock rx(rx_mu_);
  while (true) {
    if (rx_failed_) {  // a caller reading the socket saw the connection end
      why = rx_failed_why_;
      break;
    }
    if (rx_begin_ == rx_end_) {
      // A batch boundary: answer and deliver it now (ReadExact would, before blocking)
      // so that nothing held keeps this thread from parking.
      FlushResponses();
      DeliverHeld();
    }
    if (MayPark() && !ParkRx(rx)) continue;
    if (!ReceiveFrame(&why)) break;
  }
  FlushResponses();        // e.g. the NAK that ended the loop
  DeliverHeld();
  device_->Arm(pending_);  // acknowledged data still reaches memory after a disconnect
  // Our own Disconnect() flushes what is outstanding; only a lost peer is an error.
  if (stopping_.load()) why = CompletionStatus::kFlushed;
  EnterError(why);
  // Let a NAK queued before the failure go out, then close our side: FIN, not RST.
  {
    MutexLock lock(out_mu_);
    auto deadline = Clock::now() + std::chrono::milliseconds(200);
    while (!out_queue_.empty() && !stopping_.load() && Clock::now() < deadline) {
      lock.Unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      lock.Lock();
    }
  }
  ::shutdown(fd_.get(), SHUT_WR);
}

Status SoftQueuePair::RefuseRequest(uint64_t seq, CompletionStatus why,
                                    const std::string& reason) {
  spdlog::warn("soft transport: refusing request {} from {}: {}", seq, peer_, reason);
  Respond(FrameType::kNak, seq, static_cast<uint32_t>(why), nullptr, 0);
  return Status::Aborted(reason);
}

Status SoftQueuePair::HandleRequest(const FrameHeader& h) {
  switch (h.type) {
    case FrameType::kWrite:
    case FrameType::kWriteWithImm: {
      uint8_t* dst = device_->Check(h.rkey, h.remote_addr, h.length, kRemoteWrite);
      if (dst == nullptr) {
        return RefuseRequest(h.seq, CompletionStatus::kRemoteAccessError,
                             "WRITE outside a remotely writable region (rkey " +
                                 std::to_string(h.rkey) + ")");
      }
      if (h.type == FrameType::kWriteWithImm) {
        MutexLock lock(recv_mu_);
        if (posted_recvs_.empty()) {
          return RefuseRequest(h.seq, CompletionStatus::kRnrRetryExceeded,
                               "WRITE_WITH_IMM with no receive posted");
        }
      }
      // Piece by piece: memory is committed as the payload arrives, never for what the
      // header merely announced. A WRITE placed in part when its sender stalls is what
      // an RC QP allows for a WRITE that failed: the range it names may have changed.
      uint32_t placed = 0;
      do {
        const uint32_t piece = std::min(h.length - placed, kWritePiece);
        std::unique_ptr<uint8_t[]> data;
        uint32_t capacity = 0;
        if (piece > 0) {
          data = pending_->TakeBuffer(piece, &capacity);
          Status rs = ReadExact(data.get(), piece);
          if (!rs.ok()) {
            if (rs.code() == StatusCode::kTimedOut) spdlog::warn("soft transport: {}", rs.message());
            return rs;
          }
        }
        device_->Buffer(pending_, PendingWrites::Entry{dst + placed, std::move(data), piece,
                                                       Clock::now() + device_->drain_delay(),
                                                       capacity});
        placed += piece;
      } while (placed < h.length);
      if (h.type == FrameType::kWriteWithImm) {
        // The receive completion is delivered after the data (and all before it) is placed.
        pending_->Drain(true, Clock::now());
        PostedRecv r;
        {
          MutexLock lock(recv_mu_);
          r = posted_recvs_.front();
          posted_recvs_.pop_front();
        }
        DeliverRecv(Completion{r.context, Opcode::kRecvWithImm, CompletionStatus::kSuccess,
                               h.length, h.imm, true});
      }
      break;
    }
    case FrameType::kRead: {
      uint8_t* src = device_->Check(h.rkey, h.remote_addr, h.length, kRemoteRead);
      if (src == nullptr) {
        return RefuseRequest(h.seq, CompletionStatus::kRemoteAccessError,
                             "READ outside a remotely readable region (rkey " +
                                 std::to_string(h.rkey) + ")");
      }
      // A READ waits for every earlier WRITE of its QP to be placed, at once.
      pending_->Drain(true, Clock::now());
      Respond(FrameType::kReadResponse, h.seq, 0, src, h.length);
      return Status::OK();  // the response is the acknowledgement
    }
    case FrameType::kSend: {
      PostedRecv r;
      {
        MutexLock lock(recv_mu_);
        if (posted_recvs_.empty()) {
          return RefuseRequest(h.seq, CompletionStatus::kRnrRetryExceeded,
                               "SEND with no receive posted");
        }
        r = posted_recvs_.front();
        posted_recvs_.pop_front();
      }
      if (r.length < h.length) {
        DeliverRecv(Completion{r.context, Opcode::kRecv, CompletionStatus::kLocalLengthError, 0,
                               0, false});
        return RefuseRequest(h.seq, CompletionStatus::kRemoteInvalidRequest,
                             "SEND of " + std::to_string(h.length) +
                                 " bytes into a receive buffer of " + std::to_string(r.length));
      }
      if (h.length > 0) DPMFS_RETURN_IF_ERROR(ReadExact(r.addr, h.length));
      pending_->Drain(true, Clock::now());  // earlier WRITEs are placed before the SEND is seen
      DeliverRecv(Completion{r.context, Opcode::kRecv, CompletionStatus::kSuccess, h.length, 0,
                             false});
      break;
    }
    case FrameType::kFlush: {
      RegionEntry region;
      uint8_t* p = device_->Check(h.rkey, h.remote_addr, h.length, kRemoteFlush, &region);
      if (p == nullptr) {
        return RefuseRequest(h.seq, CompletionStatus::kRemoteAccessError,
                             "FLUSH outside a region registered for remote flush (rkey " +
                                 std::to_string(h.rkey) + ")");
      }
      pending_->Drain(true, Clock::now());
      // Placed data on real PM still sits in CPU caches: persist it. On ordinary memory
      // (tmpfs, page cache) placed data already survives the soft model's power loss.
      if (region.is_pmem && h.length > 0) pmem_persist(p, h.length);
      break;
    }
    default:
      return Status::Corruption("not a request");
  }
  if (h.signaled()) Respond(FrameType::kAck, h.seq, 0, nullptr, 0);
  return Status::OK();
}

bool SoftQueuePair::RetireBeforeLocked(uint64_t seq) {
  while (!outstanding_.empty() && outstanding_.front().seq < seq) {
    const Outstanding& o = outstanding_.front();
    // A READ completes only with its response: a later response cannot stand for it.
    if (o.opcode == Opcode::kRead) return false;
    if (o.signaled) {
      send_cq_.Push(Completion{o.context, o.opcode, CompletionStatus::kSuccess, o.length, 0, false});
    }
    outstanding_.pop_front();
  }
  return true;
}

Status SoftQueuePair::HandleResponse(const FrameHeader& h) {
  MutexLock lock(send_mu_);
  if (!RetireBeforeLocked(h.seq)) {
    return Status::Corruption("response for request " + std::to_string(h.seq) +
                              " skips a READ that was never answered");
  }
  if (outstanding_.empty() || outstanding_.front().seq != h.seq) {
    return Status::Corruption("response for request " + std::to_string(h.seq) +
                              " that is not outstanding");
  }
  Outstanding o = outstanding_.front();
  switch (h.type) {
    case FrameType::kAck:
      if (o.opcode == Opcode::kRead) return Status::Corruption("ACK for a READ");
      break;
    case FrameType::kReadResponse: {
      if (o.opcode != Opcode::kRead || h.length != o.length) {
        return Status::Corruption("READ response does not match the READ posted");
      }
      // Only this thread pops outstanding entries, so `o` stays valid unlocked; the
      // posting thread must not be held up by a large payload.
      lock.Unlock();
      if (h.length > 0) DPMFS_RETURN_IF_ERROR(ReadExact(o.local_addr, h.length));
      lock.Lock();
      if (outstanding_.empty() || outstanding_.front().seq != h.seq) {
        return Status::Aborted("queue pair failed during a READ");
      }
      break;
    }
    case FrameType::kNak: {
      auto why = static_cast<CompletionStatus>(h.imm);
      if (h.imm == 0 || h.imm > static_cast<uint32_t>(CompletionStatus::kFlushed)) {
        why = CompletionStatus::kRemoteInvalidRequest;
      }
      error_.store(true, std::memory_order_release);
      send_cq_.Push(Completion{o.context, o.opcode, why, 0, 0, false});
      outstanding_.pop_front();
      return Status::Aborted("request refused by the target");
    }
    default:
      return Status::Corruption("not a response");
  }
  if (o.signaled) {
    send_cq_.Push(Completion{o.context, o.opcode, CompletionStatus::kSuccess, o.length, 0, false});
  }
  outstanding_.pop_front();
  return Status::OK();
}

void SoftQueuePair::EnterError(CompletionStatus first_status) {
  error_.store(true, std::memory_order_release);
  {
    MutexLock lock(send_mu_);
    bool first = true;
    for (const Outstanding& o : outstanding_) {
      send_cq_.Push(Completion{o.context, o.opcode,
                               first ? first_status : CompletionStatus::kFlushed, 0, 0, false});
      first = false;
    }
    outstanding_.clear();
  }
  std::deque<PostedRecv> flushed;
  {
    MutexLock lock(recv_mu_);
    flushed.swap(posted_recvs_);
  }
  // Outside recv_mu_: an on_recv handler may post receives.
  for (const PostedRecv& r : flushed) {
    Completion c{r.context, Opcode::kRecv, CompletionStatus::kFlushed, 0, 0, false};
    if (options_.on_recv) {
      options_.on_recv(c);
    } else {
      recv_cq_.Push(c);
    }
  }
}

}  // namespace dpmfs::transport::soft
