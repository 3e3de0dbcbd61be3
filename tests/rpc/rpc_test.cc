// RpcServer and RpcClient over real soft devices on loopback: round trips, concurrency
// beyond the credit depth, error propagation, size limits, hostile peers, timeouts,
// at-most-once through the reply cache, and reconnection across a server restart.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "transport/soft/soft_internal.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"

namespace dpmfs::rpc {
namespace {

using namespace std::chrono_literals;
using transport::Completion;
using transport::Opcode;
using transport::WorkRequest;

constexpr uint16_t kEcho = 1;
constexpr uint16_t kFail = 2;
constexpr uint16_t kSleep = 3;
constexpr uint16_t kCount = 4;
constexpr uint16_t kBig = 5;

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }
std::string Str(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

// A bare QP speaking (or abusing) the wire format, for hostile and at-most-once tests.
class RawConn {
 public:
  static constexpr uint32_t kBuf = kDefaultMessageSize;
  static constexpr uint32_t kRecvs = 8;
  static constexpr uint32_t kSendBuf = 2 * kBuf;

  RawConn(transport::Device& dev) : dev_(dev), mem_(kRecvs * kBuf + kSendBuf) {}
  ~RawConn() {
    if (qp_) qp_->Disconnect();
    qp_.reset();
    if (mr_.addr) (void)dev_.DeregisterMemory(mr_);
  }

  Status Open(const Endpoint& ep, uint64_t session) {
    DPMFS_ASSIGN_OR_RETURN(mr_,
                           dev_.RegisterMemory(mem_.data(), mem_.size(), transport::kLocalWrite));
    transport::QueuePairOptions qpo;
    qpo.prepare = [this](transport::QueuePair& qp) -> Status {
      for (uint32_t i = 0; i < kRecvs; ++i) DPMFS_RETURN_IF_ERROR(PostRecv(qp, i));
      return Status::OK();
    };
    DPMFS_ASSIGN_OR_RETURN(
        qp_, dev_.Connect(ep, EncodeConnectRequest({session, kBuf, kRecvs}), qpo, 2s));
    return Status::OK();
  }

  Status Send(const std::vector<uint8_t>& bytes) {
    std::memcpy(mem_.data() + kRecvs * kBuf, bytes.data(), bytes.size());
    WorkRequest wr;
    wr.opcode = Opcode::kSend;
    wr.local_addr = mem_.data() + kRecvs * kBuf;
    wr.length = static_cast<uint32_t>(bytes.size());
    wr.lkey = mr_.lkey;
    DPMFS_RETURN_IF_ERROR(qp_->PostSend({&wr, 1}));
    Completion c;
    if (qp_->WaitSend({&c, 1}, 2s) != 1) return Status::TimedOut("send");
    return c.ok() ? Status::OK() : Status::Unavailable("send failed");
  }

  // The next reply's decoded header and payload.
  Result<std::pair<MessageHeader, std::vector<uint8_t>>> Recv(transport::Duration timeout = 2s) {
    Completion c;
    if (qp_->WaitRecv({&c, 1}, timeout) != 1) return Status::TimedOut("no reply");
    if (!c.ok()) return Status::Unavailable("connection closed");
    bool readable;
    MessageHeader h;
    auto d = DecodeMessage({mem_.data() + c.context * kBuf, c.byte_len}, kBuf, &readable, &h);
    if (!d.ok()) return d.status();
    std::pair<MessageHeader, std::vector<uint8_t>> out{
        d->header, std::vector<uint8_t>(d->payload.begin(), d->payload.end())};
    DPMFS_RETURN_IF_ERROR(PostRecv(*qp_, static_cast<uint32_t>(c.context)));
    return out;
  }

  // Whether the server closed the connection within `timeout`.
  bool Closed(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (qp_->state() != transport::QpState::kConnected) return true;
      Completion c;
      if (qp_->WaitRecv({&c, 1}, 20ms) == 1 && !c.ok()) return true;
    }
    return false;
  }

 private:
  Status PostRecv(transport::QueuePair& qp, uint32_t i) {
    WorkRequest wr;
    wr.opcode = Opcode::kRecv;
    wr.context = i;
    wr.local_addr = mem_.data() + i * kBuf;
    wr.length = kBuf;
    wr.lkey = mr_.lkey;
    return qp.PostRecv({&wr, 1});
  }

  transport::Device& dev_;
  std::vector<uint8_t> mem_;
  transport::MemoryRegion mr_;
  std::unique_ptr<transport::QueuePair> qp_;
};

std::vector<uint8_t> RequestBytes(uint16_t opcode, uint64_t rid, uint64_t session, uint64_t seq,
                                  std::string_view payload) {
  std::vector<uint8_t> m(kHeaderSize + payload.size());
  MessageHeader h;
  h.kind = MessageKind::kRequest;
  h.opcode = opcode;
  h.request_id = rid;
  h.session = session;
  h.seq = seq;
  h.payload_len = static_cast<uint32_t>(payload.size());
  EncodeHeader(h, m.data());
  std::memcpy(m.data() + kHeaderSize, payload.data(), payload.size());
  return m;
}

class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = std::move(transport::OpenDevice(transport::DeviceOptions{})).value();
    StartServer(Endpoint{"127.0.0.1", 0});
  }
  void TearDown() override {
    server_.reset();
    device_.reset();
  }

  void StartServer(const Endpoint& ep) {
    RpcServerOptions o = server_options_;
    o.listen = ep;
    std::map<uint16_t, RpcHandler> h;
    h[kEcho] = [](const RpcRequest& r) -> Result<std::vector<uint8_t>> {
      return std::vector<uint8_t>(r.payload.begin(), r.payload.end());
    };
    h[kFail] = [](const RpcRequest&) -> Result<std::vector<uint8_t>> {
      return Status::NotFound("no such inode 17");
    };
    h[kSleep] = [](const RpcRequest& r) -> Result<std::vector<uint8_t>> {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(r.payload.empty() ? 0 : r.payload[0] * 10));
      return Bytes("slept");
    };
    h[kCount] = [this](const RpcRequest&) -> Result<std::vector<uint8_t>> {
      int n = ++executions_;
      std::this_thread::sleep_for(100ms);
      return Bytes("count " + std::to_string(n));
    };
    h[kBig] = [](const RpcRequest&) -> Result<std::vector<uint8_t>> {
      return std::vector<uint8_t>(1u << 20, 1);
    };
    auto s = RpcServer::Start(*device_, o, std::move(h));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }

  std::unique_ptr<RpcClient> Client(RpcClientOptions o = {}) {
    auto c = RpcClient::Connect(*device_, server_->endpoint(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  void ExpectEcho(RpcClient& c, const std::string& text) {
    auto r = c.Call(kEcho, Bytes(text), 5000ms);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(Str(*r), text);
  }

  RpcServerOptions server_options_;
  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<RpcServer> server_;
  std::atomic<int> executions_{0};
};

TEST_F(RpcTest, EchoRoundTrip) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  ExpectEcho(*c, "hello dpmfs");
  ExpectEcho(*c, "");
  std::string big(c->max_payload(), 'x');
  ExpectEcho(*c, big);
  EXPECT_NE(c->session(), 0u);
}

TEST_F(RpcTest, ConcurrentCallsFromManyThreads) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        std::string msg = "t" + std::to_string(t) + " call " + std::to_string(i);
        auto r = c->Call(kEcho, Bytes(msg), 10000ms);
        if (!r.ok() || Str(*r) != msg) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(server_->stats().executed, 4000u);
}

