// Internals of the soft transport: a software RNIC over TCP (see transport/README.md).
//
// Per device (one "NIC"):
//   - a memory-region table (lkey == rkey, random, never 0), checked on every access;
//   - one drain thread that copies buffered WRITE payloads into registered memory once
//     their drain delay has passed: the volatile NIC buffer that persist methods close.
// Per queue pair (one TCP connection; each side is both initiator and target):
//   - an rx thread that reads every frame: requests it executes as the target,
//     responses it matches against its own outstanding requests as the initiator.
//     On a QP used only to initiate and waited on synchronously (a data client's),
//     the caller waiting in WaitSend/PollSend reads its responses itself while the rx
//     thread parks (soft_caller_rx.cc);
//   - an output path: whoever has a frame to send writes it with a non-blocking send
//     when nothing is queued before it, otherwise queues it for a tx thread that is
//     started on first need. The rx thread therefore never blocks on a full socket,
//     which is what keeps two peers from deadlocking each other.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <optional>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/socket.h"
#include "transport/soft/soft_completion_queue.h"
#include "transport/connection_auth.h"
#include "transport/soft/soft_wire.h"
#include "transport/transport.h"

namespace dpmfs::transport::soft {

using Clock = std::chrono::steady_clock;

struct RegionEntry {
  uint8_t* addr = nullptr;
  uint64_t length = 0;
  uint32_t access = 0;
  bool is_pmem = false;
};

class SoftDevice;

// Buffers for the pieces a large WRITE payload is read in (soft_queue_pair.cc reads a
// payload piece by piece so that memory is committed only as bytes arrive), recycled
// across the QPs of one device. Handing each piece back to malloc made glibc return
// its pages (madvise) and fault them in again at the next piece: a 1 MiB WRITE took
// 10x as long as with one buffer. At most `keep` buffers stay parked, so what the
// pool holds after a burst is bounded (64 KiB x keep).
// Thread-safety: Take and Give may be called from any thread.
class PieceBufferPool {
 public:
  static constexpr uint32_t kPieceSize = 64 * 1024;
  explicit PieceBufferPool(size_t keep) : keep_(keep) {}
  // A buffer of kPieceSize bytes (contents unspecified).
  std::unique_ptr<uint8_t[]> Take() EXCLUDES(mu_);
  // Parks `buffer` (kPieceSize bytes) for the next Take, or frees it when `keep` are parked.
  void Give(std::unique_ptr<uint8_t[]> buffer) EXCLUDES(mu_);
  size_t parked() const EXCLUDES(mu_);

 private:
  const size_t keep_;
  mutable Mutex mu_;
  std::vector<std::unique_ptr<uint8_t[]>> free_ GUARDED_BY(mu_);
};

// WRITE payloads acknowledged but not yet in memory, in arrival order, for one QP.
// Shared with the drain thread, which may outlive the QP: acknowledged data still
// reaches memory after a disconnect (only killing the process loses it).
// Thread-safety: all members under mu.
struct PendingWrites {
  // `buffered`: the device's count of buffer bytes in use, which Drain lowers itself so
  // that no caller can forget to (the NIC buffer budget and backpressure rely on it).
  // `pieces`: the device's pool for payload pieces larger than kSmallBuffer.
  PendingWrites(std::atomic<uint64_t>* buffered, std::shared_ptr<PieceBufferPool> pieces)
      : buffered(buffered), pieces(std::move(pieces)) {}

  struct Entry {
    uint8_t* dst;
    std::unique_ptr<uint8_t[]> data;
    uint32_t length;
    Clock::time_point due;
    uint32_t capacity;  // bytes of `data`: what counts against the NIC buffer budget
  };
  std::atomic<uint64_t>* const buffered;
  const std::shared_ptr<PieceBufferPool> pieces;
  Mutex mu;
  std::deque<Entry> entries GUARDED_BY(mu);
  bool armed GUARDED_BY(mu) = false;  // the drain thread holds a notice for the oldest entry

