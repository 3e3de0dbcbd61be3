// RpcClient: the calling side of dpmfs RPC. One connection (one QP) to one RpcServer,
// shared by any number of threads: Call() is thread-safe and many calls may be in
// flight at once, up to the depth (credits) the server granted; further calls queue.
//
// Threads: replies arrive on the transport's receive thread (QueuePairOptions::on_recv),
// which matches each to its call, reposts the receive buffer, sends queued calls as
// credits return, and wakes exactly the one caller whose reply it was: a call costs its
// caller one wake-up, no relay thread in between. Callers post their own SENDs (under
// the client's lock) and sleep on their own condition variable until the reply arrives
// or their deadline passes. One maintenance thread per client owns reconnection and
// sends queued calls whose credits came back without a reply to carry them.
//
// Failures: a lost connection is re-established by the maintenance thread with bounded
// retries and exponential backoff; every call still waiting is re-sent on the new
// connection with the SAME session id and sequence number, so the server answers it
// from its reply cache instead of executing it again. If every retry fails, waiting
// calls end with Unavailable (they may or may not have executed) and the next Call
// starts a new round of reconnection.
//
// Pipelining: Start sends a call and returns at once; Wait collects its reply. One thread
// can so keep several calls in flight (dpmfs-bench meta --window drives the server this
// way); Call is Start then Wait.
//
// Thread-safety: Call, Start, session, max_payload and reconnects are thread-safe; a
// Ticket is waited for by one thread. The destructor must not race with Call or Start,
// and every Ticket must be gone before it runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/endpoint.h"
#include "common/mutex.h"
#include "common/status.h"
#include "transport/transport.h"
#include "rpc/rpc_protocol.h"

namespace dpmfs::rpc {

struct RpcClientOptions {
  uint64_t session = 0;                        // 0: a random non-zero 64-bit id
  uint32_t max_message = kDefaultMessageSize;  // asked for; the server may grant less
  uint32_t depth = 32;                         // calls in flight at once; the server may grant less
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds default_timeout{10000};
  uint32_t reconnect_attempts = 20;
  std::chrono::milliseconds reconnect_backoff_initial{10};
  std::chrono::milliseconds reconnect_backoff_max{500};
};

class RpcClient {
  struct Pending;

 public:
  // A call started and not yet collected. Dropping it uncollected abandons the call: its
  // reply, if one comes, is discarded.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept { *this = std::move(o); }
    Ticket& operator=(Ticket&& o) noexcept;
    ~Ticket() { Drop(); }
    bool valid() const { return client_ != nullptr; }

   private:
    friend class RpcClient;
    void Drop();
    RpcClient* client_ = nullptr;  // null: empty, or a call that failed to start
    std::shared_ptr<Pending> p_;
    std::chrono::steady_clock::time_point deadline_;
    std::chrono::milliseconds timeout_{0};
    Status refused_;  // why Start did not send it (Wait returns it)
  };

  // Connects once (no retries: an unreachable server at start is an error).
  static Result<std::unique_ptr<RpcClient>> Connect(transport::Device& device,
                                                    const Endpoint& server,
                                                    const RpcClientOptions& options);
  ~RpcClient();
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // Sends `payload` to the server's handler of `opcode` and returns its reply payload,
  // or the handler's error Status (code and message as the handler gave them);
  // InvalidArgument if the payload exceeds max_payload(); TimedOut after `timeout`;
  // Unavailable when the server stayed unreachable through every reconnect attempt.
  Result<std::vector<uint8_t>> Call(uint16_t opcode, std::span<const uint8_t> payload,
                                    std::chrono::milliseconds timeout) {
    Ticket t = Start(opcode, payload, timeout);
    return Wait(t);
  }
  Result<std::vector<uint8_t>> Call(uint16_t opcode, std::span<const uint8_t> payload) {
    return Call(opcode, payload, options_.default_timeout);
  }

  // Call in two halves: Start queues the call and sends it as soon as a credit allows;
  // Wait blocks until its reply (or `timeout` after Start) and returns what Call would.
  // Calls are answered in any order; waiting for them in the order started is cheapest,
  // because whoever waits reads every reply that arrives meanwhile.
  Ticket Start(uint16_t opcode, std::span<const uint8_t> payload, std::chrono::milliseconds timeout);
  Result<std::vector<uint8_t>> Wait(Ticket& ticket);

  uint64_t session() const { return session_; }
  // Largest request payload the current connection carries.
  uint32_t max_payload() const;
  uint64_t reconnects() const;

  // Fault injection: has the maintenance thread tear the current connection down as if
  // the network failed (within milliseconds), so tests can exercise reconnection and
  // re-sending against a server that stays up.
  void DisconnectForTesting();

 private:
  struct Link;

  RpcClient(transport::Device& device, const Endpoint& server, const RpcClientOptions& options,
            uint64_t session);
  Result<std::unique_ptr<Link>> MakeLink();
  void MaintenanceLoop();
  // The QP's on_recv handler (on the transport's receive thread).
  void OnRecv(Link& link, const transport::Completion& c);
  void HandleReply(Link& link, const transport::Completion& c) REQUIRES(mu_);
  void Pump() REQUIRES(mu_);
  void ReapSends(Link& link) REQUIRES(mu_);
  void HandleLoss() EXCLUDES(mu_);
  void Reconnect() EXCLUDES(mu_);
  // Waits (mu_ held by `lock`) until `p` is answered or `deadline` passes, reading the
  // connection itself when nobody else does (see rpc_client.cc).
  void AwaitReply(MutexLock& lock, Pending& p, std::chrono::steady_clock::time_point deadline)
      REQUIRES(mu_);
  // Nobody reads the connection for callers any more: hands the role to one caller
  // still waiting for its reply, other than `leaving`'s (mu_ held).
  void PromoteWaiter(const Pending& leaving) REQUIRES(mu_);
  // A ticket dropped uncollected (mu_ not held): Forget unless it was answered.
  void Abandon(Pending& p) EXCLUDES(mu_);
  // An unanswered call nobody waits for any more (mu_ held): never sent if still queued;
  // if sent, its reply only returns the credit.
  void Forget(Pending& p) REQUIRES(mu_);

  transport::Device& device_;
  const Endpoint server_;
  const RpcClientOptions options_;
  const uint64_t session_;

  mutable Mutex mu_;
  std::condition_variable wake_cv_;  // the maintenance thread has something to do
  std::unique_ptr<Link> link_ GUARDED_BY(mu_);  // null while disconnected
  std::map<uint64_t, std::shared_ptr<Pending>> pending_ GUARDED_BY(mu_);  // by seq (= request id)
  std::deque<uint64_t> unsent_ GUARDED_BY(mu_);  // seqs waiting for a credit or a connection, in order
  uint64_t next_seq_ GUARDED_BY(mu_) = 1;
  uint32_t max_payload_ GUARDED_BY(mu_) = 0;
  uint64_t reconnects_ GUARDED_BY(mu_) = 0;
  bool broken_ GUARDED_BY(mu_) = false;  // reconnection gave up; the next Call restarts it
  bool reconnect_requested_ GUARDED_BY(mu_) = false;
  bool disconnect_requested_ GUARDED_BY(mu_) = false;
  bool closed_ GUARDED_BY(mu_) = false;
  // A caller reads the connection for every caller (Link::drivable): which link, while
  // it does. HandleLoss waits on drive_cv_ until it has left the link it tears down.
  Link* driven_link_ GUARDED_BY(mu_) = nullptr;
  std::condition_variable drive_cv_;
  std::thread thread_;
};

}  // namespace dpmfs::rpc
