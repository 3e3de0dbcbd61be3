// imm: WRITE of the data (unsignaled) + WRITE_WITH_IMM of a 32-byte descriptor into ring
// slot `imm` (the slot's number). The data server reads the descriptor, checks it,
// persists the range and replies; done when the reply arrives.
#include <string>

#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {
namespace {

class Imm final : public PersistStrategy {
 public:
  PersistMethod method() const override { return PersistMethod::kImm; }
  std::string_view name() const override { return "imm"; }
  std::string_view help() const override {
    return "imm: WRITE+WRITE_WITH_IMM, server persists and replies";
  }
  bool replies() const override { return true; }

  uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const override {
    out[0] = DataWrite(w, false, Step::kNothing);
    EncodeDescriptor(WriteDescriptor{w.offset, w.length, w.slot}, w.header);
    transport::WorkRequest& d = out[1];
    d = transport::WorkRequest{};
    d.opcode = transport::Opcode::kWriteWithImm;
    d.signaled = w.signal_send;  // its completion only returns send-queue room
    d.context = StepContext(Step::kNothing, w.slot);
    d.local_addr = w.header;
    d.length = kDescriptorSize;
    d.lkey = w.lkey;
    d.remote_addr = w.server->ring.addr + uint64_t{w.slot} * kDescriptorSize;
    d.rkey = w.server->ring.rkey;
    d.imm = w.slot;
    return 2;
  }

  uint32_t receive_size(const ConnectRequest&) const override { return 8; }  // imm only
  bool needs_ring() const override { return true; }

  Status Handle(const transport::Completion& c, std::span<const uint8_t> /*buf*/,
                ServerConnection& conn, WriteDescriptor* d) const override {
    if (c.opcode != transport::Opcode::kRecvWithImm) {
      return PersistStrategy::Handle(c, {}, conn, d);
    }
    // The immediate names a ring slot; never trust it or the descriptor.
    const uint32_t qd = conn.request().queue_depth;
    if (c.imm >= qd) {
      d->slot = c.imm;
      return Status::OutOfRange("ring slot " + std::to_string(c.imm) + " out of range");
    }
    auto dd = DecodeDescriptor(conn.ring().subspan(uint64_t{c.imm} * kDescriptorSize,
                                                   kDescriptorSize));
    if (!dd.ok()) return dd.status();
    *d = *dd;
    if (d->slot != c.imm) return Status::InvalidArgument("slot mismatch");
    DPMFS_RETURN_IF_ERROR(conn.CheckRange(*d));
    if (d->flags != 0) return Status::InvalidArgument("imm descriptors take no flags");
    conn.Persist(conn.pool_data() + d->offset, d->length);
    conn.Count(ServerConnection::Counter::kImmWrites, 1);
    return Status::OK();
  }
};

}  // namespace

const PersistStrategy& ImmStrategy() {
  static const Imm s;
  return s;
}

}  // namespace dpmfs::datapath::persist
