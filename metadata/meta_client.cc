#include "metadata/meta_client.h"

#include "common/stats_report.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <unistd.h>

// Which reply type decodes which opcode's answer: the Request and Reply columns of
// meta_ops.h (Call<op> takes them from there).

namespace dpmfs::meta {
namespace {

using std::chrono::milliseconds;

// The errno a caller sees for an RPC-level failure (see meta_client.h).
int ErrnoOfRpcStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kTimedOut:
      return ETIMEDOUT;
    case StatusCode::kUnavailable:
      return ENOTCONN;
    default:
      return EIO;
  }
}

// Unregister at destruction is a courtesy (the lease would lapse anyway): never let it
// hold up an unmount for long.
constexpr milliseconds kUnregisterTimeout{1000};

}  // namespace

MetaClient::MetaClient(std::unique_ptr<rpc::RpcClient> rpc, const MetaClientOptions& options)
    : rpc_(std::move(rpc)), options_(options) {
  default_caller_ = options.caller.has_value() ? *options.caller : ProcessCredentials();
}

Credentials ProcessCredentials() {
  Credentials c;
  c.uid = geteuid();
  c.gid = getegid();
  const int n = getgroups(0, nullptr);
  if (n > 0) {
    std::vector<gid_t> groups(static_cast<size_t>(n));
    const int got = getgroups(n, groups.data());
    for (int i = 0; i < got && c.groups.size() < kMaxCallerGroups; ++i) {
      c.groups.push_back(groups[static_cast<size_t>(i)]);
    }
  }
  return c;
}

Result<std::unique_ptr<MetaClient>> MetaClient::Connect(transport::Device& device,
                                                        const Endpoint& server,
                                                        const MetaClientOptions& options) {
  rpc::RpcClientOptions ro;
  ro.max_message = kMetaMaxMessage;
  ro.depth = options.depth;
  ro.connect_timeout = options.connect_timeout;
  ro.default_timeout = options.call_timeout;
  ro.reconnect_attempts = options.reconnect_attempts;
  auto rpc = rpc::RpcClient::Connect(device, server, ro);
  if (!rpc.ok()) return rpc.status().WithContext("metadata server " + server.ToString());
  std::unique_ptr<MetaClient> c(new MetaClient(std::move(rpc).value(), options));
  if (int err = c->Register(); err != 0) {
    std::string what = "registering with metadata server " + server.ToString() +
                       " failed: " + std::strerror(err) + " (see the log for details)";
    switch (err) {
      case ETIMEDOUT:
        return Status::TimedOut(std::move(what));
      case ENOTCONN:
        return Status::Unavailable(std::move(what));
      default:
        return Status::IOError(std::move(what));
    }
  }
  if (options.on_data_token) {
    // The first session token comes with the first renewal, now rather than a third of
    // a lease later: data servers refuse a client without one. Register itself is a
    // journaled mutation, whose reply a token must never be cached in.
    bool known = false;
    Status st = c->RenewLease(options.connect_timeout, &known);
    if (!st.ok()) {
      spdlog::warn("meta client: no session token yet ({}); data servers refuse this client "
                   "until a heartbeat brings one",
                   st.ToString());
    }
  }
  if (options.heartbeat) c->heartbeat_ = std::thread([p = c.get()] { p->HeartbeatLoop(); });
  return c;
}

MetaClient::~MetaClient() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  if (cluster_.block_size == 0) return;  // never registered (Connect failed)
  auto payload = EncodeWithCaller(UnregisterRequest{});
  auto r = rpc_->Call(static_cast<uint16_t>(Opcode::kUnregister), payload, kUnregisterTimeout);
  if (!r.ok()) {
    spdlog::debug("meta client: unregister of session {:#x} failed: {}", rpc_->session(),
                  r.status().ToString());
  }
}

uint64_t MetaClient::session() const { return rpc_->session(); }

MetaClient::Started MetaClient::StartRaw(Opcode op, std::span<const uint8_t> payload) {
  return Started{op, rpc_->Start(static_cast<uint16_t>(op), payload, options_.call_timeout)};
}

