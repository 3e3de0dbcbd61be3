// MetaClient: the client of one dpmfs-meta, the implementation of MetaApi (meta_api.h)
// used by the FUSE client, the tests and dpmfs-bench meta. One RpcClient connection
// (many calls in flight) plus a heartbeat thread that keeps the session's lease alive.
//
// Every operation returns a Status carrying a POSIX errno (see meta_api.h):
//   - the namespace's answer (ENOENT, EEXIST, ...) as the server gave it;
//   - EIO when a reply does not decode, or the server reported an RPC-level error;
//   - ETIMEDOUT when the call's deadline passed, ENOTCONN when the server stayed
//     unreachable through every reconnect attempt.
// It logs only at debug level: the caller's edge logs the failure's message.
//
// The typed stub of every row of meta_ops.h is Call<op>(request, reply), with the
// row's request and reply types; the MetaApi methods are that plus argument checks.
// A call interrupted by a lost connection is re-sent with the same session and sequence
// number, so a metadata server restart is invisible to callers: the server answers a
// mutation it already executed from its (durable) reply cache.
//
// Pipelining (raw, errno level, not part of MetaApi): Start sends a request and returns
// at once, Finish waits for its reply and returns its errno; one thread can keep several
// calls in flight (dpmfs-bench meta --window drives the server so).
//
// Thread-safety: every method is thread-safe; any number of calls may run at once. A
// Started call is finished by one thread, and before the MetaClient is destroyed.
#pragma once

#include <atomic>
#include <functional>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/endpoint.h"
#include "common/mutex.h"
#include "common/status.h"
#include "transport/transport.h"
#include "metadata/caller_scope.h"
#include "metadata/meta_api.h"
#include "metadata/meta_ops.h"
#include "metadata/meta_protocol.h"
#include "rpc/rpc_client.h"

namespace dpmfs::meta {

struct MetaClientOptions {
  std::string client_name;  // shown by the server's logs / status
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds call_timeout{30000};
  // Calls in flight on the connection. The server grants at most 32 (RpcServerOptions);
  // asking more only registers buffers that are never used (2 x 256 KiB per call, pinned
  // on verbs: 16 MiB at 32).
  uint32_t depth = 32;
  // Reconnect attempts after a lost connection (with backoff up to 500 ms): ~20 s.
  uint32_t reconnect_attempts = 50;
  bool heartbeat = true;  // false for tests that want the lease to lapse
  // Who calls made outside any CallerScope (caller_scope.h) act for. Unset: this
  // process's effective uid, gid and groups at Connect.
  std::optional<Credentials> caller;
  // Told every session token the metadata server issues (right after registering, then
  // at each lease renewal): what the client presents to data servers
  // (datapath::SessionTokenSource::Set). Called on the connecting or heartbeat thread.
  std::function<void(std::vector<uint8_t>)> on_data_token;
  // This client's live metrics (an encoded metrics::StatsReport), pushed to the server
  // with every heartbeat so that `dpmfs stats` sees every client through the metadata
  // server (docs/monitoring.md). Called on the heartbeat thread. Null: nothing pushed.
  std::function<std::vector<uint8_t>()> stats_report;
};

// This process's effective uid, gid and supplementary groups.
Credentials ProcessCredentials();

class MetaClient final : public MetaApi {
 public:
  // Connects and registers. Unavailable (with the address in the message) when the
  // server cannot be reached within connect_timeout: a mount fails fast, never hangs.
  static Result<std::unique_ptr<MetaClient>> Connect(transport::Device& device,
                                                     const Endpoint& server,
                                                     const MetaClientOptions& options);
  ~MetaClient() override;  // stops the heartbeat, unregisters (best effort)
  MetaClient(const MetaClient&) = delete;
  MetaClient& operator=(const MetaClient&) = delete;

  const ClusterInfo& cluster() const override { return cluster_; }
  uint32_t lease_ms() const { return lease_ms_; }
  uint64_t session() const;

  // ---- MetaApi ----
  Status Lookup(InodeId parent, std::string_view name, InodeAttr* attr) override;
  Status Getattr(InodeId ino, InodeAttr* attr) override;
  Status Setattr(const SetattrRequest& req, InodeAttr* attr) override;
  Status Create(const CreateRequest& req, CreateReply* reply) override;
  Status Mkdir(const MkdirRequest& req, InodeAttr* attr,
               std::vector<InodeAttr>* dirs = nullptr) override;
  Status Mknod(const MknodRequest& req, InodeAttr* attr,
               std::vector<InodeAttr>* dirs = nullptr) override;
  Status Symlink(const SymlinkRequest& req, InodeAttr* attr,
                 std::vector<InodeAttr>* dirs = nullptr) override;
  Status Readlink(InodeId ino, std::string* target) override;
  Status Link(InodeId ino, InodeId new_parent, std::string_view new_name, InodeAttr* attr,
              std::vector<InodeAttr>* dirs = nullptr) override;
  Status Unlink(InodeId parent, std::string_view name,
                std::vector<InodeAttr>* dirs = nullptr) override;
  Status Rmdir(InodeId parent, std::string_view name,
               std::vector<InodeAttr>* dirs = nullptr) override;
  Status Rename(const RenameRequest& req, std::vector<InodeAttr>* dirs = nullptr) override;
  Status Readdir(const ReaddirRequest& req, ReaddirReply* reply) override;
  Status Open(InodeId ino, uint32_t flags, OpenReply* reply) override;
  Status Release(InodeId ino, uint64_t handle) override;
  Status ReleaseMany(const std::vector<ReleaseRequest>& handles,
                     uint32_t* refused = nullptr) override;
  Status Statfs(StatfsReply* reply) override;
  Status Getxattr(InodeId ino, std::string_view name, std::string* value) override;
  Status Setxattr(const SetxattrRequest& req) override;
  Status Listxattr(InodeId ino, std::vector<std::string>* names) override;
  Status Removexattr(InodeId ino, std::string_view name) override;
  Status Layout(const LayoutRequest& req, LayoutReply* reply) override;
  Status Allocate(const AllocateRequest& req, AllocateReply* reply) override;
  Status Commit(const CommitRequest& req, InodeAttr* attr) override;
  Status Fallocate(const FallocateRequest& req, InodeAttr* attr) override;
  Status GetClusterMap(ClusterMapReply* reply) override;
  Status ReportDataServer(const ReportDataServerRequest& req, ClusterMapReply* reply) override;
  Status MarkDegraded(const MarkDegradedRequest& req) override;
  uint64_t latest_epoch() const override { return latest_epoch_.load(std::memory_order_acquire); }
  // Callers that arrive together (every writer meets a fence at once) share one renewal.
  Status RenewDataToken() override EXCLUDES(renew_mu_);

