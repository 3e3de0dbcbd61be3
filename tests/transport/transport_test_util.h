// Helpers shared by the transport test suites (conformance over both backends and the
// soft-only cases): a test rig with a target and an initiator device, guarded buffers,
// work-request builders and completion collectors that never wait without a deadline.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/endpoint.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "transport/transport.h"

// ASSERT/EXPECT that a Status (or a Result's status) is OK, printing it otherwise.
#define DPMFS_ASSERT_OK(expr)                                           \
  do {                                                                  \
    const ::dpmfs::Status _dpmfs_s = (expr);                            \
    ASSERT_TRUE(_dpmfs_s.ok()) << #expr << ": " << _dpmfs_s.ToString(); \
  } while (0)
#define DPMFS_EXPECT_OK(expr)                                           \
  do {                                                                  \
    const ::dpmfs::Status _dpmfs_s = (expr);                            \
    EXPECT_TRUE(_dpmfs_s.ok()) << #expr << ": " << _dpmfs_s.ToString(); \
  } while (0)
// `lhs = value of expr`, or a fatal failure naming the Status.
#define DPMFS_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  DPMFS_ASSERT_OK_AND_ASSIGN_IMPL(DPMFS_CONCAT(_dpmfs_r_, __LINE__), lhs, expr)
#define DPMFS_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)              \
  auto tmp = (expr);                                                 \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString(); \
  lhs = std::move(tmp).value()

namespace dpmfs::transport::testutil {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Every wait in the suites is bounded by one of these: a hang becomes a failure.
inline constexpr Duration kWaitTimeout = std::chrono::seconds(5);
inline constexpr Duration kConnectTimeout = std::chrono::seconds(5);
// How long "nothing more arrives" is watched for.
inline constexpr Duration kQuietWindow = std::chrono::milliseconds(50);

inline double MillisSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

inline std::string StatusName(CompletionStatus s) { return std::string(CompletionStatusName(s)); }

inline std::string Describe(const Completion& c) {
  return "{context=" + std::to_string(c.context) + " opcode=" + std::string(OpcodeName(c.opcode)) +
         " status=" + StatusName(c.status) + " byte_len=" + std::to_string(c.byte_len) +
         " has_imm=" + std::to_string(c.has_imm) + " imm=" + std::to_string(c.imm) + "}";
}

// The first up, non-loopback IPv4 address of this host, or "" if there is none
// (rdma_cm cannot use lo, so the verbs backend needs one).
inline std::string NonLoopbackIpv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* i = list; i != nullptr && found.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    if ((i->ifa_flags & IFF_UP) == 0 || (i->ifa_flags & IFF_LOOPBACK) != 0) continue;
    char text[INET_ADDRSTRLEN] = {};
    const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) != nullptr) found = text;
  }
  freeifaddrs(list);
  return found;
}

// A TCP port on `host` that nobody listens on (bound once, then released).
inline uint16_t UnusedTcpPort(const std::string& host) {
  dpmfs::UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
  if (!fd.valid()) return 1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  uint16_t port = 1;
  socklen_t len = sizeof(a);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  return port;
}

// Deterministic pseudo-random bytes (xorshift32), distinct per seed.
inline void FillPattern(void* dst, size_t n, uint32_t seed) {
  auto* p = static_cast<uint8_t*>(dst);
  uint32_t x = (seed + 1) * 2654435761u | 1u;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = static_cast<uint8_t>(x >> 24);
  }
}

// Compares `n` bytes and reports the first difference.
inline ::testing::AssertionResult BytesEqual(const void* got, const void* want, size_t n) {
  const auto* g = static_cast<const uint8_t*>(got);
  const auto* w = static_cast<const uint8_t*>(want);
  if (std::memcmp(g, w, n) == 0) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (g[i] == w[i]) ++i;
  return ::testing::AssertionFailure()
         << "first of " << n << " bytes to differ is at offset " << i << ": got 0x" << std::hex
         << int(g[i]) << ", want 0x" << int(w[i]);
}

