// The verbs backend: device selection, memory registration and connection management
// with librdmacm (the data path is in verbs_queue_pair.cc; layout in verbs_internal.h).
//
// Notes that shape this file:
//   - A QP must be created with a PD of the very ibv_context its rdma_cm_id is bound to,
//     and librdmacm binds ids to *its own* contexts (rdma_get_devices). So the device's
//     PD is allocated on librdmacm's context, never on one from ibv_open_device.
//   - All CM event channels are non-blocking and polled with deadlines; every event is
//     copied and acknowledged at once, so rdma_migrate_id/rdma_destroy_id never block.
//   - Private data arrives padded by the CM to the transport's size (RoCE/IB: 56 bytes
//     for connect, 196 for accept), so peers see trailing zeros after what was sent.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <system_error>
#include <unordered_map>

#include "common/unique_fd.h"
#include "transport/verbs/verbs_internal.h"

namespace dpmfs::transport {
namespace verbs {

std::string ErrnoText(int err) { return std::system_category().message(err); }

Deadline::Deadline(Duration timeout) {
  // A year is "forever" here and keeps time_point arithmetic far from overflow.
  constexpr Duration kForever = std::chrono::hours(24 * 365);
  end_ = Clock::now() + std::clamp(timeout, Duration::zero(), kForever);
}

Duration Deadline::remaining() const {
  auto left = end_ - Clock::now();
  if (left <= Clock::duration::zero()) return Duration::zero();
  return std::chrono::ceil<Duration>(left);
}

int Deadline::remaining_ms() const {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 1, INT_MAX));
}

Status SetNonBlocking(int fd, const char* what) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return Status::FromErrno(errno, std::string("making the ") + what + " non-blocking");
  }
  return Status::OK();
}

Result<int> WaitReadable(int fd, int wake_fd, const Deadline& deadline) {
  while (true) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    Duration left = deadline.remaining();
    timespec ts;
    ts.tv_sec = static_cast<time_t>(left.count() / 1000000);
    ts.tv_nsec = static_cast<long>((left.count() % 1000000) * 1000);
    int rc = ppoll(fds, wake_fd >= 0 ? 2 : 1, &ts, nullptr);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "ppoll on an RDMA event channel");
    }
    if (wake_fd >= 0 && fds[1].revents != 0) return 2;
    if (fds[0].revents != 0) return 1;
    if (rc == 0 || deadline.expired()) return 0;
  }
}

DeviceContext::~DeviceContext() {
  if (pd != nullptr && ibv_dealloc_pd(pd) != 0) {
    spdlog::warn("verbs: ibv_dealloc_pd on {} failed: {}", name, ErrnoText(errno));
  }
}

namespace {

// Connection parameters we insist on (see rdma_connect(3) / rdma_accept(3)).
constexpr uint8_t kRetryCount = 7;  // transport retries before RETRY_EXC_ERR
// Small on purpose: a SEND (or WRITE_WITH_IMM) that finds no RECV posted fails with an
// RNR error after one retry instead of being retried forever (7 means "infinite").
constexpr uint8_t kRnrRetryCount = 1;
constexpr uint8_t kMaxRdmaReadDepth = 16;
// Bound on the accept-side handshake after the request arrived (REP sent, waiting RTU).
constexpr Duration kAcceptHandshakeTimeout = std::chrono::seconds(10);
constexpr int kListenBacklog = 128;
// Reject private data carries the reason; IB CM REJ has 148 bytes of it.
constexpr size_t kMaxRejectReason = 140;
// IB CM reject reason "consumer defined": the peer's application called rdma_reject.
constexpr int kIbRejectConsumer = 28;

// One rdma_cm event, copied so the event itself can be acknowledged immediately.
struct CmEvent {
  rdma_cm_event_type type = RDMA_CM_EVENT_ADDR_ERROR;
  int status = 0;
  rdma_cm_id* id = nullptr;
  std::vector<uint8_t> private_data;
  uint8_t initiator_depth = 0;
};

// Next event of `channel` before `deadline`. TimedOut when none came; Unavailable when
// `wake_fd` (>= 0) became readable first.
Result<CmEvent> NextCmEvent(rdma_event_channel* channel, const Deadline& deadline, int wake_fd) {
  while (true) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(channel, &ev) == 0) {
      CmEvent out;
      out.type = ev->event;
      out.status = ev->status;
      out.id = ev->id;
      switch (ev->event) {
        case RDMA_CM_EVENT_CONNECT_REQUEST:
        case RDMA_CM_EVENT_ESTABLISHED:
        case RDMA_CM_EVENT_REJECTED: {
          const rdma_conn_param& conn = ev->param.conn;
          if (conn.private_data != nullptr && conn.private_data_len > 0) {
            const auto* p = static_cast<const uint8_t*>(conn.private_data);
            out.private_data.assign(p, p + conn.private_data_len);
          }
          out.initiator_depth = conn.initiator_depth;
          break;
        }
        default:
          break;
      }
      rdma_ack_cm_event(ev);
      return out;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return Status::FromErrno(errno, "rdma_get_cm_event");
    }
    DPMFS_ASSIGN_OR_RETURN(int which, WaitReadable(channel->fd, wake_fd, deadline));
    if (which == 2) return Status::Unavailable("shut down");
    if (which == 0) return Status::TimedOut("no RDMA CM event within the timeout");
  }
}