Status MetaClient::FinishReply(Started& s, std::vector<uint8_t>* raw,
                               std::span<const uint8_t>* body) {
  auto r = rpc_->Wait(s.ticket);
  if (!r.ok()) {
    spdlog::debug("meta client: {} failed: {}", OpcodeName(s.op), r.status().ToString());
    return Status::Posix(ErrnoOfRpcStatus(r.status()),
                         std::string(OpcodeName(s.op)) + ": " + r.status().ToString());
  }
  *raw = std::move(r).value();
  int err = 0;
  if (Status st = SplitReply(*raw, &err, body); !st.ok()) return Undecodable(s.op, st);
  // The namespace's answer: the operation's name is all the message needs (it fits a
  // std::string's inline buffer: no allocation for an ENOENT).
  if (err != 0) return Status::Posix(err, std::string(OpcodeName(s.op)));
  return Status::OK();
}

Status MetaClient::Undecodable(Opcode op, const Status& why) {
  spdlog::debug("meta client: undecodable {} reply: {}", OpcodeName(op), why.ToString());
  return Status::Posix(EIO, "undecodable " + std::string(OpcodeName(op)) +
                                " reply from the metadata server: " + why.ToString());
}

template <Opcode op>
Status MetaClient::CallEntry(const typename OpTypes<op>::Request& req, InodeAttr* attr,
                             std::vector<InodeAttr>* dirs) {
  EntryReply reply;
  DPMFS_RETURN_IF_ERROR(Call<op>(req, &reply));
  *attr = reply.attr;
  if (dirs != nullptr) *dirs = std::move(reply.dirs);
  return Status::OK();
}

template <Opcode op>
Status MetaClient::CallDirs(const typename OpTypes<op>::Request& req,
                            std::vector<InodeAttr>* dirs) {
  DirsReply reply;
  DPMFS_RETURN_IF_ERROR(Call<op>(req, &reply));
  if (dirs != nullptr) *dirs = std::move(reply.dirs);
  return Status::OK();
}

int MetaClient::CallRaw(Opcode op, std::span<const uint8_t> payload, std::vector<uint8_t>* body) {
  const Credentials& caller = this->caller();
  std::vector<uint8_t> call;
  call.reserve(EncodedSize(caller) + payload.size());
  EncodeTo(caller, &call);
  call.insert(call.end(), payload.begin(), payload.end());
  Started s = StartRaw(op, call);
  std::vector<uint8_t> raw;
  std::span<const uint8_t> b;
  // CallRaw's callers (the wire tests) send malformed bytes on purpose, and a refusal
  // is the answer they expect; the errno tells them.
  Status st = FinishReply(s, &raw, &b);
  if (body != nullptr) body->assign(b.begin(), b.end());
  return st.ToErrno();
}

int MetaClient::Register() {
  RegisterRequest req;
  req.client_name = options_.client_name;
  RegisterReply reply;
  // Register runs at mount time: bound it by the connect timeout so that a server that
  // accepts connections but does not answer fails the mount quickly.
  auto r =
      rpc_->Call(static_cast<uint16_t>(Opcode::kRegister), EncodeWithCaller(req),
                 options_.connect_timeout);
  if (!r.ok()) {
    int err = ErrnoOfRpcStatus(r.status());
    spdlog::error("meta client: register failed: {}", r.status().ToString());
    return err;
  }
  int err = 0;
  std::span<const uint8_t> body;
  Status s = SplitReply(*r, &err, &body);
  if (s.ok() && err != 0) {
    spdlog::error("meta client: the metadata server refused to register this client: {}",
                  std::strerror(err));
    return err;
  }
  if (s.ok()) s = Decode(body, &reply);
  if (!s.ok()) {
    spdlog::error("meta client: undecodable register reply: {}", s.ToString());
    return EIO;
  }
  if (cluster_.block_size == 0) {
    // First registration (from Connect, before any other thread exists).
    cluster_ = std::move(reply.cluster);
    lease_ms_ = reply.lease_ms;
    return 0;
  }
  // Re-registration by the heartbeat thread: cluster() and lease_ms() are read without
  // a lock by other threads, so they stay as first learnt. A change means the server
  // now serves a different file system, which a mounted client cannot follow.
  if (reply.cluster.cluster_uuid != cluster_.cluster_uuid ||
      reply.cluster.block_size != cluster_.block_size ||
      reply.cluster.stripe_unit != cluster_.stripe_unit ||
      reply.cluster.servers.size() != cluster_.servers.size()) {
    spdlog::error(
        "meta client: the metadata server now describes a different cluster than at "
        "mount time; keeping the old description (remount to follow it)");
  }
  if (reply.lease_ms != lease_ms_) {
    spdlog::warn(
        "meta client: the server's lease changed from {} ms to {} ms; heartbeats "
        "keep the old pace of {} ms",
        lease_ms_, reply.lease_ms, std::max<uint32_t>(lease_ms_ / 3, 1));
  }
  return 0;
}

