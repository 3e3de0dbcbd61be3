// The wire decoders never read past what they are given and refuse every malformed
// field: truncation at every length, wrong magic/version/kind, lying payload lengths,
// oversize messages and out-of-range connection parameters.
#include "rpc/rpc_protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace dpmfs::rpc {
namespace {

std::vector<uint8_t> Message(const MessageHeader& h, size_t payload) {
  std::vector<uint8_t> m(kHeaderSize + payload, 0xAB);
  EncodeHeader(h, m.data());
  return m;
}

MessageHeader Request(uint32_t payload_len) {
  MessageHeader h;
  h.kind = MessageKind::kRequest;
  h.opcode = 7;
  h.request_id = 0x1122334455667788ull;
  h.session = 42;
  h.seq = 9;
  h.payload_len = payload_len;
  return h;
}

TEST(RpcProtocol, RoundTrip) {
  auto m = Message(Request(5), 5);
  bool readable = false;
  MessageHeader h;
  auto d = DecodeMessage(m, 1024, &readable, &h);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->header.opcode, 7);
  EXPECT_EQ(d->header.request_id, 0x1122334455667788ull);
  EXPECT_EQ(d->header.session, 42u);
  EXPECT_EQ(d->header.seq, 9u);
  EXPECT_EQ(d->payload.size(), 5u);
  EXPECT_EQ(d->payload.data(), m.data() + kHeaderSize);
}

TEST(RpcProtocol, TruncatedAtEveryLength) {
  auto m = Message(Request(16), 16);
  for (size_t len = 0; len < m.size(); ++len) {
    std::vector<uint8_t> cut(m.begin(), m.begin() + len);  // exact-size copy: ASan-friendly
    bool readable = true;
    MessageHeader h;
    auto d = DecodeMessage(cut, 1024, &readable, &h);
    EXPECT_FALSE(d.ok()) << len;
    EXPECT_EQ(readable, len >= kHeaderSize) << len;
  }
}

TEST(RpcProtocol, RefusesBadFields) {
  bool readable = false;
  MessageHeader h;
  auto m = Message(Request(4), 4);
  m[0] ^= 1;  // magic
  EXPECT_EQ(DecodeMessage(m, 1024, &readable, &h).status().code(), StatusCode::kCorruption);
  EXPECT_FALSE(readable);

  m = Message(Request(4), 4);
  m[4] = 99;  // version
  EXPECT_EQ(DecodeMessage(m, 1024, &readable, &h).status().code(), StatusCode::kNotSupported);
  EXPECT_TRUE(readable);
  EXPECT_EQ(h.request_id, 0x1122334455667788ull);

  m = Message(Request(4), 4);
  m[5] = 3;  // kind
  EXPECT_FALSE(DecodeMessage(m, 1024, &readable, &h).ok());

  m = Message(Request(0xFFFFFFFFu), 4);  // payload length lies
  EXPECT_EQ(DecodeMessage(m, 1024, &readable, &h).status().code(), StatusCode::kCorruption);

  m = Message(Request(2000), 2000);  // larger than negotiated
  EXPECT_EQ(DecodeMessage(m, 1024, &readable, &h).status().code(), StatusCode::kResourceExhausted);

  MessageHeader r = Request(0);
  r.kind = MessageKind::kResponse;
  r.status = 12345;  // no such status code
  m = Message(r, 0);
  EXPECT_FALSE(DecodeMessage(m, 1024, &readable, &h).ok());
}

TEST(RpcProtocol, RandomBytesNeverCrash) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> m(rng() % 100);
    for (auto& b : m) b = static_cast<uint8_t>(rng());
    if (m.size() >= 4 && (i & 1)) std::memcpy(m.data(), &kMagic, 4);
    bool readable;
    MessageHeader h;
    (void)DecodeMessage(m, 64, &readable, &h);
  }
}

TEST(RpcProtocol, ConnectData) {
  auto req = DecodeConnectRequest(EncodeConnectRequest({5, 4096, 8}));
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->session, 5u);
  EXPECT_EQ(req->max_message, 4096u);
  EXPECT_EQ(req->recv_depth, 8u);
  EXPECT_FALSE(DecodeConnectRequest(EncodeConnectRequest({0, 4096, 8})).ok());
  EXPECT_FALSE(DecodeConnectRequest(EncodeConnectRequest({5, 1u << 30, 8})).ok());
  EXPECT_FALSE(DecodeConnectRequest(EncodeConnectRequest({5, 4096, 0})).ok());
  EXPECT_FALSE(DecodeConnectRequest(std::vector<uint8_t>(10, 0)).ok());

  auto padded = EncodeConnectReply({4096, 8});
  padded.resize(196, 0);  // verbs pads accept data with zeros
  auto rep = DecodeConnectReply(padded);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->depth, 8u);
  EXPECT_FALSE(DecodeConnectReply(EncodeConnectReply({4096, 100000})).ok());
}

// The bytes on the wire are the documented layout (rpc/README.md), pinned so that a
// change of codec cannot change them.
TEST(RpcProtocol, WireBytesAreTheDocumentedLayout) {
  MessageHeader h;
  h.kind = MessageKind::kResponse;
  h.opcode = 0x0102;
  h.request_id = 0x1112131415161718ull;
  h.session = 0x2122232425262728ull;
  h.seq = 0x3132333435363738ull;
  h.status = -2;
  h.payload_len = 0x41424344;
  std::vector<uint8_t> m(kHeaderSize);
  EncodeHeader(h, m.data());
  const std::vector<uint8_t> want = {
      0x44, 0x52, 0x50, 0x43, 1,    2,    0x02, 0x01,  // magic "DRPC", version, kind, opcode
      0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  // request id
      0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  // session
      0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  // seq
      0xFE, 0xFF, 0xFF, 0xFF, 0x44, 0x43, 0x42, 0x41,  // status, payload length
  };
  EXPECT_EQ(m, want);

  const std::vector<uint8_t> connect = {
      0x44, 0x52, 0x43, 0x4E, 1, 0, 0, 0,              // magic "DRCN", version, reserved
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // session
      0x00, 0x10, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00,  // max message 4096, depth 32
  };
  EXPECT_EQ(EncodeConnectRequest({0x0102030405060708ull, 4096, 32}), connect);
  const std::vector<uint8_t> accept = {
      0x44, 0x52, 0x43, 0x4E, 1, 0, 0, 0, 0x00, 0x10, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(EncodeConnectReply({4096, 32}), accept);
}

// A short connection request says which field it ran out in.
TEST(RpcProtocol, ShortConnectDataNamesTheField) {
  auto r = DecodeConnectRequest(std::vector<uint8_t>(10, 0));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("session"), std::string::npos) << r.status().ToString();
  auto a = DecodeConnectReply(std::vector<uint8_t>{0x44, 0x52, 0x43, 0x4E, 1, 0, 0, 0, 0, 0x10});
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("max_message"), std::string::npos) << a.status().ToString();
}

}  // namespace
}  // namespace dpmfs::rpc
