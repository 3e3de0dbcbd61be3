// Conformance suite of the transport interface (transport/transport.h): every case runs
// on both backends (soft, verbs) and checks a property that code above the transport
// relies on. A backend that cannot run on this machine (no RDMA device for verbs) is
// skipped with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "transport/transport.h"
#include "tests/transport/transport_test_util.h"

namespace dpmfs::transport {

// Lets gtest print the parameter by name ("soft") in failure messages.
void PrintTo(Backend b, std::ostream* os) { *os << BackendName(b); }

namespace {

using namespace testutil;  // NOLINT(build/namespaces)

class TransportConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    const Backend backend = GetParam();
    host_ = "127.0.0.1";
    if (backend == Backend::kVerbs) {
      host_ = NonLoopbackIpv4();
      if (host_.empty()) {
        GTEST_SKIP() << "verbs backend: this host has no non-loopback IPv4 address "
                        "(rdma_cm cannot use lo)";
      }
    }
    DeviceOptions options;
    options.backend = backend;
    Status st = rig_.Open(options, Endpoint{host_, 0});
    if (IsUnavailableHere(st))
      GTEST_SKIP() << BackendName(backend) << " backend: " << st.ToString();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void TearDown() override { rig_.Close(); }

  bool soft() const { return GetParam() == Backend::kSoft; }

  // WRITE `len` pattern bytes at `remote_off` and READ them back on `qp` (one chain);
  // checks the READ's data. Used to show a QP still works.
  void RoundTrip(QueuePair& qp, const MemoryRegion& local, const RemoteRegion& remote,
                 size_t remote_off, uint32_t len, uint32_t seed) {
    FillPattern(At(local, 0), len, seed);
    std::memset(At(local, len), 0, len);
    WorkRequest chain[] = {WriteWr(local, 0, remote, remote_off, len, 9001, false),
                           ReadWr(local, len, remote, remote_off, len, 9002)};
    DPMFS_ASSERT_OK(qp.PostSend(chain));
    auto c = CollectSend(qp, 1);
    ASSERT_EQ(c.size(), 1u) << "no completion for WRITE+READ";
    EXPECT_EQ(c[0].context, 9002u);
    EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
    EXPECT_TRUE(BytesEqual(At(local, len), At(local, 0), len));
  }

  enum class Violation {
    kWrongRkey,
    kPastEnd,
    kBeforeStart,
    kWriteNoRemoteWrite,
    kReadNoRemoteRead
  };
  void CheckAccessViolation(Violation v);
  void CheckLocalViolation(bool read, int kind);
  void CheckPeerLoss(bool destroy_target);

  Rig rig_;
  std::string host_;
};

// --- data movement ----------------------------------------------------------------------

// WRITE then READ of the same range on one QP (the READ posted without waiting for the
// WRITE): the READ returns the written bytes and target memory holds them; 1 B to 16 MiB,
// at an unaligned offset, with nothing written outside the range.
TEST_P(TransportConformanceTest, ReadAfterWriteOnOneQpSeesTheBytes) {
  constexpr size_t kMax = 16 << 20;
  constexpr size_t kOff = 7;
  Buffer& target = rig_.NewBuffer(kMax + 64, 0x11);
  Buffer& local = rig_.NewBuffer(2 * kMax, 0x22);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  uint64_t ctx = 1;
  for (uint32_t size : {1u, 4096u, 1u << 20, 16u << 20}) {
    SCOPED_TRACE("size " + std::to_string(size));
    FillPattern(local.data(), size, size);
    std::memset(local.data() + kMax, 0x22, size);
    WorkRequest w = WriteWr(lmr, 0, ToRemote(tmr), kOff, size, ctx);
    WorkRequest r = ReadWr(lmr, kMax, ToRemote(tmr), kOff, size, ctx + 1);
    DPMFS_ASSERT_OK(p.initiator->PostSend({&w, 1}));
    DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
    auto c = CollectSend(*p.initiator, 2);
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].context, ctx);
    EXPECT_EQ(c[0].opcode, Opcode::kWrite);
    EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
    EXPECT_EQ(c[1].context, ctx + 1);
    EXPECT_EQ(c[1].opcode, Opcode::kRead);
    EXPECT_TRUE(c[1].ok()) << Describe(c[1]);
    EXPECT_TRUE(BytesEqual(local.data() + kMax, local.data(), size)) << "READ data";
    EXPECT_TRUE(BytesEqual(target.data() + kOff, local.data(), size)) << "target memory";
    EXPECT_EQ(target.data()[kOff - 1], 0x11) << "byte before the range written";
    EXPECT_EQ(target.data()[kOff + size], 0x11) << "byte after the range written";
    ctx += 2;
  }
  EXPECT_TRUE(target.GuardsIntact());
  EXPECT_TRUE(local.GuardsIntact());
  EXPECT_EQ(p.initiator->state(), QpState::kConnected);
}

// WRITE (unsignaled) + READ (signaled) posted as one chain: exactly one completion, the
// READ's, and when it arrives the WRITE's data is in target memory (persist method `read`).
TEST_P(TransportConformanceTest, UnsignaledWriteSignaledReadChainGivesOneCompletion) {
  constexpr uint32_t kLen = 64 << 10;
  Buffer& target = rig_.NewBuffer(kLen, 0);
  Buffer& local = rig_.NewBuffer(kLen + 8, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  for (uint32_t round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    FillPattern(local.data(), kLen, 40 + round);
    WorkRequest chain[] = {WriteWr(lmr, 0, ToRemote(tmr), 0, kLen, 100 + 2 * round, false),
                           ReadWr(lmr, kLen, ToRemote(tmr), kLen - 8, 8, 101 + 2 * round)};
    DPMFS_ASSERT_OK(p.initiator->PostSend(chain));
    auto c = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c.size(), 1u) << "no completion for the chain";
    EXPECT_EQ(c[0].context, 101u + 2 * round) << "the completion must be the READ's";
    EXPECT_EQ(c[0].opcode, Opcode::kRead);
    EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
    EXPECT_TRUE(BytesEqual(target.data(), local.data(), kLen)) << "WRITE not in target memory";
    EXPECT_TRUE(BytesEqual(local.data() + kLen, local.data() + kLen - 8, 8)) << "READ data";
    Completion extra;
    EXPECT_EQ(p.initiator->WaitSend({&extra, 1}, kQuietWindow), 0u)
        << "unsignaled WRITE produced a completion: " << Describe(extra);
  }
}

