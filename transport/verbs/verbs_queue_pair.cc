// The verbs data path: one RC queue pair (see verbs_internal.h for the threading model).
//
// Send-queue accounting. Every posted request gets a sequence number, used as its
// wr_id. A completion for sequence s retires s and every request posted before it
// (completions of one send queue arrive in posting order, and an unsignaled request
// never produces a success completion of its own). PostSend refuses a chain that would
// leave more than max_send_wr requests unretired, so a caller that never signals would
// eventually be refused: callers must signal at least one request in every max_send_wr
// (the usual verbs rule, stated here because this is where it bites).
#include <arpa/inet.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "transport/verbs/verbs_internal.h"

namespace dpmfs::transport::verbs {
namespace {

// Busy-poll budget of Wait* before sleeping on the completion channel: long enough to
// catch a local RDMA round trip without a syscall, short enough not to burn a core.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(50);
// Poll* checks the CM event channel (for DISCONNECTED) once per this many empty polls,
// so a caller that only ever polls still learns about a lost peer.
constexpr uint32_t kIdlePollsPerCmCheck = 1024;
// Completions moved from the CQ per ibv_poll_cq call.
constexpr int kPollBatch = 32;

// `send`: the completion is of the send queue (else of the receive queue).
CompletionStatus MapStatus(ibv_wc_status s, bool send) {
  switch (s) {
    case IBV_WC_SUCCESS:
      return CompletionStatus::kSuccess;
    case IBV_WC_LOC_LEN_ERR:
      return CompletionStatus::kLocalLengthError;
    case IBV_WC_LOC_PROT_ERR:
      return CompletionStatus::kLocalProtectionError;
    case IBV_WC_LOC_QP_OP_ERR:
      // Soft-RoCE (rdma_rxe, seen on Linux 6.1) reports a local buffer it cannot use with
      // this status where NICs say LOC_PROT_ERR / LOC_LEN_ERR: on the send queue a WRITE
      // or SEND whose lkey names no region, on the receive queue an incoming message
      // longer than the posted RECV buffer. Requests are validated before posting, so on
      // an RC QP nothing else of ours raises it.
      return send ? CompletionStatus::kLocalProtectionError : CompletionStatus::kLocalLengthError;
    case IBV_WC_REM_ACCESS_ERR:
      return CompletionStatus::kRemoteAccessError;
    case IBV_WC_REM_INV_REQ_ERR:
      return CompletionStatus::kRemoteInvalidRequest;
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return CompletionStatus::kRnrRetryExceeded;
    case IBV_WC_WR_FLUSH_ERR:
      return CompletionStatus::kFlushed;
    default:
      return CompletionStatus::kTransportError;  // RETRY_EXC_ERR and the rest
  }
}

bool IsSendQueueOpcode(Opcode op) {
  switch (op) {
    case Opcode::kWrite:
    case Opcode::kWriteWithImm:
    case Opcode::kRead:
    case Opcode::kSend:
    case Opcode::kFlush:
      return true;
    case Opcode::kRecv:
    case Opcode::kRecvWithImm:
      return false;
  }
  return false;
}

timespec ToTimespec(Duration d) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(d.count() / 1000000);
  ts.tv_nsec = static_cast<long>((d.count() % 1000000) * 1000);
  return ts;
}

}  // namespace

VerbsQueuePair::VerbsQueuePair(std::shared_ptr<const DeviceContext> dev,
                               rdma_event_channel* channel, rdma_cm_id* id, std::string peer)
    : dev_(std::move(dev)), cm_channel_(channel), id_(id), peer_(std::move(peer)) {}

