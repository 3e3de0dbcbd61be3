// read2: WRITE (signaled); once the NIC acknowledged it, a 1-byte READ on the same QP;
// done when the READ completes (2 round trips).
#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {
namespace {

class Read2 final : public PersistStrategy {
 public:
  PersistMethod method() const override { return PersistMethod::kRead2; }
  std::string_view name() const override { return "read2"; }
  std::string_view help() const override { return "read2: WRITE, wait, then READ (2 round trips)"; }
  uint32_t Build(const WriteChain& w, transport::WorkRequest* out) const override {
    out[0] = DataWrite(w, true, Step::kFollowUp);
    return 1;
  }
  // The WRITE's completion returned its send-queue credit, so this never waits for room.
  uint32_t FollowUp(const WriteChain& w, transport::WorkRequest* out) const override {
    out[0] = PersistingRead(w);
    return 1;
  }
};

}  // namespace

const PersistStrategy& Read2Strategy() {
  static const Read2 s;
  return s;
}

}  // namespace dpmfs::datapath::persist
