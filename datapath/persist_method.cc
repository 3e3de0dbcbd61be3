#include "datapath/persist_method.h"

#include <string>

namespace dpmfs::datapath {

std::string_view PersistMethodName(PersistMethod m) {
  switch (m) {
    case PersistMethod::kNone: return "none";
    case PersistMethod::kRead2: return "read2";
    case PersistMethod::kRead: return "read";
    case PersistMethod::kImm: return "imm";
    case PersistMethod::kRpc: return "rpc";
    case PersistMethod::kFlush: return "flush";
  }
  return "unknown";
}

Result<PersistMethod> ParsePersistMethod(std::string_view name) {
  for (PersistMethod m : kAllPersistMethods) {
    if (PersistMethodName(m) == name) return m;
  }
  return Status::InvalidArgument("unknown persist method '" + std::string(name) +
                                 "' (use none, read2, read, imm, rpc or flush)");
}

std::string_view PersistMethodHelp() {
  return "none: WRITE only, NOT durable (baseline); "
         "read2: WRITE, wait, then READ (2 round trips); "
         "read: WRITE+READ in one doorbell (default); "
         "imm: WRITE+WRITE_WITH_IMM, server persists and replies; "
         "rpc: SEND the data, server copies, persists, replies; "
         "flush: WRITE+RDMA FLUSH (device must support it)";
}

}  // namespace dpmfs::datapath