std::string EventName(const CmEvent& ev) {
  return std::string(rdma_event_str(ev.type)) + " (status " + std::to_string(ev.status) + ")";
}

Result<Endpoint> EndpointOf(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {};
  if (sa != nullptr && sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return Endpoint{host, ntohs(in->sin_port)};
  }
  if (sa != nullptr && sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return Endpoint{host, ntohs(in6->sin6_port)};
  }
  return Status::Internal("rdma_cm id has no IP address");
}

std::string PeerName(rdma_cm_id* id, const std::string& fallback) {
  auto ep = EndpointOf(rdma_get_peer_addr(id));
  return ep.ok() ? ep->ToString() : fallback;
}

// "10.0.0.1:7000" -> socket address (numeric or resolved through getaddrinfo).
Result<sockaddr_storage> ResolveIp(const Endpoint& ep, bool passive) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  std::string port = std::to_string(ep.port);
  int rc = getaddrinfo(ep.host.empty() ? nullptr : ep.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Status::InvalidArgument("cannot resolve '" + ep.ToString() + "': " + gai_strerror(rc));
  }
  sockaddr_storage out = {};
  std::memcpy(&out, res->ai_addr, std::min<size_t>(res->ai_addrlen, sizeof out));
  freeaddrinfo(res);
  return out;
}

std::string ReasonText(const std::vector<uint8_t>& data) {
  std::string s(data.begin(), data.end());
  s.erase(std::find(s.begin(), s.end(), '\0'), s.end());  // the CM pads with zeros
  return s;
}

// Refuses a connection request, telling the initiator why.
void Reject(rdma_cm_id* id, const std::string& why) {
  std::string reason = why.substr(0, kMaxRejectReason);
  if (rdma_reject(id, reason.data(), static_cast<uint8_t>(reason.size())) != 0) {
    spdlog::debug("verbs: rdma_reject failed: {}", ErrnoText(errno));
  }
}

rdma_conn_param ConnParam(const DeviceContext& dev, std::span<const uint8_t> private_data) {
  rdma_conn_param p = {};
  p.private_data = private_data.empty() ? nullptr : private_data.data();
  p.private_data_len = static_cast<uint8_t>(private_data.size());
  p.responder_resources = std::min(dev.max_qp_rd_atom, kMaxRdmaReadDepth);
  p.initiator_depth = std::min(dev.max_qp_init_rd_atom, kMaxRdmaReadDepth);
  p.flow_control = 1;
  p.retry_count = kRetryCount;
  p.rnr_retry_count = kRnrRetryCount;
  return p;
}

// A listening rdma_cm_id. Thread-safety: Accept calls are serialised by accept_mu_;
// Shutdown and local_endpoint may be called from any thread at any time.
class VerbsListener final : public Listener {
 public:
  VerbsListener(std::shared_ptr<const DeviceContext> dev, rdma_event_channel* channel,
                rdma_cm_id* id, Endpoint local, UniqueFd wake_fd)
      : dev_(std::move(dev)),
        channel_(channel),
        id_(id),
        local_(std::move(local)),
        wake_fd_(std::move(wake_fd)) {}

  ~VerbsListener() override {
    // Connection requests still queued are dropped with the id; their initiators see
    // an error (or time out), as with a closed listening socket.
    rdma_destroy_id(id_);
    rdma_destroy_event_channel(channel_);
  }