VerbsQueuePair::~VerbsQueuePair() {
  Disconnect();
  // The dispatch thread delivers the flushed receives, then stops before the CQs go.
  dispatch_stop_.store(true, std::memory_order_release);
  if (recv_dispatch_.joinable()) recv_dispatch_.join();
  // Teardown order is the verbs one: QP, then its CQs, then their channels, then the
  // CM id and its event channel. Every CQ/CM event we read was acknowledged at once, so
  // none of these waits.
  if (qp_ != nullptr) rdma_destroy_qp(id_);
  if (send_cq_ != nullptr && ibv_destroy_cq(send_cq_) != 0) {
    spdlog::warn("verbs: destroying the send CQ of {} failed: {}", Describe(), ErrnoText(errno));
  }
  if (recv_cq_ != nullptr && ibv_destroy_cq(recv_cq_) != 0) {
    spdlog::warn("verbs: destroying the receive CQ of {} failed: {}", Describe(), ErrnoText(errno));
  }
  if (send_channel_ != nullptr) ibv_destroy_comp_channel(send_channel_);
  if (recv_channel_ != nullptr) ibv_destroy_comp_channel(recv_channel_);
  if (id_ != nullptr && rdma_destroy_id(id_) != 0) {
    spdlog::warn("verbs: rdma_destroy_id for {} failed: {}", Describe(), ErrnoText(errno));
  }
  if (cm_channel_ != nullptr) rdma_destroy_event_channel(cm_channel_);
}

Status VerbsQueuePair::CreateQp(const QueuePairOptions& options) {
  ibv_context* ctx = dev_->ctx;
  uint32_t limit = std::min(dev_->max_qp_wr, dev_->max_cqe);
  uint32_t send_wr = std::clamp<uint32_t>(options.max_send_wr, 1, limit);
  uint32_t recv_wr = std::clamp<uint32_t>(options.max_recv_wr, 1, limit);
  if (send_wr != options.max_send_wr || recv_wr != options.max_recv_wr) {
    spdlog::debug("verbs: {} queue depths clamped to {}/{} by device {} (asked {}/{})", Describe(),
                  send_wr, recv_wr, dev_->name, options.max_send_wr, options.max_recv_wr);
  }

  // One completion channel per CQ, so the send-side and receive-side threads can each
  // sleep on their own queue without stealing the other's wakeups.
  send_channel_ = ibv_create_comp_channel(ctx);
  if (send_channel_ == nullptr) return Status::FromErrno(errno, "ibv_create_comp_channel");
  recv_channel_ = ibv_create_comp_channel(ctx);
  if (recv_channel_ == nullptr) return Status::FromErrno(errno, "ibv_create_comp_channel");
  DPMFS_RETURN_IF_ERROR(SetNonBlocking(send_channel_->fd, "completion channel"));
  DPMFS_RETURN_IF_ERROR(SetNonBlocking(recv_channel_->fd, "completion channel"));

  // A CQ entry exists only for an unretired request, so queue depth entries suffice.
  send_cq_ = ibv_create_cq(ctx, static_cast<int>(send_wr), nullptr, send_channel_, 0);
  if (send_cq_ == nullptr) {
    return Status::FromErrno(errno,
                             "ibv_create_cq(" + std::to_string(send_wr) + ") on " + dev_->name);
  }
  recv_cq_ = ibv_create_cq(ctx, static_cast<int>(recv_wr), nullptr, recv_channel_, 0);
  if (recv_cq_ == nullptr) {
    return Status::FromErrno(errno,
                             "ibv_create_cq(" + std::to_string(recv_wr) + ") on " + dev_->name);
  }

  ibv_qp_init_attr_ex attr = {};
  attr.qp_context = this;
  attr.send_cq = send_cq_;
  attr.recv_cq = recv_cq_;
  attr.cap.max_send_wr = send_wr;
  attr.cap.max_recv_wr = recv_wr;
  attr.cap.max_send_sge = 1;
  attr.cap.max_recv_sge = 1;
  attr.qp_type = IBV_QPT_RC;
  attr.sq_sig_all = 0;  // per-request IBV_SEND_SIGNALED
  attr.comp_mask = IBV_QP_INIT_ATTR_PD;
  attr.pd = dev_->pd;
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
  if (dev_->supports_flush) {
    // FLUSH exists only in the ibv_wr_* API, which needs every op we post declared here.
    attr.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
    attr.send_ops_flags = IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |
                          IBV_QP_EX_WITH_RDMA_READ | IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_FLUSH;
  }
#endif
  if (rdma_create_qp_ex(id_, &attr) != 0) {
    int err = errno;
    return Status::FromErrno(err, "rdma_create_qp (RC, " + std::to_string(send_wr) + "/" +
                                      std::to_string(recv_wr) + " WRs) on " + dev_->name + " for " +
                                      peer_);
  }
  qp_ = id_->qp;
  on_recv_ = options.on_recv;
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
  if (dev_->supports_flush) qpx_ = ibv_qp_to_qp_ex(qp_);
#endif
  // The device may round the depths up; our accounting keeps to what was asked for.
  max_send_wr_ = std::min(send_wr, attr.cap.max_send_wr);
  max_recv_wr_ = std::min(recv_wr, attr.cap.max_recv_wr);
  send_slots_.assign(max_send_wr_, Slot{});
  recv_slots_.assign(max_recv_wr_, Slot{});
  send_wrs_.resize(max_send_wr_);
  send_sges_.resize(max_send_wr_);
  recv_wrs_.resize(max_recv_wr_);
  recv_sges_.resize(max_recv_wr_);
  return Status::OK();
}