// Many WRITEs of different values to one address, over several doorbells, then a READ:
// the READ and target memory hold the last value (requests execute in posting order).
TEST_P(TransportConformanceTest, WritesToOneAddressExecuteInPostingOrder) {
  constexpr int kN = 200;
  Buffer& target = rig_.NewBuffer(4096, 0);
  Buffer& local = rig_.NewBuffer((kN + 1) * 8, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  auto value = [](int i) { return 0x5151000000000000ull + static_cast<uint64_t>(i) * 0x10001; };
  for (int i = 0; i < kN; ++i) {
    uint64_t v = value(i);
    std::memcpy(local.data() + 8 * i, &v, 8);
  }
  std::vector<WorkRequest> wrs;
  for (int i = 0; i < kN; ++i) wrs.push_back(WriteWr(lmr, 8 * i, ToRemote(tmr), 16, 8, i, false));
  for (int i = 0; i < kN; i += 10) {
    DPMFS_ASSERT_OK(p.initiator->PostSend(std::span(wrs).subspan(i, 10)));
  }
  WorkRequest r = ReadWr(lmr, 8 * kN, ToRemote(tmr), 16, 8, 7777);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
  auto c = CollectSend(*p.initiator, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].context, 7777u);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  uint64_t got = 0;
  std::memcpy(&got, local.data() + 8 * kN, 8);
  EXPECT_EQ(got, value(kN - 1)) << "READ did not return the last value written";
  std::memcpy(&got, target.data() + 16, 8);
  EXPECT_EQ(got, value(kN - 1)) << "target memory does not hold the last value written";
}