// Whether all `n` bytes equal `value`, reporting the first that does not.
inline ::testing::AssertionResult AllBytesAre(const void* p, size_t n, uint8_t value) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != value) {
      return ::testing::AssertionFailure() << "byte " << i << " of " << n << " is 0x" << std::hex
                                           << int(b[i]) << ", want 0x" << int(value);
    }
  }
  return ::testing::AssertionSuccess();
}

// Copies target memory through volatile loads: for looking at memory the soft backend's
// drain may be writing at the same moment.
inline std::vector<uint8_t> Snapshot(const void* p, size_t n) {
  std::vector<uint8_t> out(n);
  const volatile uint8_t* src = static_cast<const volatile uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) out[i] = src[i];
  return out;
}

// Page-aligned anonymous memory of `size` bytes with `guard` bytes of kGuardByte on each
// side; only the middle is meant to be registered, so a stray write past either end of
// a region shows up in GuardsIntact().
class Buffer {
 public:
  static constexpr uint8_t kGuardByte = 0xA5;

  explicit Buffer(size_t size, uint8_t fill = 0, size_t guard = 4096) : size_(size), guard_(guard) {
    const size_t page = 4096;
    total_ = (size + 2 * guard + page - 1) / page * page;
    void* m = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = m == MAP_FAILED ? nullptr : static_cast<uint8_t*>(m);
    if (base_ == nullptr) {
      ADD_FAILURE() << "mmap of " << total_ << " bytes failed";
      return;
    }
    std::memset(base_, kGuardByte, total_);
    std::memset(base_ + guard_, fill, size_);
  }
  ~Buffer() {
    if (base_ != nullptr) munmap(base_, total_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  uint8_t* data() const { return base_ + guard_; }
  size_t size() const { return size_; }
  void Fill(uint8_t v) { std::memset(data(), v, size_); }

  ::testing::AssertionResult GuardsIntact() const {
    auto before = AllBytesAre(base_, guard_, kGuardByte);
    if (!before)
      return ::testing::AssertionFailure() << "guard before the buffer: " << before.message();
    auto after = AllBytesAre(data() + size_, total_ - guard_ - size_, kGuardByte);
    if (!after)
      return ::testing::AssertionFailure() << "guard after the buffer: " << after.message();
    return ::testing::AssertionSuccess();
  }

 private:
  size_t size_;
  size_t guard_;
  size_t total_ = 0;
  uint8_t* base_ = nullptr;
};

inline RemoteRegion ToRemote(const MemoryRegion& mr) {
  return RemoteRegion{reinterpret_cast<uint64_t>(mr.addr), mr.length, mr.rkey};
}

inline uint8_t* At(const MemoryRegion& mr, size_t offset) {
  return static_cast<uint8_t*>(mr.addr) + offset;
}

// --- work-request builders ------------------------------------------------------------

inline WorkRequest RdmaWr(Opcode op, const MemoryRegion& local, size_t local_off,
                          const RemoteRegion& remote, uint64_t remote_off, uint32_t len,
                          uint64_t context, bool signaled) {
  WorkRequest wr;
  wr.opcode = op;
  wr.signaled = signaled;
  wr.context = context;
  wr.local_addr = At(local, local_off);
  wr.length = len;
  wr.lkey = local.lkey;
  wr.remote_addr = remote.addr + remote_off;
  wr.rkey = remote.rkey;
  return wr;
}
inline WorkRequest WriteWr(const MemoryRegion& local, size_t local_off, const RemoteRegion& remote,
                           uint64_t remote_off, uint32_t len, uint64_t context,
                           bool signaled = true) {
  return RdmaWr(Opcode::kWrite, local, local_off, remote, remote_off, len, context, signaled);
}
inline WorkRequest ReadWr(const MemoryRegion& local, size_t local_off, const RemoteRegion& remote,
                          uint64_t remote_off, uint32_t len, uint64_t context,
                          bool signaled = true) {
  return RdmaWr(Opcode::kRead, local, local_off, remote, remote_off, len, context, signaled);
}
inline WorkRequest WriteImmWr(const MemoryRegion& local, size_t local_off,
                              const RemoteRegion& remote, uint64_t remote_off, uint32_t len,
                              uint32_t imm, uint64_t context, bool signaled = true) {
  WorkRequest wr =
      RdmaWr(Opcode::kWriteWithImm, local, local_off, remote, remote_off, len, context, signaled);
  wr.imm = imm;
  return wr;
}
inline WorkRequest FlushWr(const RemoteRegion& remote, uint64_t remote_off, uint32_t len,
                           uint64_t context, bool signaled = true) {
  WorkRequest wr;
  wr.opcode = Opcode::kFlush;
  wr.signaled = signaled;
  wr.context = context;
  wr.length = len;
  wr.remote_addr = remote.addr + remote_off;
  wr.rkey = remote.rkey;
  return wr;
}
inline WorkRequest SendWr(const MemoryRegion& local, size_t local_off, uint32_t len,
                          uint64_t context, bool signaled = true) {
  WorkRequest wr;
  wr.opcode = Opcode::kSend;
  wr.signaled = signaled;
  wr.context = context;
  wr.local_addr = At(local, local_off);
  wr.length = len;
  wr.lkey = local.lkey;
  return wr;
}
inline WorkRequest RecvWr(const MemoryRegion& local, size_t local_off, uint32_t len,
                          uint64_t context) {
  WorkRequest wr = SendWr(local, local_off, len, context);
  wr.opcode = Opcode::kRecv;
  return wr;
}

// --- completions ----------------------------------------------------------------------

// Collects up to `n` completions from one queue, waiting at most `timeout` in total.
// Returns what arrived (fewer than n means the deadline passed).
template <typename WaitFn>
std::vector<Completion> CollectWith(WaitFn wait, size_t n, Duration timeout) {
  std::vector<Completion> got;
  const auto deadline = Clock::now() + timeout;
  Completion buf[64];
  while (got.size() < n) {
    auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now());
    if (left <= Duration::zero()) break;
    size_t want = std::min<size_t>(n - got.size(), 64);
    size_t k = wait(std::span<Completion>(buf, want), left);
    got.insert(got.end(), buf, buf + k);
  }
  return got;
}
inline std::vector<Completion> CollectSend(QueuePair& qp, size_t n,
                                           Duration timeout = kWaitTimeout) {
  return CollectWith([&](std::span<Completion> o, Duration t) { return qp.WaitSend(o, t); }, n,
                     timeout);
}
inline std::vector<Completion> CollectRecv(QueuePair& qp, size_t n,
                                           Duration timeout = kWaitTimeout) {
  return CollectWith([&](std::span<Completion> o, Duration t) { return qp.WaitRecv(o, t); }, n,
                     timeout);
}

// --- connections ----------------------------------------------------------------------

inline Result<std::vector<uint8_t>> AcceptAll(std::span<const uint8_t>, QueuePair&) {
  return std::vector<uint8_t>{};
}

struct QpPair {
  std::unique_ptr<QueuePair> initiator;
  std::unique_ptr<QueuePair> target;
};

struct ConnectArgs {
  std::vector<uint8_t> connect_data;
  AcceptHandler handler = AcceptAll;
  QueuePairOptions initiator_options;
  QueuePairOptions target_options;
};

// Connects `initiator` to `listener` (Accept runs in a thread, Connect here).
inline Result<QpPair> ConnectPair(Device& initiator, Listener& listener,
                                  const ConnectArgs& args = {}) {
  auto accepted = std::async(std::launch::async, [&] {
    return listener.Accept(args.handler, args.target_options, kConnectTimeout);
  });
  auto connected = initiator.Connect(listener.local_endpoint(), args.connect_data,
                                     args.initiator_options, kConnectTimeout);
  auto target = accepted.get();
  if (!connected.ok()) return connected.status().WithContext("Connect");
  if (!target.ok()) return target.status().WithContext("Accept");
  return QpPair{std::move(connected).value(), std::move(target).value()};
}

// Runs listener.Accept in a loop on its own thread until destroyed (or the listener is
// shut down), keeping every QP it accepted alive until then.
class AcceptLoop {
 public:
  AcceptLoop(Listener& listener, AcceptHandler handler = AcceptAll, QueuePairOptions options = {})
      : listener_(listener), handler_(std::move(handler)), options_(std::move(options)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~AcceptLoop() {
    stop_ = true;
    thread_.join();
  }

  size_t accepted_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepted_.size();
  }
  // Waits up to `timeout` until at least `n` QPs were accepted; returns the n-th
  // (1-based) or nullptr.
  QueuePair* WaitAccepted(size_t n, Duration timeout = kConnectTimeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (accepted_.size() >= n) return accepted_[n - 1].get();
      }
      std::this_thread::sleep_for(1ms);
    }
    return nullptr;
  }

  // Accept results other than a QP and TimedOut (e.g. refused handshakes).
  std::vector<Status> errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  void Run() {
    while (!stop_) {
      auto r = listener_.Accept(handler_, options_, 100ms);
      std::lock_guard<std::mutex> lock(mu_);
      if (r.ok()) {
        accepted_.push_back(std::move(r).value());
      } else if (r.status().code() != StatusCode::kTimedOut) {
        errors_.push_back(r.status());
        if (r.status().code() == StatusCode::kUnavailable) return;  // shut down
      }
    }
  }

  Listener& listener_;
  AcceptHandler handler_;
  QueuePairOptions options_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::unique_ptr<QueuePair>> accepted_;
  std::vector<Status> errors_;
  std::thread thread_;
};