Status MetaClient::RenewLease(milliseconds timeout, bool* known) {
  const std::vector<uint8_t> payload = EncodeWithCaller(HeartbeatRequest{});
  auto r = rpc_->Call(static_cast<uint16_t>(Opcode::kHeartbeat), payload, timeout);
  int err = 0;
  std::span<const uint8_t> body;
  HeartbeatReply reply;
  Status s = r.ok() ? SplitReply(*r, &err, &body) : r.status();
  if (s.ok() && err != 0) {
    s = Status::IOError(std::string("heartbeat answered ") + std::strerror(err));
  } else if (s.ok()) {
    s = Decode(body, &reply);
  }
  DPMFS_RETURN_IF_ERROR(s);
  *known = reply.known;
  // The cluster map's epoch only moves forward (docs/replication.md).
  uint64_t seen = latest_epoch_.load(std::memory_order_relaxed);
  while (reply.epoch > seen &&
         !latest_epoch_.compare_exchange_weak(seen, reply.epoch, std::memory_order_release)) {
  }
  if (!reply.data_token.empty() && options_.on_data_token) {
    options_.on_data_token(std::vector<uint8_t>(reply.data_token.begin(), reply.data_token.end()));
  }
  return Status::OK();
}

Status MetaClient::RenewDataToken() {
  if (!options_.on_data_token) return Status::Posix(ENOSYS, "this client takes no session tokens");
  const uint64_t seen = renewals_.load(std::memory_order_acquire);
  MutexLock lock(renew_mu_);
  // Another caller renewed while this one waited: its token is as fresh as a new one.
  if (renewals_.load(std::memory_order_acquire) != seen) return Status::OK();
  bool known = true;
  Status st = RenewLease(options_.connect_timeout, &known);
  renewals_.fetch_add(1, std::memory_order_release);
  if (st.ok() && !known) {
    return Status::Posix(EIO, "the metadata server no longer knows this session (the "
                              "heartbeat thread registers it again)");
  }
  return st;
}

void MetaClient::HeartbeatLoop() {
  // lease_ms_ is fixed after Connect. The call's own timeout is one period, so a lost
  // server delays stopping (the destructor) by at most that.
  const milliseconds period(std::max<uint32_t>(lease_ms_ / 3, 1));
  const milliseconds call_timeout = std::max(period, milliseconds(100));
  MutexLock lock(mu_);
  while (!lock.WaitFor(cv_, period, [this]() REQUIRES(mu_) { return stop_; })) {
    lock.Unlock();
    bool known = true;
    Status s = RenewLease(call_timeout, &known);
    if (!s.ok()) {
      spdlog::warn("meta client: heartbeat of session {:#x} failed: {}", rpc_->session(),
                   s.ToString());
    } else if (!known) {
      spdlog::warn(
          "meta client: the metadata server no longer knows session {:#x} (its lease "
          "lapsed): registering again; files this client had open were closed by the server",
          rpc_->session());
      if (Register() != 0) {
        spdlog::warn("meta client: re-registering failed; retrying later");
      } else if (options_.on_data_token) {
        // The new registration's token now, not a period later.
        (void)RenewLease(call_timeout, &known);
      }
    }
    if (s.ok() && options_.stats_report) PushStats(call_timeout);
    lock.Lock();
  }
}

void MetaClient::PushStats(std::chrono::milliseconds timeout) {
  PushStatsRequest q;
  const std::vector<uint8_t> report = options_.stats_report();
  if (report.size() > metrics::kMaxStatsReportBytes) {
    if (!stats_too_big_logged_) {
      spdlog::warn("meta client: stats report of {} bytes is over the {} a server takes; not "
                   "pushed (logged once)", report.size(), metrics::kMaxStatsReportBytes);
    }
    stats_too_big_logged_ = true;
    return;
  }
  q.report.assign(report.begin(), report.end());
  auto r = rpc_->Call(static_cast<uint16_t>(Opcode::kPushStats), EncodeWithCaller(q), timeout);
  int err = 0;
  std::span<const uint8_t> body;
  Status s = r.ok() ? SplitReply(*r, &err, &body) : r.status();
  if (s.ok() && err != 0) s = Status::IOError(std::string("answered ") + std::strerror(err));
  // Stats are best effort: a server without them (or a full table) costs one debug line.
  if (!s.ok()) spdlog::debug("meta client: pushing stats failed: {}", s.ToString());
}

