#include "datapath/data_client_pool.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace dpmfs::datapath {

DataClientPool::DataClientPool(transport::Device& device, std::vector<Endpoint> servers,
                               const DataClientPoolOptions& options)
    : device_(device), servers_(std::move(servers)), options_(options), idle_(servers_.size()),
      instances_(servers_.size(), 0) {
  // Returning a connection must not allocate: room for every idle one up front.
  for (auto& idle : idle_) idle.reserve(std::min<uint32_t>(options_.max_idle_per_server, 256));
}

DataClientPool::~DataClientPool() = default;

DataClientPool::Lease& DataClientPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    server_ = other.server_;
    client_ = std::move(other.client_);
    broken_ = other.broken_;
    reused_ = other.reused_;
    other.pool_ = nullptr;
    other.broken_ = false;
    other.reused_ = false;
  }
  return *this;
}

void DataClientPool::Lease::Release() {
  if (client_ && pool_ != nullptr) {
    if (broken_) {
      pool_->DropIdle(server_);
    } else {
      pool_->Return(server_, std::move(client_));
    }
  }
  client_.reset();
  pool_ = nullptr;
  broken_ = false;
  reused_ = false;
}

Result<DataClientPool::Lease> DataClientPool::Acquire(uint32_t server, bool wait) {
  if (server >= servers_.size()) {
    return Status::InvalidArgument("no data server " + std::to_string(server) +
                                   " (the cluster has " + std::to_string(servers_.size()) + ")");
  }
  Lease lease;
  lease.pool_ = this;
  lease.server_ = server;
  // Takes an idle connection to `server` (mu_ held).
  auto take_idle = [&]() REQUIRES(mu_) {
    lease.client_ = std::move(idle_[server].back());
    lease.reused_ = true;
    idle_[server].pop_back();
  };
  // Idle connections whose session token is in its last third are closed, not reused
  // (outside the lock: it disconnects QPs): the data server revokes them at the token's
  // expiry, and a fresh connection carries the renewed token.
  std::vector<std::unique_ptr<DataClient>> stale;
  {
    MutexLock lock(mu_);
    while (!idle_[server].empty() && idle_[server].back()->token_due()) {
      stale.push_back(std::move(idle_[server].back()));
      idle_[server].pop_back();
    }
    if (!idle_[server].empty()) {
      take_idle();
      return lease;
    }
    ++connects_;
  }
  stale.clear();
  // Connect outside the lock: other servers' operations must not wait behind it.
  auto client = DataClient::Connect(device_, servers_[server], options_.client);
  // Out of registrable memory (verbs: RLIMIT_MEMLOCK of an unprivileged client): close
  // idle connections to other servers and try again, or take a connection to this one
  // that comes back meanwhile, until the client timeout.
  const auto deadline = std::chrono::steady_clock::now() + options_.client.timeout;
  for (int round = 0; !client.ok() && client.status().code() == StatusCode::kResourceExhausted &&
                     std::chrono::steady_clock::now() < deadline;
       ++round) {
    if (!wait && round == 1) {
      return Status::ResourceExhausted("no registrable memory for another connection to data "
                                       "server " + std::to_string(server) + ": " +
                                       client.status().message());
    }
    std::vector<std::unique_ptr<DataClient>> freed;
    {
      MutexLock lock(mu_);
      for (uint32_t s = 0; s < idle_.size(); ++s) {
        if (s == server) continue;
        for (auto& c : idle_[s]) freed.push_back(std::move(c));
        idle_[s].clear();
      }
      if (freed.empty() && wait) {
        lock.WaitFor(returned_, std::chrono::milliseconds(20),
                     [&]() REQUIRES(mu_) { return !idle_[server].empty(); });
      }
      if (!idle_[server].empty()) {
        take_idle();
        return lease;
      }
    }
    freed.clear();  // deregisters their memory (outside the lock: disconnects QPs)
    client = DataClient::Connect(device_, servers_[server], options_.client);
  }
  if (!client.ok() && IsStaleEpoch(client.status())) {
    // Reachable, and refusing this client's token as older than its fence: not a failure
    // of the server, and the caller's remedy is a fresh token (file_io.cc), not a report.
    return Status::PermissionDenied("data server " + std::to_string(server) + " (" +
                                    servers_[server].ToString() +
                                    ") refused the session token: " + client.status().message());
  }
  if (!client.ok()) {
    return Status::Unavailable("data server " + std::to_string(server) + " (" +
                               servers_[server].ToString() +
                               ") unreachable: " + client.status().message());
  }
  if (server < options_.expect.size()) {
    DPMFS_RETURN_IF_ERROR(CheckDataServerIdentity((*client)->server(), options_.expect[server],
                                                  servers_[server],
                                                  "the metadata server's cluster map"));
  }
  {
    MutexLock lock(mu_);
    instances_[server] = (*client)->server().pool_instance;
  }
  lease.client_ = std::move(client).value();
  return lease;
}

void DataClientPool::Return(uint32_t server, std::unique_ptr<DataClient> client) {
  std::unique_ptr<DataClient> surplus;
  {
    MutexLock lock(mu_);
    auto& idle = idle_[server];
    if (idle.size() < options_.max_idle_per_server && !client->token_due()) {
      idle.push_back(std::move(client));
      returned_.notify_all();  // one condition variable for every server
      return;
    }
    surplus = std::move(client);
  }
  // Destroyed outside the lock (it disconnects a QP).
}

void DataClientPool::DropIdle(uint32_t server) {
  std::vector<std::unique_ptr<DataClient>> dropped;
  {
    MutexLock lock(mu_);
    dropped.swap(idle_[server]);
  }
  if (!dropped.empty()) {
    spdlog::debug("dropping {} idle connection(s) to data server {} after a failure",
                  dropped.size(), servers_[server].ToString());
  }
}

uint64_t DataClientPool::pool_instance(uint32_t server) const {
  MutexLock lock(mu_);
  return server < instances_.size() ? instances_[server] : 0;
}

uint64_t DataClientPool::connects() const {
  MutexLock lock(mu_);
  return connects_;
}

}  // namespace dpmfs::datapath