void VerbsQueuePair::EnableRemoteFlush() {
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
  if (!dev_->supports_flush || qp_ == nullptr) return;
  // librdmacm sets the QP's access flags from the kernel's defaults (remote read/write)
  // while it walks the QP to RTS, so FLUSH can only be granted afterwards (RTS->RTS).
  // On the passive side this runs right after rdma_accept, before the initiator can
  // have seen the accept and posted anything.
  ibv_qp_attr attr = {};
  ibv_qp_init_attr init = {};
  if (ibv_query_qp(qp_, &attr, IBV_QP_ACCESS_FLAGS, &init) != 0) {
    spdlog::warn("verbs: ibv_query_qp on {} failed: {}", Describe(), ErrnoText(errno));
    return;
  }
  attr.qp_access_flags |= IBV_ACCESS_FLUSH_GLOBAL;
  if (ibv_modify_qp(qp_, &attr, IBV_QP_ACCESS_FLAGS) != 0) {
    spdlog::warn("verbs: granting FLUSH on {} failed ({}); FLUSH to this side will fail",
                 Describe(), ErrnoText(errno));
  }
#endif
}

void VerbsQueuePair::MarkEstablished(std::vector<uint8_t> peer_private_data) {
  peer_private_data_ = std::move(peer_private_data);
  established_.store(true, std::memory_order_release);
  if (on_recv_ && !recv_dispatch_.joinable()) {
    recv_dispatch_ = std::thread([this] { DispatchRecvLoop(); });
  }
}

void VerbsQueuePair::DispatchRecvLoop() {
  Completion comps[32];
  while (!dispatch_stop_.load(std::memory_order_acquire)) {
    size_t n = Wait(Side::kRecv, comps, std::chrono::milliseconds(50));
    for (size_t i = 0; i < n; ++i) on_recv_(comps[i]);
  }
}

Status VerbsQueuePair::ValidateSend(const WorkRequest& wr, size_t index) const {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("work request " + std::to_string(index) + " (" +
                                   std::string(OpcodeName(wr.opcode)) + ") on " + Describe() +
                                   ": " + why);
  };
  if (!IsSendQueueOpcode(wr.opcode)) return bad("not a send-queue opcode");
  if (wr.length > kMaxTransferSize) {
    return bad("length " + std::to_string(wr.length) + " exceeds the maximum of " +
               std::to_string(kMaxTransferSize) + " bytes");
  }
  if (wr.opcode != Opcode::kFlush && wr.length > 0 && wr.local_addr == nullptr) {
    return bad("no local buffer for " + std::to_string(wr.length) + " bytes");
  }
  return Status::OK();
}

Status VerbsQueuePair::PostSend(std::span<const WorkRequest> chain) {
  if (chain.empty()) return Status::OK();
  if (qp_ == nullptr) return Status::FailedPrecondition(Describe() + " has no queue pair");
  if (error_.load(std::memory_order_acquire)) {
    return Status::FailedPrecondition(Describe() +
                                      " is in the error state; poll its completions and "
                                      "reconnect");
  }
  bool has_flush = false;
  for (size_t i = 0; i < chain.size(); ++i) {
    DPMFS_RETURN_IF_ERROR(ValidateSend(chain[i], i));
    has_flush |= chain[i].opcode == Opcode::kFlush;
  }
  uint64_t outstanding = send_posted_ - send_retired_;
  if (outstanding + chain.size() > max_send_wr_) {
    return Status::ResourceExhausted(
        "send queue of " + Describe() + " is full: " + std::to_string(outstanding) +
        " outstanding + " + std::to_string(chain.size()) + " new > max_send_wr " +
        std::to_string(max_send_wr_) +
        " (poll send completions; signal at least one request in every max_send_wr)");
  }
  if (has_flush) {
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
    if (qpx_ == nullptr) {
      return Status::NotSupported("RDMA device " + dev_->name +
                                  " does not support RDMA FLUSH (no FLUSH_GLOBAL capability)");
    }
    return PostSendExtended(chain);
#else
    return Status::NotSupported(
        "RDMA FLUSH needs rdma-core >= 45 (ibv_wr_flush); this build has an older "
        "libibverbs (Debian 12 ships 44)");
#endif
  }
  return PostSendLegacy(chain);
}

