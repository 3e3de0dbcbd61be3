// The handshake's messages and proofs (transport/connection_auth.h): round trips, the
// decoders' refusals of hostile bytes, and proofs bound to role, nonces, connection and
// request.
#include <gtest/gtest.h>

#include "transport/connection_auth.h"

namespace dpmfs::transport::auth {
namespace {

TEST(ConnectionAuth, MessagesRoundTripAndTolerateOnlyZeroPadding) {
  Hello h{FreshNonce()};
  auto bytes = EncodeHello(h);
  ASSERT_EQ(bytes.size(), kHelloSize);
  auto back = DecodeHello(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->nonce, h.nonce);
  bytes.resize(kMaxConnectPrivateData, 0);  // verbs pads private data with zeros
  EXPECT_TRUE(DecodeHello(bytes).ok());
  bytes.back() = 1;
  EXPECT_EQ(DecodeHello(bytes).status().code(), StatusCode::kCorruption);

  Challenge c{FreshNonce(), {}};
  c.proof[0] = 7;
  auto cb = EncodeChallenge(c);
  ASSERT_EQ(cb.size(), kChallengeSize);
  auto cback = DecodeChallenge(cb);
  ASSERT_TRUE(cback.ok());
  EXPECT_EQ(cback->proof, c.proof);

  AuthRequest a;
  a.app_data = {1, 2, 3};
  auto ab = EncodeAuthRequest(a);
  auto aback = DecodeAuthRequest(ab);
  ASSERT_TRUE(aback.ok()) << aback.status().ToString();
  EXPECT_EQ(aback->app_data, a.app_data);
}

TEST(ConnectionAuth, DecodersRefuseHostileBytes) {
  auto hello = EncodeHello({FreshNonce()});
  for (size_t n = 0; n < hello.size(); ++n) {  // every truncation
    EXPECT_FALSE(DecodeHello(std::span(hello.data(), n)).ok()) << n;
  }
  auto bad_magic = hello;
  bad_magic[0] ^= 1;
  EXPECT_EQ(DecodeHello(bad_magic).status().code(), StatusCode::kCorruption);
  auto bad_version = hello;
  bad_version[4] = 9;
  EXPECT_EQ(DecodeHello(bad_version).status().code(), StatusCode::kNotSupported);
  auto reserved = hello;
  reserved[6] = 1;
  EXPECT_FALSE(DecodeHello(reserved).ok());
  // A challenge is not a hello, and the other way round.
  EXPECT_FALSE(DecodeChallenge(hello).ok());
  // An app_data length beyond its cap or beyond the bytes there.
  AuthRequest a;
  a.app_data.assign(kMaxConnectPrivateData + 1, 1);
  auto too_long = EncodeAuthRequest(a);
  EXPECT_FALSE(DecodeAuthRequest(too_long).ok());
  a.app_data.assign(8, 1);
  auto lying = EncodeAuthRequest(a);
  lying[40] = 50;  // claims 50 bytes, 8 follow
  EXPECT_FALSE(DecodeAuthRequest(lying).ok());
}

TEST(ConnectionAuth, ProofsBindKeyRoleNoncesConnectionAndRequest) {
  ClusterKey key = ClusterKey::Generate();
  ClusterKey other = ClusterKey::Generate();
  Nonce ni = FreshNonce(), nt = FreshNonce();
  ConnectionParams conn{Backend::kSoft, "127.0.0.1:40000", "127.0.0.1:7000"};
  std::vector<uint8_t> app = {1, 2, 3};
  Proof p = InitiatorProof(key, ni, nt, conn, app);
  EXPECT_TRUE(ProofsEqual(p, InitiatorProof(key, ni, nt, conn, app)));
  EXPECT_FALSE(ProofsEqual(p, InitiatorProof(other, ni, nt, conn, app)));
  EXPECT_FALSE(ProofsEqual(p, InitiatorProof(key, FreshNonce(), nt, conn, app)));
  EXPECT_FALSE(ProofsEqual(p, InitiatorProof(key, ni, FreshNonce(), conn, app)));
  ConnectionParams moved = conn;
  moved.initiator = "127.0.0.1:40001";
  EXPECT_FALSE(ProofsEqual(p, InitiatorProof(key, ni, nt, moved, app)));
  ConnectionParams verbs = conn;
  verbs.backend = Backend::kVerbs;
  EXPECT_FALSE(ProofsEqual(p, InitiatorProof(key, ni, nt, verbs, app)));
  EXPECT_FALSE(ProofsEqual(p, InitiatorProof(key, ni, nt, conn, std::vector<uint8_t>{1, 2, 4})));
  // A target's proof cannot be reflected as an initiator's (empty request) or back.
  EXPECT_FALSE(ProofsEqual(TargetProof(key, ni, nt, conn), InitiatorProof(key, ni, nt, conn, {})));
}

TEST(ConnectionAuth, GateRefusesAnAddressAfterRepeatedFailuresOnly) {
  AuthFailureGate gate;
  for (int i = 0; i < AuthFailureGate::kMaxFailures; ++i) {
    EXPECT_TRUE(gate.Admit("10.9.9.9:" + std::to_string(1000 + i)));
    gate.Failed("10.9.9.9:" + std::to_string(1000 + i), "soft", "test");
  }
  EXPECT_FALSE(gate.Admit("10.9.9.9:2000"));  // any port of that address
  EXPECT_TRUE(gate.Admit("10.9.9.8:2000"));   // another address
  EXPECT_EQ(gate.failures(), static_cast<uint64_t>(AuthFailureGate::kMaxFailures));
  EXPECT_EQ(gate.refused(), 1u);
}

}  // namespace
}  // namespace dpmfs::transport::auth