  Result<std::unique_ptr<QueuePair>> Accept(const AcceptHandler& handler,
                                            const QueuePairOptions& options,
                                            Duration timeout) override {
    MutexLock lock(accept_mu_);
    if (shutdown_.load()) return ShutDownStatus();
    Deadline deadline(timeout);
    while (true) {
      auto ev = NextCmEvent(channel_, deadline, wake_fd_.get());
      if (!ev.ok()) {
        if (ev.status().code() == StatusCode::kUnavailable) return ShutDownStatus();
        if (ev.status().code() == StatusCode::kTimedOut) {
          return Status::TimedOut("no connection request on " + local_.ToString() +
                                  " within the timeout");
        }
        return ev.status().WithContext("listener on " + local_.ToString());
      }
      if (ev->type == RDMA_CM_EVENT_CONNECT_REQUEST) return HandleRequest(*ev, handler, options);
      if (ev->type == RDMA_CM_EVENT_DEVICE_REMOVAL) {
        return Status::Unavailable("RDMA device " + dev_->name + " of listener " +
                                   local_.ToString() + " was removed");
      }
      spdlog::debug("verbs: listener {} ignores CM event {}", local_.ToString(), EventName(*ev));
    }
  }

  Endpoint local_endpoint() const override { return local_; }

  void Shutdown() override {
    shutdown_.store(true);
    uint64_t one = 1;
    // The eventfd stays readable: every blocked and later Accept sees it.
    (void)!write(wake_fd_.get(), &one, sizeof one);
  }

 private:
  Status ShutDownStatus() const {
    return Status::Unavailable("listener on " + local_.ToString() + " shut down");
  }

  Result<std::unique_ptr<QueuePair>> HandleRequest(const CmEvent& req, const AcceptHandler& handler,
                                                   const QueuePairOptions& options) {
    rdma_cm_id* id = req.id;
    const std::string peer = PeerName(id, "unknown peer");
    if (id->verbs != dev_->ctx) {
      // Happens when the listener is bound to a wildcard address on a host with
      // several RDMA devices: our PD cannot be used on another device's QP.
      std::string other = id->verbs != nullptr ? ibv_get_device_name(id->verbs->device) : "?";
      Reject(id, "wrong RDMA device");
      rdma_destroy_id(id);
      return Status::Unavailable("connection request from " + peer + " arrived on RDMA device " +
                                 other + ", but this listener serves " + dev_->name +
                                 "; listen on an address of " + dev_->name);
    }
    // The new id reports to the listener's channel; give it one of its own so its
    // later events (DISCONNECTED...) belong to its QP alone.
    rdma_event_channel* channel = rdma_create_event_channel();
    if (channel == nullptr) {
      int err = errno;
      Reject(id, "out of resources");
      rdma_destroy_id(id);
      return Status::FromErrno(err, "rdma_create_event_channel for " + peer);
    }
    if (rdma_migrate_id(id, channel) != 0) {
      int err = errno;
      Reject(id, "out of resources");
      rdma_destroy_id(id);
      rdma_destroy_event_channel(channel);
      return Status::FromErrno(err, "rdma_migrate_id for " + peer);
    }
    auto qp = std::make_unique<verbs::VerbsQueuePair>(dev_, channel, id, peer);  // owns both
    Status st = SetNonBlocking(channel->fd, "RDMA CM event channel");
    if (st.ok()) st = qp->CreateQp(options);
    if (st.ok() && options.prepare) st = options.prepare(*qp);
    if (!st.ok()) {
      Reject(id, st.message());
      return st.WithContext("accepting " + peer);
    }
    Result<std::vector<uint8_t>> reply = handler(req.private_data, *qp);
    if (!reply.ok()) {
      Reject(id, reply.status().message());
      return reply.status();
    }
    if (reply->size() > kMaxAcceptPrivateData) {
      std::string why = "accept private data is " + std::to_string(reply->size()) +
                        " bytes; at most " + std::to_string(kMaxAcceptPrivateData) + " allowed";
      Reject(id, why);
      return Status::InvalidArgument(why);
    }
    rdma_conn_param param = ConnParam(*dev_, *reply);
    // May not exceed what the initiator asked for (rdma_accept(3)).
    param.initiator_depth = std::min(param.initiator_depth, req.initiator_depth);
    if (rdma_accept(id, &param) != 0) {
      return Status::Unavailable("rdma_accept for " + peer + " failed: " + ErrnoText(errno));
    }
    qp->EnableRemoteFlush();
    Deadline deadline(kAcceptHandshakeTimeout);
    while (true) {
      auto ev = NextCmEvent(channel, deadline, wake_fd_.get());
      if (!ev.ok()) {
        if (ev.status().code() == StatusCode::kUnavailable) return ShutDownStatus();
        return ev.status().WithContext("waiting for " + peer + " to complete the connection");
      }
      if (ev->type == RDMA_CM_EVENT_ESTABLISHED) break;
      switch (ev->type) {
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_REJECTED:
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
          return Status::Unavailable("connection from " + peer +
                                     " failed during the handshake: " + EventName(*ev));
        default:
          spdlog::debug("verbs: accepting {}: ignoring CM event {}", peer, EventName(*ev));
      }
    }
    qp->MarkEstablished(req.private_data);
    spdlog::debug("verbs: accepted {} on {}", peer, local_.ToString());
    return std::unique_ptr<QueuePair>(std::move(qp));
  }

