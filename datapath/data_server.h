// The data server: serves one pool's data area to clients that write it one-sided.
// It owns no file metadata. Clients READ and WRITE the registered data area directly;
// the server's CPU only works for the `imm` and `rpc` persist methods (persist a
// described range / copy a sent payload, then reply).
//
// Threads: one accept thread, which also reaps the connections whose QP failed (the
// client went away). Connections have no thread of their own: the messages of imm and
// rpc are handled (checked, persisted, answered) on the transport's receive thread of
// their QP (QueuePairOptions::on_recv); one-sided methods (none, read, read2, flush)
// never involve this server's CPU.
// Thread-safety: Start/Stop/endpoint from one controlling thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/cluster_key.h"
#include "common/endpoint.h"
#include "common/live_histogram.h"
#include "common/mutex.h"
#include "common/pool.h"
#include "common/pool_lock.h"
#include "common/stats_report.h"
#include "common/status.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

// What one server gives its clients at most (datapath/README.md, "Limits"). A connect
// request beyond any of them is refused with a message naming the limit.
struct DataServerLimits {
  uint32_t max_connections = 1024;
  // Per peer address (the port aside): one host cannot take every connection.
  uint32_t max_connections_per_peer = 256;
  // Receive, reply and descriptor-ring buffers of one connection (rpc: queue depth x
  // (32 + max I/O size); the clients' default is 16 x 1 MiB).
  uint64_t max_connection_buffer_bytes = 64ull << 20;
  // The same over every connection of the server.
  uint64_t max_buffer_bytes = 1ull << 30;
};

struct DataServerOptions {
  std::string pool_path;
  Endpoint listen{"127.0.0.1", 7100};
  pool::OpenExpectations expect;  // role is always checked to be data
  // imm/rpc on a pool that is not real PM: msync the range (survives an OS crash)
  // instead of relying on the page cache (survives a process crash only).
  bool msync = false;
  DataServerLimits limits;
  // Set: a connection is served only with a valid session token (session_token.h) MACed
  // with this key, gets its own registration of the data area (its own remote key), and
  // loses it when the token expires (docs/security.md, "Tokens"). Null: every connection
  // shares one registration for as long as it lasts (--no-auth, tests of the data path).
  std::shared_ptr<const ClusterKey> token_key;
};

struct DataServerStats {
  uint64_t connections = 0;
  uint64_t imm_writes = 0;
  uint64_t rpc_writes = 0;
  uint64_t refused = 0;  // connect requests and messages refused
  uint64_t zeroed_bytes = 0;  // rpc zero requests (kDescriptorZero)
  uint64_t open_connections = 0;
  uint64_t buffer_bytes = 0;  // connection buffers held now
  uint64_t revoked = 0;  // connections whose token expired or fell below the fence: revoked, closed
  uint64_t fence = 0;    // the lowest token epoch served (docs/replication.md, "Fencing")
};

class DataServer {
 public:
  // Opens and validates the pool, registers its data area, and starts listening.
  static Result<std::unique_ptr<DataServer>> Start(transport::Device& device,
                                                   const DataServerOptions& options);
  ~DataServer();

  Endpoint endpoint() const { return endpoint_; }
  const pool::PoolInfo& pool_info() const { return pool_.info(); }
  bool is_pmem() const { return pool_.is_pmem(); }
  DataServerStats stats() const;
  // The live metrics (docs/monitoring.md): connections, refusals, and per request kind
  // the server's CPU takes part in (imm and rpc writes, zero requests, admin requests)
  // a latency histogram and bytes. One-sided READs and WRITEs never reach this CPU:
  // the clients' histograms count them.
  metrics::StatsReport Report() const;
  // Stops accepting, disconnects every client, joins the threads. Idempotent.
  void Stop();
  // The fence (docs/replication.md, "Fencing"): from now on a data connection whose
  // session token's epoch is below `epoch` is refused at connect (PermissionDenied,
  // "stale epoch E, the cluster is at F"), and the established ones below it are revoked
  // (registration deregistered, connection closed) before this returns. Only rises; 0
  // at start. Connections without a token (admin; a server without a token key) are
  // never fenced. Returns the fence now in force. What an AdminKind::kFence request does.
  uint64_t RaiseFence(uint64_t epoch);

 private:
  class Connection;
  enum class RequestKind : uint8_t { kImmWrite, kRpcWrite, kZero, kAdmin };
  static constexpr size_t kRequestKinds = 4;
  // On a receive thread, per message handled: lock-free.
  void Record(RequestKind kind, uint64_t bytes, std::chrono::steady_clock::time_point start);
  DataServer(transport::Device& device, DataServerOptions options, pool::MappedPool pool);
  void AcceptLoop();
  // Drops (and logs) the connections whose client went away, and those whose session
  // token expired (their registration goes with them). Under connections_mu_.
  void ReapFinishedLocked() REQUIRES(connections_mu_);
  void LogFenced(const Connection& c, uint64_t fence);

  transport::Device& device_;
  DataServerOptions options_;
  pool::PoolLock lock_;  // held while serving (mkfs and a second server are refused)
  pool::MappedPool pool_;
  transport::MemoryRegion pool_mr_;
  std::unique_ptr<transport::Listener> listener_;
  Endpoint endpoint_;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  mutable Mutex connections_mu_;
  std::list<std::unique_ptr<Connection>> connections_ GUARDED_BY(connections_mu_);
  std::atomic<uint64_t> buffer_bytes_{0};  // sum of the live connections' buffers
  std::atomic<uint64_t> fence_{0};  // RaiseFence: token epochs below it are not served
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::array<metrics::LiveHistogram, kRequestKinds> latency_;
  std::array<std::atomic<uint64_t>, kRequestKinds> bytes_{};
  std::atomic<uint64_t> n_connections_{0}, n_imm_{0}, n_rpc_{0}, n_refused_{0},
      n_zeroed_{0}, n_revoked_{0};
};

}  // namespace dpmfs::datapath
