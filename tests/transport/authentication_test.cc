// Authentication on every port (docs/security.md), against the real daemons: a dpmfs-meta
// and a dpmfs-data process holding the test's cluster key, peers on real sockets.
// Refused: a peer with no key, one with a wrong key, one replaying a recorded
// handshake, and a peer that keeps failing (rate limit per address). Meanwhile an
// authenticated metadata client and data client keep working.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/daemon_process.h"
#include "common/pool.h"
#include "common/socket.h"
#include "common/unique_fd.h"
#include "datapath/data_client.h"
#include "datapath/data_protocol.h"
#include "datapath/session_token.h"
#include "metadata/meta_client.h"
#include "rpc/rpc_protocol.h"
#include "tests/metadata/meta_test_server.h"
#include "tests/transport/meta_and_data_daemons.h"
#include "tests/support/test_cluster_key.h"
#include "transport/connection_auth.h"
#include "transport/soft/soft_wire.h"

namespace dpmfs {
namespace {

namespace fs = std::filesystem;
using transport::soft::FrameHeader;
using transport::soft::FrameType;
using transport::soft::kHeaderSize;

// A raw soft-transport peer: frames by hand, so a test can record and replay bytes.
class RawPeer {
 public:
  // Connects to `server`, from `source_ip` (a loopback address) when given.
  static UniqueFd Dial(const Endpoint& server, const char* source_ip = nullptr) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd.valid());
    if (source_ip != nullptr) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, source_ip, &src.sin_addr);
      EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof src), 0);
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(server.port);
    ::inet_pton(AF_INET, server.host.c_str(), &dst.sin_addr);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&dst), sizeof dst), 0)
        << std::strerror(errno);
    timeval tv{10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }
  static std::vector<uint8_t> Frame(FrameType type, std::span<const uint8_t> payload) {
    FrameHeader h;
    h.type = type;
    h.payload_len = static_cast<uint32_t>(payload.size());
    std::vector<uint8_t> out(kHeaderSize);
    transport::soft::EncodeHeader(h, out.data());
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  }
  static void Send(int fd, const std::vector<uint8_t>& bytes) {
    ASSERT_TRUE(SendAll(fd, bytes.data(), bytes.size()).ok());
  }
  // The next frame, or nullopt when the peer closed (or said nothing within 10 s).
  static std::optional<std::pair<FrameType, std::vector<uint8_t>>> Receive(int fd) {
    uint8_t hdr[kHeaderSize];
    if (!RecvAll(fd, hdr, sizeof hdr).ok()) return std::nullopt;
    auto h = transport::soft::DecodeHeader(std::span<const uint8_t, kHeaderSize>(hdr));
    if (!h.ok()) return std::nullopt;
    std::vector<uint8_t> payload(h->payload_len);
    if (!RecvAll(fd, payload.data(), payload.size()).ok()) return std::nullopt;
    return std::make_pair(h->type, std::move(payload));
  }
};

std::string Text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

class AuthenticationTest : public test_support::MetaAndDataDaemons {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartDaemons("dpmfs-auth"));
    transport::DeviceOptions good;
    good.cluster_key = test_support::TestClusterKey();
    good_device_ = std::move(transport::OpenDevice(good)).value();
    meta::MetaClientOptions mo;
    mo.client_name = "authentication_test";
    auto mc = meta::MetaClient::Connect(*good_device_, meta_->endpoint(), mo);
    ASSERT_TRUE(mc.ok()) << mc.status().ToString();
    meta_client_ = std::move(*mc);
    datapath::DataClientOptions dopt;
    dopt.token = datapath::SessionTokenSource::SelfIssued(
        test_support::TestClusterKey(), "authentication_test", datapath::kSelfIssuedTokenLifetime);
    dopt.queue_depth = 1;
    dopt.max_io_size = 4096;
    auto dc = datapath::DataClient::Connect(*good_device_, data_->endpoint(), dopt);
    ASSERT_TRUE(dc.ok()) << dc.status().ToString();
    data_client_ = std::move(*dc);
    ASSERT_NO_FATAL_FAILURE(GoodClientsWork());
  }
  void TearDown() override {
    data_client_.reset();
    meta_client_.reset();
    MetaAndDataDaemons::TearDown();
  }

  // The authenticated clients, connected before the attacks, still work; and a new
  // authenticated connection to each port is still accepted.
  void GoodClientsWork() {
    meta::InodeAttr attr;
    EXPECT_EQ(meta_client_->Getattr(meta::kRootInode, &attr).ToErrno(), 0);
    uint8_t block[4096];
    std::memset(block, 0x5a, sizeof block);
    EXPECT_TRUE(data_client_->Write(4096 * (++writes_ % 16), block, sizeof block).ok());
    uint8_t back[4096] = {};
    EXPECT_TRUE(data_client_->Read(4096 * (writes_ % 16), back, sizeof back).ok());
    EXPECT_EQ(std::memcmp(block, back, sizeof block), 0);
    datapath::DataClientOptions dopt;
    dopt.token = datapath::SessionTokenSource::SelfIssued(
        test_support::TestClusterKey(), "authentication_test", datapath::kSelfIssuedTokenLifetime);
    dopt.queue_depth = 1;
    dopt.max_io_size = 4096;
    auto fresh = datapath::DataClient::Connect(*good_device_, data_->endpoint(), dopt);
    EXPECT_TRUE(fresh.ok()) << fresh.status().ToString();
  }

  // A valid application request for each port (what a real client would send).
  static std::vector<uint8_t> MetaRequest() {
    rpc::ConnectRequest r;
    r.session = 42;
    r.max_message = 4096;
    r.recv_depth = 4;
    return rpc::EncodeConnectRequest(r);
  }
  static std::vector<uint8_t> DataRequest() {
    datapath::ConnectRequest r;
    r.queue_depth = 1;
    r.max_io_size = 4096;
    return datapath::EncodeConnectRequest(r);
  }

  std::vector<std::pair<std::string, Endpoint>> Ports() const {
    return {{"metadata server", meta_->endpoint()}, {"data server", data_->endpoint()}};
  }

  std::unique_ptr<transport::Device> good_device_;
  std::unique_ptr<meta::MetaClient> meta_client_;
  std::unique_ptr<datapath::DataClient> data_client_;
  uint32_t writes_ = 0;
};