  // Buffers of small payloads (the common persist sizes) are recycled per QP so the hot
  // path allocates nothing per WRITE; larger pieces (at most PieceBufferPool::kPieceSize,
  // the size a payload is read in) come from the device's pool.
  static constexpr uint32_t kSmallBuffer = 4096;
  std::vector<std::unique_ptr<uint8_t[]>> free_small GUARDED_BY(mu);

  // Due time of the oldest entry, or nullopt when nothing is buffered.
  std::optional<Clock::time_point> OldestDue() EXCLUDES(mu);
  // A buffer for a payload piece of `length` bytes (0 < length <= kPieceSize) and its
  // capacity.
  std::unique_ptr<uint8_t[]> TakeBuffer(uint32_t length, uint32_t* capacity) EXCLUDES(mu);
  // Copies entries whose due time passed (all of them if `all`) into memory, in order,
  // recycles their buffers and releases their bytes from the device's budget.
  void Drain(bool all, Clock::time_point now) EXCLUDES(mu);
};

class SoftQueuePair final : public QueuePair {
 public:
  SoftQueuePair(SoftDevice* device, UniqueFd fd, const QueuePairOptions& options);
  ~SoftQueuePair() override;

  // Starts the rx thread once the handshake is done.
  void Start(std::vector<uint8_t> peer_private_data);

  Status PostSend(std::span<const WorkRequest> chain) override;
  Status PostRecv(std::span<const WorkRequest> recvs) override;
  size_t PollSend(std::span<Completion> out) override;    // soft_caller_rx.cc
  size_t PollRecv(std::span<Completion> out) override { return recv_cq_.Poll(out); }
  size_t WaitSend(std::span<Completion> out, Duration t) override;  // soft_caller_rx.cc
  size_t WaitRecv(std::span<Completion> out, Duration t) override { return recv_cq_.Wait(out, t); }
  DriveResult DriveReceives(Duration timeout, Duration poll_first,
                            const std::function<bool()>& done) override;  // soft_caller_rx.cc
  QpState state() const override {
    return error_.load(std::memory_order_acquire) ? QpState::kError : QpState::kConnected;
  }
  std::span<const uint8_t> peer_private_data() const override { return peer_private_data_; }
  std::span<const uint8_t> peer_credential() const override { return peer_credential_; }
  // Target side, before the accept handler runs: what AUTH carried.
  void set_peer_credential(std::vector<uint8_t> c) { peer_credential_ = std::move(c); }
  std::string peer_description() const override { return peer_; }
  void Disconnect() override;

 private:
  // ---- output path (soft_queue_pair.cc) ----
  struct OutFrame {
    static constexpr uint32_t kInlinePayload = 16;  // e.g. the 1-byte persisting READ

    uint8_t header[kHeaderSize];
    const uint8_t* payload = nullptr;  // borrowed (registered memory) unless owned
    uint32_t payload_len = 0;
    size_t sent = 0;  // bytes of header + payload already written
    // Bytes this frame holds in memory while queued (header, plus the payload when it
    // owns a copy): what soft_max_queued_bytes bounds.
    uint64_t queued_cost = 0;

    // The payload to send. (Not `payload` once inline: a moved frame's inline bytes move.)
    const uint8_t* bytes() const { return inline_payload ? inline_bytes : payload; }
    // Makes the frame own a copy of its payload: inline when small, so snapshotting a
    // small response allocates nothing.
    void OwnPayload();

   private:
    bool inline_payload = false;
    uint8_t inline_bytes[kInlinePayload];
    std::unique_ptr<uint8_t[]> owned;
  };
  // Sends frames in order without ever blocking the caller on the socket.
  // `copy_payload_if_queued`: snapshot the payload when it cannot go out at once
  // (target responses); requests borrow the caller's registered memory instead.
  void Output(std::span<OutFrame> frames, bool copy_payload_if_queued);
  // The same with out_mu_ already held by `lock`.
  void OutputLocked(MutexLock& lock, std::span<OutFrame> frames,
                    bool copy_payload_if_queued) REQUIRES(out_mu_);
  void TxLoop();
  // One non-blocking sendmsg of out_queue_ (out_mu_ held); false if the socket is full.
  bool WriteQueuedLocked() REQUIRES(out_mu_);
  // Rx thread, before it serves a request: while the responses queued for the peer
  // exceed soft_max_queued_bytes (a peer that sends requests but does not read their
  // answers), waits for them to drain. False when they did not within the stall
  // timeout (or the QP is stopping): the connection is then closed.
  bool WaitForOutputRoom();
  // While corked, frames queue (whoever posts them) instead of going out; Uncork sends
  // the queue in one sendmsg (the tx thread takes what the socket does not).
  void Cork();
  void Uncork();

