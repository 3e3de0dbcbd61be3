// The soft target's resource limits against a hostile or stalled peer (issue 17,
// "Resource limits"; transport/README.md, "Limits"): nothing a frame announces is
// allocated before its bytes arrive, a half-sent frame times out, responses a peer does
// not read are bounded, and silent connections cannot pile up before their handshake.
// Memory is measured as this process's VmRSS: the target device lives in it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/cluster_key.h"
#include "common/unique_fd.h"
#include "transport/connection_auth.h"
#include "transport/soft/soft_wire.h"
#include "transport/transport.h"
#include "tests/transport/transport_test_util.h"

namespace dpmfs::transport {
namespace {

using namespace testutil;  // NOLINT(build/namespaces)
using soft::FrameHeader;
using soft::FrameType;

constexpr uint32_t kStallMs = 1500;  // long enough for the unfixed target to fill RSS
constexpr uint64_t kMaxQueued = 4ull << 20;
constexpr uint32_t kMaxPending = 8;

int64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// The largest growth of VmRSS over `before` seen within `ms` (sampled every 20 ms).
int64_t PeakGrowth(int64_t before, uint32_t ms) {
  int64_t peak = 0;
  const auto end = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < end) {
    peak = std::max(peak, RssBytes() - before);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return peak;
}

std::vector<uint8_t> Frame(const FrameHeader& h, size_t payload_bytes = 0) {
  std::vector<uint8_t> out(soft::kHeaderSize + payload_bytes, 0xAB);
  soft::EncodeHeader(h, out.data());
  return out;
}

FrameHeader Header(FrameType t, uint32_t len = 0) {
  FrameHeader h;
  h.type = t;
  h.length = len;
  h.payload_len = (t == FrameType::kWrite || t == FrameType::kSend) ? len : 0;
  return h;
}

// A raw TCP peer speaking the soft wire by hand.
class RawPeer {
 public:
  // From `source_ip` (a loopback address) when given.
  explicit RawPeer(const Endpoint& to, const char* source_ip = nullptr) {
    fd_.reset(::socket(AF_INET, SOCK_STREAM, 0));
    if (source_ip != nullptr) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, source_ip, &src.sin_addr);
      if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) fd_.reset();
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(to.port);
    ::inet_pton(AF_INET, to.host.c_str(), &a.sin_addr);
    if (fd_.valid() && ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      fd_.reset();
    }
  }
  bool ok() const { return fd_.valid(); }
  void Send(const std::vector<uint8_t>& b) {
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_.get(), b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  bool Handshake() {
    Send(Frame(Header(FrameType::kConnect)));
    uint8_t h[soft::kHeaderSize];
    size_t got = 0;
    while (got < sizeof h) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 3000) <= 0) return false;
      ssize_t n = ::recv(fd_.get(), h + got, sizeof h - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    auto d = soft::DecodeHeader(std::span<const uint8_t, soft::kHeaderSize>(h));
    return d.ok() && d->type == FrameType::kAccept;
  }
  // Whether the peer closed (EOF or reset) within `timeout`; what it sends is skipped.
  bool PeerCloses(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    char buf[65536];
    while (Clock::now() < deadline) {
      pollfd p{fd_.get(), POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 1))) <= 0) continue;
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
    return false;
  }

 private:
  UniqueFd fd_;
};

class SoftLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DeviceOptions o;
    o.backend = Backend::kSoft;
    o.soft_drain_delay_us = 100;
    o.soft_stall_timeout_ms = kStallMs;
    o.soft_max_queued_bytes = kMaxQueued;
    o.soft_max_pending_handshakes = kMaxPending;
    Status st = rig_.Open(o, Endpoint{"127.0.0.1", 0});
    if (IsUnavailableHere(st)) GTEST_SKIP() << st.ToString();
    ASSERT_TRUE(st.ok()) << st.ToString();
    loop_ = std::make_unique<AcceptLoop>(rig_.listener());
  }
  void TearDown() override {
    loop_.reset();
    rig_.Close();
  }
  Endpoint ep() { return rig_.listener().local_endpoint(); }

  Rig rig_;
  std::unique_ptr<AcceptLoop> loop_;
};

