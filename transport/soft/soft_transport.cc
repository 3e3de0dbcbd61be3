// The soft transport's device, listener and connection handshake. The per-QP engine
// is in soft_queue_pair.cc; the design is in soft_internal.h and transport/README.md.
#include <libpmem.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

#include "transport/soft/soft_internal.h"

namespace dpmfs::transport {
namespace soft {

namespace {
constexpr size_t kKeepSmall = 64;  // recycled small buffers kept per QP
}  // namespace

std::unique_ptr<uint8_t[]> PieceBufferPool::Take() {
  {
    MutexLock lock(mu_);
    if (!free_.empty()) {
      auto b = std::move(free_.back());
      free_.pop_back();
      return b;
    }
  }
  return std::make_unique_for_overwrite<uint8_t[]>(kPieceSize);  // filled by the payload
}

void PieceBufferPool::Give(std::unique_ptr<uint8_t[]> buffer) {
  MutexLock lock(mu_);
  if (free_.size() < keep_) free_.push_back(std::move(buffer));
}

size_t PieceBufferPool::parked() const {
  MutexLock lock(mu_);
  return free_.size();
}

std::unique_ptr<uint8_t[]> PendingWrites::TakeBuffer(uint32_t length, uint32_t* capacity) {
  // A payload arrives in pieces of at most kPieceSize (soft_queue_pair.cc), so two size
  // classes serve every WRITE.
  if (length > kSmallBuffer) {
    *capacity = PieceBufferPool::kPieceSize;
    return pieces->Take();
  }
  *capacity = kSmallBuffer;
  {
    MutexLock lock(mu);
    if (!free_small.empty()) {
      auto b = std::move(free_small.back());
      free_small.pop_back();
      return b;
    }
  }
  return std::make_unique_for_overwrite<uint8_t[]>(kSmallBuffer);  // filled by the payload
}

std::optional<Clock::time_point> PendingWrites::OldestDue() {
  MutexLock lock(mu);
  if (entries.empty()) return std::nullopt;
  return entries.front().due;
}

void PendingWrites::Drain(bool all, Clock::time_point now) {
  MutexLock lock(mu);
  uint64_t released = 0;
  while (!entries.empty() && (all || entries.front().due <= now)) {
    Entry& e = entries.front();
    if (e.length > 0) {
      std::memcpy(e.dst, e.data.get(), e.length);
      if (e.capacity == kSmallBuffer && free_small.size() < kKeepSmall) {
        free_small.push_back(std::move(e.data));
      } else if (e.capacity == PieceBufferPool::kPieceSize) {
        pieces->Give(std::move(e.data));  // lock order: a QP's mu, then the pool's
      }
    }
    released += e.capacity;
    entries.pop_front();
  }
  buffered->fetch_sub(released, std::memory_order_relaxed);
}

SoftDevice::SoftDevice(const DeviceOptions& options)
    : options_(options),
      drain_delay_(std::chrono::microseconds(options.soft_drain_delay_us)),
      buffer_limit_(options.soft_buffer_bytes),
      cluster_key_(options.cluster_key),
      // Parked pieces: enough for the NIC buffer's budget, at most 16 MiB (a 1 MiB WRITE
      // at queue depth 16 in flight), so a burst leaves a bounded amount behind.
      piece_buffers_(std::make_shared<PieceBufferPool>(
          std::min<uint64_t>(options.soft_buffer_bytes, 16ull << 20) /
          PieceBufferPool::kPieceSize)) {
  drain_thread_ = std::thread([this] { DrainLoop(); });
}

SoftDevice::~SoftDevice() {
  // A clean shutdown is not a power loss: what the NIC acknowledged reaches memory.
  DrainAll();
  {
    MutexLock lock(drain_mu_);
    stop_ = true;
  }
  drain_cv_.notify_all();
  drain_thread_.join();
}

void SoftDevice::DrainLoop() {
  // Sleep precisely: the default 50 µs timer slack would stretch every drain delay.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  MutexLock lock(drain_mu_);
  while (!stop_) {
    if (due_.empty()) {
      drain_idle_ = true;
      lock.Wait(drain_cv_);
      continue;
    }
    drain_idle_ = false;
    Clock::time_point now = Clock::now();
    if (due_.front().due > now) {
      lock.WaitUntil(drain_cv_, due_.front().due);
      continue;
    }
    std::shared_ptr<PendingWrites> pending = std::move(due_.front().pending);
    due_.pop_front();
    lock.Unlock();
    pending->Drain(false, now);
    // Re-arm for the next entry of this QP, if any.
    Clock::time_point next{};
    {
      MutexLock pl(pending->mu);
      if (pending->entries.empty()) {
        pending->armed = false;
      } else {
        next = pending->entries.front().due;
      }
    }
    lock.Lock();
    // Wake for this QP at most once per half delay: each WRITE is placed between 1x and
    // 1.5x the delay after it arrived (never earlier, so the hazard window is at least
    // the configured one), and a stream of writes costs a timer wake-up per half delay
    // instead of one per WRITE.
    if (next != Clock::time_point{}) {
      due_.push_back(Due{std::max(next, now + drain_delay_ / 2), std::move(pending)});
    }
  }
}

void SoftDevice::Buffer(const std::shared_ptr<PendingWrites>& pending,
                        PendingWrites::Entry entry) {
  uint64_t len = entry.capacity;
  {
    MutexLock lock(pending->mu);
    pending->entries.push_back(std::move(entry));
  }
  if (buffered_bytes_.fetch_add(len, std::memory_order_relaxed) + len > buffer_limit_) {
    // The NIC buffer is full: stall this QP until its own writes are placed, like a
    // NIC that stops taking packets.
    pending->Drain(true, Clock::now());
  }
}

void SoftDevice::Arm(const std::shared_ptr<PendingWrites>& pending) {
  Clock::time_point due;
  {
    MutexLock lock(pending->mu);
    if (pending->armed || pending->entries.empty()) return;
    pending->armed = true;
    due = pending->entries.front().due;
  }
  bool wake;
  {
    MutexLock lock(drain_mu_);
    due_.push_back(Due{due, pending});
    // Only an idle drain thread needs waking: a sleeping one already waits for an
    // earlier due time (the delay is constant).
    wake = drain_idle_;
    drain_idle_ = false;
  }
  if (wake) drain_cv_.notify_one();
}

void SoftDevice::Track(const std::shared_ptr<PendingWrites>& pending) {
  MutexLock lock(drain_mu_);
  std::erase_if(tracked_, [](const auto& w) { return w.expired(); });
  tracked_.push_back(pending);
}

void SoftDevice::DrainAll() {
  std::vector<std::shared_ptr<PendingWrites>> all;
  {
    MutexLock lock(drain_mu_);
    for (const auto& w : tracked_) {
      if (auto p = w.lock()) all.push_back(std::move(p));
    }
    for (const auto& d : due_) all.push_back(d.pending);  // orphans of ended QPs
  }
  for (auto& p : all) p->Drain(true, Clock::now());
}

Result<MemoryRegion> SoftDevice::RegisterMemory(void* addr, uint64_t length, uint32_t access) {
  if (addr == nullptr || length == 0) {
    return Status::InvalidArgument("cannot register an empty memory region");
  }
  constexpr uint32_t kAll = kLocalWrite | kRemoteWrite | kRemoteRead | kRemoteFlush;
  if ((access & ~kAll) != 0) return Status::InvalidArgument("unknown access flags");
  static Mutex rng_mu;
  static std::mt19937 rng{std::random_device{}()};
  RegionEntry entry{static_cast<uint8_t*>(addr), length, access,
                    pmem_is_pmem(addr, length) != 0};
  std::unique_lock lock(regions_mu_);
  uint32_t key;
  {
    MutexLock rl(rng_mu);
    do {
      key = static_cast<uint32_t>(rng());
    } while (key == 0 || regions_.count(key) != 0);
  }
  regions_.emplace(key, entry);
  return MemoryRegion{addr, length, key, key, access};
}

Status SoftDevice::DeregisterMemory(const MemoryRegion& region) {
  DrainAll();  // acknowledged writes into the region land before it goes away
  std::unique_lock lock(regions_mu_);
  if (regions_.erase(region.lkey) == 0) {
    return Status::NotFound("memory region with key " + std::to_string(region.lkey) +
                            " is not registered");
  }
  return Status::OK();
}

uint8_t* SoftDevice::Check(uint32_t key, uint64_t addr, uint64_t len, uint32_t access,
                           RegionEntry* region) const {
  std::shared_lock lock(regions_mu_);
  auto it = regions_.find(key);
  if (it == regions_.end()) return nullptr;
  const RegionEntry& r = it->second;
  uint64_t base = reinterpret_cast<uint64_t>(r.addr);
  // Overflow-safe: addr within [base, base+length] and len fits after it.
  if (addr < base || addr - base > r.length || len > r.length - (addr - base)) return nullptr;
  if ((r.access & access) != access) return nullptr;
  if (region != nullptr) *region = r;
  return r.addr + (addr - base);
}

namespace {

void SetRecvTimeout(int fd, std::chrono::microseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000000), static_cast<suseconds_t>(t.count() % 1000000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

Status SendFrame(int fd, FrameType type, std::span<const uint8_t> payload) {
  FrameHeader h;
  h.type = type;
  h.payload_len = static_cast<uint32_t>(payload.size());
  uint8_t buf[kHeaderSize];
  EncodeHeader(h, buf);
  DPMFS_RETURN_IF_ERROR(SendAll(fd, buf, sizeof buf));
  return SendAll(fd, payload.data(), payload.size());
}

// Reads one handshake frame; a timeout surfaces as Unavailable from RecvAll (EAGAIN).
Result<std::pair<FrameHeader, std::vector<uint8_t>>> RecvFrame(int fd) {
  uint8_t buf[kHeaderSize];
  Status st = RecvAll(fd, buf, sizeof buf);
  if (!st.ok()) return st;
  DPMFS_ASSIGN_OR_RETURN(FrameHeader h, DecodeHeader(std::span<const uint8_t, kHeaderSize>(buf)));
  std::vector<uint8_t> payload(h.payload_len);  // bounded by DecodeHeader for handshakes
  if (h.type != FrameType::kConnect && h.type != FrameType::kAccept &&
      h.type != FrameType::kReject && h.type != FrameType::kChallenge) {
    return Status::Corruption("expected a handshake frame");
  }
  DPMFS_RETURN_IF_ERROR(RecvAll(fd, payload.data(), payload.size()));
  return std::make_pair(h, std::move(payload));
}

// The connection as both ends see it, for the proofs: the initiator's end, the target's.
Result<auth::ConnectionParams> Params(int fd, bool initiator) {
  DPMFS_ASSIGN_OR_RETURN(Endpoint local, LocalEndpoint(fd));
  std::string peer = PeerName(fd);
  auth::ConnectionParams p;
  p.backend = Backend::kSoft;
  p.initiator = initiator ? local.ToString() : peer;
  p.target = initiator ? peer : local.ToString();
  return p;
}

// The initiator's side of connection_auth.h, after HELLO went out: checks the target's
// CHALLENGE and sends AUTH carrying the application's request.
Status AnswerChallenge(int fd, const ClusterKey& key, const auth::Nonce& nonce,
                       std::span<const uint8_t> app_data, std::span<const uint8_t> credential,
                       const std::string& peer) {
  auto reply = RecvFrame(fd);
  if (!reply.ok()) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Status::TimedOut("no answer from " + peer + " within the timeout");
    }
    return Status::Unavailable("connecting to " + peer + ": " + reply.status().message());
  }
  if (reply->first.type == FrameType::kReject) {
    std::string reason(reply->second.begin(), reply->second.end());
    return Status::PermissionDenied("connection rejected by " + peer +
                                    (reason.empty() ? "" : ": " + reason));
  }
  if (reply->first.type != FrameType::kChallenge) {
    return Status::PermissionDenied(peer + " did not authenticate itself (it holds no cluster "
                                    "key, or is not a dpmfs server of this version): refused");
  }
  DPMFS_ASSIGN_OR_RETURN(auth::Challenge ch, auth::DecodeChallenge(reply->second));
  DPMFS_ASSIGN_OR_RETURN(auth::ConnectionParams conn, Params(fd, /*initiator=*/true));
  if (!auth::ProofsEqual(auth::TargetProof(key, nonce, ch.nonce, conn), ch.proof)) {
    return Status::PermissionDenied(peer + " failed to prove it holds the cluster key (the "
                                    "servers have another key file?): refused");
  }
  auth::AuthRequest req;
  req.proof = auth::InitiatorProof(key, nonce, ch.nonce, conn, app_data, credential);
  req.app_data.assign(app_data.begin(), app_data.end());
  req.credential.assign(credential.begin(), credential.end());
  return SendFrame(fd, FrameType::kAuth, auth::EncodeAuthRequest(req));
}

// Accepts connections. Handshakes in progress are polled together with the listening
// socket, each with its own deadline, so a peer that connects and says nothing (or
// garbage) delays nobody else: it is dropped when its deadline passes.
// Thread-safety: Accept from one thread at a time (serialised); Shutdown from any.
class SoftListener final : public Listener {
 public:
  SoftListener(SoftDevice* device, UniqueFd fd, Endpoint local)
      : device_(device), fd_(std::move(fd)), local_(std::move(local)),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

