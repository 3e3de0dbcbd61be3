// Soft-backend-only cases: the volatile NIC buffer (the hazard the persist methods
// close) and robustness of the target against bad frames on its TCP port.
#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "transport/soft/soft_internal.h"
#include "transport/soft/soft_wire.h"
#include "transport/transport.h"
#include "tests/transport/transport_test_util.h"

namespace dpmfs::transport {
namespace {

using namespace testutil;  // NOLINT(build/namespaces)

constexpr uint32_t kDelayUs = 200000;  // 200 ms in the NIC buffer
constexpr double kDelayMs = kDelayUs / 1000.0;

class SoftTransportTest : public ::testing::Test {
 protected:
  // Opens the rig with the given drain delay; skips while the soft backend is missing.
  void Open(uint32_t drain_delay_us) {
    DeviceOptions options;
    options.backend = Backend::kSoft;
    options.soft_drain_delay_us = drain_delay_us;
    Status st = rig_.Open(options, Endpoint{"127.0.0.1", 0});
    if (IsUnavailableHere(st)) GTEST_SKIP() << "soft backend: " << st.ToString();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void TearDown() override { rig_.Close(); }

  Rig rig_;
};

// Polls target memory (volatile loads) until it equals `want` or `timeout` passes;
// returns the milliseconds it took, or a negative value on timeout.
double WaitForMemory(const uint8_t* mem, const uint8_t* want, size_t n, Duration timeout) {
  auto t0 = Clock::now();
  while (Clock::now() - t0 < timeout) {
    auto snap = Snapshot(mem, n);
    if (std::memcmp(snap.data(), want, n) == 0) return MillisSince(t0);
    std::this_thread::sleep_for(2ms);
  }
  return -1;
}

// The hazard: a signaled WRITE completes at once, yet target memory does not hold the
// data then (it sits in the volatile NIC buffer); after the drain delay it does.
TEST_F(SoftTransportTest, WriteCompletesBeforeItsDataReachesMemory) {
  Open(kDelayUs);
  if (IsSkipped()) return;
  Buffer& target = rig_.NewBuffer(4096, 0);
  Buffer& local = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(local.data(), 4096, 1);
  WorkRequest w = WriteWr(lmr, 0, ToRemote(tmr), 0, 4096, 1);
  auto t0 = Clock::now();
  DPMFS_ASSERT_OK(p.initiator->PostSend({&w, 1}));
  auto c = CollectSend(*p.initiator, 1);
  double completed_ms = MillisSince(t0);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  auto snap = Snapshot(target.data(), 4096);
  EXPECT_LT(completed_ms, kDelayMs / 2) << "the WRITE was not acknowledged at once";
  EXPECT_TRUE(AllBytesAre(snap.data(), 4096, 0))
      << "data reached memory at the WRITE's completion: the NIC buffer is not modelled";
  double visible_ms = WaitForMemory(target.data(), local.data(), 4096, std::chrono::seconds(3));
  ASSERT_GE(visible_ms, 0) << "the WRITE never reached memory";
  EXPECT_GE(completed_ms + visible_ms, kDelayMs / 2) << "drained long before the delay";
}

// A QP that goes idle with WRITEs buffered: its rx thread places them between 1x and
// 2x the delay after they arrived (a timer wakes it, no frame does), each of a few
// spaced WRITEs, not only the first. The upper bound has a margin for a loaded machine.
TEST_F(SoftTransportTest, BufferedWritesOfAnIdleQpArePlacedWithinTwoDelays) {
  Open(kDelayUs);
  if (IsSkipped()) return;
  Buffer& target = rig_.NewBuffer(3 * 4096, 0);
  Buffer& local = rig_.NewBuffer(3 * 4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  for (uint32_t i = 0; i < 3; ++i) {
    FillPattern(local.data() + i * 4096, 4096, static_cast<uint8_t>(i + 1));
    WorkRequest w = WriteWr(lmr, i * 4096, ToRemote(tmr), i * 4096, 4096, i + 1);
    auto t0 = Clock::now();
    DPMFS_ASSERT_OK(p.initiator->PostSend({&w, 1}));
    auto c = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
    double visible_ms = WaitForMemory(target.data() + i * 4096, local.data() + i * 4096, 4096,
                                      std::chrono::seconds(3));
    ASSERT_GE(visible_ms, 0) << "WRITE " << i << " never reached memory";
    double placed_ms = MillisSince(t0);
    EXPECT_GE(placed_ms, kDelayMs * 0.9) << "WRITE " << i << " placed before the delay";
    EXPECT_LE(placed_ms, kDelayMs * 2 + 150) << "WRITE " << i << " placed late";
  }
}

// A READ on the same QP right after a WRITE returns the new data, and takes far less
// than the drain delay: it drains the QP's earlier WRITEs at once.
TEST_F(SoftTransportTest, ReadAfterWriteDrainsAtOnce) {
  Open(kDelayUs);
  if (IsSkipped()) return;
  Buffer& target = rig_.NewBuffer(4096, 0);
  Buffer& local = rig_.NewBuffer(8192, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(local.data(), 4096, 2);
  WorkRequest w = WriteWr(lmr, 0, ToRemote(tmr), 0, 4096, 1);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&w, 1}));
  auto c = CollectSend(*p.initiator, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  auto t0 = Clock::now();
  WorkRequest r = ReadWr(lmr, 4096, ToRemote(tmr), 0, 4096, 2);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
  c = CollectSend(*p.initiator, 1);
  double read_ms = MillisSince(t0);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  EXPECT_TRUE(BytesEqual(local.data() + 4096, local.data(), 4096)) << "READ missed the WRITE";
  EXPECT_TRUE(BytesEqual(Snapshot(target.data(), 4096).data(), local.data(), 4096))
      << "memory does not hold the WRITE when the READ completes";
  EXPECT_LT(read_ms, kDelayMs / 2) << "the READ waited for the drain delay";
}

enum class Drainer { kRead, kWriteWithImm, kFlush };

// Three unsignaled WRITEs, then `how`: when its completion arrives (the target's receive
// completion for WRITE_WITH_IMM) every earlier WRITE is in memory, well before the delay.
void CheckDrainsEarlierWrites(Rig& rig, Drainer how) {
  constexpr uint32_t kSizes[] = {100, 4096, 1 << 20};
  constexpr size_t kOffs[] = {0, 8192, 65536};
  constexpr size_t kEnd = 65536 + (1 << 20);
  constexpr size_t kImmOff = kEnd + 4096;
  Buffer& target = rig.NewBuffer(kImmOff + 4096, 0);
  Buffer& recv = rig.NewBuffer(64, 0);
  Buffer& local = rig.NewBuffer(kEnd + 8192, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr,
                             rig.Register(rig.target(), target, kAllRemote | kRemoteFlush));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion rmr, rig.Register(rig.target(), recv, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig.Register(rig.initiator(), local, kLocalWrite));
  ConnectArgs args;
  args.target_options.prepare = [rmr](QueuePair& qp) {
    WorkRequest r = RecvWr(rmr, 0, 64, 1);
    return qp.PostRecv({&r, 1});
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig.Connect(args));
  FillPattern(local.data(), local.size(), 3);
  std::vector<WorkRequest> writes;
  for (int i = 0; i < 3; ++i) {
    writes.push_back(WriteWr(lmr, kOffs[i], ToRemote(tmr), kOffs[i], kSizes[i], 10 + i, false));
  }
  DPMFS_ASSERT_OK(p.initiator->PostSend(writes));
  WorkRequest op;
  switch (how) {
    case Drainer::kRead:
      op = ReadWr(lmr, kEnd, ToRemote(tmr), kImmOff, 8, 20);
      break;
    case Drainer::kWriteWithImm:
      op = WriteImmWr(lmr, kEnd, ToRemote(tmr), kImmOff, 512, 0xABCD, 20);
      break;
    case Drainer::kFlush:
      op = FlushWr(ToRemote(tmr), 0, kEnd, 20);
      break;
  }
  auto t0 = Clock::now();
  DPMFS_ASSERT_OK(p.initiator->PostSend({&op, 1}));
  auto c = how == Drainer::kWriteWithImm ? CollectRecv(*p.target, 1) : CollectSend(*p.initiator, 1);
  double ms = MillisSince(t0);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(BytesEqual(Snapshot(target.data() + kOffs[i], kSizes[i]).data(),
                           local.data() + kOffs[i], kSizes[i]))
        << "earlier WRITE " << i << " not in memory at the completion";
  }
  if (how == Drainer::kWriteWithImm) {
    EXPECT_TRUE(BytesEqual(Snapshot(target.data() + kImmOff, 512).data(), local.data() + kEnd, 512))
        << "the WRITE_WITH_IMM's own data is not in memory at its receive completion";
  }
  EXPECT_LT(ms, kDelayMs / 2) << "it waited for the drain delay instead of draining at once";
}

// A READ drains the QP's earlier WRITEs at once.
TEST_F(SoftTransportTest, ReadDrainsEarlierWrites) {
  Open(kDelayUs);
  if (IsSkipped()) return;
  CheckDrainsEarlierWrites(rig_, Drainer::kRead);
}
// A WRITE_WITH_IMM's receive completion comes after its and all earlier data is drained.
TEST_F(SoftTransportTest, WriteWithImmDrainsEarlierWrites) {
  Open(kDelayUs);
  if (IsSkipped()) return;
  CheckDrainsEarlierWrites(rig_, Drainer::kWriteWithImm);
}
// A FLUSH of the range drains the QP's earlier WRITEs at once.
TEST_F(SoftTransportTest, FlushDrainsEarlierWrites) {
  Open(kDelayUs);
  if (IsSkipped()) return;
  ASSERT_TRUE(rig_.initiator().SupportsFlush()) << "soft must always support FLUSH";
  CheckDrainsEarlierWrites(rig_, Drainer::kFlush);
}

// --- bad frames ---------------------------------------------------------------------------

using soft::FrameHeader;
using soft::FrameType;

// Encodes a frame; `patch` may then corrupt the header bytes.
std::vector<uint8_t> Frame(const FrameHeader& h, const std::vector<uint8_t>& payload = {}) {
  std::vector<uint8_t> out(soft::kHeaderSize);
  soft::EncodeHeader(h, out.data());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}
FrameHeader Header(FrameType type, uint32_t payload_len = 0, uint32_t length = 0) {
  FrameHeader h;
  h.type = type;
  h.payload_len = payload_len;
  h.length = length;
  return h;
}

// The frame header's bytes are the documented layout (transport/README.md), pinned so
// that a change of codec cannot change them; and they decode back.
TEST(SoftWire, HeaderBytesAreTheDocumentedLayout) {
  FrameHeader h;
  h.type = FrameType::kWriteWithImm;
  h.flags = soft::kFlagSignaled;
  h.payload_len = 0x100;
  h.imm = 0x11121314;
  h.seq = 0x2122232425262728ull;
  h.remote_addr = 0x3132333435363738ull;
  h.rkey = 0x41424344;
  h.length = 0x100;
  const std::vector<uint8_t> want = {
      0x44, 0x50, 0x4D, 0x53, 2,    1,    0,    0,     // magic, type, flags, reserved
      0x00, 0x01, 0x00, 0x00, 0x14, 0x13, 0x12, 0x11,  // payload_len, imm
      0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  // seq
      0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  // remote_addr
      0x44, 0x43, 0x42, 0x41, 0x00, 0x01, 0x00, 0x00,  // rkey, length
  };
  std::vector<uint8_t> bytes = Frame(h);
  EXPECT_EQ(bytes, want);
  auto back = soft::DecodeHeader(std::span<const uint8_t, soft::kHeaderSize>(bytes.data(),
                                                                            soft::kHeaderSize));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->type, h.type);
  EXPECT_EQ(back->flags, h.flags);
  EXPECT_EQ(back->payload_len, h.payload_len);
  EXPECT_EQ(back->imm, h.imm);
  EXPECT_EQ(back->seq, h.seq);
  EXPECT_EQ(back->remote_addr, h.remote_addr);
  EXPECT_EQ(back->rkey, h.rkey);
  EXPECT_EQ(back->length, h.length);
}

// A raw TCP connection, for speaking (bad) soft wire protocol by hand.
// A QP whose owner waits for its own completions synchronously has its caller read the
// socket (transport/soft/soft_caller_rx.cc). Still: many READs in a row complete with the
// right bytes; a request the peer then sends on that same QP is served (the rx thread
// takes the socket back); and the peer going away fails a waiting caller, promptly.
TEST_F(SoftTransportTest, CallerDrivenReceptionKeepsServingEverything) {
  Open(100);
  if (IsSkipped()) return;
  Buffer& target = rig_.NewBuffer(1 << 16, 0);
  Buffer& local = rig_.NewBuffer(1 << 16, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(target.data(), 1 << 16, 7);

  const uint64_t frames_before = soft::CallerReceivedFrames();
  for (uint64_t i = 0; i < 300; ++i) {
    const size_t off = (i * 4096) % (1 << 16);
    WorkRequest r = ReadWr(lmr, off, ToRemote(tmr), off, 4096, i);
    DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
    auto c = CollectSend(*p.initiator, 1, std::chrono::seconds(5));
    ASSERT_EQ(c.size(), 1u) << "READ " << i << " never completed";
    ASSERT_TRUE(c[0].ok()) << Describe(c[0]);
    ASSERT_TRUE(BytesEqual(local.data() + off, target.data() + off, 4096)) << "READ " << i;
  }
  // The waiting caller read (nearly) every response itself; the rx thread may take the
  // first few, before it parks.
  EXPECT_GE(soft::CallerReceivedFrames() - frames_before, 250u)
      << "the READ responses were not read by the waiting caller";

  // The peer now initiates on the same connection: WRITE then READ into our memory.
  FillPattern(target.data(), 4096, 9);
  WorkRequest w = WriteWr(tmr, 0, ToRemote(lmr), 0, 4096, 1);
  WorkRequest back = ReadWr(tmr, 8192, ToRemote(lmr), 0, 4096, 2);
  WorkRequest chain[] = {w, back};
  chain[0].signaled = false;
  DPMFS_ASSERT_OK(p.target->PostSend(chain));
  auto c = CollectSend(*p.target, 1, std::chrono::seconds(5));
  ASSERT_EQ(c.size(), 1u) << "the peer's request on a caller-driven QP was not served";
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  EXPECT_TRUE(BytesEqual(target.data() + 8192, target.data(), 4096));

  // And our side still works after that.
  WorkRequest r = ReadWr(lmr, 4096, ToRemote(tmr), 4096, 4096, 400);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
  c = CollectSend(*p.initiator, 1, std::chrono::seconds(5));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);

  // A caller waiting when the peer disconnects gets a failed completion, not a hang.
  std::vector<Completion> got;
  std::thread waiter([&] {
    Completion out[4];
    auto t0 = Clock::now();
    while (got.empty() && Clock::now() - t0 < std::chrono::seconds(5)) {
      size_t n = p.initiator->WaitSend(out, std::chrono::milliseconds(100));
      got.assign(out, out + n);
      if (got.empty() && p.initiator->state() == QpState::kError) break;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = Clock::now();
  p.target->Disconnect();
  waiter.join();
  EXPECT_LT(MillisSince(t0), 2000.0);
  EXPECT_EQ(p.initiator->state(), QpState::kError);
  r = ReadWr(lmr, 0, ToRemote(tmr), 0, 4096, 500);
  EXPECT_FALSE(p.initiator->PostSend({&r, 1}).ok()) << "posting on a failed QP must fail";
}

// A QP opened with caller_driven_receives, whose peer only SENDs (an RPC client's):
// a caller waiting for a message reads the socket itself and on_recv runs on the
// caller's thread, every message arriving meanwhile included; DriveReceives reports a
// timeout when nothing comes and kUnsupported on a QP not opened for it; the peer going
// away ends a waiting caller promptly and flushes the posted receives.
TEST_F(SoftTransportTest, CallerDrivenReceivesRunOnRecvOnTheCaller) {
  Open(100);
  if (IsSkipped()) return;
  constexpr uint32_t kSlots = 8, kLen = 64;
  Buffer& rbuf = rig_.NewBuffer(kSlots * kLen, 0);
  Buffer& sbuf = rig_.NewBuffer(kLen, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion rmr,
                             rig_.Register(rig_.initiator(), rbuf, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion smr, rig_.Register(rig_.target(), sbuf, kLocalWrite));

  std::mutex mu;
  std::vector<std::thread::id> handler_threads;  // under mu
  std::vector<uint8_t> first_bytes;              // under mu
  std::atomic<uint64_t> delivered{0}, flushed{0};
  QueuePair* qp = nullptr;
  ConnectArgs args;
  args.initiator_options.caller_driven_receives = true;
  args.initiator_options.on_recv = [&](const Completion& c) {
    if (!c.ok()) {
      ++flushed;
      return;
    }
    {
      std::lock_guard lock(mu);
      handler_threads.push_back(std::this_thread::get_id());
      first_bytes.push_back(rbuf.data()[c.context * kLen]);
    }
    WorkRequest again = RecvWr(rmr, c.context * kLen, kLen, c.context);
    (void)qp->PostRecv({&again, 1});
    ++delivered;
  };
  args.initiator_options.prepare = [&](QueuePair& q) -> Status {
    for (uint32_t i = 0; i < kSlots; ++i) {
      WorkRequest r = RecvWr(rmr, i * kLen, kLen, i);
      DPMFS_RETURN_IF_ERROR(q.PostRecv({&r, 1}));
    }
    return Status::OK();
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  qp = p.initiator.get();

  // Nothing sent: the wait times out.
  auto t0 = Clock::now();
  auto r = p.initiator->DriveReceives(std::chrono::milliseconds(30), std::chrono::milliseconds(5),
                                      [] { return false; });
  EXPECT_TRUE(r == QueuePair::DriveResult::kTimedOut || r == QueuePair::DriveResult::kBusy);
  EXPECT_LT(MillisSince(t0), 1000.0);

  // One message at a time, as an RPC caller waits for its reply. The first few may
  // find the rx thread still reading (kBusy) and be delivered by it.
  const uint64_t frames_before = soft::CallerReceivedFrames();
  uint64_t driven = 0;
  for (uint32_t i = 0; i < 200; ++i) {
    sbuf.data()[0] = static_cast<uint8_t>(i);
    WorkRequest s = SendWr(smr, 0, kLen, i);
    s.signaled = false;
    DPMFS_ASSERT_OK(p.target->PostSend({&s, 1}));
    const uint64_t want = i + 1;
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (delivered.load() < want && Clock::now() < deadline) {
      // Every other one polls first (the lone RPC caller's way), the rest sleep at once.
      auto poll_first = i % 2 ? std::chrono::microseconds(200) : std::chrono::microseconds(0);
      auto got = p.initiator->DriveReceives(std::chrono::milliseconds(100), poll_first,
                                            [&] { return delivered.load() >= want; });
      ASSERT_NE(got, QueuePair::DriveResult::kUnsupported) << "message " << i;
      if (got == QueuePair::DriveResult::kDone) ++driven;
      if (got == QueuePair::DriveResult::kBusy) std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(delivered.load(), want) << "message " << i << " never reached on_recv";
  }
  EXPECT_GE(driven, 190u) << "the waiting caller did not read the messages itself";
  EXPECT_GE(soft::CallerReceivedFrames() - frames_before, 190u);
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(first_bytes.size(), 200u);
    for (uint32_t i = 0; i < 200; ++i) EXPECT_EQ(first_bytes[i], static_cast<uint8_t>(i));
    size_t on_caller = 0;
    for (const auto& id : handler_threads) on_caller += id == std::this_thread::get_id();
    EXPECT_GE(on_caller, 190u) << "on_recv did not run on the waiting caller's thread";
  }

  // A QP not opened for it refuses at once.
  EXPECT_EQ(p.target->DriveReceives(std::chrono::milliseconds(10), Duration(0), [] { return false; }),
            QueuePair::DriveResult::kUnsupported);

  // The peer goes away while a caller waits: it returns promptly, the QP is failed and
  // its posted receives are flushed to on_recv.
  std::thread killer([&] {
    std::this_thread::sleep_for(50ms);
    p.target->Disconnect();
  });
  t0 = Clock::now();
  QueuePair::DriveResult last = QueuePair::DriveResult::kBusy;
  while (MillisSince(t0) < 5000.0) {
    last = p.initiator->DriveReceives(std::chrono::milliseconds(100), Duration(0),
                                      [] { return false; });
    if (last == QueuePair::DriveResult::kUnsupported) break;
  }
  killer.join();
  EXPECT_EQ(last, QueuePair::DriveResult::kUnsupported);
  EXPECT_LT(MillisSince(t0), 2000.0);
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (p.initiator->state() != QpState::kError && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(p.initiator->state(), QpState::kError);
  deadline = Clock::now() + std::chrono::seconds(5);
  while (flushed.load() < kSlots && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(flushed.load(), kSlots) << "the posted receives were not flushed";
}

class RawConnection {
 public:
  explicit RawConnection(const Endpoint& to) {
    fd_.reset(socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(to.port);
    inet_pton(AF_INET, to.host.c_str(), &a.sin_addr);
    if (fd_.valid() && connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      fd_.reset();
    }
    Init();
  }
  explicit RawConnection(int fd) : fd_(fd) { Init(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  bool ok() const { return fd_.valid(); }

  // Sends what it can within the send timeout (the peer may close on us).
  void Send(const std::vector<uint8_t>& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }
  void ShutdownWrite() { shutdown(fd_.get(), SHUT_WR); }

  // Reads exactly n bytes within `timeout`.
  bool RecvExact(void* dst, size_t n, Duration timeout) {
    auto deadline = Clock::now() + timeout;
    auto* p = static_cast<uint8_t*>(dst);
    size_t done = 0;
    while (done < n) {
      if (!WaitReadable(deadline)) return false;
      ssize_t r = recv(fd_.get(), p + done, n - done, 0);
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  }

  // Reads one frame (header + payload) within `timeout`.
  Result<std::pair<FrameHeader, std::vector<uint8_t>>> RecvFrame(Duration timeout = kWaitTimeout) {
    uint8_t raw[soft::kHeaderSize];
    if (!RecvExact(raw, sizeof raw, timeout)) return Status::Unavailable("no frame");
    auto h = soft::DecodeHeader(std::span<const uint8_t, soft::kHeaderSize>(raw));
    if (!h.ok()) return h.status();
    std::vector<uint8_t> payload(h->payload_len);
    if (!RecvExact(payload.data(), payload.size(), timeout)) return Status::Unavailable("payload");
    return std::make_pair(*h, std::move(payload));
  }

  // Plays the initiator's side of the handshake; true if the target accepted.
  bool Handshake() {
    Send(Frame(Header(FrameType::kConnect)));
    auto f = RecvFrame();
    return f.ok() && f->first.type == FrameType::kAccept;
  }

  // Whether the peer closes the connection (EOF or reset) within `timeout`; frames it
  // sends first are read and ignored.
  bool PeerCloses(Duration timeout) {
    auto deadline = Clock::now() + timeout;
    char buf[4096];
    while (WaitReadable(deadline)) {
      ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
      if (n == 0) return true;
      if (n < 0 && errno != EINTR && errno != EAGAIN) return true;  // reset
    }
    return false;
  }

 private:
  void Init() {
    if (!fd_.valid()) return;
    timeval tv{2, 0};
    setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  bool WaitReadable(Clock::time_point deadline) {
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_.get(), POLLIN, 0};
      int rc = poll(&pfd, 1, static_cast<int>(left.count()));
      if (rc > 0) return true;
      if (rc < 0 && errno != EINTR) return false;
    }
  }

  UniqueFd fd_;
};

// The soft listener with an accept loop, one properly connected QP (the bystander)
// and a region on the target, for feeding the target bad frames.
class SoftBadFrameTest : public SoftTransportTest {
 protected:
  void SetUp() override {
    Open(100);
    if (IsSkipped() || HasFatalFailure()) return;
    target_buf_ = &rig_.NewBuffer(1 << 20, 0);
    local_buf_ = &rig_.NewBuffer(1 << 20, 0);
    DPMFS_ASSERT_OK_AND_ASSIGN(tmr_, rig_.Register(rig_.target(), *target_buf_, kAllRemote));
    DPMFS_ASSERT_OK_AND_ASSIGN(lmr_, rig_.Register(rig_.initiator(), *local_buf_, kLocalWrite));
    loop_ = std::make_unique<AcceptLoop>(rig_.listener());
    ASSERT_NO_FATAL_FAILURE(ConnectGood(good_));
  }
  void TearDown() override {
    good_.reset();
    loop_.reset();
    SoftTransportTest::TearDown();
  }

  // Connects a QP and waits until the accept loop holds its target side, so that
  // accepted_count() is exact afterwards.
  void ConnectGood(std::unique_ptr<QueuePair>& qp) {
    size_t before = loop_->accepted_count();
    auto r = rig_.initiator().Connect(rig_.listener().local_endpoint(), {}, {}, kConnectTimeout);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    qp = std::move(r).value();
    ASSERT_NE(loop_->WaitAccepted(before + 1), nullptr) << "the accept loop lost the QP";
  }

  // The bystander QP, and a fresh one, both still move data correctly.
  void CheckGoodQpsWork(uint32_t seed) {
    ASSERT_NE(good_, nullptr);
    CheckQp(*good_, seed);
    std::unique_ptr<QueuePair> fresh;
    ASSERT_NO_FATAL_FAILURE(ConnectGood(fresh));
    CheckQp(*fresh, seed + 1);
  }

  void CheckQp(QueuePair& qp, uint32_t seed) {
    constexpr uint32_t kLen = 64 << 10;
    FillPattern(local_buf_->data(), kLen, seed);
    WorkRequest chain[] = {WriteWr(lmr_, 0, ToRemote(tmr_), seed % 8 * kLen, kLen, 1, false),
                           ReadWr(lmr_, kLen, ToRemote(tmr_), seed % 8 * kLen, kLen, 2)};
    DPMFS_ASSERT_OK(qp.PostSend(chain));
    auto c = CollectSend(qp, 1);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
    EXPECT_TRUE(BytesEqual(local_buf_->data() + kLen, local_buf_->data(), kLen));
  }

  // Sends `bytes` on a fresh raw connection (after a proper handshake if `handshake`),
  // half-closes if asked, and expects the target to close that connection.
  void ExpectClosed(const std::vector<uint8_t>& bytes, bool handshake, bool half_close) {
    RawConnection raw(rig_.listener().local_endpoint());
    ASSERT_TRUE(raw.ok()) << "cannot connect to the soft listener";
    QueuePair* accepted = nullptr;
    if (handshake) {
      size_t before = loop_->accepted_count();
      ASSERT_TRUE(raw.Handshake()) << "the target refused a valid CONNECT";
      accepted = loop_->WaitAccepted(before + 1);
      ASSERT_NE(accepted, nullptr);
    }
    raw.Send(bytes);
    if (half_close) raw.ShutdownWrite();
    EXPECT_TRUE(raw.PeerCloses(3s)) << "the target kept a bad connection open";
    if (accepted != nullptr) {
      EXPECT_EQ(accepted->state(), QpState::kError) << "the target QP of a bad connection";
    }
  }

  Buffer* target_buf_ = nullptr;
  Buffer* local_buf_ = nullptr;
  MemoryRegion tmr_, lmr_;
  std::unique_ptr<AcceptLoop> loop_;
  std::unique_ptr<QueuePair> good_;
};

// Connections that close without sending anything leave the target working.
TEST_F(SoftBadFrameTest, EmptyConnectionIsHarmless) {
  if (IsSkipped()) return;
  for (int i = 0; i < 5; ++i) {
    RawConnection raw(rig_.listener().local_endpoint());
    ASSERT_TRUE(raw.ok());
  }
  CheckGoodQpsWork(1);
}

// Random bytes instead of a CONNECT: the target closes that connection; others work.
TEST_F(SoftBadFrameTest, RandomBytesCloseOnlyThatConnection) {
  if (IsSkipped()) return;
  std::mt19937 rng(12345);
  for (size_t len : {1, 7, 64, 4096, 65536}) {
    SCOPED_TRACE("length " + std::to_string(len));
    std::vector<uint8_t> bytes(len);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    ExpectClosed(bytes, false, true);
  }
  CheckGoodQpsWork(2);
}

// 1 MiB of 0xFF, and of 0x00, before and after a handshake: closed, others unaffected.
TEST_F(SoftBadFrameTest, FloodsAreClosed) {
  if (IsSkipped()) return;
  for (bool handshake : {false, true}) {
    SCOPED_TRACE(handshake ? "after handshake" : "instead of CONNECT");
    ExpectClosed(std::vector<uint8_t>(1 << 20, 0xFF), handshake, false);
    ExpectClosed(std::vector<uint8_t>(1 << 20, 0x00), handshake, false);
  }
  CheckGoodQpsWork(3);
}

// A header cut short (then EOF), before and after the handshake: closed.
TEST_F(SoftBadFrameTest, TruncatedHeaderIsClosed) {
  if (IsSkipped()) return;
  auto frame = Frame(Header(FrameType::kWrite, 8, 8));
  frame.resize(soft::kHeaderSize / 2);
  ExpectClosed(frame, false, true);
  ExpectClosed(frame, true, true);
  CheckGoodQpsWork(4);
}

// Headers that fail validation are refused from the header alone (no half-close: the
// target must not wait for a payload it would never accept).
TEST_F(SoftBadFrameTest, InvalidHeadersAreClosed) {
  if (IsSkipped()) return;
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
  };
  std::vector<Case> cases;
  FrameHeader huge = Header(FrameType::kWrite, 0xFFFFFFFFu, 0xFFFFFFFFu);
  huge.rkey = tmr_.rkey;
  huge.remote_addr = reinterpret_cast<uint64_t>(tmr_.addr);
  cases.push_back({"WRITE of 4 GiB", Frame(huge)});
  cases.push_back({"payload_len != length", Frame(Header(FrameType::kWrite, 16, 8))});
  cases.push_back({"READ with payload", Frame(Header(FrameType::kRead, 8, 8))});
  cases.push_back({"unknown type 9", Frame(Header(static_cast<FrameType>(9)))});
  cases.push_back({"unknown type 255", Frame(Header(static_cast<FrameType>(255)))});
  auto bad_magic = Frame(Header(FrameType::kWrite, 8, 8));
  bad_magic[0] ^= 0xFF;
  cases.push_back({"bad magic", bad_magic});
  auto reserved = Frame(Header(FrameType::kWrite, 0, 0));
  reserved[6] = 1;
  cases.push_back({"reserved bits", reserved});
  FrameHeader flags = Header(FrameType::kWrite, 0, 0);
  flags.flags = 0x80;
  cases.push_back({"unknown flag", Frame(flags)});
  cases.push_back({"second CONNECT", Frame(Header(FrameType::kConnect))});
  cases.push_back({"ACK for nothing", Frame(Header(FrameType::kAck))});
  FrameHeader rr = Header(FrameType::kReadResponse, 64, 64);
  rr.seq = 1;
  cases.push_back({"READ response for nothing", Frame(rr, std::vector<uint8_t>(64, 0xEE))});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectClosed(c.bytes, true, false);
  }
  // Before a handshake too: a CONNECT whose private data is far too long, and a request.
  ExpectClosed(Frame(Header(FrameType::kConnect, 0x7FFFFFFF, 0)), false, false);
  ExpectClosed(Frame(Header(FrameType::kWrite, 8, 8), std::vector<uint8_t>(8, 1)), false, false);
  EXPECT_TRUE(AllBytesAre(target_buf_->data() + (512 << 10), 512 << 10, 0));
  EXPECT_TRUE(target_buf_->GuardsIntact());
  CheckGoodQpsWork(5);
}

// A well-formed WRITE frame whose range the target refuses: a NAK (remote access error)
// for its seq comes back, then the connection is closed; memory is untouched.
TEST_F(SoftBadFrameTest, RefusedWriteIsNakedAndClosed) {
  if (IsSkipped()) return;
  RawConnection raw(rig_.listener().local_endpoint());
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw.Handshake());
  FrameHeader h = Header(FrameType::kWrite, 64, 64);
  h.seq = 1;
  h.flags = soft::kFlagSignaled;
  h.rkey = tmr_.rkey;
  h.remote_addr = reinterpret_cast<uint64_t>(tmr_.addr) + tmr_.length - 32;  // crosses the end
  raw.Send(Frame(h, std::vector<uint8_t>(64, 0xEE)));
  auto f = raw.RecvFrame();
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->first.type, FrameType::kNak);
  EXPECT_EQ(f->first.seq, 1u);
  EXPECT_EQ(f->first.imm, static_cast<uint32_t>(CompletionStatus::kRemoteAccessError));
  EXPECT_TRUE(raw.PeerCloses(3s));
  EXPECT_TRUE(target_buf_->GuardsIntact());
  CheckGoodQpsWork(6);
}

// A peer that connects and then says nothing (or half a header) does not stall the
// listener: Accept still honours its own timeout, and others can connect meanwhile.
TEST_F(SoftBadFrameTest, SilentPeerDoesNotBlockAccept) {
  if (IsSkipped()) return;
  RawConnection silent(rig_.listener().local_endpoint());
  ASSERT_TRUE(silent.ok());
  RawConnection partial(rig_.listener().local_endpoint());
  ASSERT_TRUE(partial.ok());
  partial.Send({0x44, 0x50});  // the start of a header, then silence
  auto t0 = Clock::now();
  auto r = rig_.initiator().Connect(rig_.listener().local_endpoint(), {}, {}, 2s);
  EXPECT_TRUE(r.ok()) << "a silent peer blocked a proper connection for " << MillisSince(t0)
                      << " ms: " << r.status().ToString();
  if (r.ok()) CheckQp(*r.value(), 7);
}

// Accept(timeout) returns within about its timeout even when a connected peer never
// sends its CONNECT.
TEST_F(SoftTransportTest, AcceptHonoursItsTimeoutWithASilentPeer) {
  Open(100);
  if (IsSkipped()) return;
  RawConnection silent(rig_.listener().local_endpoint());
  ASSERT_TRUE(silent.ok());
  auto t0 = Clock::now();
  auto a = rig_.listener().Accept(AcceptAll, {}, 200ms);
  double ms = MillisSince(t0);
  EXPECT_FALSE(a.ok());
  EXPECT_LT(ms, 1000.0) << "Accept(200 ms) took " << ms << " ms: " << a.status().ToString();
}

// --- a fake target feeding a real initiator bad responses ------------------------------

// A plain TCP listener that plays the target's side of the handshake by hand.
class FakeTarget {
 public:
  FakeTarget() {
    lfd_.reset(socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof(a);
    if (bind(lfd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(lfd_.get(), 4) != 0 ||
        getsockname(lfd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "fake target cannot listen";
    }
    port_ = ntohs(a.sin_port);
  }
  Endpoint endpoint() const { return Endpoint{"127.0.0.1", port_}; }

  // Connects `dev` to this fake and accepts it; returns the initiator QP and the raw side.
  std::unique_ptr<QueuePair> ConnectFrom(Device& dev, std::unique_ptr<RawConnection>* raw) {
    auto connecting = std::async(std::launch::async,
                                 [&] { return dev.Connect(endpoint(), {}, {}, kConnectTimeout); });
    pollfd pfd{lfd_.get(), POLLIN, 0};
    if (poll(&pfd, 1, 5000) == 1) {
      *raw = std::make_unique<RawConnection>(accept(lfd_.get(), nullptr, nullptr));
      auto f = (*raw)->RecvFrame();
      if (f.ok() && f->first.type == FrameType::kConnect) {
        (*raw)->Send(Frame(Header(FrameType::kAccept)));
      }
    }
    auto r = connecting.get();
    if (!r.ok()) {
      ADD_FAILURE() << "connect to the fake target: " << r.status().ToString();
      return nullptr;
    }
    return std::move(r).value();
  }

 private:
  UniqueFd lfd_;
  uint16_t port_ = 0;
};

// A READ response longer than the READ posted: the initiator does not write past its
// buffer, the READ completes with an error and the QP goes to kError.
TEST_F(SoftTransportTest, OversizedReadResponseDoesNotOverflow) {
  Open(100);
  if (IsSkipped()) return;
  Buffer& local = rig_.NewBuffer(64, 0x22);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  FakeTarget fake;
  std::unique_ptr<RawConnection> raw;
  std::unique_ptr<QueuePair> qp = fake.ConnectFrom(rig_.initiator(), &raw);
  ASSERT_NE(qp, nullptr);
  RemoteRegion remote{0x10000, 4096, 1234};
  WorkRequest r = ReadWr(lmr, 0, remote, 0, 64, 1);
  DPMFS_ASSERT_OK(qp->PostSend({&r, 1}));
  auto req = raw->RecvFrame();
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  ASSERT_EQ(req->first.type, FrameType::kRead);
  FrameHeader resp = Header(FrameType::kReadResponse, 8192, 8192);
  resp.seq = req->first.seq;
  raw->Send(Frame(resp, std::vector<uint8_t>(8192, 0xEE)));
  auto c = CollectSend(*qp, 1);
  ASSERT_EQ(c.size(), 1u) << "the READ never completed";
  EXPECT_FALSE(c[0].ok()) << Describe(c[0]);
  EXPECT_TRUE(AllBytesAre(local.data(), 64, 0x22)) << "a bad response was placed";
  EXPECT_TRUE(local.GuardsIntact()) << "READ response overflowed the local buffer";
  EXPECT_EQ(qp->state(), QpState::kError);
}

// An ACK that skips an outstanding READ (whose response never came) must not complete
// that READ with success: its buffer holds no data.
TEST_F(SoftTransportTest, AckSkippingAReadDoesNotCompleteItSuccessfully) {
  Open(100);
  if (IsSkipped()) return;
  Buffer& local = rig_.NewBuffer(128, 0x22);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  FakeTarget fake;
  std::unique_ptr<RawConnection> raw;
  std::unique_ptr<QueuePair> qp = fake.ConnectFrom(rig_.initiator(), &raw);
  ASSERT_NE(qp, nullptr);
  RemoteRegion remote{0x10000, 4096, 1234};
  WorkRequest chain[] = {ReadWr(lmr, 0, remote, 0, 64, 1), WriteWr(lmr, 64, remote, 64, 64, 2)};
  DPMFS_ASSERT_OK(qp->PostSend(chain));
  auto rd = raw->RecvFrame();
  auto wr = raw->RecvFrame();
  ASSERT_TRUE(rd.ok() && wr.ok());
  ASSERT_EQ(rd->first.type, FrameType::kRead);
  ASSERT_EQ(wr->first.type, FrameType::kWrite);
  FrameHeader ack = Header(FrameType::kAck);
  ack.seq = wr->first.seq;
  raw->Send(Frame(ack));
  auto c = CollectSend(*qp, 2, 2s);
  ASSERT_GE(c.size(), 1u) << "nothing completed (and no error either)";
  EXPECT_EQ(c[0].context, 1u);
  EXPECT_FALSE(c[0].ok()) << "READ completed with success without its response: " << Describe(c[0]);
}

}  // namespace
}  // namespace dpmfs::transport

namespace dpmfs::transport {
namespace {

using namespace testutil;  // NOLINT(build/namespaces)

// Every drain gives its bytes back to the NIC buffer's budget, also the drains that
// READs cause: after WRITE+READ traffic far beyond the budget, a lone WRITE still
// waits in the volatile buffer (a leaked budget would place it at once, silently
// removing the hazard the persist methods exist to close).
TEST(SoftBufferBudgetTest, ReadDrainsReleaseTheBudget) {
  Rig rig;
  DeviceOptions options;
  options.backend = Backend::kSoft;
  options.soft_drain_delay_us = 200000;
  options.soft_buffer_bytes = 256 * 1024;
  DPMFS_ASSERT_OK(rig.Open(options, Endpoint{"127.0.0.1", 0}));
  Buffer& target = rig.NewBuffer(4096, 0);
  Buffer& local = rig.NewBuffer(8192, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig.Register(rig.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig.Register(rig.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig.Connect());
  for (uint32_t i = 0; i < 200; ++i) {  // 800 KiB through a 256 KiB budget
    FillPattern(local.data(), 4096, 10 + i);
    WorkRequest chain[2] = {WriteWr(lmr, 0, ToRemote(tmr), 0, 4096, 2 * i),
                            ReadWr(lmr, 4096, ToRemote(tmr), 0, 4096, 2 * i + 1)};
    chain[0].signaled = false;
    DPMFS_ASSERT_OK(p.initiator->PostSend(chain));
    auto c = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c.size(), 1u);
    ASSERT_TRUE(c[0].ok()) << Describe(c[0]);
  }
  FillPattern(local.data(), 4096, 7);
  WorkRequest w = WriteWr(lmr, 0, ToRemote(tmr), 0, 4096, 1000);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&w, 1}));
  auto c = CollectSend(*p.initiator, 1);
  ASSERT_EQ(c.size(), 1u);
  ASSERT_TRUE(c[0].ok()) << Describe(c[0]);
  EXPECT_FALSE(BytesEqual(Snapshot(target.data(), 4096).data(), local.data(), 4096))
      << "the lone WRITE reached memory at once: the NIC buffer budget leaked";
  // The queue pairs before their devices (the transport's contract; ASan found the
  // receive thread of a QP still reading its freed device here).
  p = {};
  rig.Close();
}

// A large WRITE is read in pieces (memory committed only as bytes arrive); placed
// pieces go back to the device's pool and the next WRITE takes them from there. When
// each piece went back to malloc instead, glibc returned its pages and faulted them in
// again for the next one: 1 MiB WRITEs ran at a tenth of their speed.
TEST(SoftPieceBuffersTest, PlacedPiecesAreReusedAndThePoolStaysBounded) {
  constexpr uint32_t kPiece = soft::PieceBufferPool::kPieceSize;
  constexpr size_t kKeep = 24;
  std::atomic<uint64_t> buffered{0};
  auto pool = std::make_shared<soft::PieceBufferPool>(kKeep);
  auto pending = std::make_shared<soft::PendingWrites>(&buffered, pool);
  std::vector<uint8_t> target(16 * size_t{kPiece});
  // One 1 MiB WRITE as the rx thread buffers it: 16 pieces, then placed by a READ.
  auto write_one_mib = [&](uint8_t fill) {
    std::vector<const uint8_t*> used;
    for (uint32_t i = 0; i < 16; ++i) {
      uint32_t capacity = 0;
      auto data = pending->TakeBuffer(kPiece, &capacity);
      EXPECT_EQ(capacity, kPiece);
      std::memset(data.get(), fill, kPiece);
      used.push_back(data.get());
      buffered += capacity;
      MutexLock lock(pending->mu);
      pending->entries.push_back(soft::PendingWrites::Entry{
          target.data() + size_t{i} * kPiece, std::move(data), kPiece, soft::Clock::now(), capacity});
    }
    pending->Drain(true, soft::Clock::now());
    return used;
  };
  std::vector<const uint8_t*> first = write_one_mib(1);
  EXPECT_EQ(pool->parked(), 16u) << "placed pieces were freed, not parked for the next WRITE";
  std::vector<const uint8_t*> second = write_one_mib(2);
  std::sort(first.begin(), first.end());
  for (const uint8_t* p : second) {
    EXPECT_TRUE(std::binary_search(first.begin(), first.end(), p))
        << "the second WRITE allocated a new piece instead of reusing a parked one";
  }
  EXPECT_EQ(target.front(), 2);
  EXPECT_EQ(target.back(), 2);
  EXPECT_EQ(buffered.load(), 0u) << "placing the pieces must release their budget";
  // Two WRITEs in flight at once need 32 pieces; only kKeep stay parked afterwards.
  std::vector<std::unique_ptr<uint8_t[]>> burst;
  for (int i = 0; i < 32; ++i) burst.push_back(pool->Take());
  for (auto& b : burst) pool->Give(std::move(b));
  EXPECT_EQ(pool->parked(), kKeep);
}

}  // namespace
}  // namespace dpmfs::transport
