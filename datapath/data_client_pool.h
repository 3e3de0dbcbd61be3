// Connections from a client to the data servers, below the transfer API
// (datapath/transfer.h). A DataClient (one QP) is not thread-safe, so each transfer
// checks one out per data server it touches and gives it back when done; idle
// connections are kept for the next transfer.
//
// Failure model: a connection that failed (the server died, a timeout, a QP error) is
// never given back: the lease is marked broken, the DataClient destroyed, and every
// idle connection to the same server is dropped with it (they shared its fate). The
// next checkout connects afresh, so while the server is down every operation on it
// fails fast (connection refused), and once it is back they succeed again. A
// connection that sat idle while its server restarted fails on first use; callers
// retry once on a fresh one when Lease::reused() says it came from the idle list.
//
// Resource limits: every connection registers (pins) its buffers. When a new one cannot
// (ResourceExhausted: RLIMIT_MEMLOCK for an unprivileged client on verbs), Acquire
// closes the idle connections to other servers and tries again, or takes a connection
// to the same server that another operation gives back, for up to the client timeout,
// instead of failing the operation with EIO at once. A caller holding several leases
// at once (a transfer over several servers) acquires them in ascending server order,
// so two callers never wait for each other's connections in a cycle.
//
// Thread-safety: DataClientPool is thread-safe. A Lease belongs to one thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/endpoint.h"
#include "common/mutex.h"
#include "common/status.h"
#include "datapath/data_client.h"
#include "datapath/data_server_identity.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

struct DataClientPoolOptions {
  DataClientOptions client;  // persist method, queue depth, max I/O, timeout
  uint32_t max_idle_per_server = 16;   // idle connections kept per data server
  // expect[i]: who data server i must be (data_server_identity.h); a new connection to a
  // server that says otherwise is closed and Acquire fails with FailedPrecondition.
  // Empty: not checked (tests of the pool alone).
  std::vector<DataServerIdentity> expect;
};

class DataClientPool {
 public:
  // `servers[i]` is data server i (ClusterInfo order). The device outlives the pool.
  DataClientPool(transport::Device& device, std::vector<Endpoint> servers,
                 const DataClientPoolOptions& options);
  ~DataClientPool();
  DataClientPool(const DataClientPool&) = delete;
  DataClientPool& operator=(const DataClientPool&) = delete;

  // A checked-out connection. Returns it to the pool on destruction unless
  // MarkBroken() was called (then it is closed).
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease() { Release(); }
    DataClient* operator->() const { return client_.get(); }
    DataClient& operator*() const { return *client_; }
    explicit operator bool() const { return client_ != nullptr; }
    uint32_t server() const { return server_; }
    // Whether the connection came from the idle list (it may have died while idle).
    bool reused() const { return reused_; }
    // The connection failed: do not reuse it.
    void MarkBroken() { broken_ = true; }
    void Release();

   private:
    friend class DataClientPool;
    DataClientPool* pool_ = nullptr;
    uint32_t server_ = 0;
    std::unique_ptr<DataClient> client_;
    bool broken_ = false;
    bool reused_ = false;
  };

  // An idle connection to data server `server`, or a new one. Unavailable (naming the
  // server) when it cannot be reached; PermissionDenied that IsStaleEpoch
  // (session_token.h) recognizes when it refused the session token as older than its
  // fence; InvalidArgument for an unknown index.
  // `wait` false: when memory runs out, close idle connections to other servers and
  // try once more, then fail with ResourceExhausted instead of waiting (for a caller
  // that holds other leases).
  Result<Lease> Acquire(uint32_t server, bool wait = true);

  size_t num_servers() const { return servers_.size(); }
  const Endpoint& endpoint(uint32_t server) const { return servers_[server]; }
  const DataClientPoolOptions& options() const { return options_; }
  // Connections made so far (for tests: reconnects after a failure are visible here).
  uint64_t connects() const;
  // The pool instance (ServerInfo::pool_instance) the latest connection to `server`
  // reported: 0 before any, or from a data server that does not say it.
  uint64_t pool_instance(uint32_t server) const;

 private:
  void Return(uint32_t server, std::unique_ptr<DataClient> client);
  void DropIdle(uint32_t server);

  transport::Device& device_;
  const std::vector<Endpoint> servers_;
  const DataClientPoolOptions options_;
  mutable Mutex mu_;
  std::vector<std::vector<std::unique_ptr<DataClient>>> idle_ GUARDED_BY(mu_);  // per server
  std::condition_variable returned_;  // a connection went back to idle_
  uint64_t connects_ GUARDED_BY(mu_) = 0;
  std::vector<uint64_t> instances_ GUARDED_BY(mu_);  // per server
};

}  // namespace dpmfs::datapath