  // ---- rx path ----
  void RxLoop();
  // Reads and handles one frame (rx_mu_ held). False once the connection is done:
  // `*why` then says how outstanding requests fail.
  bool ReceiveFrame(CompletionStatus* why);
  // Reads n bytes (rx thread, or a caller holding rx_mu_). Once a frame has begun
  // (`frame_start` false, or some of these bytes arrived), waiting for more is bounded
  // by the device's stall timeout: a half-sent frame does not hold the QP forever.
  Status ReadExact(void* dst, size_t n, bool frame_start = false);
  // Blocks until the socket is readable; bounded by the stall timeout when `bounded`.
  Status WaitReadableFor(bool bounded);
  // Before a blocking read: places this QP's buffered WRITEs as they come due, until
  // data arrives (or the connection reports something) — the rx thread is this QP's
  // drain engine while it lives, so no other thread wakes per WRITE. It sleeps on the
  // socket and a timerfd that stays armed across sleeps (placement_timer_), never on a
  // poll timeout: a timeout arms and cancels a kernel timer per WRITE, and on this
  // machine's virtual CPUs that cost more than the round trip (see transport/README.md).
  void PlaceDueWhileIdle();
  // Arms placement_timer_ to fire at `at` (rx_mu_ held); false if the kernel refused.
  bool ArmPlacementTimer(Clock::time_point at);
  Status SkipBytes(size_t n);
  Status HandleRequest(const FrameHeader& h);
  Status HandleResponse(const FrameHeader& h);
  // Target responses are held while more requests sit in the rx buffer and sent
  // together before the rx thread blocks (a NIC coalesces ACKs the same way): one
  // sendmsg per received batch instead of one per request.
  void Respond(FrameType type, uint64_t seq, uint32_t imm, const uint8_t* payload,
               uint32_t len);
  void FlushResponses();
  // Target refuses request `seq`: NAK it and take the QP down (as an RC QP does).
  Status RefuseRequest(uint64_t seq, CompletionStatus why, const std::string& reason);

  // ---- initiator bookkeeping ----
  struct Outstanding {
    uint64_t seq;
    uint64_t context;
    Opcode opcode;
    bool signaled;
    uint8_t* local_addr;
    uint32_t length;
  };
  // Retires outstanding requests with seq < `seq` (success, completions for signaled).
  // False, retiring nothing further, if that would skip an unanswered READ.
  bool RetireBeforeLocked(uint64_t seq) REQUIRES(send_mu_);
  // Moves the QP to error: outstanding requests complete with `first` (the failed one,
  // if any) then kFlushed; posted receives are flushed too.
  void EnterError(CompletionStatus first_status);
  // A receive completion (rx thread): held for options_.on_recv if set, else to the
  // receive CQ. DeliverHeld hands the held ones over, after FlushResponses.
  void DeliverRecv(const Completion& c);
  void DeliverHeld();

  SoftDevice* device_;
  UniqueFd fd_;
  std::string peer_;
  QueuePairOptions options_;
  std::vector<uint8_t> peer_private_data_;
  std::vector<uint8_t> peer_credential_;
  std::atomic<bool> error_{false};
  std::atomic<bool> stopping_{false};

  CompletionQueue send_cq_;
  CompletionQueue recv_cq_;

  Mutex send_mu_;
  std::deque<Outstanding> outstanding_ GUARDED_BY(send_mu_);
  uint64_t next_seq_ GUARDED_BY(send_mu_) = 1;

  Mutex recv_mu_;
  struct PostedRecv {
    uint64_t context;
    uint8_t* addr;
    uint32_t length;
  };
  std::deque<PostedRecv> posted_recvs_ GUARDED_BY(recv_mu_);

