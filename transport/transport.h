// The RDMA abstraction of dpmfs: a small, verbs-shaped interface with two backends
// chosen at run time (`--transport verbs|soft`):
//   - verbs: rdma-core RC queue pairs connected with librdmacm (verbs_transport.cc);
//   - soft:  a software RNIC over TCP that models the volatile NIC buffer
//            (soft_transport.cc, see transport/README.md).
// Everything above this header (persist methods, RPC, client I/O) is written once.
//
// Semantics shared by both backends (those of an RC QP):
//   - Work requests posted on one QP execute at the target in posting order.
//   - A chain passed to PostSend is posted with one doorbell (one ibv_post_send, one
//     socket write): it is the unit of doorbell batching.
//   - Only signaled requests produce a success completion; a failed request always
//     produces one (with its status), moves the QP to the error state, and every
//     later outstanding request completes with kFlushed.
//   - Completions of one QP's send queue are delivered in posting order, so the
//     completion of a signaled request means every earlier request of that QP is done.
//   - A lost connection completes everything outstanding with an error; never a hang.
//   - Send-queue room (max_send_wr) is freed only when a signaled request completes
//     and is polled: it retires itself and every unsignaled request posted before it.
//     Callers must signal at least once every max_send_wr requests.
//   - Private data: the verbs backend receives it zero-padded to the rdma_cm maximum
//     (56 / 196 bytes), so formats carried in it must tolerate trailing zeros.
//
// Thread-safety: Device, Listener and MemoryRegion handles are thread-safe. A QueuePair
// may have one thread posting/polling its send side and another its receive side at
// the same time; more than one thread on the same side needs external locking.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/cluster_key.h"
#include "common/endpoint.h"
#include "common/status.h"

namespace dpmfs::transport {

using Duration = std::chrono::microseconds;

// Connection private data limits of librdmacm for RC (connect: 56, accept: 196 bytes);
// the soft backend enforces the same so code that works on one works on both.
inline constexpr size_t kMaxConnectPrivateData = 56;
inline constexpr size_t kMaxAcceptPrivateData = 196;
// Largest single work request either backend accepts (bytes).
inline constexpr uint64_t kMaxTransferSize = 1ull << 30;
// Largest QueuePairOptions::credential (a data client's session token is ~70 bytes).
inline constexpr size_t kMaxCredential = 128;

enum class Backend { kSoft, kVerbs };
std::string_view BackendName(Backend b);
Result<Backend> ParseBackend(std::string_view name);  // "soft" | "verbs"

// Memory access rights, as ibv_access_flags.
enum Access : uint32_t {
  kLocalWrite = 1u << 0,
  kRemoteWrite = 1u << 1,
  kRemoteRead = 1u << 2,
  kRemoteFlush = 1u << 3,  // target of FLUSH (IBV_ACCESS_FLUSH_GLOBAL on verbs)
};

// A registered region. `addr`/`rkey` are what a peer needs to access it remotely.
struct MemoryRegion {
  void* addr = nullptr;
  uint64_t length = 0;
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  uint32_t access = 0;
};

// What a peer is told about a region (sent in private data or a message).
struct RemoteRegion {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t rkey = 0;
};

enum class Opcode : uint8_t {
  kWrite = 1,
  kWriteWithImm = 2,
  kRead = 3,
  kSend = 4,
  kRecv = 5,   // only on the receive queue
  kFlush = 6,  // IBTA 1.5 RDMA FLUSH of [remote_addr, remote_addr + length)
  // Receive-side completion opcode of a WRITE_WITH_IMM (IBV_WC_RECV_RDMA_WITH_IMM).
  kRecvWithImm = 7,
};
std::string_view OpcodeName(Opcode op);

// One work request. Each has at most one local buffer (a single SGE).
struct WorkRequest {
  Opcode opcode = Opcode::kWrite;
  bool signaled = true;  // ignored for kRecv (always completes)
  uint64_t context = 0;  // wr_id: returned in the completion

  // Local buffer: source of WRITE/SEND, destination of READ/RECV. Must lie in a region
  // registered with this device under `lkey`. soft checks at post time (the post
  // fails); verbs reports kLocalProtectionError in a completion. Either way no byte moves.
  void* local_addr = nullptr;
  uint32_t length = 0;  // bytes to move; for FLUSH, bytes of the remote range
  uint32_t lkey = 0;

  // Remote side of WRITE, WRITE_WITH_IMM, READ, FLUSH.
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;

  uint32_t imm = 0;  // WRITE_WITH_IMM (and SEND with immediate is not used)
};

enum class CompletionStatus : uint8_t {
  kSuccess = 0,
  kLocalLengthError,     // a RECV buffer was too small for the incoming message
  kLocalProtectionError, // the local buffer is outside a registered region / lkey wrong
  kRemoteAccessError,    // rkey, bounds or access rights refused at the target
  kRemoteInvalidRequest, // the target refused the request as malformed/unsupported
  kRnrRetryExceeded,     // SEND/WRITE_WITH_IMM with no RECV posted at the target
  kTransportError,       // connection lost (retry exceeded)
  kFlushed,              // never executed: the QP was in (or went to) the error state
};
std::string_view CompletionStatusName(CompletionStatus s);

// On the send side, `opcode` is the posted request's; byte_len is meaningful only for
// receive completions.
struct Completion {
  uint64_t context = 0;
  Opcode opcode = Opcode::kWrite;
  CompletionStatus status = CompletionStatus::kSuccess;
  uint32_t byte_len = 0;  // receive side: bytes placed in the RECV buffer
  uint32_t imm = 0;
  bool has_imm = false;

