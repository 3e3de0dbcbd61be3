// Fencing at the data server (docs/replication.md, "Fencing"), on the real DataServer
// over the soft transport with real sockets and the fence installed through the admin
// channel the metadata server uses (data_admin_client.h): a token below the fence is
// refused at connect with the reason, an established connection below it is revoked
// when the fence rises (its remote key dies with it), a token at or above the fence is
// served, admin connections are never fenced, and the admin request's decoder refuses
// hostile bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/pool.h"
#include "datapath/data_admin_client.h"
#include "datapath/data_client.h"
#include "datapath/data_client_pool.h"
#include "datapath/data_protocol.h"
#include "datapath/data_server.h"
#include "datapath/session_token.h"
#include "tests/datapath/token_checking_server.h"

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<uint8_t> TokenOfEpoch(const ClusterKey& key, uint64_t epoch) {
  SessionToken t;
  t.session = 0x100 + epoch;
  t.client = "fence_test";
  t.issued_ms = UnixMs();
  t.expires_ms = t.issued_ms + 60'000;
  t.epoch = epoch;
  return IssueSessionToken(key, t);
}

class DataServerFenceTest : public test_support::TokenCheckingServerTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer("dpmfs-fence")); }

  DataClientOptions Options(uint64_t epoch) {
    DataClientOptions o;
    o.queue_depth = 1;
    o.max_io_size = 4096;
    o.timeout = 2s;
    o.token = std::make_shared<SessionTokenSource>();
    EXPECT_TRUE(o.token->Set(TokenOfEpoch(*key_, epoch)).ok());
    return o;
  }
  Result<std::unique_ptr<DataClient>> Connect(uint64_t epoch) {
    return DataClient::Connect(*client_device_, server_->endpoint(), Options(epoch));
  }
  Result<uint64_t> Fence(uint64_t epoch) {
    return InstallFence(*client_device_, server_->endpoint(), epoch, 2000ms);
  }

};

TEST_F(DataServerFenceTest, TokenBelowTheFenceIsRefusedAtConnectWithTheReason) {
  // Fence 0 at start: every valid token is served, epoch 0 included.
  EXPECT_EQ(server_->stats().fence, 0u);
  ASSERT_TRUE(Connect(0).ok());

  auto fence = Fence(5);
  ASSERT_TRUE(fence.ok()) << fence.status().ToString();
  EXPECT_EQ(*fence, 5u);
  EXPECT_EQ(server_->stats().fence, 5u);

  auto stale = Connect(4);
  ASSERT_FALSE(stale.ok()) << "a token of epoch 4 was served behind fence 5";
  EXPECT_EQ(stale.status().code(), StatusCode::kPermissionDenied) << stale.status().ToString();
  EXPECT_NE(stale.status().message().find("stale epoch 4, the cluster is at 5"), std::string::npos)
      << stale.status().ToString();
  EXPECT_TRUE(IsStaleEpoch(stale.status()));

  // At and above the fence: served, and its writes land.
  for (uint64_t epoch : {5u, 6u}) {
    auto c = Connect(epoch);
    ASSERT_TRUE(c.ok()) << "epoch " << epoch << ": " << c.status().ToString();
    uint8_t data[64];
    std::memset(data, static_cast<int>(epoch), sizeof data);
    EXPECT_TRUE((*c)->Write(4096 * epoch, data, sizeof data).ok());
  }

  // The fence only rises: a lower one changes nothing, and says what is in force.
  auto lower = Fence(3);
  ASSERT_TRUE(lower.ok()) << lower.status().ToString();
  EXPECT_EQ(*lower, 5u);
  EXPECT_FALSE(Connect(4).ok());
}

TEST_F(DataServerFenceTest, RaisingTheFenceRevokesOlderConnectionsBeforeItAnswers) {
  auto old_conn = Connect(2);
  auto current = Connect(3);
  ASSERT_TRUE(old_conn.ok() && current.ok());
  uint8_t data[64];
  std::memset(data, 0x42, sizeof data);
  ASSERT_TRUE((*old_conn)->Write(0, data, sizeof data).ok());
  const uint64_t revoked_before = server_->stats().revoked;

  ASSERT_TRUE(Fence(3).ok());
  // Revoked by the time the fence is acknowledged, not at the next reaping.
  EXPECT_EQ(server_->stats().revoked, revoked_before + 1);
  uint8_t back[64];
  EXPECT_FALSE((*old_conn)->Write(0, data, sizeof data).ok())
      << "a WRITE of epoch 2 succeeded behind fence 3";
  EXPECT_FALSE((*old_conn)->Read(0, back, sizeof back).ok());
  // The connection at the fence is untouched.
  EXPECT_TRUE((*current)->Write(0, data, sizeof data).ok());
  EXPECT_TRUE((*current)->Read(0, back, sizeof back).ok());
  EXPECT_EQ(std::memcmp(back, data, sizeof back), 0);

  // Admin connections carry no token and are never fenced: a second fence, and stats.
  ASSERT_TRUE(Fence(4).ok());
  AdminRequest stats;
  auto reply = AskDataServer(*client_device_, server_->endpoint(), stats, 2000ms);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->code, StatusCode::kOk);
  EXPECT_FALSE((*current)->Read(0, back, sizeof back).ok()) << "epoch 3 served behind fence 4";
}

