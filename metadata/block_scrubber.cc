#include "metadata/block_scrubber.h"

#include <algorithm>

#include "datapath/data_server_identity.h"

namespace dpmfs::meta {

namespace {
// Bytes per zero request. The data server sizes its receive buffer for the connection
// from this (as for an rpc write), so it stays at the clients' default: 1 MiB, i.e. 512
// requests of a few tens of microseconds to scrub a 512 MiB pool after a restart.
constexpr uint32_t kZeroRequestBytes = 1u << 20;
}  // namespace

DataServerZeroer::DataServerZeroer(transport::Device& device,
                                   const std::array<uint8_t, 16>& cluster,
                                   std::vector<Server> servers,
                                   std::shared_ptr<datapath::SessionTokenSource> token)
    : device_(device), cluster_(cluster), servers_(std::move(servers)), token_(std::move(token)) {
  for (size_t i = 0; i < servers_.size(); ++i) connections_.push_back(std::make_unique<Connection>());
}

DataServerZeroer::~DataServerZeroer() = default;

Status DataServerZeroer::ConnectLocked(uint32_t server, Connection& c) {
  datapath::DataClientOptions o;
  o.method = datapath::PersistMethod::kRpc;
  o.queue_depth = 1;
  o.max_io_size = kZeroRequestBytes;
  o.token = token_;
  const Server& want = servers_[server];
  auto client = datapath::DataClient::Connect(device_, want.endpoint, o);
  if (!client.ok()) return client.status();
  DPMFS_RETURN_IF_ERROR(datapath::CheckDataServerIdentity(
      (*client)->server(), {cluster_, want.index, want.block_size, want.data_size},
      want.endpoint, "the metadata pool's records"));
  c.client = std::move(client).value();
  return Status::OK();
}

Status DataServerZeroer::Zero(uint32_t server, uint64_t pool_offset, uint64_t length) {
  if (server >= servers_.size()) {
    return Status::InvalidArgument("no data server " + std::to_string(server));
  }
  Connection& c = *connections_[server];
  for (uint64_t done = 0; done < length;) {
    MutexLock lock(c.mu);  // per request: others interleave with a long range
    // A connection whose token nears its expiry is replaced before the data server
    // revokes it under a request.
    if (c.client && c.client->token_due()) c.client.reset();
    if (!c.client) DPMFS_RETURN_IF_ERROR(ConnectLocked(server, c));
    const auto piece = static_cast<uint32_t>(std::min<uint64_t>(kZeroRequestBytes, length - done));
    Status st = c.client->Zero(pool_offset + done, piece);
    if (!st.ok()) {
      c.client.reset();  // the next request connects afresh
      return st.WithContext("zeroing freed blocks on data server " +
                            servers_[server].endpoint.ToString());
    }
    done += piece;
  }
  return Status::OK();
}

}  // namespace dpmfs::meta