  bool ok() const { return status == CompletionStatus::kSuccess; }
};

enum class QpState : uint8_t { kConnected, kError };

class QueuePair {
 public:
  virtual ~QueuePair() = default;

  // Posts a chain of send-queue requests (WRITE, WRITE_WITH_IMM, READ, SEND, FLUSH)
  // with one doorbell. Fails without posting anything if a request is malformed, the
  // send queue lacks room for the whole chain, or the QP is in the error state.
  virtual Status PostSend(std::span<const WorkRequest> chain) = 0;
  // Posts receive buffers (opcode kRecv).
  virtual Status PostRecv(std::span<const WorkRequest> recvs) = 0;

  // Non-blocking: fills up to out.size() completions, returns how many.
  virtual size_t PollSend(std::span<Completion> out) = 0;
  virtual size_t PollRecv(std::span<Completion> out) = 0;
  // Blocking: waits until at least one completion exists or `timeout` passes (then 0).
  // Verbs, and soft on machines with more than 2 CPUs, spin briefly (40-50 us) before
  // sleeping. Soft on 2 CPUs or fewer, and a soft caller reading its own READ responses,
  // sleep at once: a spinner would take the core the reply needs. A caller that wants a
  // yielding poll first does it itself (DataClient::Read and Reap; DriveReceives takes
  // poll_first for messages).
  virtual size_t WaitSend(std::span<Completion> out, Duration timeout) = 0;
  virtual size_t WaitRecv(std::span<Completion> out, Duration timeout) = 0;

  // A caller waiting for something an on_recv handler will report (an RPC reply) may
  // read the connection itself, on a QP opened with caller_driven_receives: the
  // receive completions then reach on_recv on this thread, which spares the transport
  // thread's wake-up per message. Reads until `done()` holds (asked after each batch of
  // messages is handed over) or `timeout` passes. For the first `poll_first` it polls
  // rather than sleeps, yielding the core between tries (a lone caller expecting its
  // message within a round trip: no wake-up then, and on a machine with few cores the
  // threads bringing the message still run). kBusy: another thread reads the
  // connection now (wait another way, try again later); kUnsupported: callers cannot
  // read this QP (backend, options, or the QP failed): wait another way for good.
  enum class DriveResult : uint8_t { kDone, kTimedOut, kBusy, kUnsupported };
  virtual DriveResult DriveReceives(Duration /*timeout*/, Duration /*poll_first*/,
                                    const std::function<bool()>& /*done*/) {
    return DriveResult::kUnsupported;
  }