// Handlers run on the transport's receive thread: replies then cannot wait there for
// a reply buffer, and many callers share one connection's credits and buffers.
TEST_F(RpcTest, ConcurrentCallsWithInlineHandlers) {
  server_.reset();
  server_options_.inline_handlers = true;
  StartServer(Endpoint{"127.0.0.1", 0});
  RpcClientOptions o;
  o.depth = 64;  // more than the server grants, as the metadata client asks
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  constexpr int kThreads = 16, kCalls = 1000;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        std::string msg = "t" + std::to_string(t) + " call " + std::to_string(i);
        auto r = c->Call(kEcho, Bytes(msg), 3000ms);
        if (!r.ok() || Str(*r) != msg) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(server_->stats().executed, uint64_t{kThreads} * kCalls);
}

// One call at a time, the caller reads its reply from the connection itself
// (DriveReceives) rather than being woken by the transport's receive thread.
TEST_F(RpcTest, CallersReadTheirOwnReplies) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  const uint64_t before = transport::soft::CallerReceivedFrames();
  for (int i = 0; i < 300; ++i) ExpectEcho(*c, "call " + std::to_string(i));
  // The first replies may come through the receive thread, before it parks.
  EXPECT_GE(transport::soft::CallerReceivedFrames() - before, 250u)
      << "the replies were not read by the waiting callers";
}

