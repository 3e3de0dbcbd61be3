// RpcServer: the serving side of dpmfs RPC over a transport::Device (two-sided
// SEND/RECV). One thread accepts connections; each connection's requests arrive on
// the transport's receive thread for its QP (QueuePairOptions::on_recv), which runs
// them itself (inline_handlers) or hands them to a pool of worker threads.
// Every request passes through a per-session reply cache, so a request re-sent after a
// reconnect with the same (session, seq) is answered from the cache, never executed
// twice (at-most-once; see rpc/README.md for eviction).
//
// Thread-safety: the handler table is fixed at Start (looked up without locking).
// Stop(), stats() and DropSession() are thread-safe. Handlers run concurrently on the
// worker threads and must be thread-safe themselves.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/endpoint.h"
#include "common/mutex.h"
#include "common/status.h"
#include "transport/transport.h"
#include "rpc/rpc_protocol.h"

namespace dpmfs::rpc {

struct RpcRequest {
  uint16_t opcode = 0;
  uint64_t session = 0;
  uint64_t seq = 0;
  std::span<const uint8_t> payload;  // valid only during the handler call
  std::string peer;                  // "127.0.0.1:4711"
};

// A handler returns the reply payload or an error Status; the error's code and message
// reach the caller's Call() as its Status. The result (either way) is cached for
// at-most-once; a handler must not block forever (it holds a worker thread).
using RpcHandler = std::function<Result<std::vector<uint8_t>>(const RpcRequest&)>;

struct RpcServerOptions {
  Endpoint listen{"0.0.0.0", 0};
  uint32_t worker_threads = 2;
  // Largest message (header + payload) this server accepts; a client asking for more is
  // granted this. 256..kMaxMessageSizeCap.
  uint32_t max_message = kDefaultMessageSize;
  // Receive buffers per connection = requests a client may have outstanding (credits).
  uint32_t depth = 32;
  // Completed replies kept per session for at-most-once, and their bytes at most.
  uint32_t reply_cache_per_session = 256;
  uint64_t reply_cache_bytes_per_session = 1ull << 20;
  // Whether a request of this opcode goes through the reply cache (at-most-once). Null:
  // every opcode. Idempotent requests (reads) need not: they run again when re-sent,
  // and a session that only reads then holds no cache at all.
  std::function<bool(uint16_t opcode)> at_most_once;
  // ---- Limits (rpc/README.md, "Limits"): refused or closed beyond them ----
  uint32_t max_connections = 1024;
  uint32_t max_connections_per_peer = 64;  // per peer address, port aside
  // Receive and reply buffers of every connection together ((depth + depth + 8) x
  // max_message each); connects beyond it are refused until others leave.
  uint64_t max_buffer_bytes = 4ull << 30;
  // A connection that sent no request for this long is closed (0: never).
  uint32_t idle_timeout_ms = 0;
  // A session with no connection for this long is dropped with its reply cache (its
  // client did not come back; DropSession ends one sooner).
  uint32_t session_linger_ms = 60000;
  // Run handlers on the connection's receive thread (the transport's) instead of
  // handing them to the worker pool: one thread wake-up less per request (what small-message throughput on a
  // few cores is made of), at the price of executing one connection's requests one at a
  // time. For handlers that never block for long.
  bool inline_handlers = false;
};

struct RpcServerStats {
  uint64_t connections = 0;          // accepted so far
  uint64_t executed = 0;             // handler invocations
  uint64_t cache_hits = 0;           // requests answered from the reply cache
  uint64_t malformed = 0;            // messages refused by the decoder
  uint64_t dropped_connections = 0;  // closed because a message was unreadable
  uint64_t refused_connections = 0;  // over a connection or buffer limit
  uint64_t idle_closed = 0;          // closed by idle_timeout_ms
  uint64_t open_connections = 0;
  uint64_t sessions = 0;             // sessions holding a reply cache now
  uint64_t reply_cache_bytes = 0;    // reply payloads those caches hold
  uint64_t lingering_dropped = 0;    // sessions dropped by session_linger_ms
  uint64_t buffer_bytes = 0;         // connection buffers held now
};

class RpcServer {
 public:
  // Listens on options.listen and serves `handlers` (by opcode) at once.
  static Result<std::unique_ptr<RpcServer>> Start(transport::Device& device,
                                                  const RpcServerOptions& options,
                                                  std::map<uint16_t, RpcHandler> handlers);
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  // Closes the listener and every connection, waits for running handlers to return and
  // drops queued requests. Idempotent.
  void Stop();
  Endpoint endpoint() const { return endpoint_; }
  RpcServerStats stats() const;
  // Forgets a session's reply cache (for the metadata server's lease expiry).
  void DropSession(uint64_t session);

 private:
  class Connection;
  struct Task;
  struct Session;
  friend class Connection;

  RpcServer(transport::Device& device, RpcServerOptions options,
            std::map<uint16_t, RpcHandler> handlers);
  void AcceptLoop();
  // In the accept thread: closes idle connections, reaps finished ones, drops sessions
  // that lingered without a connection. conns_mu_ held.
  void SweepLocked() REQUIRES(conns_mu_);
  // The accept handler's limit checks (conns_mu_ taken inside).
  Status Admit(const std::string& peer);
  void WorkerLoop();
  void Enqueue(Task task);
  void Execute(Task& task);

  transport::Device& device_;
  const RpcServerOptions options_;
  const std::map<uint16_t, RpcHandler> handlers_;
  std::unique_ptr<transport::Listener> listener_;
  Endpoint endpoint_;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;

  mutable Mutex conns_mu_;
  std::list<std::shared_ptr<Connection>> conns_ GUARDED_BY(conns_mu_);

  Mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::list<Task> queue_ GUARDED_BY(queue_mu_);
  std::vector<std::thread> workers_;

  mutable Mutex sessions_mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_ GUARDED_BY(sessions_mu_);

  std::atomic<uint64_t> n_connections_{0}, n_executed_{0}, n_cache_hits_{0}, n_malformed_{0},
      n_dropped_{0}, n_refused_{0}, n_idle_closed_{0}, n_lingering_dropped_{0};
  std::atomic<uint64_t> buffer_bytes_{0};  // held by live connections' buffers
};

}  // namespace dpmfs::rpc