void MetaClient::DisconnectForTesting() { rpc_->DisconnectForTesting(); }

// ---- Typed operations ----
// Names are checked here with the same rules as the server's, so that a caller gets
// ENAMETOOLONG / EINVAL without a round trip (and never sends a name so long that the
// server would refuse the whole message instead of answering with an errno).

namespace {
// A request refused before it was sent.
Status Refused(Opcode op, int err) {
  return Status::Posix(err, std::string(OpcodeName(op)) + " refused by the client");
}
}  // namespace

Status MetaClient::Lookup(InodeId parent, std::string_view name, InodeAttr* attr) {
  if (int err = CheckName(name); err != 0) return Refused(Opcode::kLookup, err);
  EntryReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kLookup>(LookupRequest{parent, std::string(name)}, &reply));
  *attr = reply.attr;
  return Status::OK();
}

Status MetaClient::Getattr(InodeId ino, InodeAttr* attr) {
  AttrReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kGetattr>(GetattrRequest{ino}, &reply));
  *attr = reply.attr;
  return Status::OK();
}

Status MetaClient::Setattr(const SetattrRequest& req, InodeAttr* attr) {
  AttrReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kSetattr>(req, &reply));
  *attr = reply.attr;
  return Status::OK();
}

Status MetaClient::Create(const CreateRequest& req, CreateReply* reply) {
  if (int err = CheckName(req.name); err != 0) return Refused(Opcode::kCreate, err);
  return Call<Opcode::kCreate>(req, reply);
}

Status MetaClient::Mkdir(const MkdirRequest& req, InodeAttr* attr, std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(req.name); err != 0) return Refused(Opcode::kMkdir, err);
  return CallEntry<Opcode::kMkdir>(req, attr, dirs);
}

Status MetaClient::Mknod(const MknodRequest& req, InodeAttr* attr, std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(req.name); err != 0) return Refused(Opcode::kMknod, err);
  return CallEntry<Opcode::kMknod>(req, attr, dirs);
}

Status MetaClient::Symlink(const SymlinkRequest& req, InodeAttr* attr,
                           std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(req.name); err != 0) return Refused(Opcode::kSymlink, err);
  if (req.target.size() > kMaxSymlinkLength) return Refused(Opcode::kSymlink, ENAMETOOLONG);
  return CallEntry<Opcode::kSymlink>(req, attr, dirs);
}

Status MetaClient::Readlink(InodeId ino, std::string* target) {
  ReadlinkReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kReadlink>(ReadlinkRequest{ino}, &reply));
  *target = std::move(reply.target);
  return Status::OK();
}

Status MetaClient::Link(InodeId ino, InodeId new_parent, std::string_view new_name,
                        InodeAttr* attr, std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(new_name); err != 0) return Refused(Opcode::kLink, err);
  return CallEntry<Opcode::kLink>(LinkRequest{ino, new_parent, std::string(new_name)}, attr, dirs);
}

Status MetaClient::Unlink(InodeId parent, std::string_view name, std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(name); err != 0) return Refused(Opcode::kUnlink, err);
  return CallDirs<Opcode::kUnlink>(UnlinkRequest{parent, std::string(name)}, dirs);
}

Status MetaClient::Rmdir(InodeId parent, std::string_view name, std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(name); err != 0) return Refused(Opcode::kRmdir, err);
  return CallDirs<Opcode::kRmdir>(UnlinkRequest{parent, std::string(name)}, dirs);
}

Status MetaClient::Rename(const RenameRequest& req, std::vector<InodeAttr>* dirs) {
  if (int err = CheckName(req.name); err != 0) return Refused(Opcode::kRename, err);
  if (int err = CheckName(req.new_name); err != 0) return Refused(Opcode::kRename, err);
  return CallDirs<Opcode::kRename>(req, dirs);
}

