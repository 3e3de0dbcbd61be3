// The data server: serves one pool's data area to clients that write it one-sided.
// It owns no file metadata. Clients READ and WRITE the registered data area directly;
// the server's CPU only works for the `imm` and `rpc` persist methods (persist a
// described range / copy a sent payload, then reply).
//
// Threads: one accept thread, and one thread per client connection (waits on that
// QP's receive queue; idle for the one-sided methods).
// Thread-safety: Start/Stop/endpoint from one controlling thread.
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/endpoint.h"
#include "common/pool.h"
#include "common/pool_lock.h"
#include "common/status.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

struct DataServerOptions {
  std::string pool_path;
  Endpoint listen{"127.0.0.1", 7100};
  pool::OpenExpectations expect;  // role is always checked to be data
  // imm/rpc on a pool that is not real PM: msync the range (survives an OS crash)
  // instead of relying on the page cache (survives a process crash only).
  bool msync = false;
};

struct DataServerStats {
  uint64_t connections = 0;
  uint64_t imm_writes = 0;
  uint64_t rpc_writes = 0;
  uint64_t refused = 0;
  uint64_t zeroed_bytes = 0;  // rpc zero requests (kDescriptorZero)
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
  // Stops accepting, disconnects every client, joins the threads. Idempotent.
  void Stop();

 private:
  class Connection;
  DataServer(transport::Device& device, DataServerOptions options, pool::MappedPool pool);
  void AcceptLoop();

  transport::Device& device_;
  DataServerOptions options_;
  pool::PoolLock lock_;  // held while serving (mkfs and a second server are refused)
  pool::MappedPool pool_;
  transport::MemoryRegion pool_mr_;
  std::unique_ptr<transport::Listener> listener_;
  Endpoint endpoint_;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex connections_mu_;
  std::list<std::unique_ptr<Connection>> connections_;
  std::atomic<uint64_t> n_connections_{0}, n_imm_{0}, n_rpc_{0}, n_refused_{0},
      n_zeroed_{0};
};

}  // namespace dpmfs::datapath