TEST_F(AuthenticationTest, APeerWithoutTheKeyIsRefusedOnEveryPort) {
  auto keyless = std::move(transport::OpenDevice(transport::DeviceOptions{})).value();
  for (const auto& [name, ep] : Ports()) {
    SCOPED_TRACE(name);
    // Through the transport, as an unmodified client without a key would.
    auto qp = keyless->Connect(ep, name == "data server" ? DataRequest() : MetaRequest(), {},
                               std::chrono::seconds(10));
    ASSERT_FALSE(qp.ok());
    EXPECT_EQ(qp.status().code(), StatusCode::kPermissionDenied) << qp.status().ToString();
    // Raw: a bare CONNECT with a valid application request gets a REJECT and nothing
    // else: no remote key, no geometry.
    UniqueFd fd = RawPeer::Dial(ep);
    RawPeer::Send(fd.get(), RawPeer::Frame(FrameType::kConnect, DataRequest()));
    auto reply = RawPeer::Receive(fd.get());
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->first, FrameType::kReject);
    EXPECT_EQ(Text(reply->second), "authentication failed");
    EXPECT_FALSE(RawPeer::Receive(fd.get()).has_value()) << "the connection must be closed";
  }
  GoodClientsWork();
}

TEST_F(AuthenticationTest, APeerWithAWrongKeyIsRefusedOnEveryPort) {
  transport::DeviceOptions wrong;
  wrong.cluster_key = std::make_shared<const ClusterKey>(ClusterKey::Generate());
  auto device = std::move(transport::OpenDevice(wrong)).value();
  const ClusterKey& wrong_key = *wrong.cluster_key;
  for (const auto& [name, ep] : Ports()) {
    SCOPED_TRACE(name);
    // The client side notices first: the server cannot prove the client's key.
    auto qp = device->Connect(ep, DataRequest(), {}, std::chrono::seconds(10));
    ASSERT_FALSE(qp.ok());
    EXPECT_EQ(qp.status().code(), StatusCode::kPermissionDenied);
    EXPECT_NE(qp.status().message().find("failed to prove it holds the cluster key"),
              std::string::npos)
        << qp.status().ToString();
    // A wrong-key peer that answers the challenge anyway is refused by the server.
    UniqueFd fd = RawPeer::Dial(ep);
    const auto nonce = transport::auth::FreshNonce();
    RawPeer::Send(fd.get(), RawPeer::Frame(FrameType::kConnect, transport::auth::EncodeHello({nonce})));
    auto ch = RawPeer::Receive(fd.get());
    ASSERT_TRUE(ch.has_value());
    ASSERT_EQ(ch->first, FrameType::kChallenge);
    EXPECT_EQ(ch->second.size(), transport::auth::kChallengeSize);  // nothing else leaks
    auto challenge = transport::auth::DecodeChallenge(ch->second);
    ASSERT_TRUE(challenge.ok());
    transport::auth::ConnectionParams conn;
    conn.initiator = LocalEndpoint(fd.get())->ToString();
    conn.target = PeerName(fd.get());
    transport::auth::AuthRequest req;
    req.app_data = DataRequest();
    req.proof = transport::auth::InitiatorProof(wrong_key, nonce, challenge->nonce, conn,
                                                req.app_data);
    RawPeer::Send(fd.get(), RawPeer::Frame(FrameType::kAuth, transport::auth::EncodeAuthRequest(req)));
    auto reply = RawPeer::Receive(fd.get());
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->first, FrameType::kReject);
    EXPECT_FALSE(RawPeer::Receive(fd.get()).has_value());
  }
  GoodClientsWork();
}