// Callers read the connection while it is torn down under them, again and again: every
// call still gets its own reply, and no caller is left waiting on a destroyed link.
TEST_F(RpcTest, ConnectionLossWhileCallersReadReplies) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::atomic<int> wrong{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        std::string msg = "t" + std::to_string(t) + " call " + std::to_string(i);
        auto r = c->Call(kEcho, Bytes(msg), 10000ms);
        if (!r.ok() || Str(*r) != msg) ++wrong;
      }
    });
  }
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(30ms);
    c->DisconnectForTesting();
  }
  std::this_thread::sleep_for(50ms);
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GE(c->reconnects(), 5u);
  ExpectEcho(*c, "after the losses");
}

// The caller reading replies times out and leaves while another caller still waits:
// the role passes to the waiting caller, whose reply then reaches it as soon as it
// arrives. (Passed to nobody, the reply waits for the parked receive thread's next look
// at the socket, up to 200 ms later; three rounds make missing that unlikely.)
TEST_F(RpcTest, ATimedOutReaderHandsTheRoleToAWaitingCaller) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  ExpectEcho(*c, "warm up");  // the receive thread parks: callers read from here on
  for (int round = 0; round < 3; ++round) {
    std::thread reader([&] {
      std::vector<uint8_t> ms = {50};  // the handler sleeps 500 ms
      auto r = c->Call(kSleep, ms, 100ms);
      EXPECT_EQ(r.status().code(), StatusCode::kTimedOut);
    });
    std::this_thread::sleep_for(20ms);  // the first call is the one reading
    std::vector<uint8_t> ms = {30};     // 300 ms
    auto start = std::chrono::steady_clock::now();
    auto r = c->Call(kSleep, ms, 5000ms);
    auto took = std::chrono::steady_clock::now() - start;
    reader.join();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LT(took, 390ms) << "round " << round << ": the reply waited for a reader";
    // The server's two workers: the abandoned call's handler must be done before the
    // next round, or the next round's second call queues behind it.
    std::this_thread::sleep_for(250ms);
  }
}

TEST_F(RpcTest, MoreCallersThanCredits) {
  RpcClientOptions o;
  o.depth = 2;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string msg = std::to_string(t) + "/" + std::to_string(i);
        auto r = c->Call(kEcho, Bytes(msg), 10000ms);
        if (!r.ok() || Str(*r) != msg) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// One thread keeps many calls in flight, more than the credits: each Wait returns its
// own call's reply, whatever order the calls are collected in.
TEST_F(RpcTest, OneThreadPipelinesCallsBeyondTheCredits) {
  RpcClientOptions o;
  o.depth = 4;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  for (bool reverse : {false, true}) {
    std::vector<RpcClient::Ticket> tickets;
    for (int i = 0; i < 40; ++i) tickets.push_back(c->Start(kEcho, Bytes(std::to_string(i)), 5000ms));
    for (int k = 0; k < 40; ++k) {
      int i = reverse ? 39 - k : k;
      auto r = c->Wait(tickets[i]);
      ASSERT_TRUE(r.ok()) << "call " << i << ": " << r.status().ToString();
      EXPECT_EQ(Str(*r), std::to_string(i));
      EXPECT_FALSE(tickets[i].valid());
    }
  }
  EXPECT_EQ(server_->stats().executed, 80u);
  // A ticket is collected once.
  RpcClient::Ticket t = c->Start(kEcho, Bytes("once"), 5000ms);
  ASSERT_TRUE(c->Wait(t).ok());
  EXPECT_EQ(c->Wait(t).status().code(), StatusCode::kInvalidArgument);
}

// A call that cannot be sent fails at Wait with the reason; a ticket dropped
// uncollected gives its credit back when its reply comes, and one dropped before it was
// sent is never sent.
TEST_F(RpcTest, RefusedAndDroppedTickets) {
  RpcClientOptions o;
  o.depth = 1;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> too_big(c->max_payload() + 1, 0);
  RpcClient::Ticket refused = c->Start(kEcho, too_big, 5000ms);
  EXPECT_FALSE(refused.valid());
  EXPECT_EQ(c->Wait(refused).status().code(), StatusCode::kInvalidArgument);

  {
    std::vector<uint8_t> ms = {20};  // 200 ms: holds the only credit
    RpcClient::Ticket sent = c->Start(kSleep, ms, 5000ms);
    RpcClient::Ticket queued = c->Start(kCount, {}, 5000ms);  // waits for the credit
  }  // both dropped
  auto start = std::chrono::steady_clock::now();
  ExpectEcho(*c, "after dropped tickets");  // needs the credit the sleeper returns
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(executions_.load(), 0) << "a dropped call that was never sent executed";
}

TEST_F(RpcTest, UnknownOpcodeIsAnError) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(999, Bytes("x"), 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(r.status().message().find("opcode 999"), std::string::npos) << r.status().ToString();
  ExpectEcho(*c, "still fine");
}

TEST_F(RpcTest, HandlerErrorPropagates) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kFail, {}, 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "no such inode 17");
}

