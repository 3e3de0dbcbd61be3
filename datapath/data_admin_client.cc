#include "datapath/data_admin_client.h"

#include <cstring>
#include <memory>
#include <vector>

namespace dpmfs::datapath {

Result<AdminReply> AskDataServer(transport::Device& device, const Endpoint& server,
                                 const AdminRequest& request, std::chrono::milliseconds timeout) {
  const std::string who = "data server " + server.ToString();
  const std::vector<uint8_t> req_bytes = EncodeAdminRequest(request);
  if (req_bytes.size() > kAdminRequestSize) {
    return Status::InvalidArgument("admin request of " + std::to_string(req_bytes.size()) +
                                   " bytes is over the " + std::to_string(kAdminRequestSize) +
                                   " a data server takes");
  }
  // [reply buffer][request]: one registration.
  const size_t size = kMaxAdminReplySize + kAdminRequestSize;
  auto memory = std::make_unique<uint8_t[]>(size);
  std::memcpy(memory.get() + kMaxAdminReplySize, req_bytes.data(), req_bytes.size());
  DPMFS_ASSIGN_OR_RETURN(transport::MemoryRegion mr,
                         device.RegisterMemory(memory.get(), size, transport::kLocalWrite));
  struct Deregister {
    transport::Device& d;
    transport::MemoryRegion mr;
    ~Deregister() { (void)d.DeregisterMemory(mr); }
  } deregister{device, mr};

  ConnectRequest cr;
  cr.method = PersistMethod::kRpc;  // not used by an admin connection; any valid one
  cr.purpose = ConnectPurpose::kAdmin;
  cr.queue_depth = 1;
  cr.max_io_size = 1;
  transport::QueuePairOptions qpo;
  qpo.max_send_wr = 4;
  qpo.max_recv_wr = 1;
  // The reply's receive is posted before the server can send anything.
  qpo.prepare = [&](transport::QueuePair& qp) {
    transport::WorkRequest wr;
    wr.opcode = transport::Opcode::kRecv;
    wr.local_addr = memory.get();
    wr.length = kMaxAdminReplySize;
    wr.lkey = mr.lkey;
    return qp.PostRecv({&wr, 1});
  };
  auto qp = device.Connect(server, EncodeConnectRequest(cr), qpo, timeout);
  if (!qp.ok()) return qp.status().WithContext("connecting to " + who);
  transport::WorkRequest send;
  send.opcode = transport::Opcode::kSend;
  send.signaled = true;
  send.local_addr = memory.get() + kMaxAdminReplySize;
  send.length = static_cast<uint32_t>(req_bytes.size());
  send.lkey = mr.lkey;
  DPMFS_RETURN_IF_ERROR((*qp)->PostSend({&send, 1}));
  transport::Completion c[1];
  if ((*qp)->WaitRecv(c, timeout) == 0) {
    return Status::TimedOut(who + " did not answer an admin request within " +
                            std::to_string(timeout.count()) + " ms");
  }
  if (!c[0].ok()) {
    return Status::Unavailable(who + ": the admin request failed (" +
                               std::string(transport::CompletionStatusName(c[0].status)) + ")");
  }
  transport::Completion sc[4];
  (void)(*qp)->PollSend(sc);
  auto reply = DecodeAdminReply({memory.get(), std::min<size_t>(c[0].byte_len, kMaxAdminReplySize)});
  if (!reply.ok()) return reply.status().WithContext("the reply of " + who);
  return reply;
}

Result<uint64_t> InstallFence(transport::Device& device, const Endpoint& server, uint64_t epoch,
                              std::chrono::milliseconds timeout) {
  AdminRequest req;
  req.kind = AdminKind::kFence;
  req.epoch = epoch;
  DPMFS_ASSIGN_OR_RETURN(AdminReply reply, AskDataServer(device, server, req, timeout));
  if (reply.code != StatusCode::kOk) {
    return Status(reply.code, "data server " + server.ToString() + " refused fence " +
                                  std::to_string(epoch) + ": " + reply.message);
  }
  Result<uint64_t> fence = DecodeFenceBody(reply.body);
  if (!fence.ok()) return fence.status().WithContext("the fence reply of " + server.ToString());
  if (*fence < epoch) {
    return Status::Corruption("data server " + server.ToString() + " answered fence " +
                              std::to_string(epoch) + " with " + std::to_string(*fence));
  }
  return fence;
}

}  // namespace dpmfs::datapath
