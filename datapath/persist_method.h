// The remote persistence techniques of dpmfs (DESIGN.md, "The problem it solves"): their
// wire numbers and names. What each method does lives in its strategy,
// datapath/persist/<name>.cc, registered in datapath/persist/registry.cc.
// Thread-safety: values and pure functions.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace dpmfs::datapath {

enum class PersistMethod : uint8_t {
  kNone = 0,   // WRITE, completion from the NIC: NOT durable (the baseline)
  kRead2 = 1,  // WRITE, wait, then a READ on the same QP (2 round trips)
  kRead = 2,   // WRITE (unsignaled) + READ (signaled) in one doorbell (default)
  kImm = 3,    // WRITE + WRITE_WITH_IMM naming a descriptor slot; server persists, replies
  kRpc = 4,    // SEND the data; server copies into PM, persists, replies
  kFlush = 5,  // WRITE + RDMA FLUSH (IBTA 1.5) where the device has it
};

// Every method with a registered strategy, in registry order.
std::span<const PersistMethod> AllPersistMethods();
std::string_view PersistMethodName(PersistMethod m);
Result<PersistMethod> ParsePersistMethod(std::string_view name);
// One line per method for --help texts.
std::string_view PersistMethodHelp();
// Whether a completed write is durable on the target under this method.
bool IsDurable(PersistMethod m);

}  // namespace dpmfs::datapath
