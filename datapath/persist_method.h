// The remote persistence techniques of dpmfs (DESIGN.md, "The problem it solves").
// Thread-safety: values and pure functions.
#pragma once

#include <string_view>

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
inline constexpr PersistMethod kAllPersistMethods[] = {
    PersistMethod::kNone, PersistMethod::kRead2, PersistMethod::kRead,
    PersistMethod::kImm,  PersistMethod::kRpc,   PersistMethod::kFlush};

std::string_view PersistMethodName(PersistMethod m);
Result<PersistMethod> ParsePersistMethod(std::string_view name);
// One line per method for --help texts.
std::string_view PersistMethodHelp();
// Whether a completed write is durable on the target under this method.
inline bool IsDurable(PersistMethod m) { return m != PersistMethod::kNone; }

}  // namespace dpmfs::datapath