// A WRITE header announcing 256 MiB followed by 64 KiB and a stall: the target holds
// what arrived, not what was announced (it once zero-filled the whole announced length
// at once), and closes the connection after the stall timeout.
TEST_F(SoftLimitsTest, AnnouncedWriteLengthIsNotAllocated) {
  constexpr uint64_t kRegion = 256ull << 20;
  void* mem = ::mmap(nullptr, kRegion, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto mr = rig_.target().RegisterMemory(mem, kRegion, kRemoteWrite | kLocalWrite);
  ASSERT_TRUE(mr.ok()) << mr.status().ToString();
  const int64_t before = RssBytes();
  {
    RawPeer peer(ep());
    ASSERT_TRUE(peer.ok());
    ASSERT_TRUE(peer.Handshake());
    QueuePair* target = loop_->WaitAccepted(1);
    ASSERT_NE(target, nullptr);
    FrameHeader h = Header(FrameType::kWrite, static_cast<uint32_t>(kRegion));
    h.rkey = mr->rkey;
    h.remote_addr = reinterpret_cast<uint64_t>(mem);
    auto bytes = Frame(h, 64 << 10);  // the header and the first 64 KiB only
    peer.Send(bytes);
    const int64_t grown = PeakGrowth(before, kStallMs - 300);
    std::printf("target grew by %lld MiB\n", static_cast<long long>(grown >> 20));
    EXPECT_LT(grown, 32ll << 20) << "a 256 MiB WRITE header with 64 KiB behind it grew the "
                                    "target by " << (grown >> 20) << " MiB";
    EXPECT_TRUE(peer.PeerCloses(std::chrono::milliseconds(kStallMs * 3)))
        << "a stalled WRITE kept its connection open";
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    while (target->state() != QpState::kError && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(target->state(), QpState::kError);
  }
  EXPECT_TRUE(rig_.target().DeregisterMemory(*mr).ok());
  ::munmap(mem, kRegion);
}

// Half a header, and a SEND with half its payload, after a proper handshake: the target
// closes each connection after the stall timeout instead of waiting forever.
TEST_F(SoftLimitsTest, HalfSentFrameTimesOut) {
  Buffer& region = rig_.NewBuffer(8192, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion mr, rig_.Register(rig_.target(), region, kAllRemote));
  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which == 0 ? "half a header" : "half a payload");
    RawPeer peer(ep());
    ASSERT_TRUE(peer.ok());
    ASSERT_TRUE(peer.Handshake());
    FrameHeader h = Header(FrameType::kWrite, 8192);
    h.rkey = mr.rkey;
    h.remote_addr = reinterpret_cast<uint64_t>(region.data());
    auto bytes = Frame(h, 8192);
    bytes.resize(which == 0 ? soft::kHeaderSize / 2 : soft::kHeaderSize + 100);
    peer.Send(bytes);
    auto t0 = Clock::now();
    EXPECT_TRUE(peer.PeerCloses(std::chrono::milliseconds(kStallMs * 3)))
        << "a half-sent frame kept its connection open";
    EXPECT_GE(MillisSince(t0), kStallMs * 0.8) << "closed before the stall timeout";
  }
}

// A peer that sends READs and never reads the responses: the target queues at most
// about soft_max_queued_bytes of copies (once +3 GiB), then stops reading and closes
// the connection after the stall timeout.
TEST_F(SoftLimitsTest, UnreadReadResponsesAreBounded) {
  constexpr uint32_t kLen = 1 << 20;
  Buffer& region = rig_.NewBuffer(kLen, 7);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion mr, rig_.Register(rig_.target(), region, kAllRemote));
  RawPeer peer(ep());
  ASSERT_TRUE(peer.ok());
  ASSERT_TRUE(peer.Handshake());
  QueuePair* target = loop_->WaitAccepted(1);
  ASSERT_NE(target, nullptr);
  const int64_t before = RssBytes();
  std::vector<uint8_t> reads;
  for (uint32_t i = 0; i < 256; ++i) {  // 256 MiB of responses asked for in 10 KiB
    FrameHeader h = Header(FrameType::kRead, kLen);
    h.seq = i + 1;
    h.flags = soft::kFlagSignaled;
    h.rkey = mr.rkey;
    h.remote_addr = reinterpret_cast<uint64_t>(region.data());
    auto f = Frame(h);
    reads.insert(reads.end(), f.begin(), f.end());
  }
  peer.Send(reads);
  const int64_t grown = PeakGrowth(before, kStallMs - 300);
  std::printf("target grew by %lld MiB\n", static_cast<long long>(grown >> 20));
  EXPECT_LT(grown, 48ll << 20) << "256 unread 1 MiB READ responses grew the target by "
                               << (grown >> 20) << " MiB";
  const auto deadline = Clock::now() + std::chrono::milliseconds(kStallMs * 3);
  while (target->state() != QpState::kError && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(target->state(), QpState::kError) << "a peer that never reads was kept";
}

