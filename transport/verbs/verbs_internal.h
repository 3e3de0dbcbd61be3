// Internals of the verbs transport: rdma-core RC queue pairs connected with librdmacm.
//
//   verbs_transport.cc   device selection, memory registration, listen/accept/connect
//   verbs_queue_pair.cc  the data path: PostSend/PostRecv, completions, waiting
//
// Object graph: a VerbsDevice owns the memory-region table; it, its listeners and its
// queue pairs share one DeviceContext (the librdmacm-owned ibv_context plus our
// protection domain), so a queue pair may outlive the Device handle that made it.
// Each queue pair has its own rdma_cm event channel, so CM events of one connection
// (DISCONNECTED, ...) never have to be routed through a listener or another QP.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "transport/transport.h"

namespace dpmfs::transport::verbs {

using Clock = std::chrono::steady_clock;

// "Cannot allocate memory" etc.; thread-safe, unlike strerror.
std::string ErrnoText(int err);

// A point in time derived from a relative timeout; huge timeouts are clamped so that
// the arithmetic cannot overflow. Thread-safety: a value.
class Deadline {
 public:
  explicit Deadline(Duration timeout);
  bool expired() const { return Clock::now() >= end_; }
  Duration remaining() const;
  // Remaining time in whole milliseconds rounded up, at least 1 (librdmacm timeouts).
  int remaining_ms() const;

 private:
  Clock::time_point end_;
};

// Sets O_NONBLOCK on `fd` so rdma_get_cm_event/ibv_get_cq_event can be used with poll().
Status SetNonBlocking(int fd, const char* what);

// Waits until `fd` or `wake_fd` (ignored if < 0) is readable or `deadline` passes.
// Returns 1 when `fd` is readable, 2 when `wake_fd` is, 0 on timeout.
Result<int> WaitReadable(int fd, int wake_fd, const Deadline& deadline);

// The device and protection domain shared by a Device and everything it created.
// Immutable after construction. Thread-safety: read-only, safe from any thread.
struct DeviceContext {
  ~DeviceContext();

  ibv_context* ctx = nullptr;  // owned by librdmacm (rdma_get_devices), never closed here
  ibv_pd* pd = nullptr;        // ours
  std::string name;            // "rxe0"
  uint32_t max_qp_wr = 0;
  uint32_t max_cqe = 0;
  uint8_t max_qp_rd_atom = 0;       // responder resources we can offer
  uint8_t max_qp_init_rd_atom = 0;  // initiator depth we can use
  bool supports_flush = false;      // library built with ibv_wr_flush and device has it
};

// One RC queue pair on an rdma_cm_id with its own send CQ, receive CQ, completion
// channels and CM event channel.
//
// Thread-safety (as transport.h promises): one thread may post/poll/wait the send side
// while another posts/polls/waits the receive side. Send-side state (send_*) is touched
// only by the send-side thread, receive-side state (recv_*) only by the receive-side
// thread; the error flag is atomic and CM event handling is serialised by cm_mu_.
// state(), peer_private_data() and peer_description() are safe from any thread.
// Disconnect() may run concurrently with both sides; the destructor may not.
class VerbsQueuePair final : public QueuePair {
 public:
  // Takes ownership of `channel` and `id` (already associated with `channel`).
  VerbsQueuePair(std::shared_ptr<const DeviceContext> dev, rdma_event_channel* channel,
                 rdma_cm_id* id, std::string peer);
  ~VerbsQueuePair() override;
  VerbsQueuePair(const VerbsQueuePair&) = delete;
  VerbsQueuePair& operator=(const VerbsQueuePair&) = delete;

  // Creates the CQs and the QP (left in INIT by librdmacm, ready for receives).
  Status CreateQp(const QueuePairOptions& options);
  // Called once the connection is ESTABLISHED: arms CM event processing.
  void MarkEstablished(std::vector<uint8_t> peer_private_data);
  // Grants FLUSH to the peer on this QP (a no-op unless the device supports it).
  void EnableRemoteFlush();