  Result<std::unique_ptr<QueuePair>> Accept(const AcceptHandler& handler,
                                            const QueuePairOptions& options,
                                            Duration timeout) override {
    MutexLock serial(accept_mu_);
    Clock::time_point deadline = Clock::now() + timeout;
    while (true) {
      if (shutdown_.load()) {
        return Status::Unavailable("listener on " + local_.ToString() + " shut down");
      }
      Clock::time_point now = Clock::now();
      std::erase_if(pending_, [&](const Handshake& h) {
        if (h.deadline > now) return false;
        HandshakeFailed(h, "no handshake within " +
                               std::to_string(device_->options().soft_handshake_timeout_ms) +
                               " ms");
        return true;
      });
      Clock::time_point wake_at = deadline;
      // Out of descriptors: leave the listening socket alone for a moment instead of
      // spinning on a readiness accept() cannot take (the backlog holds the rest).
      const bool accept_paused = now < accept_paused_until_;
      if (accept_paused) wake_at = std::min(wake_at, accept_paused_until_);
      std::vector<pollfd> fds = {{accept_paused ? -1 : fd_.get(), POLLIN, 0},
                                 {wake_.get(), POLLIN, 0}};
      for (const Handshake& h : pending_) {
        fds.push_back({h.fd.get(), POLLIN, 0});
        wake_at = std::min(wake_at, h.deadline);
      }
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake_at - now).count();
      int rc = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(ms, 0)));
      if (rc < 0 && errno != EINTR) return Status::FromErrno(errno, "poll on listener");
      if (shutdown_.load()) {
        return Status::Unavailable("listener on " + local_.ToString() + " shut down");
      }
      // Pending handshakes first (fds[2..] match pending_ as it was when polled).
      for (size_t i = fds.size(); i-- > 2;) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        Handshake& h = pending_[i - 2];
        Status st = ReadSome(h);
        if (!st.ok()) {
          HandshakeFailed(h, "bad connection request: " + st.message());
          pending_.erase(pending_.begin() + static_cast<ptrdiff_t>(i - 2));
          continue;
        }
        if (!h.complete) continue;
        if (device_->cluster_key() != nullptr && !h.authenticated) {
          Status auth = Authenticate(h);
          if (!auth.ok()) {
            HandshakeFailed(h, auth.message());
            // The peer learns only that it failed, never why.
            static constexpr std::string_view kReason = "authentication failed";
            (void)SendFrame(h.fd.get(), FrameType::kReject,
                            {reinterpret_cast<const uint8_t*>(kReason.data()), kReason.size()});
            pending_.erase(pending_.begin() + static_cast<ptrdiff_t>(i - 2));
            continue;
          }
          if (!h.authenticated) continue;  // CHALLENGE sent; the AUTH frame comes next
        }
        Handshake done = std::move(h);
        pending_.erase(pending_.begin() + static_cast<ptrdiff_t>(i - 2));
        return Finish(std::move(done), handler, options);
      }
      if (fds[0].revents & POLLIN) {
        UniqueFd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (conn.valid()) {
          SetNoDelay(conn.get());
          std::string peer = PeerName(conn.get());
          if (device_->cluster_key() != nullptr && !device_->auth_gate().Admit(peer)) {
            continue;  // too many failures from this address lately: closed unheard
          }
          const DeviceOptions& o = device_->options();
          if (pending_.size() >= std::max<uint32_t>(o.soft_max_pending_handshakes, 1)) {
            // The oldest is the likeliest to be silent: a real client's CONNECT follows
            // its connect within a round trip. Dropping it keeps the newest a chance.
            if (dropped_pending_++ % 100 == 0) {
              spdlog::warn("soft transport: {} connections without a CONNECT pending; dropping "
                           "the oldest, from {} ({} dropped so far)",
                           pending_.size(), pending_.front().peer, dropped_pending_);
            }
            pending_.erase(pending_.begin());
          }
          pending_.push_back(Handshake{
              std::move(conn), peer,
              Clock::now() + std::chrono::milliseconds(o.soft_handshake_timeout_ms)});
        } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          spdlog::warn("soft transport: cannot accept on {}: {}; pausing accepts for 50 ms",
                       local_.ToString(), std::strerror(errno));
          accept_paused_until_ = Clock::now() + std::chrono::milliseconds(50);
        }
      }
      if (Clock::now() >= deadline) {
        return Status::TimedOut("no connection request within the timeout");
      }
    }
  }

  Endpoint local_endpoint() const override { return local_; }

  void Shutdown() override {
    shutdown_.store(true);
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }

 private:
  struct Handshake {
    UniqueFd fd;
    std::string peer;
    Clock::time_point deadline;
    std::vector<uint8_t> buf;
    FrameHeader header;
    bool complete = false;
    // Authentication (only with a cluster key): after CONNECT's HELLO the CHALLENGE is
    // sent and the next frame must be AUTH; `app_data` is then the application's request.
    FrameType expect = FrameType::kConnect;
    auth::Nonce initiator_nonce{};
    auth::Nonce target_nonce{};
    bool authenticated = false;
    std::vector<uint8_t> app_data;
    std::vector<uint8_t> credential;  // AUTH's, for the accept handler (peer_credential)
    bool closed = false;  // the peer closed (or reset) its connection
  };

  // A handshake that ends without a connection. With a key, every such end (garbage, a
  // wrong frame, silence, a wrong proof) is a failed authentication: the gate logs it
  // (a bounded number of lines per address) and counts it against the peer's address.
  // A peer that closes before sending a byte (a port probe) is only noted.
  void HandshakeFailed(const Handshake& h, const std::string& why) {
    if (device_->cluster_key() == nullptr) {
      spdlog::warn("soft transport: handshake with {} failed: {}", h.peer, why);
    } else if (h.buf.empty() && h.expect == FrameType::kConnect && h.closed) {
      spdlog::debug("soft transport: {} closed its connection before a handshake", h.peer);
    } else {
      device_->auth_gate().Failed(h.peer, "soft", why);
    }
  }

  // One step of the target's side of connection_auth.h on a complete frame in `h.buf`:
  // HELLO -> send CHALLENGE and wait for AUTH; AUTH -> check the proof. An error is an
  // authentication failure (the caller logs, counts and rejects).
  Status Authenticate(Handshake& h) {
    std::span<const uint8_t> payload(h.buf.data() + kHeaderSize, h.buf.size() - kHeaderSize);
    const ClusterKey& key = *device_->cluster_key();
    DPMFS_ASSIGN_OR_RETURN(auth::ConnectionParams conn, Params(h.fd.get(), /*initiator=*/false));
    if (h.expect == FrameType::kConnect) {
      Result<auth::Hello> hello = auth::DecodeHello(payload);
      if (!hello.ok()) {
        return Status::PermissionDenied("its connection request is no authentication hello (a "
                                        "peer without the cluster key?): " +
                                        hello.status().message());
      }
      h.initiator_nonce = hello->nonce;
      h.target_nonce = auth::FreshNonce();
      auth::Challenge ch{h.target_nonce, auth::TargetProof(key, h.initiator_nonce,
                                                           h.target_nonce, conn)};
      DPMFS_RETURN_IF_ERROR(SendFrame(h.fd.get(), FrameType::kChallenge, auth::EncodeChallenge(ch)));
      h.expect = FrameType::kAuth;
      h.buf.clear();
      h.complete = false;
      return Status::OK();
    }
    Result<auth::AuthRequest> req = auth::DecodeAuthRequest(payload);
    if (!req.ok()) return req.status();
    auth::Proof want =
        auth::InitiatorProof(key, h.initiator_nonce, h.target_nonce, conn, req->app_data,
                             req->credential);
    if (!auth::ProofsEqual(want, req->proof)) {
      return Status::PermissionDenied("wrong proof of the cluster key (another key, or a "
                                      "replayed handshake)");
    }
    h.authenticated = true;
    h.app_data = std::move(req->app_data);
    h.credential = std::move(req->credential);
    return Status::OK();
  }

  // Reads what has arrived of the frame expected (CONNECT, or AUTH), never more than it.
  static Status ReadSome(Handshake& h) {
    while (!h.complete) {
      size_t want = h.buf.size() < kHeaderSize ? kHeaderSize
                                               : kHeaderSize + h.header.payload_len;
      size_t have = h.buf.size();
      h.buf.resize(want);
      ssize_t r = ::recv(h.fd.get(), h.buf.data() + have, want - have, MSG_DONTWAIT);
      if (r <= 0) {
        h.buf.resize(have);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
          return Status::OK();
        }
        h.closed = true;
        return Status::Unavailable("connection closed during the handshake");
      }
      h.buf.resize(have + static_cast<size_t>(r));
      if (h.buf.size() == kHeaderSize && have < kHeaderSize) {
        DPMFS_ASSIGN_OR_RETURN(
            h.header, DecodeHeader(std::span<const uint8_t, kHeaderSize>(h.buf.data(), kHeaderSize)));
        if (h.header.type != h.expect) {
          return Status::Corruption(h.expect == FrameType::kConnect ? "expected CONNECT"
                                                                    : "expected AUTH");
        }
      }
      if (h.buf.size() >= kHeaderSize && h.buf.size() == kHeaderSize + h.header.payload_len) {
        h.complete = true;
      }
    }
    return Status::OK();
  }

  Result<std::unique_ptr<QueuePair>> Finish(Handshake h, const AcceptHandler& handler,
                                            const QueuePairOptions& options) {
    int raw = h.fd.get();
    ::fcntl(raw, F_SETFL, ::fcntl(raw, F_GETFL) & ~O_NONBLOCK);  // the QP uses blocking reads
    std::vector<uint8_t> peer_data = h.authenticated
                                         ? std::move(h.app_data)
                                         : std::vector<uint8_t>(h.buf.begin() + kHeaderSize,
                                                                h.buf.end());
    auto qp = std::make_unique<SoftQueuePair>(device_, std::move(h.fd), options);
    qp->set_peer_credential(std::move(h.credential));
    if (options.prepare) {
      Status st = options.prepare(*qp);
      if (!st.ok()) {
        (void)SendFrame(raw, FrameType::kReject, {});
        return st;
      }
    }
    Result<std::vector<uint8_t>> reply = handler(peer_data, *qp);
    if (!reply.ok() || reply->size() > kMaxAcceptPrivateData) {
      std::string why = reply.ok() ? "accept private data longer than 196 bytes"
                                   : reply.status().message();
      std::string reason = why.substr(0, kMaxRejectReason);
      (void)SendFrame(raw, FrameType::kReject,
                      {reinterpret_cast<const uint8_t*>(reason.data()), reason.size()});
      if (!reply.ok()) return reply.status();
      return Status::InvalidArgument(why);
    }
    Status st = SendFrame(raw, FrameType::kAccept, *reply);
    if (!st.ok()) return st.WithContext("accepting " + h.peer);
    qp->Start(std::move(peer_data));
    return std::unique_ptr<QueuePair>(std::move(qp));
  }

  SoftDevice* device_;
  UniqueFd fd_;
  Endpoint local_;
  UniqueFd wake_;
  std::atomic<bool> shutdown_{false};
  Mutex accept_mu_;
  std::vector<Handshake> pending_;  // in accept order, oldest first
  uint64_t dropped_pending_ = 0;
  Clock::time_point accept_paused_until_{};
};

}  // namespace