Status VerbsQueuePair::PostSendLegacy(std::span<const WorkRequest> chain) {
  const size_t n = chain.size();  // <= max_send_wr_ == scratch size (checked by PostSend)
  for (size_t i = 0; i < n; ++i) {
    const WorkRequest& r = chain[i];
    const uint64_t seq = send_posted_ + i;
    send_slots_[seq % max_send_wr_] = Slot{r.context, r.length, r.opcode};

    ibv_sge& sge = send_sges_[i];
    sge.addr = reinterpret_cast<uintptr_t>(r.local_addr);
    sge.length = r.length;
    sge.lkey = r.lkey;

    ibv_send_wr& wr = send_wrs_[i];
    wr = {};
    wr.wr_id = seq;
    wr.next = i + 1 < n ? &send_wrs_[i + 1] : nullptr;
    wr.sg_list = r.length > 0 ? &sge : nullptr;
    wr.num_sge = r.length > 0 ? 1 : 0;
    wr.send_flags = r.signaled ? IBV_SEND_SIGNALED : 0;
    wr.wr.rdma.remote_addr = r.remote_addr;
    wr.wr.rdma.rkey = r.rkey;
    switch (r.opcode) {
      case Opcode::kWrite:
        wr.opcode = IBV_WR_RDMA_WRITE;
        break;
      case Opcode::kWriteWithImm:
        wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr.imm_data = htonl(r.imm);  // immediates travel big-endian; PollRecv undoes it
        break;
      case Opcode::kRead:
        wr.opcode = IBV_WR_RDMA_READ;
        break;
      case Opcode::kSend:
        wr.opcode = IBV_WR_SEND;
        break;
      default:
        return Status::Internal("unvalidated opcode in PostSendLegacy");
    }
  }
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(qp_, send_wrs_.data(), &bad);  // the one doorbell of the chain
  if (rc != 0) {
    int err = rc > 0 ? rc : errno;
    size_t posted = bad != nullptr ? static_cast<size_t>(bad - send_wrs_.data()) : 0;
    send_posted_ += posted;
    if (posted > 0) {
      // Validation should make this impossible; if the driver still took part of the
      // chain, fail the QP so the caller sees the posted part flushed, never half-run.
      EnterError("ibv_post_send accepted only part of a chain");
    }
    return Status::IOError("ibv_post_send on " + Describe() + " failed at request " +
                           std::to_string(posted) + " of " + std::to_string(n) + ": " +
                           ErrnoText(err));
  }
  send_posted_ += n;
  return Status::OK();
}