TEST_F(RpcTest, OversizedRequestRefusedConnectionSurvives) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> big(c->max_payload() + 1, 0);
  auto r = c->Call(kEcho, big, 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("maximum payload"), std::string::npos);
  ExpectEcho(*c, "after the refusal");
  EXPECT_EQ(c->reconnects(), 0u);
}

TEST_F(RpcTest, OversizedReplyBecomesError) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kBig, {}, 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  ExpectEcho(*c, "after the big reply");
}

TEST_F(RpcTest, MaxMessageIsNegotiated) {
  RpcClientOptions o;
  o.max_message = 1024;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->max_payload(), 1024 - kHeaderSize);
  ExpectEcho(*c, std::string(1024 - kHeaderSize, 'q'));
}

TEST_F(RpcTest, GarbageFromRawPeersDoesNotHurtOthers) {
  auto good = Client();
  ASSERT_NE(good, nullptr);
  const uint64_t session = 0xABCD;

  // Readable header, wrong fields: an error reply, the connection stays.
  {
    RawConn raw(*device_);
    ASSERT_TRUE(raw.Open(server_->endpoint(), session).ok());
    auto lying = RequestBytes(kEcho, 11, session, 1, "abc");
    lying[36] = 200;  // payload_len says 200, 3 arrived
    ASSERT_TRUE(raw.Send(lying).ok());
    auto r = raw.Recv();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->first.request_id, 11u);
    EXPECT_EQ(r->first.status, static_cast<int32_t>(StatusCode::kCorruption));

    auto wrong_session = RequestBytes(kEcho, 12, session + 1, 1, "abc");
    ASSERT_TRUE(raw.Send(wrong_session).ok());
    r = raw.Recv();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->first.status, static_cast<int32_t>(StatusCode::kPermissionDenied));

    auto version = RequestBytes(kEcho, 13, session, 2, "abc");
    version[4] = 77;
    ASSERT_TRUE(raw.Send(version).ok());
    r = raw.Recv();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->first.status, static_cast<int32_t>(StatusCode::kNotSupported));

    ASSERT_TRUE(raw.Send(RequestBytes(kEcho, 14, session, 3, "ok")).ok());
    r = raw.Recv();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->first.status, 0);
    EXPECT_EQ(Str(r->second), "ok");
  }
  // Unreadable: truncated header, wrong magic, bigger than a receive buffer: closed.
  for (int kind = 0; kind < 3; ++kind) {
    RawConn raw(*device_);
    ASSERT_TRUE(raw.Open(server_->endpoint(), session).ok());
    std::vector<uint8_t> bad;
    if (kind == 0) bad = std::vector<uint8_t>(7, 0x55);
    if (kind == 1) bad = std::vector<uint8_t>(100, 0xEE);
    if (kind == 2) bad = std::vector<uint8_t>(RawConn::kBuf + 100, 0);
    (void)raw.Send(bad);
    EXPECT_TRUE(raw.Closed(3000ms)) << kind;
  }
  // A connection request that is not ours is refused.
  {
    transport::QueuePairOptions qpo;
    std::vector<uint8_t> junk(20, 0x42);
    auto qp = device_->Connect(server_->endpoint(), junk, qpo, 2s);
    EXPECT_FALSE(qp.ok());
  }
  ExpectEcho(*good, "still serving");
  EXPECT_GE(server_->stats().malformed, 5u);
}

TEST_F(RpcTest, TimeoutWhenHandlerIsSlow) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> sleep_ms = {50};  // x10 ms = 500 ms
  auto start = std::chrono::steady_clock::now();
  auto r = c->Call(kSleep, sleep_ms, 100ms);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kTimedOut);
  EXPECT_LT(took, 400ms);
  // The late reply returns its credit; later calls work.
  ExpectEcho(*c, "after a timeout");
  std::this_thread::sleep_for(500ms);
  ExpectEcho(*c, "after the late reply");
}