  const std::shared_ptr<const DeviceContext> dev_;
  rdma_event_channel* const channel_;
  rdma_cm_id* const id_;
  const Endpoint local_;
  const UniqueFd wake_fd_;
  std::atomic<bool> shutdown_{false};
  Mutex accept_mu_;
};

// Thread-safety: all methods may be called from any thread; the region table is
// guarded by mu_, everything else is immutable.
class VerbsDevice final : public Device {
 public:
  explicit VerbsDevice(std::shared_ptr<const DeviceContext> dev) : dev_(std::move(dev)) {}

  ~VerbsDevice() override {
    MutexLock lock(mu_);
    if (!regions_.empty()) {
      spdlog::warn("verbs: {} memory regions still registered on {} at close; deregistering",
                   regions_.size(), dev_->name);
    }
    for (auto& [lkey, mr] : regions_) ibv_dereg_mr(mr);
  }

  Backend backend() const override { return Backend::kVerbs; }

  Result<MemoryRegion> RegisterMemory(void* addr, uint64_t length, uint32_t access) override {
    constexpr uint32_t kKnown = kLocalWrite | kRemoteWrite | kRemoteRead | kRemoteFlush;
    if (addr == nullptr || length == 0) {
      return Status::InvalidArgument("registering memory on " + dev_->name +
                                     ": address must be non-null and length non-zero");
    }
    if ((access & ~kKnown) != 0) {
      return Status::InvalidArgument("registering memory on " + dev_->name +
                                     ": unknown access bits " + std::to_string(access));
    }
    int flags = 0;
    if (access & kLocalWrite) flags |= IBV_ACCESS_LOCAL_WRITE;
    // Verbs refuses remote write without local write on the same region.
    if (access & kRemoteWrite) flags |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
    if (access & kRemoteRead) flags |= IBV_ACCESS_REMOTE_READ;
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
    // Without device support the kernel refuses the flag; FLUSH then fails at post time
    // with a clear NotSupported instead of the whole registration failing here.
    if ((access & kRemoteFlush) && dev_->supports_flush) flags |= IBV_ACCESS_FLUSH_GLOBAL;
#endif
    ibv_mr* mr = ibv_reg_mr(dev_->pd, addr, length, flags);
    if (mr == nullptr) {
      int err = errno;
      std::string msg = "ibv_reg_mr of " + std::to_string(length) + " bytes on " + dev_->name +
                        " failed: " + ErrnoText(err);
      if (err == ENOMEM || err == EPERM || err == EAGAIN) {
        msg += " (registered memory is pinned and limited by RLIMIT_MEMLOCK: check ulimit -l)";
        return Status::ResourceExhausted(msg);
      }
      return Status::IOError(msg);
    }
    MutexLock lock(mu_);
    if (!regions_.emplace(mr->lkey, mr).second) {
      ibv_dereg_mr(mr);
      return Status::Internal("device " + dev_->name + " returned a duplicate lkey");
    }
    return MemoryRegion{addr, length, mr->lkey, mr->rkey, access};
  }

