// MetaClient: the typed client of dpmfs-meta, used by the FUSE client, the tests and
// dpmfs-bench meta. One RpcClient connection (many calls in flight) plus a heartbeat
// thread that keeps the session's lease alive.
//
// Every operation returns 0 or a positive Linux errno, ready to hand to FUSE:
//   - the namespace's answer (ENOENT, EEXIST, ...) as the server gave it;
//   - EIO when a reply does not decode (and logs why), or the server reported an
//     RPC-level error;
//   - ETIMEDOUT when the call's deadline passed, ENOTCONN when the server stayed
//     unreachable through every reconnect attempt.
// A call interrupted by a lost connection is re-sent with the same session and sequence
// number, so a metadata server restart is invisible to callers: the server answers a
// mutation it already executed from its (durable) reply cache.
//
// Pipelining: Start sends a request and returns at once, Finish waits for its reply and
// returns what the typed call would have; one thread can keep several calls in flight
// (dpmfs-bench meta --window drives the server so).
//
// Thread-safety: every method is thread-safe; any number of calls may run at once. A
// Started call is finished by one thread, and before the MetaClient is destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/endpoint.h"
#include "common/status.h"
#include "transport/transport.h"
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
};

class MetaClient {
 public:
  // Connects and registers. Unavailable (with the address in the message) when the
  // server cannot be reached within connect_timeout: a mount fails fast, never hangs.
  static Result<std::unique_ptr<MetaClient>> Connect(transport::Device& device,
                                                     const Endpoint& server,
                                                     const MetaClientOptions& options);
  ~MetaClient();  // stops the heartbeat, unregisters (best effort)
  MetaClient(const MetaClient&) = delete;
  MetaClient& operator=(const MetaClient&) = delete;

  const ClusterInfo& cluster() const { return cluster_; }
  uint32_t lease_ms() const { return lease_ms_; }
  uint64_t session() const;

  int Lookup(InodeId parent, std::string_view name, InodeAttr* attr);
  int Getattr(InodeId ino, InodeAttr* attr);
  int Setattr(const SetattrRequest& req, InodeAttr* attr);
  // Namespace changes. `dirs`, when given, receives the attributes of the directories
  // the change touched, as the server had them right after it (see EntryReply::dirs).
  int Create(const CreateRequest& req, CreateReply* reply);
  int Mkdir(const MkdirRequest& req, InodeAttr* attr, std::vector<InodeAttr>* dirs = nullptr);
  int Mknod(const MknodRequest& req, InodeAttr* attr, std::vector<InodeAttr>* dirs = nullptr);
  int Symlink(const SymlinkRequest& req, InodeAttr* attr, std::vector<InodeAttr>* dirs = nullptr);
  int Readlink(InodeId ino, std::string* target);
  int Link(InodeId ino, InodeId new_parent, std::string_view new_name, InodeAttr* attr,
           std::vector<InodeAttr>* dirs = nullptr);
  int Unlink(InodeId parent, std::string_view name, std::vector<InodeAttr>* dirs = nullptr);
  int Rmdir(InodeId parent, std::string_view name, std::vector<InodeAttr>* dirs = nullptr);
  int Rename(const RenameRequest& req, std::vector<InodeAttr>* dirs = nullptr);
  int Readdir(const ReaddirRequest& req, ReaddirReply* reply);
  int Open(InodeId ino, uint32_t flags, OpenReply* reply);
  int Release(InodeId ino, uint64_t handle);
  // Releases up to kMaxReleasesPerRequest handles in one call; `refused` (optional) gets
  // how many were not open.
  int ReleaseMany(const std::vector<ReleaseRequest>& handles, uint32_t* refused = nullptr);
  int Statfs(StatfsReply* reply);
  int Getxattr(InodeId ino, std::string_view name, std::string* value);
  int Setxattr(const SetxattrRequest& req);
  int Listxattr(InodeId ino, std::vector<std::string>* names);
  int Removexattr(InodeId ino, std::string_view name);
  int Layout(const LayoutRequest& req, LayoutReply* reply);
  int Allocate(const AllocateRequest& req, AllocateReply* reply);
  int Commit(const CommitRequest& req, InodeAttr* attr);
  int Fallocate(const FallocateRequest& req, InodeAttr* attr);

  // A call sent by Start, to be collected by Finish.
  struct Started {
    Opcode op{};
    rpc::RpcClient::Ticket ticket;
  };
  // Any request the typed calls send, as they send it (without their client-side checks,
  // such as CheckName: the server checks everything again).
  template <class Req>
  Started Start(Opcode op, const Req& req) {
    return StartRaw(op, Encode(req));
  }
  // The reply of `s` decoded into `reply` (the type the typed call decodes), or an errno.
  template <class Rep>
  int Finish(Started& s, Rep* reply) {
    std::vector<uint8_t> raw;
    std::span<const uint8_t> body;
    if (int err = FinishRaw(s, /*quiet=*/false, &raw, &body); err != 0) return err;
    if (Status st = Decode(body, reply); !st.ok()) return Undecodable(s.op, st);
    return 0;
  }

  // Sends any request (already encoded) and returns the reply's errno and body: for
  // tests and fuzzing that need to send what the typed calls would refuse to build.
  int CallRaw(Opcode op, std::span<const uint8_t> payload, std::vector<uint8_t>* body);

  // Fault injection for tests: drops the connection (calls in flight are re-sent).
  void DisconnectForTesting();

 private:
  MetaClient(std::unique_ptr<rpc::RpcClient> rpc, const MetaClientOptions& options);
  template <class Req, class Rep>
  int Call(Opcode op, const Req& req, Rep* reply) {
    Started s = Start(op, req);
    return Finish(s, reply);
  }
  Started StartRaw(Opcode op, std::span<const uint8_t> payload);
  // Waits for `s`'s reply: its errno, `raw` the whole reply and `body` what follows the
  // errno in it. `quiet` logs RPC failures at debug level instead of warn.
  int FinishRaw(Started& s, bool quiet, std::vector<uint8_t>* raw, std::span<const uint8_t>* body);
  int Undecodable(Opcode op, const Status& why);  // logs; EIO
  // Call for the ops answered with an EntryReply (attr and dirs to the caller).
  template <class Req>
  int CallEntry(Opcode op, const Req& req, InodeAttr* attr, std::vector<InodeAttr>* dirs);
  // Call for the ops answered with a DirsReply.
  template <class Req>
  int CallDirs(Opcode op, const Req& req, std::vector<InodeAttr>* dirs);
  int Register();
  void HeartbeatLoop();

  std::unique_ptr<rpc::RpcClient> rpc_;
  const MetaClientOptions options_;
  ClusterInfo cluster_;
  uint32_t lease_ms_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread heartbeat_;
};

}  // namespace dpmfs::meta