// Silent connections beyond the pending-handshake cap: the oldest are dropped at once
// (not after the 5 s handshake timeout), and a real client still connects.
TEST_F(SoftLimitsTest, SilentConnectionsBeyondTheCapAreDropped) {
  std::vector<std::unique_ptr<RawPeer>> silent;
  for (uint32_t i = 0; i < kMaxPending * 4; ++i) {
    silent.push_back(std::make_unique<RawPeer>(ep()));
    ASSERT_TRUE(silent.back()->ok());
  }
  EXPECT_TRUE(silent.front()->PeerCloses(std::chrono::milliseconds(2000)))
      << "the oldest silent connection was kept beyond the cap of " << kMaxPending;
  auto r = rig_.initiator().Connect(ep(), {}, {}, std::chrono::seconds(2));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}


// With a cluster key, every way a peer fails its handshake counts against its address,
// not only a wrong proof: a frame that is no handshake at all, a wrong frame type, and
// a connection that never sends one. Once an address has failed kMaxFailures times it
// is closed unheard (once garbage and silence were only logged, a line per connection,
// and never refused).
TEST(SoftHandshakeGate, MalformedAndSilentHandshakesCountAgainstTheAddress) {
  DeviceOptions o;
  o.backend = Backend::kSoft;
  o.soft_handshake_timeout_ms = 200;
  o.cluster_key = std::make_shared<const ClusterKey>(ClusterKey::Generate());
  Rig rig;
  ASSERT_TRUE(rig.Open(o, Endpoint{"127.0.0.1", 0}).ok());
  AcceptLoop loop(rig.listener());
  const Endpoint ep = rig.listener().local_endpoint();
  const auto deadline_for = [&](uint64_t n) {
    const auto end = Clock::now() + std::chrono::seconds(5);
    while (rig.target().auth_failures() < n && Clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return rig.target().auth_failures();
  };
  constexpr int kMax = auth::AuthFailureGate::kMaxFailures;
  uint64_t failed = 0;
  for (int i = 0; i < kMax; ++i) {
    RawPeer peer(ep, "127.0.0.7");
    ASSERT_TRUE(peer.ok());
    switch (i % 3) {
      case 0:  // not a soft frame at all
        peer.Send(std::vector<uint8_t>(soft::kHeaderSize, 0x41));
        break;
      case 1:  // a frame, but not the handshake's
        peer.Send(Frame(Header(FrameType::kRead, 8)));
        break;
      case 2:  // nothing: the handshake timeout ends it
        break;
    }
    EXPECT_TRUE(peer.PeerCloses(std::chrono::seconds(3))) << "attempt " << i;
    EXPECT_EQ(deadline_for(++failed), failed) << "attempt " << i << " was not counted";
  }
  // Refused unheard now, even with a proper HELLO.
  RawPeer again(ep, "127.0.0.7");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again.PeerCloses(std::chrono::seconds(3)));
  EXPECT_GE(rig.target().auth_refused(), 1u) << "an address that kept failing was heard again";
  // Another address is not affected: a keyed initiator still connects.
  auto good = rig.initiator().Connect(ep, {}, {}, std::chrono::seconds(3));
  EXPECT_TRUE(good.ok()) << good.status().ToString();
}

}  // namespace
}  // namespace dpmfs::transport