// A target device with a listener and an initiator device, plus the buffers and
// registrations a test makes; torn down in an order that keeps memory alive until the
// devices are gone.
class Rig {
 public:
  ~Rig() { Close(); }

  // Opens both devices and listens on `listen_at`.
  Status Open(const DeviceOptions& options, const Endpoint& listen_at) {
    auto open = [&]() -> Result<std::unique_ptr<Device>> {
      return options.backend == Backend::kSoft ? OpenSoftDevice(options) : OpenVerbsDevice(options);
    };
    DPMFS_ASSIGN_OR_RETURN(target_, open());
    DPMFS_ASSIGN_OR_RETURN(initiator_, open());
    DPMFS_ASSIGN_OR_RETURN(listener_, target_->Listen(listen_at));
    return Status::OK();
  }

  Device& target() { return *target_; }
  Device& initiator() { return *initiator_; }
  Listener& listener() { return *listener_; }
  bool open() const { return listener_ != nullptr; }

  Buffer& NewBuffer(size_t size, uint8_t fill = 0) {
    buffers_.push_back(std::make_unique<Buffer>(size, fill));
    return *buffers_.back();
  }

  Result<MemoryRegion> Register(Device& dev, Buffer& buf, uint32_t access) {
    auto mr = dev.RegisterMemory(buf.data(), buf.size(), access);
    if (mr.ok()) regions_.push_back({&dev, mr.value()});
    return mr;
  }

