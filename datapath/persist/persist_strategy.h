// A persist method as a small strategy (DESIGN.md, "The problem it solves"): one file
// per method in this folder, each defining one PersistStrategy, and one row per method
// in registry.cc. The strategy holds everything method-specific:
//   - client side: the work requests of one write (Build), a second step after a
//     completion (FollowUp, read2), and whether a write is done by a server reply;
//   - server side, for methods where the data server's CPU takes part (imm, rpc): what
//     a connection needs (receive buffers, a descriptor ring), admission of a connect
//     request, and the handling of one received message.
// DataClient and DataServer call these and contain no per-method switch.
//
// Adding a method: its wire number in `PersistMethod` (persist_method.h), one file
// here, one row in registry.cc (and the file in datapath/CMakeLists.txt).
//
// Thread-safety: strategies are immutable singletons; every call is thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "common/status.h"
#include "datapath/data_protocol.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"

namespace dpmfs::datapath::persist {

// What the completion of a chain's work request means to the client (the high 32 bits
// of the request's context; the slot is in the low 32).
enum class Step : uint32_t {
  kDone = 1,      // the slot's write is durable (under the method) once this completes
  kFollowUp = 2,  // post FollowUp()'s requests now (read2: the READ after the WRITE)
  kNothing = 3,   // a signaled send that only returns send-queue room
};
inline uint64_t StepContext(Step s, uint32_t slot) {
  return (uint64_t{static_cast<uint32_t>(s)} << 32) | slot;
}

// One write as a strategy sees it: where it goes, the slot's registered memory and the
// server's regions. Filled by DataClient; `header` and `scratch` are the slot's.
struct WriteChain {
  uint32_t slot = 0;
  uint64_t offset = 0;  // in the pool's data area
  uint32_t length = 0;
  uint32_t flags = 0;        // kDescriptorZero (rpc only) or 0
  uint8_t* header = nullptr;  // kDescriptorSize bytes, directly before `data`
  uint8_t* data = nullptr;    // the write's bytes
  uint8_t* scratch = nullptr;  // >= 1 byte: a READ target
  uint32_t lkey = 0;
  const ServerInfo* server = nullptr;
  bool signal_send = false;  // whether a send whose completion means nothing is signaled
};
// The longest chain a strategy builds for one write or one follow-up.
inline constexpr uint32_t kMaxChain = 2;

// What the server side of a method may use on its connection (DataServer::Connection).
class ServerConnection {
 public:
  virtual ~ServerConnection() = default;
  virtual const ConnectRequest& request() const = 0;
  // The connection's descriptor ring (imm), queue_depth x kDescriptorSize bytes.
  virtual std::span<const uint8_t> ring() const = 0;
  // OK if the descriptor's range lies inside the data area and max I/O size.
  virtual Status CheckRange(const WriteDescriptor& d) const = 0;
  virtual uint8_t* pool_data() = 0;
  // Makes [p, p+len) of the pool durable / read as zeros durably.
  virtual void Persist(uint8_t* p, size_t len) = 0;
  virtual void Zero(uint8_t* p, size_t len) = 0;
  enum class Counter { kImmWrites, kRpcWrites, kZeroedBytes };
  virtual void Count(Counter c, uint64_t n) = 0;
};

class PersistStrategy {
 public:
  virtual ~PersistStrategy() = default;
  virtual PersistMethod method() const = 0;
  virtual std::string_view name() const = 0;
  // One line for --help texts.
  virtual std::string_view help() const = 0;
  // Whether a completed write is durable on the target (false only for none).
  virtual bool durable() const { return true; }
  // Whether the method needs RDMA FLUSH on both devices.
  virtual bool needs_flush() const { return false; }

  // ---- client side ----
  // Whether a write is done by the server's reply (a receive) rather than by a
  // completion on the send queue.
  virtual bool replies() const { return false; }
  // Whether the method can zero a range (kDescriptorZero) without data on the wire.
  virtual bool can_zero() const { return false; }
  // The work requests of one write, at most kMaxChain; returns how many.
  virtual uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const = 0;
  // The requests to post after a kFollowUp completion of `w`'s chain.
  virtual uint32_t FollowUp(const WriteChain& /*w*/, transport::WorkRequest* /*out*/) const {
    return 0;
  }

  // ---- server side ----
  // Refuses a connect request the server cannot serve (after the generic checks).
  virtual Status Admit(const ConnectRequest& /*req*/) const { return Status::OK(); }
  // Bytes of each of the connection's queue_depth receive buffers; 0: none posted
  // (one-sided methods: the server's CPU takes no part).
  virtual uint32_t receive_size(const ConnectRequest& /*req*/) const { return 0; }
  // Whether the connection has a remote-writable descriptor ring.
  virtual bool needs_ring() const { return false; }
  // One received message in `buf` (completion `c`): validate, persist, and fill `d`
  // (at least its slot, for the reply). The returned status goes back in the reply.
  virtual Status Handle(const transport::Completion& /*c*/, std::span<const uint8_t> /*buf*/,
                        ServerConnection& /*conn*/, WriteDescriptor* /*d*/) const {
    return Status::InvalidArgument("unexpected message for this connection's persist method");
  }
};

// The strategy of `m`; nullptr for a value no strategy has (a forged wire byte).
const PersistStrategy* Find(PersistMethod m);
// The strategy of a method known to exist (the enum value came from Find or a parse).
const PersistStrategy& Of(PersistMethod m);
// Every registered method, in registry order.
std::span<const PersistStrategy* const> All();

// Shared by several strategies: a WRITE of the chain's data.
transport::WorkRequest DataWrite(const WriteChain& w, bool signaled, Step step);
// The signaled 1-byte READ of the written range's last byte: the target executes it only
// after placing every earlier WRITE of the QP (read and read2 rely on exactly that).
transport::WorkRequest PersistingRead(const WriteChain& w);

}  // namespace dpmfs::datapath::persist