// Signaled requests of one QP complete in posting order, each with its own context and
// opcode, across chains of mixed WRITE/READ; unsignaled ones in between produce nothing.
TEST_P(TransportConformanceTest, CompletionsComeBackInPostingOrderWithContexts) {
  constexpr int kN = 150;
  constexpr uint32_t kSlot = 256;
  Buffer& target = rig_.NewBuffer(kN * kSlot, 0);
  Buffer& local = rig_.NewBuffer(kN * kSlot, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(local.data(), local.size(), 3);
  std::vector<WorkRequest> wrs;
  std::vector<std::pair<uint64_t, Opcode>> expected;
  for (int i = 0; i < kN; ++i) {
    bool signaled = i % 3 != 1 || i == kN - 1;
    uint64_t ctx = 0xC000000000ull + 7919ull * i;
    uint32_t len = 1 + (i * 37) % kSlot;
    WorkRequest wr = i % 2 == 0
                         ? WriteWr(lmr, i * kSlot, ToRemote(tmr), i * kSlot, len, ctx, signaled)
                         : ReadWr(lmr, i * kSlot, ToRemote(tmr), i * kSlot, len, ctx, signaled);
    wrs.push_back(wr);
    if (signaled) expected.push_back({ctx, wr.opcode});
  }
  for (size_t i = 0, n = 1; i < wrs.size(); i += n, n = n % 5 + 1) {
    size_t len = std::min(n, wrs.size() - i);
    DPMFS_ASSERT_OK(p.initiator->PostSend(std::span(wrs).subspan(i, len)));
  }
  auto c = CollectSend(*p.initiator, expected.size());
  ASSERT_EQ(c.size(), expected.size());
  for (size_t i = 0; i < c.size(); ++i) {
    EXPECT_EQ(c[i].context, expected[i].first) << "completion " << i << " out of order";
    EXPECT_EQ(c[i].opcode, expected[i].second) << "completion " << i;
    EXPECT_TRUE(c[i].ok()) << Describe(c[i]);
  }
  Completion extra;
  EXPECT_EQ(p.initiator->WaitSend({&extra, 1}, kQuietWindow), 0u) << Describe(extra);
}

// WRITE_WITH_IMM: the target gets a kRecvWithImm completion (the posted RECV's context)
// with the immediate and byte_len = bytes written; by then that write's data and the
// data of the QP's earlier WRITEs are in target memory; the RECV buffer is not written.
TEST_P(TransportConformanceTest, WriteWithImmDeliversImmediateAfterEarlierWrites) {
  constexpr uint32_t kA = 4096, kB = 1 << 20, kC = 512;
  constexpr size_t kOffB = 8192, kOffC = kOffB + kB + 100;
  Buffer& target = rig_.NewBuffer(kOffC + kC + 4096, 0);
  Buffer& recv = rig_.NewBuffer(64, 0x33);
  Buffer& local = rig_.NewBuffer(kA + kB + kC, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion rmr, rig_.Register(rig_.target(), recv, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  ConnectArgs args;
  args.target_options.prepare = [rmr](QueuePair& qp) {
    WorkRequest r = RecvWr(rmr, 0, 64, 4242);
    return qp.PostRecv({&r, 1});
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  FillPattern(local.data(), local.size(), 77);
  const uint32_t kImm = 0xC0FFEE42;
  WorkRequest chain[] = {WriteWr(lmr, 0, ToRemote(tmr), 0, kA, 1, false),
                         WriteWr(lmr, kA, ToRemote(tmr), kOffB, kB, 2, false),
                         WriteImmWr(lmr, kA + kB, ToRemote(tmr), kOffC, kC, kImm, 3)};
  DPMFS_ASSERT_OK(p.initiator->PostSend(chain));
  auto rc = CollectRecv(*p.target, 1);
  ASSERT_EQ(rc.size(), 1u) << "no receive completion for WRITE_WITH_IMM";
  // Check memory first: this is the moment the target's CPU would act on it.
  EXPECT_TRUE(BytesEqual(target.data(), local.data(), kA)) << "earlier WRITE A not visible";
  EXPECT_TRUE(BytesEqual(target.data() + kOffB, local.data() + kA, kB)) << "earlier WRITE B";
  EXPECT_TRUE(BytesEqual(target.data() + kOffC, local.data() + kA + kB, kC))
      << "WRITE_WITH_IMM data";
  EXPECT_EQ(rc[0].context, 4242u);
  EXPECT_EQ(rc[0].opcode, Opcode::kRecvWithImm);
  EXPECT_TRUE(rc[0].ok()) << Describe(rc[0]);
  EXPECT_TRUE(rc[0].has_imm);
  EXPECT_EQ(rc[0].imm, kImm);
  EXPECT_EQ(rc[0].byte_len, kC) << "byte_len of a RECV_RDMA_WITH_IMM is the length written";
  EXPECT_TRUE(AllBytesAre(recv.data(), 64, 0x33)) << "WRITE_WITH_IMM wrote into the RECV buffer";
  auto sc = CollectSend(*p.initiator, 1);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].context, 3u);
  EXPECT_EQ(sc[0].opcode, Opcode::kWriteWithImm);
  EXPECT_TRUE(sc[0].ok()) << Describe(sc[0]);
  EXPECT_TRUE(target.GuardsIntact());
}

// SEND/RECV both ways: the payload lands in the posted RECV buffers in order, byte_len is
// the payload length, nothing past it is written, no immediate is reported.
TEST_P(TransportConformanceTest, SendLandsInPostedRecvBuffers) {
  Buffer& trecv = rig_.NewBuffer(2 * 4096, 0x44);
  Buffer& tsend = rig_.NewBuffer(4096, 0);
  Buffer& irecv = rig_.NewBuffer(4096, 0x55);
  Buffer& isend = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion trmr, rig_.Register(rig_.target(), trecv, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tsmr, rig_.Register(rig_.target(), tsend, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion irmr,
                             rig_.Register(rig_.initiator(), irecv, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion ismr,
                             rig_.Register(rig_.initiator(), isend, kLocalWrite));
  ConnectArgs args;
  // Target RECVs posted from the accept handler, initiator RECVs from prepare.
  args.handler = [trmr](std::span<const uint8_t>, QueuePair& qp) -> Result<std::vector<uint8_t>> {
    WorkRequest r[] = {RecvWr(trmr, 0, 4096, 100), RecvWr(trmr, 4096, 4096, 101)};
    DPMFS_RETURN_IF_ERROR(qp.PostRecv(r));
    return std::vector<uint8_t>{};
  };
  args.initiator_options.prepare = [irmr](QueuePair& qp) {
    WorkRequest r = RecvWr(irmr, 0, 4096, 200);
    return qp.PostRecv({&r, 1});
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  FillPattern(isend.data(), 4096, 5);
  WorkRequest sends[] = {SendWr(ismr, 0, 1000, 1), SendWr(ismr, 1000, 1, 2)};
  DPMFS_ASSERT_OK(p.initiator->PostSend(sends));
  auto rc = CollectRecv(*p.target, 2);
  ASSERT_EQ(rc.size(), 2u);
  EXPECT_EQ(rc[0].context, 100u);
  EXPECT_EQ(rc[0].opcode, Opcode::kRecv);
  EXPECT_TRUE(rc[0].ok()) << Describe(rc[0]);
  EXPECT_EQ(rc[0].byte_len, 1000u);
  EXPECT_FALSE(rc[0].has_imm);
  EXPECT_EQ(rc[1].context, 101u);
  EXPECT_TRUE(rc[1].ok()) << Describe(rc[1]);
  EXPECT_EQ(rc[1].byte_len, 1u);
  EXPECT_TRUE(BytesEqual(trecv.data(), isend.data(), 1000));
  EXPECT_TRUE(AllBytesAre(trecv.data() + 1000, 4096 - 1000, 0x44)) << "written past the payload";
  EXPECT_EQ(trecv.data()[4096], isend.data()[1000]);
  EXPECT_TRUE(AllBytesAre(trecv.data() + 4097, 4095, 0x44));
  auto sc = CollectSend(*p.initiator, 2);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].context, 1u);
  EXPECT_EQ(sc[0].opcode, Opcode::kSend);
  EXPECT_TRUE(sc[0].ok()) << Describe(sc[0]);
  EXPECT_EQ(sc[1].context, 2u);
  EXPECT_TRUE(sc[1].ok()) << Describe(sc[1]);

  // The reply direction (target -> initiator), as the `imm` and `rpc` methods use it.
  FillPattern(tsend.data(), 4096, 6);
  WorkRequest reply = SendWr(tsmr, 0, 4096, 3);
  DPMFS_ASSERT_OK(p.target->PostSend({&reply, 1}));
  auto rc2 = CollectRecv(*p.initiator, 1);
  ASSERT_EQ(rc2.size(), 1u);
  EXPECT_EQ(rc2[0].context, 200u);
  EXPECT_TRUE(rc2[0].ok()) << Describe(rc2[0]);
  EXPECT_EQ(rc2[0].byte_len, 4096u);
  EXPECT_TRUE(BytesEqual(irecv.data(), tsend.data(), 4096));
  auto sc2 = CollectSend(*p.target, 1);
  ASSERT_EQ(sc2.size(), 1u);
  EXPECT_TRUE(sc2[0].ok()) << Describe(sc2[0]);
  EXPECT_TRUE(trecv.GuardsIntact());
  EXPECT_TRUE(irecv.GuardsIntact());
}

// A SEND larger than the posted RECV: the receiver's completion is kLocalLengthError,
// nothing is written past the posted buffer, and the sender gets an error completion.
TEST_P(TransportConformanceTest, RecvTooSmallIsLocalLengthError) {
  Buffer& trecv = rig_.NewBuffer(4096, 0x44);
  Buffer& isend = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion trmr, rig_.Register(rig_.target(), trecv, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion ismr,
                             rig_.Register(rig_.initiator(), isend, kLocalWrite));
  ConnectArgs args;
  args.target_options.prepare = [trmr](QueuePair& qp) {
    WorkRequest r = RecvWr(trmr, 0, 16, 300);
    return qp.PostRecv({&r, 1});
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  FillPattern(isend.data(), 4096, 8);
  WorkRequest s = SendWr(ismr, 0, 100, 4);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&s, 1}));
  auto rc = CollectRecv(*p.target, 1);
  ASSERT_EQ(rc.size(), 1u) << "the receiver got no completion";
  EXPECT_EQ(rc[0].context, 300u);
  EXPECT_EQ(rc[0].status, CompletionStatus::kLocalLengthError) << Describe(rc[0]);
  EXPECT_TRUE(AllBytesAre(trecv.data() + 16, 4096 - 16, 0x44)) << "written past the RECV buffer";
  auto sc = CollectSend(*p.initiator, 1);
  ASSERT_EQ(sc.size(), 1u) << "the sender got no completion";
  EXPECT_EQ(sc[0].context, 4u);
  EXPECT_FALSE(sc[0].ok()) << "a SEND the receiver could not take succeeded";
  EXPECT_TRUE(trecv.GuardsIntact());
}

// SEND, and WRITE_WITH_IMM, with no RECV posted at the target: the sender gets a
// kRnrRetryExceeded completion (soft: at once) and its QP goes to the error state.
TEST_P(TransportConformanceTest, SendWithoutPostedRecvIsRnrError) {
  Buffer& target = rig_.NewBuffer(4096, 0);
  Buffer& local = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  for (Opcode op : {Opcode::kSend, Opcode::kWriteWithImm}) {
    SCOPED_TRACE(std::string(OpcodeName(op)));
    DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
    WorkRequest wr = op == Opcode::kSend ? SendWr(lmr, 0, 64, 5)
                                         : WriteImmWr(lmr, 0, ToRemote(tmr), 0, 64, 1, 5);
    auto t0 = Clock::now();
    DPMFS_ASSERT_OK(p.initiator->PostSend({&wr, 1}));
    auto c = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c.size(), 1u) << "no completion: the sender hangs on a missing RECV";
    EXPECT_EQ(c[0].context, 5u);
    EXPECT_EQ(c[0].status, CompletionStatus::kRnrRetryExceeded) << Describe(c[0]);
    if (soft()) {
      EXPECT_LT(MillisSince(t0), 1000.0) << "soft must report RNR at once";
    }
    EXPECT_EQ(p.initiator->state(), QpState::kError);
  }
}