  virtual QpState state() const = 0;
  // Private data the peer gave when connecting (target side) or accepting (initiator).
  virtual std::span<const uint8_t> peer_private_data() const = 0;
  // Target side: the credential the initiator presented in the authenticated handshake
  // (QueuePairOptions::credential), already set when the accept handler runs. Empty
  // when it sent none or the connection is not authenticated (no cluster key, verbs).
  virtual std::span<const uint8_t> peer_credential() const { return {}; }
  virtual std::string peer_description() const = 0;  // for messages: "127.0.0.1:4711"
  // Moves the QP to the error state and tears down the connection; outstanding
  // requests complete with kFlushed. Idempotent. The destructor calls it.
  virtual void Disconnect() = 0;
};

struct QueuePairOptions {
  uint32_t max_send_wr = 256;  // outstanding send-queue requests
  uint32_t max_recv_wr = 256;  // posted receive buffers
  // Called once the QP exists and before the peer can send on it: post RECVs here.
  std::function<Status(QueuePair&)> prepare;
  // When set, receive completions (successful ones, and the flushed ones when the QP
  // fails) are handed to this function instead of being queued for PollRecv/WaitRecv,
  // one at a time, in order, on a thread of the transport: soft calls it on the QP's
  // receive thread as the message arrives (a consumer thread's wake-up saved per
  // message, which is most of a small RPC's cost on a few cores); verbs on a thread
  // that waits on the receive CQ. The function may post sends and receives and call
  // Disconnect, but must not wait for a completion of this same QP: the thread it runs
  // on may be the one that would deliver it.
  std::function<void(const Completion&)> on_recv;
  // With on_recv: the peer only ever SENDs to this QP (as an RPC server answers), so
  // waiting callers may read it themselves (DriveReceives); soft then parks its
  // receive thread between messages while callers do. Verbs ignores it.
  bool caller_driven_receives = false;
  // Initiator: up to kMaxCredential bytes the target's accept handler may check before
  // it grants anything (a data client's session token, datapath/session_token.h).
  // Carried only by an authenticated handshake (in AUTH, covered by the initiator's
  // proof; transport/README.md "Authentication"), beside the connect private data,
  // whose 56 bytes it would not fit. Without a cluster key it is not sent.
  std::vector<uint8_t> credential;
};

// Decides about an incoming connection. Gets the initiator's private data and the new
// (not yet connected) QP, may post RECVs on it, and returns the accept private data
// (at most kMaxAcceptPrivateData bytes) or an error to reject the connection.
using AcceptHandler =
    std::function<Result<std::vector<uint8_t>>(std::span<const uint8_t> peer_data, QueuePair& qp)>;

class Listener {
 public:
  virtual ~Listener() = default;
  // Waits up to `timeout` for one connection request and handles it. Returns the
  // connected QP; TimedOut when none came; Unavailable after Shutdown(); the handler's
  // error when it rejected the request. Malformed or silent requests are dropped (and
  // logged) without ending the wait. One Accept at a time per listener.
  virtual Result<std::unique_ptr<QueuePair>> Accept(const AcceptHandler& handler,
                                                    const QueuePairOptions& options,
                                                    Duration timeout) = 0;
  // The bound address (useful with port 0).
  virtual Endpoint local_endpoint() const = 0;
  // Makes a blocked or later Accept return Unavailable. Thread-safe.
  virtual void Shutdown() = 0;
};

struct DeviceOptions {
  Backend backend = Backend::kSoft;
  // soft: microseconds a WRITE waits in the volatile NIC buffer before the background
  // drain copies it to memory (a READ, WRITE_WITH_IMM or FLUSH on the same QP drains
  // at once). Non-zero by default so the window that persist methods close exists.
  uint32_t soft_drain_delay_us = 100;
  // soft: bytes of WRITE payload the NIC buffers before it stops reading (backpressure).
  uint64_t soft_buffer_bytes = 64ull << 20;
  // soft, resource limits against peers that stall (transport/README.md, "Limits"):
  // a frame begun but not finished (a WRITE announcing more than it sends), or responses
  // the peer does not read while it keeps sending requests, for this long: the
  // connection is closed. 0: never (tests only).
  uint32_t soft_stall_timeout_ms = 10000;
  // Per QP: bytes of responses (READ data copies, ACKs) queued for a peer that does not
  // read them. Beyond it the QP stops reading the peer's requests until they drain.
  uint64_t soft_max_queued_bytes = 64ull << 20;
  // A connected peer must send its CONNECT within this long.
  uint32_t soft_handshake_timeout_ms = 5000;
  // Connections accepted whose CONNECT has not arrived yet, per listener; beyond it the
  // oldest is dropped (a real client's CONNECT follows its connect within a round trip).
  uint32_t soft_max_pending_handshakes = 256;
  // verbs: device name (e.g. "rxe0"); empty means whatever librdmacm resolves.
  std::string verbs_device;
  // When set, every connection this device makes or accepts first proves, both ways,
  // that both ends hold this key (connection_auth.h, docs/security.md); a peer that
  // cannot is refused before the application sees its request. Unset: no
  // authentication (transport unit tests only; every daemon and client sets it).
  std::shared_ptr<const ClusterKey> cluster_key;
};

// A NIC with its protection domain. Register memory, listen, connect.
class Device {
 public:
  virtual ~Device() = default;

  virtual Backend backend() const = 0;
  virtual Result<MemoryRegion> RegisterMemory(void* addr, uint64_t length, uint32_t access) = 0;
  // The region must not be used by any posted request any more.
  virtual Status DeregisterMemory(const MemoryRegion& region) = 0;

  virtual Result<std::unique_ptr<Listener>> Listen(const Endpoint& local) = 0;
  // Connects a reliable QP to a listening peer, passing up to kMaxConnectPrivateData
  // bytes. Fails with Unavailable if nobody listens, PermissionDenied if the peer
  // rejected us, TimedOut after `timeout`.
  virtual Result<std::unique_ptr<QueuePair>> Connect(const Endpoint& peer,
                                                     std::span<const uint8_t> private_data,
                                                     const QueuePairOptions& options,
                                                     Duration timeout) = 0;
  // Whether FLUSH work requests are available (soft: always; verbs: device + library).
  virtual bool SupportsFlush() const = 0;
  // Handshakes that failed authentication (wrong or no key, replayed, malformed), and
  // connection attempts refused unheard by the per-address rate limit.
  virtual uint64_t auth_failures() const { return 0; }
  virtual uint64_t auth_refused() const { return 0; }
};

// Opens the backend named in `options`. verbs fails with Unavailable (naming why) when
// the machine has no RDMA device.
Result<std::unique_ptr<Device>> OpenDevice(const DeviceOptions& options);

// Backend factories, used by OpenDevice and by the conformance tests.
Result<std::unique_ptr<Device>> OpenSoftDevice(const DeviceOptions& options);
Result<std::unique_ptr<Device>> OpenVerbsDevice(const DeviceOptions& options);

}  // namespace dpmfs::transport
