#include "tools/bench/tcp_baseline.h"

#include "tools/bench/measure_window.h"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

namespace dpmfs::bench {
namespace {

constexpr uint32_t kHelloMagic = 0x42545044;  // "DPTB"
constexpr size_t kHelloSize = 8;               // magic, message size (u32 each, host order)
constexpr size_t kReplySize = 8;
constexpr size_t kServerReadBuffer = 256 * 1024;
constexpr uint32_t kMaxMessage = 16u << 20;
constexpr auto kConnectTimeout = std::chrono::milliseconds(2000);

Result<UniqueFd> ConnectAndHello(const Endpoint& server, uint32_t size) {
  if (size == 0 || size > kMaxMessage) {
    return Status::InvalidArgument("TCP baseline message size must be 1.." +
                                   std::to_string(kMaxMessage));
  }
  auto fd = TcpConnect(server, kConnectTimeout);
  if (!fd.ok()) return fd.status().WithContext("TCP baseline");
  uint8_t hello[kHelloSize];
  std::memcpy(hello, &kHelloMagic, 4);
  std::memcpy(hello + 4, &size, 4);
  DPMFS_RETURN_IF_ERROR(SendAll(fd->get(), hello, sizeof hello));
  return std::move(fd).value();
}

}  // namespace

// ---------------------------------------------------------------- server

Result<std::unique_ptr<TcpBaselineServer>> TcpBaselineServer::Start() {
  std::unique_ptr<TcpBaselineServer> s(new TcpBaselineServer());
  DPMFS_ASSIGN_OR_RETURN(s->listen_fd_, TcpListen(Endpoint{"127.0.0.1", 0}));
  DPMFS_ASSIGN_OR_RETURN(s->endpoint_, LocalEndpoint(s->listen_fd_.get()));
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  spdlog::debug("TCP baseline server on {}", s->endpoint_.ToString());
  return s;
}

TcpBaselineServer::~TcpBaselineServer() { Stop(); }

void TcpBaselineServer::Stop() {
  if (stop_.exchange(true)) return;
  int fd = active_fd_.load();
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
}

void TcpBaselineServer::Loop() {
  while (!stop_.load()) {
    // Poll so that Stop() is noticed without closing the socket under accept().
    Status st = WaitReadable(listen_fd_.get(), std::chrono::milliseconds(100));
    if (!st.ok()) continue;
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    SetNoDelay(fd.get());
    Serve(std::move(fd));
  }
}

void TcpBaselineServer::Serve(UniqueFd fd) {
  active_fd_.store(fd.get());
  uint8_t hello[kHelloSize];
  uint32_t magic = 0, size = 0;
  if (!RecvAll(fd.get(), hello, sizeof hello).ok()) {
    active_fd_.store(-1);
    return;
  }
  std::memcpy(&magic, hello, 4);
  std::memcpy(&size, hello + 4, 4);
  if (magic != kHelloMagic || size == 0 || size > kMaxMessage) {
    spdlog::warn("TCP baseline server: bad hello from {}", PeerName(fd.get()));
    active_fd_.store(-1);
    return;
  }
  // Buffers are per connection (per cell), never per message.
  std::vector<uint8_t> in(kServerReadBuffer);
  std::vector<uint8_t> replies((kServerReadBuffer / size + 2) * kReplySize, 0);
  uint64_t partial = 0;  // bytes of the current, incomplete message already received
  while (!stop_.load()) {
    ssize_t r = ::recv(fd.get(), in.data(), in.size(), 0);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    uint64_t total = partial + static_cast<uint64_t>(r);
    uint64_t complete = total / size;
    partial = total % size;
    if (complete > 0 && !SendAll(fd.get(), replies.data(), complete * kReplySize).ok()) break;
  }
  active_fd_.store(-1);
}

// ---------------------------------------------------------------- clients

Result<Measurement> RunTcpPingPong(const Endpoint& server, uint32_t size,
                                   const CellTiming& timing, LatencyHistogram* hist) {
  DPMFS_ASSIGN_OR_RETURN(UniqueFd fd, ConnectAndHello(server, size));
  std::vector<uint8_t> msg(size, 0x5a);
  uint8_t reply[kReplySize];
  MeasureWindow window(timing, hist);
  while (true) {
    Clock::time_point sent = Clock::now();
    DPMFS_RETURN_IF_ERROR(SendAll(fd.get(), msg.data(), size).WithContext("TCP ping-pong"));
    DPMFS_RETURN_IF_ERROR(RecvAll(fd.get(), reply, sizeof reply).WithContext("TCP ping-pong"));
    Clock::time_point now = Clock::now();
    window.Record(now - sent);
    if (!window.Advance(now)) break;
  }
  return window.Finish(size);
}

Result<Measurement> RunTcpStream(const Endpoint& server, uint32_t size, uint32_t depth,
                                 const CellTiming& timing, LatencyHistogram* hist) {
  if (depth == 0) return Status::InvalidArgument("TCP stream depth must be at least 1");
  DPMFS_ASSIGN_OR_RETURN(UniqueFd fd, ConnectAndHello(server, size));
  std::vector<uint8_t> msg(size, 0x5a);
  std::vector<uint8_t> replies(uint64_t{depth} * kReplySize);
  // Send times of the outstanding messages, oldest at `head`: answers come in order.
  std::vector<Clock::time_point> sent(depth);
  size_t head = 0, outstanding = 0;
  auto send_one = [&]() -> Status {
    sent[(head + outstanding) % depth] = Clock::now();
    ++outstanding;
    return SendAll(fd.get(), msg.data(), size);
  };
  MeasureWindow window(timing, hist);
  for (uint32_t i = 0; i < depth; ++i) {
    DPMFS_RETURN_IF_ERROR(send_one().WithContext("TCP stream"));
  }
  size_t have = 0;  // bytes of answers received but not yet consumed (< kReplySize kept)
  while (true) {
    ssize_t r = ::recv(fd.get(), replies.data() + have, replies.size() - have, 0);
    if (r == 0) return Status::Unavailable("TCP stream: connection closed by the baseline server");
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "TCP stream: recv");
    }
    have += static_cast<size_t>(r);
    size_t answers = have / kReplySize;
    have %= kReplySize;  // the answers' contents do not matter; keep the byte count only
    Clock::time_point now = Clock::now();
    for (size_t i = 0; i < answers; ++i) {
      if (outstanding == 0) return Status::Internal("TCP stream: more answers than messages");
      window.Record(now - sent[head]);
      head = (head + 1) % depth;
      --outstanding;
    }
    if (!window.Advance(now)) break;
    while (outstanding < depth) DPMFS_RETURN_IF_ERROR(send_one().WithContext("TCP stream"));
  }
  // Closing with answers in flight is fine: the server sees EOF or a reset.
  return window.Finish(size);
}

}  // namespace dpmfs::bench