// --- errors -----------------------------------------------------------------------------

void TransportConformanceTest::CheckAccessViolation(Violation v) {
  uint32_t access = kAllRemote;
  if (v == Violation::kWriteNoRemoteWrite) access = kLocalWrite | kRemoteRead;
  if (v == Violation::kReadNoRemoteRead) access = kLocalWrite | kRemoteWrite;
  Buffer& target = rig_.NewBuffer(4096, 0x11);
  Buffer& good = rig_.NewBuffer(4096, 0x12);
  Buffer& local = rig_.NewBuffer(8192, 0x22);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, access));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion gmr, rig_.Register(rig_.target(), good, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  FillPattern(local.data(), 4096, 9);
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());

  RemoteRegion remote = ToRemote(tmr);
  WorkRequest bad = WriteWr(lmr, 0, remote, 0, 64, 66);
  switch (v) {
    case Violation::kWrongRkey: {
      uint32_t rkey = tmr.rkey ^ 0x80000001u;
      while (rkey == tmr.rkey || rkey == gmr.rkey) ++rkey;
      bad.rkey = rkey;
      break;
    }
    case Violation::kPastEnd:
      bad.remote_addr = remote.addr + 4096 - 32;
      break;
    case Violation::kBeforeStart:
      bad.remote_addr = remote.addr - 32;
      break;
    case Violation::kWriteNoRemoteWrite:
      break;
    case Violation::kReadNoRemoteRead:
      bad = ReadWr(lmr, 4096, remote, 0, 64, 66);
      break;
  }
  DPMFS_ASSERT_OK(p.initiator->PostSend({&bad, 1}));
  auto c = CollectSend(*p.initiator, 1);
  ASSERT_EQ(c.size(), 1u) << "no completion for a refused request";
  EXPECT_EQ(c[0].context, 66u);
  EXPECT_EQ(c[0].status, CompletionStatus::kRemoteAccessError) << Describe(c[0]);
  EXPECT_EQ(p.initiator->state(), QpState::kError);

  // Later posts fail, or complete with kFlushed without executing.
  WorkRequest later = WriteWr(lmr, 0, ToRemote(gmr), 0, 64, 67);
  Status st = p.initiator->PostSend({&later, 1});
  if (st.ok()) {
    auto c2 = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c2.size(), 1u) << "a request posted in the error state never completed";
    EXPECT_EQ(c2[0].context, 67u);
    EXPECT_EQ(c2[0].status, CompletionStatus::kFlushed) << Describe(c2[0]);
  }
  EXPECT_TRUE(AllBytesAre(good.data(), 4096, 0x12)) << "a request after the error executed";

  // Nothing was written at the target, inside the region or around it.
  EXPECT_TRUE(AllBytesAre(target.data(), 4096, 0x11)) << "refused request wrote the region";
  EXPECT_TRUE(target.GuardsIntact()) << "refused request wrote outside the region";
  EXPECT_TRUE(AllBytesAre(local.data() + 4096, 4096, 0x22)) << "refused READ returned data";

  // A second QP to the same target works.
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p2, rig_.Connect());
  RoundTrip(*p2.initiator, lmr, ToRemote(gmr), 128, 512, 10);
  EXPECT_TRUE(BytesEqual(good.data() + 128, local.data(), 512));
}

// A WRITE with an rkey the target never issued: kRemoteAccessError, QP in error, nothing
// written; another QP to the target keeps working.
TEST_P(TransportConformanceTest, WrongRkeyIsRemoteAccessError) {
  CheckAccessViolation(Violation::kWrongRkey);
}
// A WRITE crossing the end of the region: refused as a whole, guard bytes intact.
TEST_P(TransportConformanceTest, WritePastRegionEndIsRemoteAccessError) {
  CheckAccessViolation(Violation::kPastEnd);
}
// A WRITE starting before the region: refused, guard bytes intact.
TEST_P(TransportConformanceTest, WriteBeforeRegionStartIsRemoteAccessError) {
  CheckAccessViolation(Violation::kBeforeStart);
}
// A WRITE to a region registered without kRemoteWrite: refused, memory unchanged.
TEST_P(TransportConformanceTest, WriteWithoutRemoteWriteAccessIsRemoteAccessError) {
  CheckAccessViolation(Violation::kWriteNoRemoteWrite);
}
// A READ of a region registered without kRemoteRead: refused, no data returned.
TEST_P(TransportConformanceTest, ReadWithoutRemoteReadAccessIsRemoteAccessError) {
  CheckAccessViolation(Violation::kReadNoRemoteRead);
}

