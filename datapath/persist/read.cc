// read (the default): WRITE (unsignaled) + 1-byte READ (signaled) in one doorbell; done
// when the READ completes: the target places the WRITE before it executes the READ.
#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {
namespace {

class Read final : public PersistStrategy {
 public:
  PersistMethod method() const override { return PersistMethod::kRead; }
  std::string_view name() const override { return "read"; }
  std::string_view help() const override { return "read: WRITE+READ in one doorbell (default)"; }
  uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const override {
    out[0] = DataWrite(w, false, Step::kDone);
    out[1] = PersistingRead(w);
    return 2;
  }
};

}  // namespace

const PersistStrategy& ReadStrategy() {
  static const Read s;
  return s;
}

}  // namespace dpmfs::datapath::persist