TEST_F(AuthenticationTest, AReplayedHandshakeIsRefusedOnEveryPort) {
  const ClusterKey& key = *test_support::TestClusterKey();
  for (const auto& [name, ep] : Ports()) {
    SCOPED_TRACE(name);
    const std::vector<uint8_t> app = name == "data server" ? DataRequest() : MetaRequest();
    // Record a legitimate handshake, byte for byte.
    std::vector<uint8_t> connect_frame, auth_frame;
    {
      UniqueFd fd = RawPeer::Dial(ep);
      const auto nonce = transport::auth::FreshNonce();
      connect_frame = RawPeer::Frame(FrameType::kConnect, transport::auth::EncodeHello({nonce}));
      RawPeer::Send(fd.get(), connect_frame);
      auto ch = RawPeer::Receive(fd.get());
      ASSERT_TRUE(ch.has_value());
      ASSERT_EQ(ch->first, FrameType::kChallenge);
      auto challenge = transport::auth::DecodeChallenge(ch->second);
      ASSERT_TRUE(challenge.ok());
      transport::auth::ConnectionParams conn;
      conn.initiator = LocalEndpoint(fd.get())->ToString();
      conn.target = PeerName(fd.get());
      // The server proved the key too.
      EXPECT_TRUE(transport::auth::ProofsEqual(
          transport::auth::TargetProof(key, nonce, challenge->nonce, conn), challenge->proof));
      transport::auth::AuthRequest req;
      req.app_data = app;
      if (name == "data server") {
        // A data server also wants a session token: the replay below carries one, so a
        // token recorded off another connection's handshake is refused with it.
        datapath::SessionToken t;
        t.session = 0x5eed;
        t.issued_ms = datapath::UnixMs();
        t.expires_ms = t.issued_ms + 60'000;
        req.credential = datapath::IssueSessionToken(key, t);
      }
      req.proof = transport::auth::InitiatorProof(key, nonce, challenge->nonce, conn, app,
                                                  req.credential);
      auth_frame = RawPeer::Frame(FrameType::kAuth, transport::auth::EncodeAuthRequest(req));
      RawPeer::Send(fd.get(), auth_frame);
      auto accepted = RawPeer::Receive(fd.get());
      ASSERT_TRUE(accepted.has_value());
      ASSERT_EQ(accepted->first, FrameType::kAccept) << "the recorded handshake must be good";
    }
    // Replayed on a new connection: the server's nonce is new, so the old proof fails.
    UniqueFd fd = RawPeer::Dial(ep);
    RawPeer::Send(fd.get(), connect_frame);
    auto ch = RawPeer::Receive(fd.get());
    ASSERT_TRUE(ch.has_value());
    ASSERT_EQ(ch->first, FrameType::kChallenge);
    RawPeer::Send(fd.get(), auth_frame);
    auto reply = RawPeer::Receive(fd.get());
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->first, FrameType::kReject);
    EXPECT_FALSE(RawPeer::Receive(fd.get()).has_value());
  }
  GoodClientsWork();
}

TEST_F(AuthenticationTest, AnAddressThatKeepsFailingIsRefusedUnheardOthersAreNot) {
  // The attacker from 127.0.0.2; the good clients from 127.0.0.1 keep connecting.
  const Endpoint ep = data_->endpoint();
  for (int i = 0; i < transport::auth::AuthFailureGate::kMaxFailures; ++i) {
    UniqueFd fd = RawPeer::Dial(ep, "127.0.0.2");
    RawPeer::Send(fd.get(), RawPeer::Frame(FrameType::kConnect, DataRequest()));
    auto reply = RawPeer::Receive(fd.get());
    ASSERT_TRUE(reply.has_value()) << "attempt " << i;
    EXPECT_EQ(reply->first, FrameType::kReject);
  }
  // Now closed at once, before a word is read.
  UniqueFd fd = RawPeer::Dial(ep, "127.0.0.2");
  RawPeer::Send(fd.get(), RawPeer::Frame(FrameType::kConnect,
                                         transport::auth::EncodeHello({transport::auth::FreshNonce()})));
  EXPECT_FALSE(RawPeer::Receive(fd.get()).has_value());
  GoodClientsWork();
}

}  // namespace
}  // namespace dpmfs