  Result<QpPair> Connect(const ConnectArgs& args = {}) {
    return ConnectPair(*initiator_, *listener_, args);
  }

  // Destroys the listener (after Shutdown) and both devices, deregistering first.
  void Close() {
    if (listener_) listener_->Shutdown();
    listener_.reset();
    for (auto& [dev, mr] : regions_) DPMFS_EXPECT_OK(dev->DeregisterMemory(mr));
    regions_.clear();
    initiator_.reset();
    target_.reset();
    buffers_.clear();
  }

  // Drops the listener and the target device now (the peer vanishes).
  void DestroyTarget() {
    if (listener_) listener_->Shutdown();
    listener_.reset();
    std::erase_if(regions_, [&](const auto& r) { return r.first == target_.get(); });
    target_.reset();
  }

 private:
  // Declared first so the memory outlives the devices that may still write to it.
  std::vector<std::unique_ptr<Buffer>> buffers_;
  std::unique_ptr<Device> target_;
  std::unique_ptr<Device> initiator_;
  std::unique_ptr<Listener> listener_;
  std::vector<std::pair<Device*, MemoryRegion>> regions_;
};

inline constexpr uint32_t kAllRemote = kLocalWrite | kRemoteWrite | kRemoteRead;

// Whether a status means "this backend cannot run here" (the suite skips).
inline bool IsUnavailableHere(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kNotSupported;
}

}  // namespace dpmfs::transport::testutil