// An unsignaled request that fails still produces its error completion; the signaled
// request after it in the chain completes kFlushed and does not execute.
TEST_P(TransportConformanceTest, FailedUnsignaledRequestStillCompletes) {
  Buffer& target = rig_.NewBuffer(4096, 0x11);
  Buffer& local = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(local.data(), 4096, 11);
  WorkRequest chain[] = {WriteWr(lmr, 0, ToRemote(tmr), 0, 64, 7, false),
                         WriteWr(lmr, 0, ToRemote(tmr), 1024, 64, 8)};
  chain[0].rkey ^= 0x80000001u;
  DPMFS_ASSERT_OK(p.initiator->PostSend(chain));
  auto c = CollectSend(*p.initiator, 2);
  ASSERT_GE(c.size(), 1u) << "the failed unsignaled request produced no completion";
  EXPECT_EQ(c[0].context, 7u);
  EXPECT_EQ(c[0].status, CompletionStatus::kRemoteAccessError) << Describe(c[0]);
  ASSERT_EQ(c.size(), 2u) << "the request after the failure never completed";
  EXPECT_EQ(c[1].context, 8u);
  EXPECT_EQ(c[1].status, CompletionStatus::kFlushed) << Describe(c[1]);
  EXPECT_TRUE(AllBytesAre(target.data(), 4096, 0x11));
  EXPECT_EQ(p.initiator->state(), QpState::kError);
}

// A request longer than kMaxTransferSize is refused by PostSend, and a chain containing
// one is refused as a whole: nothing executes, no completion appears, the QP stays usable.
TEST_P(TransportConformanceTest, PostSendRefusesOversizedRequestWithoutPosting) {
  Buffer& target = rig_.NewBuffer(8192, 0x11);
  Buffer& local = rig_.NewBuffer(8192, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(local.data(), 8192, 12);
  for (Opcode op : {Opcode::kWrite, Opcode::kRead}) {
    WorkRequest big = RdmaWr(op, lmr, 0, ToRemote(tmr), 0, 64, 20, true);
    big.length = static_cast<uint32_t>(kMaxTransferSize + 1);
    EXPECT_FALSE(p.initiator->PostSend({&big, 1}).ok()) << OpcodeName(op) << " > kMaxTransferSize";
    WorkRequest chain[] = {WriteWr(lmr, 0, ToRemote(tmr), 0, 64, 21), big};
    EXPECT_FALSE(p.initiator->PostSend(chain).ok()) << "a chain with a bad request was posted";
  }
  Completion extra;
  EXPECT_EQ(p.initiator->WaitSend({&extra, 1}, kQuietWindow), 0u)
      << "a refused post produced a completion: " << Describe(extra);
  EXPECT_TRUE(AllBytesAre(target.data(), 8192, 0x11)) << "a refused chain executed";
  EXPECT_EQ(p.initiator->state(), QpState::kConnected);
  RoundTrip(*p.initiator, lmr, ToRemote(tmr), 0, 256, 13);
}

// kind 0: wrong lkey; 1: local buffer outside every registered region (right lkey);
// 2: local buffer crossing the end of its region. Either PostSend fails, or the request
// completes kLocalProtectionError; in no case is memory touched.
void TransportConformanceTest::CheckLocalViolation(bool read, int kind) {
  Buffer& target = rig_.NewBuffer(4096, 0x11);
  Buffer& local = rig_.NewBuffer(4096, 0x22);
  Buffer& unregistered = rig_.NewBuffer(4096, 0x23);
  Buffer& scratch = rig_.NewBuffer(1024, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion smr,
                             rig_.Register(rig_.initiator(), scratch, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  WorkRequest wr =
      RdmaWr(read ? Opcode::kRead : Opcode::kWrite, lmr, 0, ToRemote(tmr), 0, 64, 30, true);
  uint8_t* watched = local.data();
  uint8_t watched_fill = 0x22;
  switch (kind) {
    case 0:
      wr.lkey = lmr.lkey ^ 0x80000001u;
      while (wr.lkey == lmr.lkey || wr.lkey == smr.lkey) ++wr.lkey;
      break;
    case 1:
      wr.local_addr = unregistered.data();
      watched = unregistered.data();
      watched_fill = 0x23;
      break;
    case 2:
      wr.local_addr = local.data() + 4096 - 32;
      break;
  }
  Status st = p.initiator->PostSend({&wr, 1});
  if (st.ok()) {
    auto c = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c.size(), 1u) << "accepted request never completed";
    EXPECT_EQ(c[0].context, 30u);
    EXPECT_EQ(c[0].status, CompletionStatus::kLocalProtectionError) << Describe(c[0]);
  } else {
    Completion extra;
    EXPECT_EQ(p.initiator->WaitSend({&extra, 1}, kQuietWindow), 0u)
        << "a refused post produced a completion: " << Describe(extra);
    EXPECT_EQ(p.initiator->state(), QpState::kConnected);
    RoundTrip(*p.initiator, smr, ToRemote(tmr), 1024, 256, 14);
  }
  EXPECT_TRUE(AllBytesAre(target.data(), 1024, 0x11)) << "target memory was written";
  EXPECT_TRUE(target.GuardsIntact());
  EXPECT_TRUE(AllBytesAre(watched, 4096, watched_fill)) << "local memory was written";
  EXPECT_TRUE(local.GuardsIntact());
  EXPECT_TRUE(unregistered.GuardsIntact());
}

// WRITE/READ with a wrong lkey: refused by PostSend or kLocalProtectionError; no memory
// is touched.
TEST_P(TransportConformanceTest, WrongLkeyIsRefused) {
  CheckLocalViolation(false, 0);
  CheckLocalViolation(true, 0);
}
// WRITE/READ whose local buffer is in no registered region: refused, nothing touched.
TEST_P(TransportConformanceTest, UnregisteredLocalBufferIsRefused) {
  CheckLocalViolation(false, 1);
  CheckLocalViolation(true, 1);
}
// WRITE/READ whose local buffer runs past the end of its region: refused.
TEST_P(TransportConformanceTest, LocalBufferPastRegionEndIsRefused) {
  CheckLocalViolation(false, 2);
  CheckLocalViolation(true, 2);
}

// A chain longer than max_send_wr fails without posting anything; chains that fit work
// again and again (slots of unsignaled requests are reclaimed).
TEST_P(TransportConformanceTest, ChainLongerThanMaxSendWrFails) {
  constexpr uint32_t kMaxWr = 8;
  Buffer& target = rig_.NewBuffer(4096, 0x11);
  Buffer& local = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  ConnectArgs args;
  args.initiator_options.max_send_wr = kMaxWr;
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  FillPattern(local.data(), 4096, 15);
  std::vector<WorkRequest> too_long;
  for (uint32_t i = 0; i <= kMaxWr; ++i) {
    too_long.push_back(WriteWr(lmr, 64 * i, ToRemote(tmr), 64 * i, 64, i, true));
  }
  EXPECT_FALSE(p.initiator->PostSend(too_long).ok()) << "chain of max_send_wr + 1 was accepted";
  Completion extra;
  EXPECT_EQ(p.initiator->WaitSend({&extra, 1}, kQuietWindow), 0u) << Describe(extra);
  EXPECT_TRUE(AllBytesAre(target.data(), 4096, 0x11)) << "part of the refused chain executed";
  for (uint32_t round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<WorkRequest> fits;
    for (uint32_t i = 0; i + 1 < kMaxWr; ++i) {
      fits.push_back(WriteWr(lmr, 64 * i, ToRemote(tmr), 64 * i, 64, 100 + i, false));
    }
    fits.push_back(ReadWr(lmr, 2048, ToRemote(tmr), 0, 64, 1000 + round));
    DPMFS_ASSERT_OK(p.initiator->PostSend(fits));
    auto c = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].context, 1000u + round);
    EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  }
  EXPECT_TRUE(BytesEqual(target.data(), local.data(), 64 * (kMaxWr - 1)));
}