  Status DeregisterMemory(const MemoryRegion& region) override {
    ibv_mr* mr = nullptr;
    {
      MutexLock lock(mu_);
      auto it = regions_.find(region.lkey);
      if (it == regions_.end() || it->second->addr != region.addr) {
        return Status::NotFound("memory region with key " + std::to_string(region.lkey) +
                                " is not registered on " + dev_->name);
      }
      mr = it->second;
      regions_.erase(it);
    }
    if (ibv_dereg_mr(mr) != 0) {
      return Status::FromErrno(errno, "ibv_dereg_mr on " + dev_->name);
    }
    return Status::OK();
  }

  Result<std::unique_ptr<Listener>> Listen(const Endpoint& local) override {
    DPMFS_ASSIGN_OR_RETURN(sockaddr_storage addr, ResolveIp(local, /*passive=*/true));
    rdma_event_channel* channel = rdma_create_event_channel();
    if (channel == nullptr) return Status::FromErrno(errno, "rdma_create_event_channel");
    rdma_cm_id* id = nullptr;
    if (rdma_create_id(channel, &id, nullptr, RDMA_PS_TCP) != 0) {
      int err = errno;
      rdma_destroy_event_channel(channel);
      return Status::FromErrno(err, "rdma_create_id");
    }
    UniqueFd wake_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    auto fail = [&](Status st) {
      rdma_destroy_id(id);
      rdma_destroy_event_channel(channel);
      return st;
    };
    if (!wake_fd.valid()) return fail(Status::FromErrno(errno, "eventfd"));
    if (Status st = SetNonBlocking(channel->fd, "RDMA CM event channel"); !st.ok()) {
      return fail(st);
    }
    int reuse = 1;
    if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_REUSEADDR, &reuse, sizeof reuse) != 0) {
      spdlog::debug("verbs: RDMA_OPTION_ID_REUSEADDR: {}", ErrnoText(errno));
    }
    if (rdma_bind_addr(id, reinterpret_cast<sockaddr*>(&addr)) != 0) {
      int err = errno;
      std::string msg = "binding RDMA listener to " + local.ToString() + ": " + ErrnoText(err);
      if (err == ENODEV || err == EADDRNOTAVAIL) {
        msg +=
            " (the address must belong to an interface with an RDMA device, e.g. the "
            "netdev of an rxe link; 'rdma link show' lists them)";
      }
      return fail(err == EADDRINUSE ? Status::AlreadyExists(msg) : Status::Unavailable(msg));
    }
    if (id->verbs != nullptr && id->verbs != dev_->ctx) {
      return fail(Status::InvalidArgument(
          local.ToString() + " belongs to RDMA device " + ibv_get_device_name(id->verbs->device) +
          ", not to " + dev_->name + " (choose the device with the verbs device option)"));
    }
    if (rdma_listen(id, kListenBacklog) != 0) {
      return fail(Status::FromErrno(errno, "rdma_listen on " + local.ToString()));
    }
    auto bound = EndpointOf(rdma_get_local_addr(id));
    if (!bound.ok()) return fail(bound.status());
    spdlog::debug("verbs: listening on {} ({})", bound->ToString(), dev_->name);
    return std::unique_ptr<Listener>(
        std::make_unique<VerbsListener>(dev_, channel, id, *bound, std::move(wake_fd)));
  }

  Result<std::unique_ptr<QueuePair>> Connect(const Endpoint& peer,
                                             std::span<const uint8_t> private_data,
                                             const QueuePairOptions& options,
                                             Duration timeout) override {
    if (private_data.size() > kMaxConnectPrivateData) {
      return Status::InvalidArgument("connect private data is " +
                                     std::to_string(private_data.size()) + " bytes; at most " +
                                     std::to_string(kMaxConnectPrivateData) + " allowed");
    }
    const std::string name = peer.ToString();
    DPMFS_ASSIGN_OR_RETURN(sockaddr_storage addr, ResolveIp(peer, /*passive=*/false));
    Deadline deadline(timeout);
    rdma_event_channel* channel = rdma_create_event_channel();
    if (channel == nullptr) return Status::FromErrno(errno, "rdma_create_event_channel");
    rdma_cm_id* id = nullptr;
    if (rdma_create_id(channel, &id, nullptr, RDMA_PS_TCP) != 0) {
      int err = errno;
      rdma_destroy_event_channel(channel);
      return Status::FromErrno(err, "rdma_create_id");
    }
    // From here the QP object owns the id and channel: every return cleans up.
    auto qp = std::make_unique<verbs::VerbsQueuePair>(dev_, channel, id, name);
    DPMFS_RETURN_IF_ERROR(SetNonBlocking(channel->fd, "RDMA CM event channel"));

    auto wait_for = [&](rdma_cm_event_type want, const char* step) -> Status {
      while (true) {
        auto ev = NextCmEvent(channel, deadline, -1);
        if (!ev.ok()) {
          if (ev.status().code() == StatusCode::kTimedOut) {
            return Status::TimedOut("connecting to " + name + ": no answer while " + step +
                                    " within the timeout");
          }
          return ev.status().WithContext(std::string("connecting to ") + name);
        }
        if (ev->type == want) {
          if (want == RDMA_CM_EVENT_ESTABLISHED) qp->MarkEstablished(ev->private_data);
          return Status::OK();
        }
        switch (ev->type) {
          case RDMA_CM_EVENT_REJECTED: {
            std::string reason = ReasonText(ev->private_data);
            if (ev->status == kIbRejectConsumer || !reason.empty()) {
              return Status::PermissionDenied("connection rejected by " + name +
                                              (reason.empty() ? "" : ": " + reason));
            }
            return Status::Unavailable("nobody accepts connections at " + name + " (" +
                                       EventName(*ev) + ")");
          }
          case RDMA_CM_EVENT_ADDR_ERROR:
          case RDMA_CM_EVENT_ROUTE_ERROR:
            return Status::Unavailable(
                "cannot reach " + name + " over RDMA while " + step + ": " + EventName(*ev) +
                " (the peer address must be reachable through an RDMA-capable interface; "
                "rdma_cm does not work over lo)");
          case RDMA_CM_EVENT_UNREACHABLE:
          case RDMA_CM_EVENT_CONNECT_ERROR:
          case RDMA_CM_EVENT_DISCONNECTED:
          case RDMA_CM_EVENT_DEVICE_REMOVAL:
            return Status::Unavailable("connecting to " + name + " failed: " + EventName(*ev));
          default:
            spdlog::debug("verbs: connecting to {}: ignoring CM event {}", name, EventName(*ev));
        }
      }
    };

    if (rdma_resolve_addr(id, nullptr, reinterpret_cast<sockaddr*>(&addr),
                          deadline.remaining_ms()) != 0) {
      return Status::Unavailable("rdma_resolve_addr(" + name + "): " + ErrnoText(errno));
    }
    DPMFS_RETURN_IF_ERROR(wait_for(RDMA_CM_EVENT_ADDR_RESOLVED, "resolving the address"));
    if (id->verbs != dev_->ctx) {
      std::string other = id->verbs != nullptr ? ibv_get_device_name(id->verbs->device) : "?";
      return Status::Unavailable(name + " is reached through RDMA device " + other +
                                 ", but this device is " + dev_->name +
                                 " (choose the device with the verbs device option)");
    }
    if (rdma_resolve_route(id, deadline.remaining_ms()) != 0) {
      return Status::Unavailable("rdma_resolve_route(" + name + "): " + ErrnoText(errno));
    }
    DPMFS_RETURN_IF_ERROR(wait_for(RDMA_CM_EVENT_ROUTE_RESOLVED, "resolving the route"));
    DPMFS_RETURN_IF_ERROR(qp->CreateQp(options));
    if (options.prepare) DPMFS_RETURN_IF_ERROR(options.prepare(*qp));
    rdma_conn_param param = ConnParam(*dev_, private_data);
    if (rdma_connect(id, &param) != 0) {
      return Status::Unavailable("rdma_connect(" + name + "): " + ErrnoText(errno));
    }
    DPMFS_RETURN_IF_ERROR(wait_for(RDMA_CM_EVENT_ESTABLISHED, "waiting for the accept"));
    qp->EnableRemoteFlush();
    spdlog::debug("verbs: connected to {} ({})", name, dev_->name);
    return std::unique_ptr<QueuePair>(std::move(qp));
  }

  bool SupportsFlush() const override { return dev_->supports_flush; }

 private:
  const std::shared_ptr<const DeviceContext> dev_;
  Mutex mu_;
  std::unordered_map<uint32_t, ibv_mr*> regions_ GUARDED_BY(mu_);  // by lkey
};

}  // namespace
}  // namespace verbs