  Mutex out_mu_;  // also serialises the socket's write side
  std::condition_variable out_cv_;
  std::deque<OutFrame> out_queue_ GUARDED_BY(out_mu_);
  uint64_t out_queued_cost_ GUARDED_BY(out_mu_) = 0;  // sum of queued_cost in out_queue_
  std::condition_variable room_cv_;  // the queue shrank (tx thread) or the QP stops
  std::thread tx_thread_;
  bool corked_ GUARDED_BY(out_mu_) = false;

  std::shared_ptr<PendingWrites> pending_;

  std::thread rx_thread_;
  Mutex join_mu_;  // serialises Disconnect()s that join the threads
  // rx read buffer: bulk reads cut syscalls; large payloads bypass it.
  static constexpr size_t kRxBufferSize = 64 * 1024;
  std::unique_ptr<uint8_t[]> rx_buf_;
  size_t rx_begin_ = 0, rx_end_ = 0;
  std::vector<OutFrame> held_responses_;  // rx thread only
  // Wakes the rx thread when a buffered WRITE is due and no frame arrives first
  // (rx thread only). Armed for the oldest entry's due time plus one drain delay, and
  // re-armed only when it fires or the oldest entry would be placed later than that:
  // a stream of WRITEs arms it (and is woken by it) once per delay at most.
  UniqueFd placement_timer_;
  std::optional<Clock::time_point> placement_timer_at_;
  std::vector<Completion> held_deliveries_;  // rx thread only

  // ---- caller-driven reception (soft_caller_rx.cc) ----
  // A caller waiting for its own send completion reads the socket itself instead of
  // sleeping until the rx thread hands the completion over: one thread wake-up less per
  // READ, which is most of its cost on a 2-CPU machine. Only on QPs where the rx thread
  // has nothing else to do: the caller waits synchronously (WaitSend was used), no
  // receive was ever posted (no SEND can arrive; the receive paths stay the rx thread's)
  // and the peer never sent a request (no target role). The same for a caller waiting
  // for a message (DriveReceives) on a QP whose peer only SENDs (caller_driven_receives):
  // it runs the target side of those SENDs and on_recv itself. There the rx thread parks
  // between frames instead of blocking in recv. "rx thread only" state above means:
  // whoever holds rx_mu_.
  bool MayPark();
  // Rx thread, rx_mu_ held by `rx`: parks until a caller hands the socket back or a
  // check interval passes; returns holding rx_mu_ again, and whether the socket then
  // has something to read.
  bool ParkRx(std::unique_lock<std::timed_mutex>& rx);
  // A caller holding rx_mu_: handles frames until a send completion is there
  // (returned), `deadline` passes (blocking) or nothing more is readable (not
  // blocking). Leaves rx_failed_ set if the connection ended.
  size_t DriveSend(std::span<Completion> out, Clock::time_point deadline, bool block);
  // A caller holding rx_mu_, the rx buffer empty: reads what the socket has (false:
  // nothing yet). WaitReadable sleeps until it has something or `deadline` passes.
  bool TryFillRx();
  void WaitReadable(Clock::time_point deadline);
  // A caller holding rx_mu_ handles one frame; false once the connection ended (then
  // rx_failed_ is set for the rx thread, which winds the QP down once handed back).
  bool CallerReceiveFrame();
  // A caller is done with the socket (rx_mu_ released): wakes the rx thread if it must
  // take over (the connection ended, or the QP stopped qualifying).
  void HandBack();
  // A caller may read the socket itself (the QP qualifies; see above).
  bool MayDrive() const;
  // The same for DriveReceives: a QP opened with caller_driven_receives (and on_recv)
  // to which the peer sent nothing but SENDs, not stopping or failed.
  bool MayDriveReceives() const;

