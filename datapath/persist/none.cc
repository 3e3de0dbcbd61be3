// none: WRITE (signaled); done when the NIC acknowledges it. NOT durable: the floor the
// other methods are measured against.
#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {
namespace {

class None final : public PersistStrategy {
 public:
  PersistMethod method() const override { return PersistMethod::kNone; }
  std::string_view name() const override { return "none"; }
  std::string_view help() const override { return "none: WRITE only, NOT durable (baseline)"; }
  bool durable() const override { return false; }
  uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const override {
    out[0] = DataWrite(w, true, Step::kDone);
    return 1;
  }
};

}  // namespace

const PersistStrategy& NoneStrategy() {
  static const None s;
  return s;
}

}  // namespace dpmfs::datapath::persist