Result<std::unique_ptr<Device>> OpenVerbsDevice(const DeviceOptions& options) {
  using verbs::ErrnoText;
  if (options.cluster_key != nullptr) {
    // Not yet: the handshake of connection_auth.h needs a third message, which rdma_cm's
    // connect/accept private data cannot carry (docs/security.md, "Where it stands").
    spdlog::warn("verbs transport: connections are NOT authenticated yet (the cluster key is "
                 "checked on the soft transport only); keep verbs ports on a trusted network");
  }
  // Names first, through libibverbs alone: it works (and says why) even where
  // librdmacm cannot initialise.
  int num = 0;
  ibv_device** list = ibv_get_device_list(&num);
  int list_err = errno;
  std::vector<std::string> names;
  for (int i = 0; list != nullptr && i < num; ++i) names.emplace_back(ibv_get_device_name(list[i]));
  if (list != nullptr) ibv_free_device_list(list);
  if (names.empty()) {
    std::string why = list == nullptr ? ": " + ErrnoText(list_err) : "";
    return Status::Unavailable(
        "no RDMA device found (ibv_get_device_list returned none" + why +
        "); load rdma_rxe and run 'rdma link add rxe0 type rxe netdev eth0', or use "
        "--transport soft");
  }
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
  if (!options.verbs_device.empty() &&
      std::find(names.begin(), names.end(), options.verbs_device) == names.end()) {
    return Status::NotFound("RDMA device '" + options.verbs_device +
                            "' not found; available: " + all);
  }

  int count = 0;
  ibv_context** contexts = rdma_get_devices(&count);
  if (contexts == nullptr || count == 0) {
    int err = errno;
    if (contexts != nullptr) rdma_free_devices(contexts);
    return Status::Unavailable(
        "librdmacm sees no usable RDMA device (" + ErrnoText(err) + "; devices: " + all +
        "); is the rdma_ucm module loaded and /dev/infiniband/rdma_cm accessible?");
  }
  ibv_context* chosen = nullptr;
  for (int i = 0; i < count; ++i) {
    std::string n = ibv_get_device_name(contexts[i]->device);
    if (options.verbs_device.empty() ? i == 0 : n == options.verbs_device) chosen = contexts[i];
  }
  rdma_free_devices(contexts);  // frees the array only; librdmacm keeps the contexts open
  if (chosen == nullptr) {
    return Status::NotFound("RDMA device '" + options.verbs_device +
                            "' is not usable through librdmacm; available: " + all);
  }

  auto dev = std::make_shared<verbs::DeviceContext>();
  dev->ctx = chosen;
  dev->name = ibv_get_device_name(chosen->device);
  if (options.verbs_device.empty() && names.size() > 1) {
    spdlog::info("verbs: several RDMA devices ({}); using {} (set the verbs device to choose)", all,
                 dev->name);
  }
  ibv_device_attr_ex attr = {};
  if (ibv_query_device_ex(chosen, nullptr, &attr) != 0 &&
      ibv_query_device(chosen, &attr.orig_attr) != 0) {
    return Status::FromErrno(errno, "ibv_query_device on " + dev->name);
  }
  dev->max_qp_wr = static_cast<uint32_t>(std::max(attr.orig_attr.max_qp_wr, 1));
  dev->max_cqe = static_cast<uint32_t>(std::max(attr.orig_attr.max_cqe, 1));
  dev->max_qp_rd_atom = static_cast<uint8_t>(std::clamp(attr.orig_attr.max_qp_rd_atom, 0, 255));
  dev->max_qp_init_rd_atom =
      static_cast<uint8_t>(std::clamp(attr.orig_attr.max_qp_init_rd_atom, 0, 255));
#ifdef DPMFS_HAVE_IBV_WR_FLUSH
  dev->supports_flush = (attr.device_cap_flags_ex & IB_UVERBS_DEVICE_FLUSH_GLOBAL) != 0;
#endif
  dev->pd = ibv_alloc_pd(chosen);
  if (dev->pd == nullptr) return Status::FromErrno(errno, "ibv_alloc_pd on " + dev->name);
  spdlog::debug("verbs: opened {} (max_qp_wr {}, rd_atom {}/{}, flush {})", dev->name,
                dev->max_qp_wr, dev->max_qp_rd_atom, dev->max_qp_init_rd_atom, dev->supports_flush);
  return std::unique_ptr<Device>(std::make_unique<verbs::VerbsDevice>(std::move(dev)));
}

}  // namespace dpmfs::transport