// --- connection loss --------------------------------------------------------------------

void TransportConformanceTest::CheckPeerLoss(bool destroy_target) {
  constexpr uint32_t kLen = 1 << 20;
  constexpr int kReads = 16;
  Buffer& target = rig_.NewBuffer(kLen, 0x11);
  Buffer& local = rig_.NewBuffer(kReads * kLen, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  for (int i = 0; i < kReads; ++i) {
    WorkRequest r = ReadWr(lmr, i * size_t{kLen}, ToRemote(tmr), 0, kLen, i + 1);
    DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
  }
  auto t0 = Clock::now();
  if (destroy_target) {
    p.target.reset();
    rig_.DestroyTarget();
  } else {
    p.target->Disconnect();
    p.target->Disconnect();  // idempotent
  }
  auto c = CollectSend(*p.initiator, kReads);
  ASSERT_EQ(c.size(), size_t{kReads}) << "outstanding requests did not complete after the peer "
                                         "went away (hang)";
  bool failed = false;
  for (int i = 0; i < kReads; ++i) {
    EXPECT_EQ(c[i].context, uint64_t(i + 1));
    if (failed) {
      EXPECT_FALSE(c[i].ok()) << "success after an error: " << Describe(c[i]);
    }
    if (!c[i].ok()) failed = true;
  }
  // A new request cannot succeed: the post fails or completes with an error.
  WorkRequest r = ReadWr(lmr, 0, ToRemote(tmr), 0, 64, 99);
  Status st = p.initiator->PostSend({&r, 1});
  if (st.ok()) {
    auto c2 = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c2.size(), 1u) << "a request after the peer went away hangs";
    EXPECT_EQ(c2[0].context, 99u);
    EXPECT_FALSE(c2[0].ok()) << "a READ from a disconnected peer succeeded";
  }
  EXPECT_EQ(p.initiator->state(), QpState::kError);
  EXPECT_LT(MillisSince(t0), 5000.0);
}

// The peer's Disconnect(): outstanding requests all complete (successes, then errors;
// never a hang), later requests fail, and the QP goes to kError.
TEST_P(TransportConformanceTest, PeerDisconnectFailsOutstandingRequests) { CheckPeerLoss(false); }

// The target side vanishing (its QP, listener and device destroyed): same as above.
TEST_P(TransportConformanceTest, DestroyedTargetFailsOutstandingRequests) { CheckPeerLoss(true); }