  std::timed_mutex rx_mu_;  // held by whoever reads the socket (the rx thread or a caller)
  Mutex park_mu_;
  std::condition_variable park_cv_;
  bool unpark_ GUARDED_BY(park_mu_) = false;
  std::atomic<bool> waited_send_{false};       // sticky: WaitSend was called
  std::atomic<bool> drove_receives_{false};    // sticky: DriveReceives was called
  std::atomic<bool> receives_posted_{false};   // sticky: a RECV was posted
  std::atomic<bool> peer_initiated_{false};    // sticky: the peer sent a request frame
  bool rx_failed_ = false;                     // under rx_mu_: a caller's read ended it
  CompletionStatus rx_failed_why_ = CompletionStatus::kTransportError;
};

class SoftDevice final : public Device {
 public:
  explicit SoftDevice(const DeviceOptions& options);
  ~SoftDevice() override;

  Backend backend() const override { return Backend::kSoft; }
  Result<MemoryRegion> RegisterMemory(void* addr, uint64_t length, uint32_t access) override;
  Status DeregisterMemory(const MemoryRegion& region) override;
  Result<std::unique_ptr<Listener>> Listen(const Endpoint& local) override;
  Result<std::unique_ptr<QueuePair>> Connect(const Endpoint& peer,
                                             std::span<const uint8_t> private_data,
                                             const QueuePairOptions& options,
                                             Duration timeout) override;
  bool SupportsFlush() const override { return true; }
  uint64_t auth_failures() const override { return auth_gate_.failures(); }
  uint64_t auth_refused() const override { return auth_gate_.refused(); }

  // The key connections must prove (null: no authentication) and the failures' gate.
  const ClusterKey* cluster_key() const { return cluster_key_.get(); }
  auth::AuthFailureGate& auth_gate() { return auth_gate_; }

  // Looks up `key` and checks [addr, addr+len) lies inside with `access`. On success
  // returns the host pointer (and the region in `*region` if given).
  uint8_t* Check(uint32_t key, uint64_t addr, uint64_t len, uint32_t access,
                 RegionEntry* region = nullptr) const;
  // Queues a received WRITE payload in the QP's volatile buffer.
  void Buffer(const std::shared_ptr<PendingWrites>& pending, PendingWrites::Entry entry);
  // Makes sure the drain thread will place `pending`'s entries when they are due. While
  // a QP's rx thread runs it places its own QP's due entries (it waits for data only
  // until the oldest is due), so the drain thread serves QPs whose rx thread has ended.
  void Arm(const std::shared_ptr<PendingWrites>& pending);
  // Every QP's buffer registers here, so DrainAll reaches all of them.
  void Track(const std::shared_ptr<PendingWrites>& pending);
  // Drains every pending write of every QP (used before deregistering and at exit).
  void DrainAll();
  Clock::duration drain_delay() const { return drain_delay_; }
  // The resource limits of transport.h's DeviceOptions (soft_*).
  const DeviceOptions& options() const { return options_; }
  std::atomic<uint64_t>* buffered_bytes() { return &buffered_bytes_; }
  const std::shared_ptr<PieceBufferPool>& piece_buffers() const { return piece_buffers_; }

 private:
  void DrainLoop();

  const DeviceOptions options_;
  mutable std::shared_mutex regions_mu_;
  std::unordered_map<uint32_t, RegionEntry> regions_;

  Clock::duration drain_delay_;
  uint64_t buffer_limit_;
  std::shared_ptr<const ClusterKey> cluster_key_;
  auth::AuthFailureGate auth_gate_;
  Mutex drain_mu_;
  std::condition_variable drain_cv_;
  struct Due {
    Clock::time_point due;
    std::shared_ptr<PendingWrites> pending;
  };
  std::deque<Due> due_ GUARDED_BY(drain_mu_);  // ~FIFO: the delay is constant, so due times are ordered
  std::vector<std::weak_ptr<PendingWrites>> tracked_ GUARDED_BY(drain_mu_);
  std::atomic<uint64_t> buffered_bytes_{0};
  std::shared_ptr<PieceBufferPool> piece_buffers_;
  bool drain_idle_ GUARDED_BY(drain_mu_) = true;
  bool stop_ GUARDED_BY(drain_mu_) = false;
  std::thread drain_thread_;
};

// Frames that waiting callers read themselves (soft_caller_rx.cc) rather than a QP's
// rx thread, over every QP of the process: shows tests that the path is taken.
uint64_t CallerReceivedFrames();

}  // namespace dpmfs::transport::soft