  // The stub of operation `op` (a row of meta_ops.h): sends its request type, decodes its
  // reply type. No client-side checks (the MetaApi methods add them).
  template <Opcode op>
  Status Call(const typename OpTypes<op>::Request& req, typename OpTypes<op>::Reply* reply) {
    Started s = StartRaw(op, EncodeWithCaller(req));
    std::vector<uint8_t> raw;
    std::span<const uint8_t> body;
    DPMFS_RETURN_IF_ERROR(FinishReply(s, &raw, &body));
    if (Status st = Decode(body, reply); !st.ok()) return Undecodable(op, st);
    return Status::OK();
  }

  // A call sent by Start, to be collected by Finish.
  struct Started {
    Opcode op{};
    rpc::RpcClient::Ticket ticket;
  };
  // Any request the typed calls send, as they send it (without their client-side checks,
  // such as CheckName: the server checks everything again).
  template <class Req>
  Started Start(Opcode op, const Req& req) {
    return StartRaw(op, EncodeWithCaller(req));
  }
  // The reply of `s` decoded into `reply` (the type the typed call decodes): 0, or the
  // errno the typed call's Status would carry.
  template <class Rep>
  int Finish(Started& s, Rep* reply) {
    std::vector<uint8_t> raw;
    std::span<const uint8_t> body;
    if (Status st = FinishReply(s, &raw, &body); !st.ok()) return st.ToErrno();
    if (Status st = Decode(body, reply); !st.ok()) return Undecodable(s.op, st).ToErrno();
    return 0;
  }

  // Sends any request (already encoded, without its caller: the current one is put in
  // front) and returns the reply's errno and body: for tests and fuzzing that need to
  // send what the typed calls would refuse to build.
  int CallRaw(Opcode op, std::span<const uint8_t> payload, std::vector<uint8_t>* body);

  // Fault injection for tests: drops the connection (calls in flight are re-sent).
  void DisconnectForTesting();

 private:
  MetaClient(std::unique_ptr<rpc::RpcClient> rpc, const MetaClientOptions& options);
  // `payload` starts with the caller (EncodeWithCaller).
  Started StartRaw(Opcode op, std::span<const uint8_t> payload);
  // The caller this thread's calls act for: the innermost CallerScope's, else the
  // client's default.
  const Credentials& caller() const {
    const Credentials* c = CallerScope::Current();
    return c != nullptr ? *c : default_caller_;
  }
  // A request payload: the caller, then `req` (one buffer, sized once).
  template <class Req>
  std::vector<uint8_t> EncodeWithCaller(const Req& req) const {
    const Credentials& c = caller();
    std::vector<uint8_t> out;
    out.reserve(EncodedSize(c) + EncodedSize(req));
    EncodeTo(c, &out);
    EncodeTo(req, &out);
    return out;
  }
  // Waits for `s`'s reply: OK with `raw` the whole reply and `body` what follows the
  // errno in it, or the failure (the server's errno, or the RPC's, naming the operation).
  Status FinishReply(Started& s, std::vector<uint8_t>* raw, std::span<const uint8_t>* body);
  Status Undecodable(Opcode op, const Status& why);  // EIO naming the operation
  // The stub for the ops answered with an EntryReply (attr and dirs to the caller).
  template <Opcode op>
  Status CallEntry(const typename OpTypes<op>::Request& req, InodeAttr* attr,
                   std::vector<InodeAttr>* dirs);
  // The stub for the ops answered with a DirsReply.
  template <Opcode op>
  Status CallDirs(const typename OpTypes<op>::Request& req, std::vector<InodeAttr>* dirs);
  int Register();
  // One heartbeat: renews the lease, passes a token on (on_data_token); `*known` false
  // when the server no longer knows the session.
  Status RenewLease(std::chrono::milliseconds timeout, bool* known);
  void HeartbeatLoop();
  // Sends options_.stats_report() (heartbeat thread only).
  void PushStats(std::chrono::milliseconds timeout);
  bool stats_too_big_logged_ = false;  // heartbeat thread only

  std::unique_ptr<rpc::RpcClient> rpc_;
  const MetaClientOptions options_;
  Credentials default_caller_;
  ClusterInfo cluster_;
  uint32_t lease_ms_ = 0;
  Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread heartbeat_;
  std::atomic<uint64_t> latest_epoch_{0};  // from heartbeat replies
  Mutex renew_mu_;                          // RenewDataToken: one renewal at a time
  std::atomic<uint64_t> renewals_{0};       // RenewDataToken renewals done
};

}  // namespace dpmfs::meta
