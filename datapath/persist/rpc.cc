// rpc: SEND of the 32-byte descriptor followed by the data. The data server copies the
// data into the pool, persists it and replies; done when the reply arrives. Also
// carries the zero request (kDescriptorZero: the descriptor alone).
#include <cstring>
#include <string>

#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {
namespace {

class Rpc final : public PersistStrategy {
 public:
  PersistMethod method() const override { return PersistMethod::kRpc; }
  std::string_view name() const override { return "rpc"; }
  std::string_view help() const override {
    return "rpc: SEND the data, server copies, persists, replies";
  }
  bool replies() const override { return true; }
  bool can_zero() const override { return true; }

  uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const override {
    EncodeDescriptor(WriteDescriptor{w.offset, w.length, w.slot, w.flags}, w.header);
    transport::WorkRequest& m = out[0];
    m = transport::WorkRequest{};
    m.opcode = transport::Opcode::kSend;
    m.signaled = w.signal_send;  // its completion only returns send-queue room
    m.context = StepContext(Step::kNothing, w.slot);
    m.local_addr = w.header;  // the header, then the data right behind it
    // A zero request carries no data: the header alone.
    m.length = static_cast<uint32_t>(kDescriptorSize +
                                     ((w.flags & kDescriptorZero) != 0 ? 0 : w.length));
    m.lkey = w.lkey;
    return 1;
  }

  Status Admit(const ConnectRequest& req) const override {
    if (uint64_t{req.queue_depth} * (kDescriptorSize + req.max_io_size) > kMaxRpcReceiveBytes) {
      return Status::ResourceExhausted(
          "an rpc connection of queue depth " + std::to_string(req.queue_depth) + " and " +
          std::to_string(req.max_io_size) + "-byte writes needs more than the " +
          std::to_string(kMaxRpcReceiveBytes >> 20) +
          " MiB of receive buffers a data server gives one connection; ask for less");
    }
    return Status::OK();
  }
  uint32_t receive_size(const ConnectRequest& req) const override {
    return static_cast<uint32_t>(kDescriptorSize + req.max_io_size);
  }

  Status Handle(const transport::Completion& c, std::span<const uint8_t> buf,
                ServerConnection& conn, WriteDescriptor* d) const override {
    if (c.opcode != transport::Opcode::kRecv) return PersistStrategy::Handle(c, buf, conn, d);
    auto dd = DecodeDescriptor(buf.first(std::min<size_t>(buf.size(), c.byte_len)));
    if (!dd.ok()) return dd.status();
    *d = *dd;
    const bool zero = (d->flags & kDescriptorZero) != 0;
    DPMFS_RETURN_IF_ERROR(conn.CheckRange(*d));
    if (c.byte_len != kDescriptorSize + (zero ? 0 : d->length)) {
      return Status::InvalidArgument("rpc write length does not match its message");
    }
    uint8_t* dst = conn.pool_data() + d->offset;
    if (zero) {
      conn.Zero(dst, d->length);
      conn.Count(ServerConnection::Counter::kZeroedBytes, d->length);
      return Status::OK();
    }
    std::memcpy(dst, buf.data() + kDescriptorSize, d->length);
    conn.Persist(dst, d->length);
    conn.Count(ServerConnection::Counter::kRpcWrites, 1);
    return Status::OK();
  }
};

}  // namespace

const PersistStrategy& RpcStrategy() {
  static const Rpc s;
  return s;
}

}  // namespace dpmfs::datapath::persist