// Our own Disconnect(): outstanding requests complete (kFlushed if not executed), the QP
// is in kError and later posts fail or flush; the peer's posted RECVs complete with an
// error and the peer QP goes to kError too.
TEST_P(TransportConformanceTest, LocalDisconnectFlushesAndPeerNotices) {
  constexpr uint32_t kLen = 1 << 20;
  constexpr int kReads = 16;
  Buffer& target = rig_.NewBuffer(kLen, 0x11);
  Buffer& trecv = rig_.NewBuffer(4096, 0);
  Buffer& local = rig_.NewBuffer(kReads * kLen, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion trmr, rig_.Register(rig_.target(), trecv, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  ConnectArgs args;
  args.target_options.prepare = [trmr](QueuePair& qp) {
    WorkRequest r[] = {RecvWr(trmr, 0, 2048, 500), RecvWr(trmr, 2048, 2048, 501)};
    return qp.PostRecv(r);
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  for (int i = 0; i < kReads; ++i) {
    WorkRequest r = ReadWr(lmr, i * size_t{kLen}, ToRemote(tmr), 0, kLen, i + 1);
    DPMFS_ASSERT_OK(p.initiator->PostSend({&r, 1}));
  }
  p.initiator->Disconnect();
  p.initiator->Disconnect();  // idempotent
  EXPECT_EQ(p.initiator->state(), QpState::kError);
  auto c = CollectSend(*p.initiator, kReads);
  ASSERT_EQ(c.size(), size_t{kReads}) << "outstanding requests did not complete after Disconnect";
  bool flushed = false;
  for (int i = 0; i < kReads; ++i) {
    EXPECT_EQ(c[i].context, uint64_t(i + 1));
    if (flushed) {
      EXPECT_EQ(c[i].status, CompletionStatus::kFlushed) << Describe(c[i]);
    }
    if (!c[i].ok()) {
      EXPECT_EQ(c[i].status, CompletionStatus::kFlushed) << Describe(c[i]);
      flushed = true;
    }
  }
  WorkRequest r = ReadWr(lmr, 0, ToRemote(tmr), 0, 64, 99);
  if (p.initiator->PostSend({&r, 1}).ok()) {
    auto c2 = CollectSend(*p.initiator, 1);
    ASSERT_EQ(c2.size(), 1u);
    EXPECT_EQ(c2[0].status, CompletionStatus::kFlushed) << Describe(c2[0]);
  }
  auto rc = CollectRecv(*p.target, 2);
  ASSERT_EQ(rc.size(), 2u) << "the peer's posted RECVs did not complete after the disconnect";
  for (const Completion& x : rc) EXPECT_FALSE(x.ok()) << Describe(x);
  EXPECT_EQ(rc[0].context, 500u);
  EXPECT_EQ(rc[1].context, 501u);
  EXPECT_EQ(p.target->state(), QpState::kError);
}

// --- connection setup -------------------------------------------------------------------

// Private data of the maximum sizes goes both ways: the accept handler and the target
// QP see the initiator's bytes, the initiator QP sees the accept bytes.
TEST_P(TransportConformanceTest, PrivateDataIsDeliveredBothWays) {
  std::vector<uint8_t> cdata(kMaxConnectPrivateData), adata(kMaxAcceptPrivateData);
  FillPattern(cdata.data(), cdata.size(), 16);
  FillPattern(adata.data(), adata.size(), 17);
  std::vector<uint8_t> seen;
  ConnectArgs args;
  args.connect_data = cdata;
  args.handler = [&](std::span<const uint8_t> peer, QueuePair&) -> Result<std::vector<uint8_t>> {
    seen.assign(peer.begin(), peer.end());
    return adata;
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  EXPECT_EQ(seen, cdata) << "accept handler";
  auto tp = p.target->peer_private_data();
  EXPECT_EQ(std::vector<uint8_t>(tp.begin(), tp.end()), cdata) << "target QP";
  auto ip = p.initiator->peer_private_data();
  EXPECT_EQ(std::vector<uint8_t>(ip.begin(), ip.end()), adata) << "initiator QP";
  EXPECT_EQ(p.initiator->state(), QpState::kConnected);
  EXPECT_EQ(p.target->state(), QpState::kConnected);
  EXPECT_FALSE(p.initiator->peer_description().empty());
  EXPECT_FALSE(p.target->peer_description().empty());
}

// Short private data arrives intact (verbs pads it to the maximum with zeros, so only the
// prefix is compared there; soft delivers exactly what was sent).
TEST_P(TransportConformanceTest, ShortPrivateDataArrivesIntact) {
  const std::vector<uint8_t> cdata = {1, 2, 3, 4, 5};
  const std::vector<uint8_t> adata = {9, 8, 7};
  ConnectArgs args;
  args.connect_data = cdata;
  args.handler = [&](std::span<const uint8_t>, QueuePair&) -> Result<std::vector<uint8_t>> {
    return adata;
  };
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect(args));
  auto check = [&](std::span<const uint8_t> got, const std::vector<uint8_t>& want) {
    if (soft()) {
      EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()), want);
      return;
    }
    ASSERT_GE(got.size(), want.size());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin()));
    EXPECT_TRUE(AllBytesAre(got.data() + want.size(), got.size() - want.size(), 0));
  };
  check(p.target->peer_private_data(), cdata);
  check(p.initiator->peer_private_data(), adata);
}

// Over-long private data: Connect with more than 56 bytes fails with InvalidArgument; an
// accept handler returning more than 196 bytes yields no connection.
TEST_P(TransportConformanceTest, OverlongPrivateDataIsRejected) {
  Endpoint at = rig_.listener().local_endpoint();
  std::vector<uint8_t> big(kMaxConnectPrivateData + 1, 1);
  auto r = rig_.initiator().Connect(at, big, {}, 2s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();

  AcceptHandler too_much = [](std::span<const uint8_t>,
                              QueuePair&) -> Result<std::vector<uint8_t>> {
    return std::vector<uint8_t>(kMaxAcceptPrivateData + 1, 2);
  };
  auto accepted = std::async(std::launch::async,
                             [&] { return rig_.listener().Accept(too_much, {}, kConnectTimeout); });
  auto r2 = rig_.initiator().Connect(at, {}, {}, kConnectTimeout);
  EXPECT_FALSE(r2.ok()) << "connected although the accept data was too long";
  rig_.listener().Shutdown();  // in case Accept kept waiting after refusing
  auto a = accepted.get();
  EXPECT_FALSE(a.ok()) << "Accept returned a QP for over-long accept data";
}

// An accept handler returning an error rejects the connection: Connect fails with
// PermissionDenied whatever the handler's code, and Accept returns no QP.
TEST_P(TransportConformanceTest, RejectingHandlerMakesConnectPermissionDenied) {
  bool called = false;
  AcceptHandler reject = [&](std::span<const uint8_t>, QueuePair&) -> Result<std::vector<uint8_t>> {
    called = true;
    return Status::FailedPrecondition("test rejects every connection");
  };
  auto accepted = std::async(std::launch::async,
                             [&] { return rig_.listener().Accept(reject, {}, kConnectTimeout); });
  std::vector<uint8_t> data = {42};
  auto r = rig_.initiator().Connect(rig_.listener().local_endpoint(), data, {}, kConnectTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status().ToString();
  rig_.listener().Shutdown();
  auto a = accepted.get();
  EXPECT_FALSE(a.ok());
  EXPECT_TRUE(called);
}

// Connect to an address where nobody listens fails with Unavailable (not a timeout).
TEST_P(TransportConformanceTest, ConnectToNobodyIsUnavailable) {
  Endpoint nobody{host_, UnusedTcpPort(host_)};
  auto t0 = Clock::now();
  auto r = rig_.initiator().Connect(nobody, {}, {}, 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_LT(MillisSince(t0), 3000.0);
}

// Listener::Shutdown wakes an Accept blocked in another thread, which returns
// Unavailable; later Accepts return Unavailable at once.
TEST_P(TransportConformanceTest, ShutdownUnblocksAccept) {
  auto accepted = std::async(std::launch::async, [&] {
    return rig_.listener().Accept(AcceptAll, {}, std::chrono::seconds(4));
  });
  std::this_thread::sleep_for(100ms);
  auto t0 = Clock::now();
  rig_.listener().Shutdown();
  ASSERT_EQ(accepted.wait_for(3s), std::future_status::ready) << "Accept still blocked";
  EXPECT_LT(MillisSince(t0), 3000.0);
  auto a = accepted.get();
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kUnavailable) << a.status().ToString();
  t0 = Clock::now();
  auto again = rig_.listener().Accept(AcceptAll, {}, 2s);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kUnavailable) << again.status().ToString();
  EXPECT_LT(MillisSince(t0), 1000.0);
}

// Accept with nobody connecting returns TimedOut after (about) its timeout.
TEST_P(TransportConformanceTest, AcceptTimesOut) {
  auto t0 = Clock::now();
  auto a = rig_.listener().Accept(AcceptAll, {}, 100ms);
  double ms = MillisSince(t0);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kTimedOut) << a.status().ToString();
  EXPECT_GE(ms, 50.0);
  EXPECT_LT(ms, 3000.0);
}

