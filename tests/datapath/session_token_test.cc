// Session tokens (datapath/session_token.h) and the data server that checks them, on the
// soft transport with real sockets: a connection without a valid token is refused before
// anything is registered for it; every connection gets its own remote key; when its token
// expires the registration is revoked, so its one-sided READs and WRITEs fail, and its
// remote key is dead for every other connection too.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/data_protocol.h"
#include "datapath/data_server.h"
#include "datapath/session_token.h"
#include "tests/datapath/token_checking_server.h"

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<uint8_t> Token(const ClusterKey& key, uint64_t session, int64_t lifetime_ms) {
  SessionToken t;
  t.session = session;
  t.client = "session_token_test";
  t.issued_ms = UnixMs();
  t.expires_ms = t.issued_ms + lifetime_ms;
  return IssueSessionToken(key, t);
}

TEST(SessionToken, IssuedTokenVerifiesWithItsFields) {
  ClusterKey key = ClusterKey::Generate();
  SessionToken t{0x1234, "host:42 /mnt", 1000, 5000, 7};
  auto bytes = IssueSessionToken(key, t);
  EXPECT_LE(bytes.size(), kMaxSessionTokenSize);
  auto v = VerifySessionToken(key, bytes, 4999);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->session, 0x1234u);
  EXPECT_EQ(v->client, "host:42 /mnt");
  EXPECT_EQ(v->issued_ms, 1000);
  EXPECT_EQ(v->expires_ms, 5000);
  EXPECT_EQ(v->epoch, 7u);
}

TEST(SessionToken, EveryAlteredByteIsRefused) {
  ClusterKey key = ClusterKey::Generate();
  auto bytes = IssueSessionToken(key, SessionToken{1, "c", 0, 1'000'000, 0});
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto forged = bytes;
    forged[i] ^= 0x01;
    auto v = VerifySessionToken(key, forged, 1);
    ASSERT_FALSE(v.ok()) << "byte " << i;
    EXPECT_EQ(v.status().code(), StatusCode::kPermissionDenied) << "byte " << i;
  }
}

TEST(SessionToken, AnotherKeyExpiryAndGarbageAreRefused) {
  ClusterKey key = ClusterKey::Generate();
  ClusterKey other = ClusterKey::Generate();
  auto bytes = IssueSessionToken(key, SessionToken{1, "c", 0, 5000, 0});
  auto wrong = VerifySessionToken(other, bytes, 1);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("forged or altered"), std::string::npos);
  auto expired = VerifySessionToken(key, bytes, 5000);
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
  auto none = VerifySessionToken(key, {}, 1);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no session token"), std::string::npos);
  std::vector<uint8_t> longer = bytes;
  longer.resize(kMaxSessionTokenSize + 1);
  EXPECT_FALSE(VerifySessionToken(key, longer, 1).ok());
  EXPECT_FALSE(VerifySessionToken(key, std::span(bytes).first(10), 1).ok());
  // The session id changed, the MAC kept: a token spliced onto another session.
  auto spliced = IssueSessionToken(key, SessionToken{2, "c", 0, 5000, 0});
  std::copy(bytes.end() - kSessionTokenMacSize, bytes.end(), spliced.end() - kSessionTokenMacSize);
  EXPECT_FALSE(VerifySessionToken(key, spliced, 1).ok());
}

TEST(SessionToken, SelfIssuedSourceRenewsInTheLastThird) {
  auto key = std::make_shared<const ClusterKey>(ClusterKey::Generate());
  auto src = SessionTokenSource::SelfIssued(key, "self", 300ms);
  auto first = src->Get();
  ASSERT_FALSE(first.bytes.empty());
  EXPECT_TRUE(VerifySessionToken(*key, first.bytes, UnixMs()).ok());
  EXPECT_EQ(src->Get().bytes, first.bytes);
  std::this_thread::sleep_for(250ms);
  EXPECT_NE(src->Get().bytes, first.bytes);
  SessionTokenSource fed;
  EXPECT_FALSE(fed.Set({1, 2, 3}).ok());
  EXPECT_TRUE(fed.Get().bytes.empty());
}

