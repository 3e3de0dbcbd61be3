// flush: WRITE (unsignaled) + RDMA FLUSH of the range (IBTA 1.5, signaled); done when
// the FLUSH completes. Both devices must support FLUSH.
#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {
namespace {

class Flush final : public PersistStrategy {
 public:
  PersistMethod method() const override { return PersistMethod::kFlush; }
  std::string_view name() const override { return "flush"; }
  std::string_view help() const override {
    return "flush: WRITE+RDMA FLUSH (device must support it)";
  }
  bool needs_flush() const override { return true; }
  uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const override {
    out[0] = DataWrite(w, false, Step::kDone);
    transport::WorkRequest& f = out[1];
    f = transport::WorkRequest{};
    f.opcode = transport::Opcode::kFlush;
    f.signaled = true;
    f.context = StepContext(Step::kDone, w.slot);
    f.remote_addr = w.server->pool.addr + w.offset;
    f.rkey = w.server->pool.rkey;
    f.length = w.length;
    return 2;
  }
};

}  // namespace

const PersistStrategy& FlushStrategy() {
  static const Flush s;
  return s;
}

}  // namespace dpmfs::datapath::persist