#ifdef DPMFS_HAVE_IBV_WR_FLUSH
Status VerbsQueuePair::PostSendExtended(std::span<const WorkRequest> chain) {
  // ibv_post_send cannot express FLUSH, and the two APIs may not interleave inside one
  // batch, so a chain holding a FLUSH goes through ibv_wr_* as a whole; ibv_wr_complete
  // rings the one doorbell and posts nothing if it fails.
  const size_t n = chain.size();
  ibv_wr_start(qpx_);
  for (size_t i = 0; i < n; ++i) {
    const WorkRequest& r = chain[i];
    const uint64_t seq = send_posted_ + i;
    send_slots_[seq % max_send_wr_] = Slot{r.context, r.length, r.opcode};
    qpx_->wr_id = seq;
    qpx_->wr_flags = r.signaled ? IBV_SEND_SIGNALED : 0;
    bool has_sge = true;
    switch (r.opcode) {
      case Opcode::kWrite:
        ibv_wr_rdma_write(qpx_, r.rkey, r.remote_addr);
        break;
      case Opcode::kWriteWithImm:
        ibv_wr_rdma_write_imm(qpx_, r.rkey, r.remote_addr, htonl(r.imm));
        break;
      case Opcode::kRead:
        ibv_wr_rdma_read(qpx_, r.rkey, r.remote_addr);
        break;
      case Opcode::kSend:
        ibv_wr_send(qpx_);
        break;
      case Opcode::kFlush:
        ibv_wr_flush(qpx_, r.rkey, r.remote_addr, r.length, IBV_FLUSH_GLOBAL, IBV_FLUSH_RANGE);
        has_sge = false;
        break;
      default:
        ibv_wr_abort(qpx_);
        return Status::Internal("unvalidated opcode in PostSendExtended");
    }
    if (!has_sge) continue;
    if (r.length > 0) {
      ibv_wr_set_sge(qpx_, r.lkey, reinterpret_cast<uintptr_t>(r.local_addr), r.length);
    } else {
      ibv_wr_set_sge_list(qpx_, 0, nullptr);
    }
  }
  int rc = ibv_wr_complete(qpx_);
  if (rc != 0) {
    return Status::IOError("posting a chain of " + std::to_string(n) + " requests on " +
                           Describe() + " failed: " + ErrnoText(rc > 0 ? rc : errno));
  }
  send_posted_ += n;
  return Status::OK();
}
#endif  // DPMFS_HAVE_IBV_WR_FLUSH

Status VerbsQueuePair::PostRecv(std::span<const WorkRequest> recvs) {
  if (recvs.empty()) return Status::OK();
  if (qp_ == nullptr) return Status::FailedPrecondition(Describe() + " has no queue pair");
  if (error_.load(std::memory_order_acquire)) {
    return Status::FailedPrecondition(Describe() + " is in the error state; reconnect");
  }
  for (size_t i = 0; i < recvs.size(); ++i) {
    const WorkRequest& r = recvs[i];
    std::string where = "receive " + std::to_string(i) + " on " + Describe() + ": ";
    if (r.opcode != Opcode::kRecv) {
      return Status::InvalidArgument(where + "opcode " + std::string(OpcodeName(r.opcode)) +
                                     " is not RECV");
    }
    if (r.length > kMaxTransferSize) {
      return Status::InvalidArgument(where + "length " + std::to_string(r.length) +
                                     " exceeds the maximum of " + std::to_string(kMaxTransferSize) +
                                     " bytes");
    }
    if (r.length > 0 && r.local_addr == nullptr) {
      return Status::InvalidArgument(where + "no buffer for " + std::to_string(r.length) +
                                     " bytes");
    }
  }
  uint64_t outstanding = recv_posted_ - recv_retired_;
  if (outstanding + recvs.size() > max_recv_wr_) {
    return Status::ResourceExhausted("receive queue of " + Describe() +
                                     " is full: " + std::to_string(outstanding) + " posted + " +
                                     std::to_string(recvs.size()) + " new > max_recv_wr " +
                                     std::to_string(max_recv_wr_));
  }
  const size_t n = recvs.size();
  for (size_t i = 0; i < n; ++i) {
    const WorkRequest& r = recvs[i];
    const uint64_t seq = recv_posted_ + i;
    recv_slots_[seq % max_recv_wr_] = Slot{r.context, r.length, Opcode::kRecv};
    ibv_sge& sge = recv_sges_[i];
    sge.addr = reinterpret_cast<uintptr_t>(r.local_addr);
    sge.length = r.length;
    sge.lkey = r.lkey;
    ibv_recv_wr& wr = recv_wrs_[i];
    wr = {};
    wr.wr_id = seq;
    wr.next = i + 1 < n ? &recv_wrs_[i + 1] : nullptr;
    wr.sg_list = r.length > 0 ? &sge : nullptr;
    wr.num_sge = r.length > 0 ? 1 : 0;
  }
  ibv_recv_wr* bad = nullptr;
  int rc = ibv_post_recv(qp_, recv_wrs_.data(), &bad);
  if (rc != 0) {
    int err = rc > 0 ? rc : errno;
    size_t posted = bad != nullptr ? static_cast<size_t>(bad - recv_wrs_.data()) : 0;
    recv_posted_ += posted;
    if (posted > 0) EnterError("ibv_post_recv accepted only part of a chain");
    return Status::IOError("ibv_post_recv on " + Describe() + " failed at receive " +
                           std::to_string(posted) + " of " + std::to_string(n) + ": " +
                           ErrnoText(err));
  }
  recv_posted_ += n;
  return Status::OK();
}

