#include "transport/transport.h"

namespace dpmfs::transport {

std::string_view BackendName(Backend b) { return b == Backend::kSoft ? "soft" : "verbs"; }

Result<Backend> ParseBackend(std::string_view name) {
  if (name == "soft") return Backend::kSoft;
  if (name == "verbs") return Backend::kVerbs;
  return Status::InvalidArgument("unknown transport '" + std::string(name) +
                                 "' (use soft or verbs)");
}

std::string_view OpcodeName(Opcode op) {
  switch (op) {
    case Opcode::kWrite: return "WRITE";
    case Opcode::kWriteWithImm: return "WRITE_WITH_IMM";
    case Opcode::kRead: return "READ";
    case Opcode::kSend: return "SEND";
    case Opcode::kRecv: return "RECV";
    case Opcode::kFlush: return "FLUSH";
    case Opcode::kRecvWithImm: return "RECV_RDMA_WITH_IMM";
  }
  return "UNKNOWN";
}

std::string_view CompletionStatusName(CompletionStatus s) {
  switch (s) {
    case CompletionStatus::kSuccess: return "success";
    case CompletionStatus::kLocalLengthError: return "local length error";
    case CompletionStatus::kLocalProtectionError: return "local protection error";
    case CompletionStatus::kRemoteAccessError: return "remote access error";
    case CompletionStatus::kRemoteInvalidRequest: return "remote invalid request";
    case CompletionStatus::kRnrRetryExceeded: return "receiver not ready (RNR retries exceeded)";
    case CompletionStatus::kTransportError: return "transport error (connection lost)";
    case CompletionStatus::kFlushed: return "flushed (QP in error state)";
  }
  return "unknown";
}

Result<std::unique_ptr<Device>> OpenDevice(const DeviceOptions& options) {
  switch (options.backend) {
    case Backend::kSoft: return OpenSoftDevice(options);
    case Backend::kVerbs: return OpenVerbsDevice(options);
  }
  return Status::InvalidArgument("unknown transport backend");
}

}  // namespace dpmfs::transport