TEST_F(RpcTest, AtMostOnceSameSessionSeq) {
  const uint64_t session = 0x5E55;
  RawConn raw(*device_);
  ASSERT_TRUE(raw.Open(server_->endpoint(), session).ok());
  // Twice back to back: the second arrives while the first executes.
  ASSERT_TRUE(raw.Send(RequestBytes(kCount, 1, session, 7, "")).ok());
  ASSERT_TRUE(raw.Send(RequestBytes(kCount, 2, session, 7, "")).ok());
  auto a = raw.Recv();
  auto b = raw.Recv();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Str(a->second), "count 1");
  EXPECT_EQ(Str(b->second), "count 1");
  // And once more after it completed, from another connection of the same session.
  RawConn raw2(*device_);
  ASSERT_TRUE(raw2.Open(server_->endpoint(), session).ok());
  ASSERT_TRUE(raw2.Send(RequestBytes(kCount, 3, session, 7, "")).ok());
  auto c = raw2.Recv();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->first.request_id, 3u);
  EXPECT_EQ(Str(c->second), "count 1");
  EXPECT_EQ(executions_.load(), 1);
  EXPECT_EQ(server_->stats().cache_hits, 2u);
  // A new seq executes.
  ASSERT_TRUE(raw2.Send(RequestBytes(kCount, 4, session, 8, "")).ok());
  auto d = raw2.Recv();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(Str(d->second), "count 2");
}

// The client loses its connection while the server executes a call: it reconnects and
// re-sends with the same (session, seq); the server answers the retry from its cache.
TEST_F(RpcTest, RetryAfterConnectionLossExecutesOnce) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  Result<std::vector<uint8_t>> r = Status::Internal("not run");
  std::thread caller([&] { r = c->Call(kCount, {}, 5000ms); });
  for (int i = 0; i < 2000 && executions_.load() == 0; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(executions_.load(), 1);
  c->DisconnectForTesting();
  caller.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Str(*r), "count 1");
  EXPECT_EQ(executions_.load(), 1);
  EXPECT_GE(c->reconnects(), 1u);
  EXPECT_EQ(server_->stats().cache_hits, 1u);
  auto next = c->Call(kCount, {}, 5000ms);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(Str(*next), "count 2");
}

TEST_F(RpcTest, EvictedSeqIsRefusedNotReexecuted) {
  server_.reset();
  server_options_.reply_cache_per_session = 4;
  StartServer(Endpoint{"127.0.0.1", 0});
  const uint64_t session = 77;
  RawConn raw(*device_);
  ASSERT_TRUE(raw.Open(server_->endpoint(), session).ok());
  for (uint64_t seq = 1; seq <= 6; ++seq) {
    ASSERT_TRUE(raw.Send(RequestBytes(kEcho, seq, session, seq, "x")).ok());
    ASSERT_TRUE(raw.Recv().ok());
  }
  ASSERT_TRUE(raw.Send(RequestBytes(kEcho, 100, session, 1, "x")).ok());
  auto r = raw.Recv();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first.status, static_cast<int32_t>(StatusCode::kAborted));
  EXPECT_EQ(server_->stats().executed, 6u);
}

TEST_F(RpcTest, ReconnectAfterServerRestart) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  ExpectEcho(*c, "before");
  Endpoint ep = server_->endpoint();
  server_.reset();
  StartServer(ep);
  ExpectEcho(*c, "after restart");
  EXPECT_GE(c->reconnects(), 1u);
}

TEST_F(RpcTest, CallDuringOutageIsResent) {
  auto c = Client();
  ASSERT_NE(c, nullptr);
  Endpoint ep = server_->endpoint();
  server_.reset();
  std::thread restart([&] {
    std::this_thread::sleep_for(300ms);
    StartServer(ep);
  });
  auto r = c->Call(kEcho, Bytes("waited"), 5000ms);
  restart.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Str(*r), "waited");
}

TEST_F(RpcTest, GivesUpThenRecovers) {
  RpcClientOptions o;
  o.reconnect_attempts = 2;
  o.reconnect_backoff_initial = 10ms;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  Endpoint ep = server_->endpoint();
  server_.reset();
  auto r = c->Call(kEcho, Bytes("x"), 3000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().code() == StatusCode::kUnavailable ||
              r.status().code() == StatusCode::kTimedOut)
      << r.status().ToString();
  StartServer(ep);
  ExpectEcho(*c, "back");
}

TEST_F(RpcTest, StopIsClean) {
  RpcClientOptions o;
  // A stopped (not yet destroyed) soft listener leaves connects hanging until this.
  o.connect_timeout = 200ms;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  std::thread slow([&] { (void)c->Call(kSleep, std::vector<uint8_t>{20}, 1000ms); });
  std::this_thread::sleep_for(50ms);
  server_->Stop();
  server_->Stop();
  slow.join();
}

}  // namespace
}  // namespace dpmfs::rpc