size_t VerbsQueuePair::PollSend(std::span<Completion> out) { return Poll(Side::kSend, out); }
size_t VerbsQueuePair::PollRecv(std::span<Completion> out) { return Poll(Side::kRecv, out); }

size_t VerbsQueuePair::WaitSend(std::span<Completion> out, Duration timeout) {
  return Wait(Side::kSend, out, timeout);
}
size_t VerbsQueuePair::WaitRecv(std::span<Completion> out, Duration timeout) {
  return Wait(Side::kRecv, out, timeout);
}

size_t VerbsQueuePair::Poll(Side side, std::span<Completion> out) {
  const bool send = side == Side::kSend;
  ibv_cq* cq = send ? send_cq_ : recv_cq_;
  if (qp_ == nullptr || out.empty()) return 0;  // no QP: CreateQp failed or never ran
  ibv_wc wc[kPollBatch];
  size_t filled = 0;
  while (filled < out.size()) {
    int want = static_cast<int>(std::min<size_t>(kPollBatch, out.size() - filled));
    int n = ibv_poll_cq(cq, want, wc);
    if (n < 0) {
      spdlog::warn("verbs: ibv_poll_cq on {} failed", Describe());
      EnterError("ibv_poll_cq failed");
      break;
    }
    for (int i = 0; i < n; ++i) {
      const ibv_wc& w = wc[i];
      Completion& c = out[filled++];
      c = Completion{};
      c.status = MapStatus(w.status, send);
      if (send) {
        const Slot& s = send_slots_[w.wr_id % max_send_wr_];
        c.context = s.context;
        c.opcode = s.opcode;  // ibv_wc.opcode is undefined for failed requests
        c.byte_len = c.ok() ? s.length : 0;
        send_retired_ = std::max(send_retired_, w.wr_id + 1);
      } else {
        const Slot& s = recv_slots_[w.wr_id % max_recv_wr_];
        c.context = s.context;
        c.opcode = Opcode::kRecv;
        if (c.ok()) {
          if (w.opcode == IBV_WC_RECV_RDMA_WITH_IMM) c.opcode = Opcode::kRecvWithImm;
          c.byte_len = w.byte_len;
          if ((w.wc_flags & IBV_WC_WITH_IMM) != 0) {
            c.has_imm = true;
            c.imm = ntohl(w.imm_data);
          }
        }
        recv_retired_ = std::max(recv_retired_, w.wr_id + 1);
      }
      if (!c.ok()) {
        if (!error_.exchange(true, std::memory_order_acq_rel)) {
          spdlog::debug("verbs: {} failed: {} completion with {} (vendor error {:#x})", Describe(),
                        send ? "send" : "receive", ibv_wc_status_str(w.status), w.vendor_err);
        }
      }
    }
    if (n < want) break;
  }
  if (filled == 0) {
    uint32_t& idle = send ? send_idle_polls_ : recv_idle_polls_;
    if (++idle >= kIdlePollsPerCmCheck) {
      idle = 0;
      ProcessCmEvents(/*block=*/false);
    }
  }
  return filled;
}

size_t VerbsQueuePair::Wait(Side side, std::span<Completion> out, Duration timeout) {
  if (qp_ == nullptr) return 0;
  size_t n = Poll(side, out);
  if (n > 0 || out.empty() || timeout.count() <= 0) return n;
  const Deadline deadline(timeout);
  const auto spin_end = Clock::now() + std::min<Duration>(timeout, kSpinBeforeSleep);
  while (Clock::now() < spin_end) {
    if ((n = Poll(side, out)) > 0) return n;
  }
  const bool send = side == Side::kSend;
  ibv_cq* cq = send ? send_cq_ : recv_cq_;
  ibv_comp_channel* channel = send ? send_channel_ : recv_channel_;
  while (true) {
    // Arm, then poll once more: a completion that arrived before the arming would not
    // raise an event, and we must not sleep past it.
    int rc = ibv_req_notify_cq(cq, 0);
    if ((n = Poll(side, out)) > 0) return n;
    if (deadline.expired()) return 0;
    pollfd fds[2] = {
        {rc == 0 ? channel->fd : -1, POLLIN, 0},
        {established_.load(std::memory_order_acquire) ? cm_channel_->fd : -1, POLLIN, 0}};
    // Without notification (arming failed) fall back to short sleeps.
    timespec ts = ToTimespec(
        rc == 0 ? deadline.remaining()
                : std::min<Duration>(deadline.remaining(), std::chrono::milliseconds(1)));
    int ready = ppoll(fds, 2, &ts, nullptr);
    if (ready < 0 && errno != EINTR) {
      spdlog::warn("verbs: ppoll on {} failed: {}", Describe(), ErrnoText(errno));
      return Poll(side, out);
    }
    if (ready > 0 && fds[1].revents != 0) ProcessCmEvents(/*block=*/true);
    if (ready > 0 && fds[0].revents != 0) {
      ibv_cq* ev_cq = nullptr;
      void* ev_ctx = nullptr;
      // The fd is non-blocking: the event may already have been taken (EAGAIN).
      if (ibv_get_cq_event(channel, &ev_cq, &ev_ctx) == 0) ibv_ack_cq_events(ev_cq, 1);
    }
    if ((n = Poll(side, out)) > 0) return n;
  }
}