Result<std::unique_ptr<Listener>> SoftDevice::Listen(const Endpoint& local) {
  DPMFS_ASSIGN_OR_RETURN(UniqueFd fd, TcpListen(local));
  DPMFS_ASSIGN_OR_RETURN(Endpoint bound, LocalEndpoint(fd.get()));
  return std::unique_ptr<Listener>(std::make_unique<SoftListener>(this, std::move(fd), bound));
}

Result<std::unique_ptr<QueuePair>> SoftDevice::Connect(const Endpoint& peer,
                                                       std::span<const uint8_t> private_data,
                                                       const QueuePairOptions& options,
                                                       Duration timeout) {
  if (private_data.size() > kMaxConnectPrivateData) {
    return Status::InvalidArgument("connect private data is " +
                                   std::to_string(private_data.size()) + " bytes; at most " +
                                   std::to_string(kMaxConnectPrivateData) + " allowed");
  }
  if (options.credential.size() > kMaxCredential) {
    return Status::InvalidArgument("connection credential is " +
                                   std::to_string(options.credential.size()) +
                                   " bytes; at most " + std::to_string(kMaxCredential) +
                                   " allowed");
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  DPMFS_ASSIGN_OR_RETURN(UniqueFd fd, TcpConnect(peer, std::max(ms, std::chrono::milliseconds(1))));
  int raw = fd.get();
  SetRecvTimeout(raw, timeout.count() > 0 ? timeout : std::chrono::microseconds(1000));
  auto qp = std::make_unique<SoftQueuePair>(this, std::move(fd), options);
  if (options.prepare) DPMFS_RETURN_IF_ERROR(options.prepare(*qp));
  if (cluster_key_ != nullptr) {
    const auth::Nonce nonce = auth::FreshNonce();
    DPMFS_RETURN_IF_ERROR(SendFrame(raw, FrameType::kConnect, auth::EncodeHello({nonce}))
                              .WithContext("connecting to " + peer.ToString()));
    DPMFS_RETURN_IF_ERROR(
        AnswerChallenge(raw, *cluster_key_, nonce, private_data, options.credential,
                        peer.ToString()));
  } else {
    DPMFS_RETURN_IF_ERROR(SendFrame(raw, FrameType::kConnect, private_data)
                              .WithContext("connecting to " + peer.ToString()));
  }
  auto reply = RecvFrame(raw);
  if (!reply.ok()) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Status::TimedOut("no answer from " + peer.ToString() + " within the timeout");
    }
    return Status::Unavailable("connecting to " + peer.ToString() + ": " +
                               reply.status().message());
  }
  if (reply->first.type == FrameType::kReject) {
    std::string reason(reply->second.begin(), reply->second.end());
    return Status::PermissionDenied("connection rejected by " + peer.ToString() +
                                    (reason.empty() ? "" : ": " + reason));
  }
  if (reply->first.type == FrameType::kChallenge) {
    return Status::PermissionDenied(peer.ToString() + " requires proof of the cluster key and "
                                    "this side has none: give it the cluster's key file");
  }
  if (reply->first.type != FrameType::kAccept) {
    return Status::Corruption("unexpected handshake reply from " + peer.ToString());
  }
  SetRecvTimeout(raw, std::chrono::microseconds(0));
  qp->Start(std::move(reply->second));
  return std::unique_ptr<QueuePair>(std::move(qp));
}

}  // namespace soft

Result<std::unique_ptr<Device>> OpenSoftDevice(const DeviceOptions& options) {
  return std::unique_ptr<Device>(std::make_unique<soft::SoftDevice>(options));
}

}  // namespace dpmfs::transport