// --- scale, FLUSH, waits ----------------------------------------------------------------

// 32 QPs from one device, driven concurrently from 32 threads, each writing and reading
// back its own slice: every READ and the target memory hold the right data.
TEST_P(TransportConformanceTest, ManyQpsWorkConcurrently) {
  constexpr int kQps = 32;
  constexpr uint32_t kSlice = 64 << 10;
  Buffer& target = rig_.NewBuffer(kQps * kSlice, 0);
  Buffer& local = rig_.NewBuffer(2 * kQps * kSlice, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  std::vector<QpPair> pairs;
  for (int i = 0; i < kQps; ++i) {
    DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
    pairs.push_back(std::move(p));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kQps; ++i) {
    threads.emplace_back([&, i] {
      QueuePair& qp = *pairs[i].initiator;
      const size_t src = 2 * i * size_t{kSlice}, dst = src + kSlice, remote = i * size_t{kSlice};
      for (uint32_t round = 0; round < 4; ++round) {
        FillPattern(local.data() + src, kSlice, i * 16 + round);
        WorkRequest chain[] = {WriteWr(lmr, src, ToRemote(tmr), remote, kSlice, 1, false),
                               ReadWr(lmr, dst, ToRemote(tmr), remote, kSlice, 2)};
        Status st = qp.PostSend(chain);
        if (!st.ok()) {
          ADD_FAILURE() << "QP " << i << ": " << st.ToString();
          return;
        }
        auto c = CollectSend(qp, 1);
        if (c.size() != 1 || !c[0].ok() || c[0].context != 2) {
          ADD_FAILURE() << "QP " << i << " round " << round << ": "
                        << (c.empty() ? "no completion" : Describe(c[0]));
          return;
        }
        EXPECT_TRUE(BytesEqual(local.data() + dst, local.data() + src, kSlice))
            << "QP " << i << " round " << round;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kQps; ++i) {
    EXPECT_TRUE(BytesEqual(target.data() + i * size_t{kSlice},
                           local.data() + 2 * i * size_t{kSlice}, kSlice))
        << "target slice " << i;
  }
}

// FLUSH where supported: WRITE + FLUSH(range) in one chain completes with success and the
// data is in target memory; where not, PostSend of a FLUSH fails with NotSupported.
TEST_P(TransportConformanceTest, FlushPersistsOrIsNotSupported) {
  constexpr uint32_t kLen = 16384;
  Buffer& target = rig_.NewBuffer(kLen, 0);
  Buffer& local = rig_.NewBuffer(2 * kLen, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr,
                             rig_.Register(rig_.target(), target, kAllRemote | kRemoteFlush));
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion lmr, rig_.Register(rig_.initiator(), local, kLocalWrite));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  FillPattern(local.data(), kLen, 18);
  if (!rig_.initiator().SupportsFlush()) {
    WorkRequest f = FlushWr(ToRemote(tmr), 0, kLen, 1);
    Status st = p.initiator->PostSend({&f, 1});
    EXPECT_EQ(st.code(), StatusCode::kNotSupported) << st.ToString();
    RoundTrip(*p.initiator, lmr, ToRemote(tmr), 0, 256, 19);
    return;
  }
  WorkRequest chain[] = {WriteWr(lmr, 0, ToRemote(tmr), 0, kLen, 1, false),
                         FlushWr(ToRemote(tmr), 0, kLen, 2)};
  DPMFS_ASSERT_OK(p.initiator->PostSend(chain));
  auto c = CollectSend(*p.initiator, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].context, 2u);
  EXPECT_EQ(c[0].opcode, Opcode::kFlush);
  EXPECT_TRUE(c[0].ok()) << Describe(c[0]);
  EXPECT_TRUE(BytesEqual(target.data(), local.data(), kLen)) << "data not in memory at FLUSH";
}

// FLUSH of a region registered without kRemoteFlush is a remote access error.
TEST_P(TransportConformanceTest, FlushWithoutRemoteFlushAccessIsRemoteAccessError) {
  if (!rig_.initiator().SupportsFlush()) GTEST_SKIP() << "this device has no FLUSH";
  Buffer& target = rig_.NewBuffer(4096, 0);
  DPMFS_ASSERT_OK_AND_ASSIGN(MemoryRegion tmr, rig_.Register(rig_.target(), target, kAllRemote));
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  WorkRequest f = FlushWr(ToRemote(tmr), 0, 4096, 3);
  DPMFS_ASSERT_OK(p.initiator->PostSend({&f, 1}));
  auto c = CollectSend(*p.initiator, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].context, 3u);
  EXPECT_EQ(c[0].status, CompletionStatus::kRemoteAccessError) << Describe(c[0]);
}

// WaitSend/WaitRecv with nothing outstanding return 0 once the timeout passes (neither
// early by much nor never); Poll returns 0 at once.
TEST_P(TransportConformanceTest, WaitWithNothingOutstandingTimesOut) {
  DPMFS_ASSERT_OK_AND_ASSIGN(QpPair p, rig_.Connect());
  Completion c[4];
  EXPECT_EQ(p.initiator->PollSend(c), 0u);
  EXPECT_EQ(p.initiator->PollRecv(c), 0u);
  auto t0 = Clock::now();
  EXPECT_EQ(p.initiator->WaitSend(c, 100ms), 0u);
  double ms = MillisSince(t0);
  EXPECT_GE(ms, 50.0);
  EXPECT_LT(ms, 3000.0);
  t0 = Clock::now();
  EXPECT_EQ(p.target->WaitRecv(c, 100ms), 0u);
  ms = MillisSince(t0);
  EXPECT_GE(ms, 50.0);
  EXPECT_LT(ms, 3000.0);
}

INSTANTIATE_TEST_SUITE_P(Backends, TransportConformanceTest,
                         ::testing::Values(Backend::kSoft, Backend::kVerbs),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(BackendName(info.param));
                         });

}  // namespace
}  // namespace dpmfs::transport