class DataServerTokenTest : public test_support::TokenCheckingServerTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer("dpmfs-token")); }

  Result<std::unique_ptr<DataClient>> Connect(std::vector<uint8_t> token) {
    DataClientOptions o;
    o.queue_depth = 1;
    o.max_io_size = 4096;
    o.timeout = 2s;
    if (!token.empty()) {
      o.token = std::make_shared<SessionTokenSource>();
      EXPECT_TRUE(o.token->Set(std::move(token)).ok());
    }
    return DataClient::Connect(*client_device_, server_->endpoint(), o);
  }

  // A one-sided READ of 8 bytes at the data area's start with `rkey`, on `c`'s server
  // through a raw QP of its own (so the remote key need not be the connection's).
  transport::CompletionStatus ReadWithKey(uint32_t rkey, uint64_t addr) {
    transport::QueuePairOptions qpo;
    qpo.credential = Token(*key_, 99, 60'000);
    ConnectRequest req;
    req.queue_depth = 1;
    req.max_io_size = 4096;
    auto qp = client_device_->Connect(server_->endpoint(), EncodeConnectRequest(req), qpo, 2s);
    EXPECT_TRUE(qp.ok()) << qp.status().ToString();
    if (!qp.ok()) return transport::CompletionStatus::kTransportError;
    uint8_t buf[8];
    auto mr = client_device_->RegisterMemory(buf, sizeof buf, transport::kLocalWrite);
    EXPECT_TRUE(mr.ok());
    transport::WorkRequest wr;
    wr.opcode = transport::Opcode::kRead;
    wr.local_addr = buf;
    wr.length = sizeof buf;
    wr.lkey = mr->lkey;
    wr.remote_addr = addr;
    wr.rkey = rkey;
    EXPECT_TRUE((*qp)->PostSend({&wr, 1}).ok());
    transport::Completion c;
    size_t n = (*qp)->WaitSend({&c, 1}, 2s);
    (*qp)->Disconnect();
    (void)client_device_->DeregisterMemory(*mr);
    return n == 1 ? c.status : transport::CompletionStatus::kTransportError;
  }

};

TEST_F(DataServerTokenTest, ConnectionWithoutValidTokenIsRefused) {
  auto none = Connect({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kPermissionDenied) << none.status().ToString();
  EXPECT_NE(none.status().message().find("no session token"), std::string::npos);

  auto forged = Token(*key_, 1, 60'000);
  forged[10] ^= 0xFF;  // the session id
  auto f = Connect(forged);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("forged or altered"), std::string::npos)
      << f.status().ToString();

  ClusterKey other = ClusterKey::Generate();
  EXPECT_FALSE(Connect(Token(other, 1, 60'000)).ok());
  auto expired = Connect(Token(*key_, 1, -1));
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
  // Counted by the accept thread after the client has its answer: wait for it.
  for (int i = 0; i < 200 && server_->stats().refused < 4; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GE(server_->stats().refused, 4u);
  EXPECT_EQ(server_->stats().open_connections, 0u);

  auto good = Connect(Token(*key_, 1, 60'000));
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  uint8_t data[64];
  std::memset(data, 0x3C, sizeof data);
  EXPECT_TRUE((*good)->Write(0, data, sizeof data).ok());
}

TEST_F(DataServerTokenTest, EachConnectionHasItsOwnRemoteKey) {
  auto a = Connect(Token(*key_, 1, 60'000));
  auto b = Connect(Token(*key_, 2, 60'000));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->server().pool.rkey, (*b)->server().pool.rkey);
  uint8_t x[8] = {};
  EXPECT_TRUE((*a)->Read(0, x, sizeof x).ok());
  EXPECT_TRUE((*b)->Read(0, x, sizeof x).ok());
}

// Within one lease: a lease of 1.5 s here, revoked at most one accept wait (200 ms)
// after the token's expiry.
TEST_F(DataServerTokenTest, ExpiredTokenRevokesTheConnectionsRegistration) {
  auto a = Connect(Token(*key_, 7, 1500));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const uint32_t a_rkey = (*a)->server().pool.rkey;
  const uint64_t addr = (*a)->server().pool.addr;
  uint8_t data[64];
  std::memset(data, 0x77, sizeof data);
  ASSERT_TRUE((*a)->Write(4096, data, sizeof data).ok());
  EXPECT_EQ(ReadWithKey(a_rkey, addr), transport::CompletionStatus::kSuccess);

  std::this_thread::sleep_for(1500ms + 600ms);
  EXPECT_GE(server_->stats().revoked, 1u);
  uint8_t back[64];
  Status read = (*a)->Read(4096, back, sizeof back);
  EXPECT_FALSE(read.ok()) << "READ on a revoked connection succeeded";
  Status write = (*a)->Write(4096, data, sizeof data);
  EXPECT_FALSE(write.ok()) << "WRITE on a revoked connection succeeded";
  // The revoked remote key is dead for every connection, not only the closed one.
  EXPECT_EQ(ReadWithKey(a_rkey, addr), transport::CompletionStatus::kRemoteAccessError);
  // Others are untouched.
  auto b = Connect(Token(*key_, 8, 60'000));
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE((*b)->Read(4096, back, sizeof back).ok());
  EXPECT_EQ(std::memcmp(back, data, sizeof data), 0);
}

}  // namespace
}  // namespace dpmfs::datapath