void VerbsQueuePair::ProcessCmEvents(bool block) const {
  // Before ESTABLISHED the connection setup code owns the event channel.
  if (!established_.load(std::memory_order_acquire)) return;
  if (block) {
    cm_mu_.lock();
  } else if (!cm_mu_.try_lock()) {
    return;
  }
  MutexLock lock(cm_mu_, std::adopt_lock);
  rdma_cm_event* ev = nullptr;
  while (rdma_get_cm_event(cm_channel_, &ev) == 0) {
    rdma_cm_event_type type = ev->event;
    int status = ev->status;
    rdma_ack_cm_event(ev);
    switch (type) {
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
      case RDMA_CM_EVENT_CONNECT_ERROR:
      case RDMA_CM_EVENT_UNREACHABLE:
      case RDMA_CM_EVENT_REJECTED:
        if (!error_.exchange(true, std::memory_order_acq_rel)) {
          spdlog::info("verbs: connection {} lost: {} (status {})", Describe(),
                       rdma_event_str(type), status);
        }
        if (!disconnect_called_) {
          // Answer the peer's DREQ and take our QP to the error state, so posted
          // receives and unfinished sends complete (flushed) instead of hanging.
          disconnect_called_ = true;
          if (rdma_disconnect(id_) != 0) {
            spdlog::debug("verbs: rdma_disconnect on {}: {}", Describe(), ErrnoText(errno));
          }
          EnterError("peer disconnected");
        }
        break;
      default:
        spdlog::debug("verbs: {}: CM event {} (status {})", Describe(), rdma_event_str(type),
                      status);
        break;
    }
  }
}

void VerbsQueuePair::EnterError(const char* why) const {
  if (!error_.exchange(true, std::memory_order_acq_rel)) {
    spdlog::debug("verbs: {} enters the error state: {}", Describe(), why);
  }
  if (qp_ == nullptr) return;
  ibv_qp_attr attr = {};
  attr.qp_state = IBV_QPS_ERR;
  if (ibv_modify_qp(qp_, &attr, IBV_QP_STATE) != 0) {
    spdlog::debug("verbs: moving {} to the error state failed: {}", Describe(), ErrnoText(errno));
  }
}

QpState VerbsQueuePair::state() const {
  if (!error_.load(std::memory_order_acquire)) ProcessCmEvents(/*block=*/false);
  return error_.load(std::memory_order_acquire) ? QpState::kError : QpState::kConnected;
}

void VerbsQueuePair::Disconnect() {
  MutexLock lock(cm_mu_);
  if (disconnect_called_) return;
  disconnect_called_ = true;
  // rdma_disconnect on an id with an event channel only sends the DREQ; it does not
  // wait for the peer's DREP (which can take ~70 s if the peer is gone) and we never
  // wait for the DISCONNECTED event either. The QP and CQs stay until the destructor,
  // so the caller can still poll the flushed completions.
  if (established_.load(std::memory_order_acquire) && rdma_disconnect(id_) != 0) {
    spdlog::debug("verbs: rdma_disconnect on {}: {}", Describe(), ErrnoText(errno));
  }
  EnterError("disconnected locally");
}

}  // namespace dpmfs::transport::verbs