  rdma_cm_id* id() const { return id_; }
  rdma_event_channel* channel() const { return cm_channel_; }

  Status PostSend(std::span<const WorkRequest> chain) override;
  Status PostRecv(std::span<const WorkRequest> recvs) override;
  size_t PollSend(std::span<Completion> out) override;
  size_t PollRecv(std::span<Completion> out) override;
  size_t WaitSend(std::span<Completion> out, Duration timeout) override;
  size_t WaitRecv(std::span<Completion> out, Duration timeout) override;
  QpState state() const override;
  std::span<const uint8_t> peer_private_data() const override { return peer_private_data_; }
  std::string peer_description() const override { return peer_; }
  void Disconnect() override;

 private:
  // What the data path remembers about each posted request, indexed by its sequence
  // number modulo the queue depth; the sequence number is the verbs wr_id, so neither
  // the user's context nor the opcode of a failed request (undefined in ibv_wc) is lost.
  struct Slot {
    uint64_t context = 0;
    uint32_t length = 0;
    Opcode opcode = Opcode::kWrite;
  };
  enum class Side { kSend, kRecv };

  Status ValidateSend(const WorkRequest& wr, size_t index) const;
  Status PostSendLegacy(std::span<const WorkRequest> chain);
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
  Status PostSendExtended(std::span<const WorkRequest> chain);
#endif
  size_t Poll(Side side, std::span<Completion> out);
  size_t Wait(Side side, std::span<Completion> out, Duration timeout);
  // Reads pending CM events (non-blocking). `block`: wait for cm_mu_ instead of giving
  // up when the other side's thread is already doing it.
  void ProcessCmEvents(bool block) const;
  // Marks the QP failed and moves the hardware QP to the error state so that
  // everything outstanding completes (flushed). Safe from any thread.
  void EnterError(const char* why) const;
  std::string Describe() const { return "QP to " + peer_; }

  const std::shared_ptr<const DeviceContext> dev_;
  rdma_event_channel* const cm_channel_;
  rdma_cm_id* const id_;
  const std::string peer_;
  std::vector<uint8_t> peer_private_data_;

  ibv_comp_channel* send_channel_ = nullptr;
  ibv_comp_channel* recv_channel_ = nullptr;
  ibv_cq* send_cq_ = nullptr;
  ibv_cq* recv_cq_ = nullptr;
  ibv_qp* qp_ = nullptr;  // id_->qp once created
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
  ibv_qp_ex* qpx_ = nullptr;  // set when the QP was created with FLUSH among its send ops
#endif
  uint32_t max_send_wr_ = 0;
  uint32_t max_recv_wr_ = 0;

  // Send side (send-side thread only). Requests with sequence numbers in
  // [send_retired_, send_posted_) occupy the send queue.
  std::vector<Slot> send_slots_;
  uint64_t send_posted_ = 0;
  uint64_t send_retired_ = 0;
  uint32_t send_idle_polls_ = 0;
  std::vector<ibv_send_wr> send_wrs_;  // scratch, reused so posting does not allocate
  std::vector<ibv_sge> send_sges_;

  // Receive side (receive-side thread only).
  std::vector<Slot> recv_slots_;
  uint64_t recv_posted_ = 0;
  uint64_t recv_retired_ = 0;
  uint32_t recv_idle_polls_ = 0;
  std::vector<ibv_recv_wr> recv_wrs_;
  std::vector<ibv_sge> recv_sges_;

  // QueuePairOptions::on_recv: a thread waits on the receive CQ and hands each
  // completion to it (the receive-side thread, in the sense above).
  std::function<void(const Completion&)> on_recv_;
  std::thread recv_dispatch_;
  std::atomic<bool> dispatch_stop_{false};
  void DispatchRecvLoop();

  mutable std::atomic<bool> error_{false};
  std::atomic<bool> established_{false};
  mutable Mutex cm_mu_;                // serialises CM event reads and Disconnect
  mutable bool disconnect_called_ GUARDED_BY(cm_mu_) = false;
};

}  // namespace dpmfs::transport::verbs