Status MetaClient::Readdir(const ReaddirRequest& req, ReaddirReply* reply) {
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kReaddir>(req, reply));
  if (reply->entries.size() > req.max_entries) {
    return Status::Posix(EIO, "readdir of inode " + std::to_string(req.ino) + " returned " +
                                  std::to_string(reply->entries.size()) +
                                  " entries for a request of " + std::to_string(req.max_entries));
  }
  return Status::OK();
}

Status MetaClient::Open(InodeId ino, uint32_t flags, OpenReply* reply) {
  return Call<Opcode::kOpen>(OpenRequest{ino, flags}, reply);
}

Status MetaClient::Release(InodeId ino, uint64_t handle) {
  EmptyReply reply;
  return Call<Opcode::kRelease>(ReleaseRequest{ino, handle}, &reply);
}

Status MetaClient::ReleaseMany(const std::vector<ReleaseRequest>& handles, uint32_t* refused) {
  if (handles.size() > kMaxReleasesPerRequest) return Refused(Opcode::kReleaseMany, EINVAL);
  ReleaseManyReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kReleaseMany>(ReleaseManyRequest{handles}, &reply));
  if (refused != nullptr) *refused = reply.refused;
  return Status::OK();
}

Status MetaClient::Statfs(StatfsReply* reply) {
  return Call<Opcode::kStatfs>(StatfsRequest{}, reply);
}

// Xattr names: the kernel answers ERANGE for names over XATTR_NAME_MAX.
Status MetaClient::Getxattr(InodeId ino, std::string_view name, std::string* value) {
  if (name.size() > kMaxXattrNameLength) return Refused(Opcode::kGetxattr, ERANGE);
  GetxattrReply reply;
  DPMFS_RETURN_IF_ERROR(
      Call<Opcode::kGetxattr>(GetxattrRequest{ino, std::string(name)}, &reply));
  *value = std::move(reply.value);
  return Status::OK();
}

Status MetaClient::Setxattr(const SetxattrRequest& req) {
  if (req.name.size() > kMaxXattrNameLength) return Refused(Opcode::kSetxattr, ERANGE);
  if (req.value.size() > kMaxXattrValueLength) return Refused(Opcode::kSetxattr, E2BIG);
  EmptyReply reply;
  return Call<Opcode::kSetxattr>(req, &reply);
}

Status MetaClient::Listxattr(InodeId ino, std::vector<std::string>* names) {
  ListxattrReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kListxattr>(ListxattrRequest{ino}, &reply));
  *names = std::move(reply.names);
  return Status::OK();
}

Status MetaClient::Removexattr(InodeId ino, std::string_view name) {
  if (name.size() > kMaxXattrNameLength) return Refused(Opcode::kRemovexattr, ERANGE);
  EmptyReply reply;
  return Call<Opcode::kRemovexattr>(RemovexattrRequest{ino, std::string(name)}, &reply);
}

Status MetaClient::Layout(const LayoutRequest& req, LayoutReply* reply) {
  return Call<Opcode::kLayout>(req, reply);
}

Status MetaClient::GetClusterMap(ClusterMapReply* reply) {
  return Call<Opcode::kGetClusterMap>(GetClusterMapRequest{}, reply);
}

Status MetaClient::ReportDataServer(const ReportDataServerRequest& req, ClusterMapReply* reply) {
  return Call<Opcode::kReportDataServer>(req, reply);
}

Status MetaClient::MarkDegraded(const MarkDegradedRequest& req) {
  EmptyReply reply;
  return Call<Opcode::kMarkDegraded>(req, &reply);
}

Status MetaClient::Allocate(const AllocateRequest& req, AllocateReply* reply) {
  return Call<Opcode::kAllocate>(req, reply);
}

Status MetaClient::Commit(const CommitRequest& req, InodeAttr* attr) {
  if (req.written.size() > kMaxWrittenRanges) return Refused(Opcode::kCommit, EINVAL);
  AttrReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kCommit>(req, &reply));
  *attr = reply.attr;
  return Status::OK();
}

Status MetaClient::Fallocate(const FallocateRequest& req, InodeAttr* attr) {
  AttrReply reply;
  DPMFS_RETURN_IF_ERROR(Call<Opcode::kFallocate>(req, &reply));
  *attr = reply.attr;
  return Status::OK();
}

}  // namespace dpmfs::meta
