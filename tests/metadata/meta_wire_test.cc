// A running dpmfs-meta under hostile input: random and truncated payloads on every
// opcode, malformed RPC frames on a raw queue pair, a bad connection handshake and raw
// bytes on its TCP port. After each attack a well-behaved client on its own connection
// must still be served, its earlier work intact, and the daemon must still be running
// (a crash would show as the process gone). Complements the libFuzzer target of the
// decoders (tests/metadata/fuzz), which needs clang; this runs in every CI build.
#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/socket.h"
#include "tests/support/test_cluster_key.h"
#include "transport/transport.h"
#include "metadata/meta_client.h"
#include "metadata/meta_protocol.h"
#include "rpc/rpc_protocol.h"
#include "tests/metadata/meta_test_server.h"

namespace dpmfs::meta {
namespace {

using namespace std::chrono_literals;

class MetaWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("meta-wire");
    server_ = std::make_unique<MetaServerFixture>(dir_);
    ASSERT_NO_FATAL_FAILURE(server_->Format());
    Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
    transport::DeviceOptions dev;
    dev.backend = transport::Backend::kSoft;
    dev.cluster_key = test_support::TestClusterKey();
    auto device = transport::OpenDevice(dev);
    ASSERT_TRUE(device.ok()) << device.status().ToString();
    device_ = std::move(*device);
    good_ = Connect("good-client");
    ASSERT_NE(good_, nullptr);
    MkdirRequest r{kRootInode, "keep", 0755, 0, 0};
    ASSERT_EQ(good_->Mkdir(r, &keep_).ToErrno(), 0);
  }
  void TearDown() override {
    good_.reset();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<MetaClient> Connect(const std::string& name) {
    MetaClientOptions o;
    o.client_name = name;
    o.call_timeout = 10s;
    o.reconnect_attempts = 3;
    auto c = MetaClient::Connect(*device_, server_->endpoint(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // The daemon is alive and the good client's earlier work is still there.
  void ExpectStillServing(const std::string& after) {
    ASSERT_FALSE(server_->server()->Exited())
        << "dpmfs-meta died after " << after << ":\n"
        << server_->server()->StderrTail();
    InodeAttr a;
    ASSERT_EQ(good_->Lookup(kRootInode, "keep", &a).ToErrno(), 0) << "after " << after;
    EXPECT_EQ(a.ino, keep_.ino);
    CreateRequest cr;
    cr.parent = keep_.ino;
    cr.name = "after-" + std::to_string(++probes_);
    cr.mode = S_IFREG | 0644;
    cr.flags = O_CREAT | O_EXCL;
    CreateReply rep;
    ASSERT_EQ(good_->Create(cr, &rep).ToErrno(), 0) << "after " << after;
    EXPECT_EQ(good_->Release(rep.attr.ino, rep.handle).ToErrno(), 0);
  }

  std::string dir_;
  std::unique_ptr<MetaServerFixture> server_;
  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<MetaClient> good_;
  InodeAttr keep_;
  int probes_ = 0;
};

// Valid encodings of a few requests, to truncate and to flip bits in.
std::vector<std::pair<Opcode, std::vector<uint8_t>>> SampleRequests(InodeId dir) {
  CreateRequest create{dir, "victim", S_IFREG | 0644, 0, 0, O_CREAT};
  RenameRequest rename{dir, "a", dir, "b", 0};
  SetxattrRequest setx{dir, "user.k", std::string(100, 'v'), 0};
  CommitRequest commit;
  commit.ino = dir;
  commit.valid = CommitRequest::kSize;
  commit.new_size = 1 << 20;
  commit.written = {ByteRange{0, 4096}, ByteRange{8192, 4096}};
  ReaddirRequest readdir{dir, 0, 100, true};
  return {{Opcode::kCreate, Encode(create)},   {Opcode::kRename, Encode(rename)},
          {Opcode::kSetxattr, Encode(setx)},   {Opcode::kCommit, Encode(commit)},
          {Opcode::kReaddir, Encode(readdir)}, {Opcode::kLookup, Encode(LookupRequest{dir, "x"})}};
}

TEST_F(MetaWireTest, RandomAndTruncatedPayloadsOnEveryOpcodeGetAnAnswer) {
  auto attacker = Connect("attacker");
  ASSERT_NE(attacker, nullptr);
  std::mt19937 rng(20261125);
  std::vector<uint16_t> opcodes;
  for (uint16_t op = 0; op <= 40; ++op) opcodes.push_back(op);
  opcodes.push_back(999);
  opcodes.push_back(0xffff);
  int answered = 0;
  for (uint16_t op : opcodes) {
    for (int i = 0; i < 20; ++i) {
      std::vector<uint8_t> junk(std::uniform_int_distribution<int>(0, 300)(rng));
      for (auto& b : junk) b = static_cast<uint8_t>(rng());
      std::vector<uint8_t> body;
      int err = attacker->CallRaw(static_cast<Opcode>(op), junk, &body);
      // Any answer is fine (an errno, or EIO for a refused message); no answer is not.
      EXPECT_NE(err, ETIMEDOUT) << "opcode " << op;
      EXPECT_NE(err, ENOTCONN) << "opcode " << op;
      ++answered;
    }
  }
  for (auto& [op, msg] : SampleRequests(keep_.ino)) {
    // A create without its last field (the umask) is a request from before it:
    // meta_protocol.h, kNewInodeUmask.
    const size_t optional_tail = op == Opcode::kCreate ? 4 : 0;
    for (size_t cut = 0; cut < msg.size() - optional_tail; ++cut) {
      std::vector<uint8_t> body;
      int err = attacker->CallRaw(op, std::span(msg.data(), cut), &body);
      EXPECT_NE(err, 0) << OpcodeName(op) << " truncated to " << cut << " bytes was accepted";
      EXPECT_NE(err, ETIMEDOUT);
      ++answered;
    }
    for (int flip = 0; flip < 50; ++flip) {
      std::vector<uint8_t> bad = msg;
      bad[rng() % bad.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      std::vector<uint8_t> body;
      int err = attacker->CallRaw(op, bad, &body);
      EXPECT_NE(err, ETIMEDOUT);
      ++answered;
    }
  }
  std::printf("%d hostile requests answered\n", answered);
  ExpectStillServing("random payloads");
}

// Raw RPC frames on a queue pair of our own: garbage, a header with a bad magic, a
// payload length that lies, an oversized message.
TEST_F(MetaWireTest, MalformedRpcFramesOnARawConnection) {
  std::mt19937 rng(7);
  for (int round = 0; round < 6; ++round) {
    rpc::ConnectRequest cr{0x1234500 + static_cast<uint64_t>(round), 4096, 8};
    auto pd = rpc::EncodeConnectRequest(cr);
    transport::QueuePairOptions qo;
    auto qp = device_->Connect(server_->endpoint(), pd, qo, 2s);
    ASSERT_TRUE(qp.ok()) << qp.status().ToString();
    std::vector<uint8_t> mem(64 * 1024);
    auto mr = device_->RegisterMemory(mem.data(), mem.size(), transport::kLocalWrite);
    ASSERT_TRUE(mr.ok()) << mr.status().ToString();
    std::vector<transport::WorkRequest> recvs;
    for (int i = 0; i < 8; ++i) {
      transport::WorkRequest w;
      w.opcode = transport::Opcode::kRecv;
      w.local_addr = mem.data() + 32768 + i * 4096;
      w.length = 4096;
      w.lkey = mr->lkey;
      w.context = 100 + i;
      recvs.push_back(w);
    }
    ASSERT_TRUE((*qp)->PostRecv(recvs).ok());

    uint8_t* frame = mem.data();
    uint32_t len = 0;
    switch (round) {
      case 0:  // random bytes
      case 1:
        len = 1 + rng() % 200;
        for (uint32_t i = 0; i < len; ++i) frame[i] = static_cast<uint8_t>(rng());
        break;
      case 2: {  // a header that is too short
        len = rpc::kHeaderSize - 1;
        std::memset(frame, 0, len);
        break;
      }
      case 3: {  // payload_len says more than was sent
        rpc::MessageHeader h;
        h.opcode = static_cast<uint16_t>(Opcode::kGetattr);
        h.request_id = 1;
        h.session = cr.session;
        h.seq = 1;
        h.payload_len = 4000;
        rpc::EncodeHeader(h, frame);
        len = rpc::kHeaderSize + 8;
        break;
      }
      case 4: {  // a response where a request belongs, with a bogus status
        rpc::MessageHeader h;
        h.kind = rpc::MessageKind::kResponse;
        h.request_id = 2;
        h.session = cr.session;
        h.seq = 2;
        h.status = 12345;
        rpc::EncodeHeader(h, frame);
        len = rpc::kHeaderSize;
        break;
      }
      default: {  // larger than the negotiated message size
        rpc::MessageHeader h;
        h.opcode = static_cast<uint16_t>(Opcode::kLookup);
        h.request_id = 3;
        h.session = cr.session;
        h.seq = 3;
        h.payload_len = 20000 - rpc::kHeaderSize;
        rpc::EncodeHeader(h, frame);
        len = 20000;
        break;
      }
    }
    transport::WorkRequest send;
    send.opcode = transport::Opcode::kSend;
    send.local_addr = frame;
    send.length = len;
    send.lkey = mr->lkey;
    send.context = 1;
    (void)(*qp)->PostSend(std::span(&send, 1));
    // The server answers with an error or closes the connection; either way within a
    // moment, and without taking anyone else down.
    transport::Completion c[8];
    (void)(*qp)->WaitRecv(c, 500ms);
    (*qp)->Disconnect();
    (void)device_->DeregisterMemory(*mr);
    ExpectStillServing("malformed frame kind " + std::to_string(round));
  }
}

TEST_F(MetaWireTest, BadHandshakesAreRefused) {
  std::vector<std::vector<uint8_t>> handshakes = {
      {}, {1, 2, 3}, std::vector<uint8_t>(56, 0xff),
      rpc::EncodeConnectRequest(rpc::ConnectRequest{0, 4096, 8})};  // session 0 is invalid
  for (auto& pd : handshakes) {
    transport::QueuePairOptions qo;
    auto qp = device_->Connect(server_->endpoint(), pd, qo, 2s);
    if (qp.ok()) {
      // Accepted at the transport level: the server may still drop it; it must not
      // serve garbage or die.
      (*qp)->Disconnect();
    }
  }
  ExpectStillServing("bad handshakes");
}

TEST_F(MetaWireTest, RawBytesOnTheTcpPort) {
  std::mt19937 rng(99);
  for (int round = 0; round < 5; ++round) {
    auto fd = TcpConnect(server_->endpoint(), 2s);
    ASSERT_TRUE(fd.ok()) << fd.status().ToString();
    std::vector<uint8_t> junk(1 + rng() % 5000);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    (void)SendAll(fd->get(), junk.data(), junk.size());
    // Closing half-way through a "frame" is part of the attack.
  }
  ExpectStillServing("raw TCP garbage");
}

}  // namespace
}  // namespace dpmfs::meta