// What a replicated client's connection pool makes of the refusal: not "unreachable",
// but a refusal the file system recognizes and answers with a fresh token.
TEST_F(DataServerFenceTest, ThePoolPassesTheStaleRefusalOnAsSuch) {
  ASSERT_TRUE(Fence(7).ok());
  DataClientPoolOptions po;
  po.client = Options(6);
  DataClientPool pool(*client_device_, {server_->endpoint()}, po);
  auto lease = pool.Acquire(0);
  ASSERT_FALSE(lease.ok());
  EXPECT_EQ(lease.status().code(), StatusCode::kPermissionDenied) << lease.status().ToString();
  EXPECT_TRUE(IsStaleEpoch(lease.status())) << lease.status().ToString();
  // With the renewed token the same pool connects.
  ASSERT_TRUE(po.client.token->Set(TokenOfEpoch(*key_, 7)).ok());
  auto again = pool.Acquire(0);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST(FenceProtocol, FenceRequestRoundTripsAndHostileBytesAreRefused) {
  AdminRequest req;
  req.kind = AdminKind::kFence;
  req.epoch = 0x0102030405060708ull;
  const std::vector<uint8_t> bytes = EncodeAdminRequest(req);
  ASSERT_LE(bytes.size(), kAdminRequestSize);
  auto back = DecodeAdminRequest(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->kind, AdminKind::kFence);
  EXPECT_EQ(back->epoch, req.epoch);

  // Every truncation, a trailing byte, epoch 0, an unknown kind.
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeAdminRequest({bytes.data(), n}).ok()) << "truncated to " << n;
  }
  std::vector<uint8_t> trailing = bytes;
  trailing.push_back(0);
  EXPECT_FALSE(DecodeAdminRequest(trailing).ok());
  req.epoch = 0;
  EXPECT_FALSE(DecodeAdminRequest(EncodeAdminRequest(req)).ok());
  std::vector<uint8_t> unknown = bytes;
  unknown[6] = 9;  // kind
  EXPECT_FALSE(DecodeAdminRequest(unknown).ok());

  // The reply's body: exactly 8 bytes.
  auto fence = DecodeFenceBody(EncodeFenceBody(42));
  ASSERT_TRUE(fence.ok());
  EXPECT_EQ(*fence, 42u);
  EXPECT_FALSE(DecodeFenceBody(std::string(7, '\0')).ok());
  EXPECT_FALSE(DecodeFenceBody(std::string(9, '\0')).ok());
  EXPECT_FALSE(DecodeFenceBody("").ok());
}

TEST(FenceProtocol, TokenSourcesCarryTheirEpoch) {
  auto key = std::make_shared<const ClusterKey>(ClusterKey::Generate());
  SessionTokenSource fed;
  EXPECT_EQ(fed.epoch(), 0u);
  ASSERT_TRUE(fed.Set(TokenOfEpoch(*key, 9)).ok());
  EXPECT_EQ(fed.epoch(), 9u);
  EXPECT_EQ(fed.Get().epoch, 9u);

  // Self-issued: raising the epoch replaces the current token at once, never lowers it.
  auto self = SessionTokenSource::SelfIssued(key, "self", 60'000ms);
  const auto first = self->Get();
  EXPECT_EQ(first.epoch, 0u);
  self->RaiseEpoch(12);
  const auto raised = self->Get();
  EXPECT_NE(raised.bytes, first.bytes);
  auto fields = VerifySessionToken(*key, raised.bytes, UnixMs());
  ASSERT_TRUE(fields.ok()) << fields.status().ToString();
  EXPECT_EQ(fields->epoch, 12u);
  EXPECT_EQ(self->epoch(), 12u);
  self->RaiseEpoch(11);
  EXPECT_EQ(self->Get().bytes, raised.bytes);
}

}  // namespace
}  // namespace dpmfs::datapath
