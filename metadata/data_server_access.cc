#include "metadata/data_server_access.h"

#include <algorithm>
#include <chrono>

#include "datapath/data_admin_client.h"

namespace dpmfs::meta {

namespace {
// Bytes per copy step: one stripe unit (the resync's unit) by default; the transfer
// splits it into I/Os of its max I/O size.
constexpr uint64_t kCopyChunk = 1u << 20;

datapath::DataTransferOptions AccessOptions(std::vector<datapath::DataServerIdentity> expect,
                                           std::shared_ptr<datapath::SessionTokenSource> token) {
  datapath::DataTransferOptions o;
  o.client.token = std::move(token);
  o.client.method = datapath::PersistMethod::kRead;
  o.client.queue_depth = 4;
  o.max_idle_per_server = 2;
  o.expect = std::move(expect);
  return o;
}
}  // namespace

TransferDataServerAccess::TransferDataServerAccess(
    transport::Device& device, std::vector<Endpoint> servers,
    std::vector<datapath::DataServerIdentity> expect,
    std::shared_ptr<datapath::SessionTokenSource> token)
    : device_(device),
      token_(token),
      transfer_(std::make_unique<datapath::DataTransfer>(
          device, std::move(servers), AccessOptions(std::move(expect), std::move(token)))) {}

Status TransferDataServerAccess::Probe(uint32_t server) {
  if (server >= transfer_->num_servers()) {
    return Status::InvalidArgument("no data server " + std::to_string(server));
  }
  uint8_t byte = 0;
  const datapath::ReadPiece piece{{server, 0}, 1, &byte};
  const uint64_t connects = transfer_->connects();
  DPMFS_RETURN_IF_ERROR(transfer_->Read({&piece, 1}));
  // A new connection (any server's: the count is the transfer's) may mean a restarted
  // process here, which lost its fence; installing it again costs one admin connection.
  const uint64_t fence = fence_.load();
  if (fence == 0 || transfer_->connects() == connects) return Status::OK();
  return InstallFence(server, fence).WithContext("the fence of a reconnected data server");
}

uint64_t TransferDataServerAccess::PoolInstance(uint32_t server) {
  return transfer_->pool_instance(server);
}

Status TransferDataServerAccess::Copy(uint32_t from, uint64_t from_offset, uint32_t to,
                                      uint64_t to_offset, uint64_t length) {
  thread_local std::vector<uint8_t> buffer;
  buffer.resize(static_cast<size_t>(std::min(length, kCopyChunk)));
  for (uint64_t done = 0; done < length;) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), length - done);
    const datapath::ReadPiece r{{from, from_offset + done}, n, buffer.data()};
    DPMFS_RETURN_IF_ERROR(transfer_->Read({&r, 1}));
    const datapath::WritePiece w{{to, to_offset + done}, n, buffer.data()};
    DPMFS_RETURN_IF_ERROR(transfer_->Write({&w, 1}));
    done += n;
  }
  return Status::OK();
}

Status TransferDataServerAccess::InstallFence(uint32_t server, uint64_t epoch) {
  if (server >= transfer_->num_servers()) {
    return Status::InvalidArgument("no data server " + std::to_string(server));
  }
  // First: the fence revokes this access's connections of older tokens too (probes,
  // resync, the zeroer sharing the source), and their replacements must be served.
  if (token_ != nullptr) token_->RaiseEpoch(epoch);
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      transfer_->options().client.timeout);
  Result<uint64_t> fence =
      datapath::InstallFence(device_, transfer_->endpoint(server), epoch, timeout);
  if (!fence.ok()) return fence.status();
  uint64_t highest = fence_.load();
  while (epoch > highest && !fence_.compare_exchange_weak(highest, epoch)) {
  }
  return Status::OK();
}

}  // namespace dpmfs::meta
