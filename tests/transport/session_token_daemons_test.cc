// Session tokens end to end, with the real daemons: a dpmfs-meta with a short lease
// (1.5 s) issues them at registration and every renewal, a dpmfs-data checks them. A
// client that stops renewing (its session lapses and is ended by the metadata server)
// loses one-sided access within one lease, and its last token, replayed on a new
// connection, is refused; a client that renews keeps working across several token
// lifetimes, its connections replaced under it.
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/daemon_process.h"
#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/session_token.h"
#include "datapath/transfer.h"
#include "metadata/meta_client.h"
#include "tests/metadata/meta_test_server.h"
#include "tests/transport/meta_and_data_daemons.h"
#include "tests/support/test_cluster_key.h"

namespace dpmfs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kLeaseMs = 1500;

class SessionTokenDaemonsTest : public test_support::MetaAndDataDaemons {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartDaemons("dpmfs-tokens", kLeaseMs));
    transport::DeviceOptions dev;
    dev.cluster_key = test_support::TestClusterKey();
    device_ = std::move(transport::OpenDevice(dev)).value();
  }

  // A registered client whose tokens land in `token`.
  std::unique_ptr<meta::MetaClient> Register(const std::shared_ptr<datapath::SessionTokenSource>& token,
                                             bool heartbeat) {
    meta::MetaClientOptions mo;
    mo.client_name = "session_token_daemons_test";
    mo.heartbeat = heartbeat;
    mo.on_data_token = [token](std::vector<uint8_t> b) { EXPECT_TRUE(token->Set(std::move(b)).ok()); };
    auto mc = meta::MetaClient::Connect(*device_, meta_->endpoint(), mo);
    EXPECT_TRUE(mc.ok()) << mc.status().ToString();
    return mc.ok() ? std::move(*mc) : nullptr;
  }

  datapath::DataClientOptions ClientOptions(std::shared_ptr<datapath::SessionTokenSource> token) {
    datapath::DataClientOptions o;
    o.queue_depth = 1;
    o.max_io_size = 4096;
    o.timeout = 2s;
    o.token = std::move(token);
    return o;
  }

  std::unique_ptr<transport::Device> device_;
};

TEST_F(SessionTokenDaemonsTest, LapsedSessionLosesOneSidedAccessWithinOneLease) {
  auto token = std::make_shared<datapath::SessionTokenSource>();
  auto mc = Register(token, /*heartbeat=*/false);  // it will stop renewing at once
  ASSERT_NE(mc, nullptr);
  ASSERT_FALSE(token->Get().bytes.empty()) << "no token issued at registration";
  auto fields = datapath::DecodeSessionToken(token->Get().bytes);
  ASSERT_TRUE(fields.ok());
  EXPECT_EQ(fields->session, mc->session());
  EXPECT_EQ(fields->expires_ms - fields->issued_ms, int64_t{kLeaseMs});

  auto dc = datapath::DataClient::Connect(*device_, data_->endpoint(), ClientOptions(token));
  ASSERT_TRUE(dc.ok()) << dc.status().ToString();
  uint8_t block[4096];
  std::memset(block, 0x6b, sizeof block);
  ASSERT_TRUE((*dc)->Write(8192, block, sizeof block).ok());
  uint8_t back[4096];
  ASSERT_TRUE((*dc)->Read(8192, back, sizeof back).ok());

  // One lease after the last renewal (plus the data server's 200 ms reaping period and
  // slack for a loaded machine) the access is gone.
  const auto deadline = Clock::now() + std::chrono::milliseconds(kLeaseMs) + 800ms;
  std::this_thread::sleep_until(deadline);
  Status read = (*dc)->Read(8192, back, sizeof back);
  EXPECT_FALSE(read.ok()) << "a one-sided READ of a lapsed session succeeded";
  Status write = (*dc)->Write(8192, block, sizeof block);
  EXPECT_FALSE(write.ok()) << "a one-sided WRITE of a lapsed session succeeded";

  // Its last token, replayed on a new connection: refused.
  auto again = datapath::DataClient::Connect(*device_, data_->endpoint(), ClientOptions(token));
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("expired"), std::string::npos)
      << again.status().ToString();
}

TEST_F(SessionTokenDaemonsTest, RenewingClientKeepsWorkingAcrossTokenLifetimes) {
  auto token = std::make_shared<datapath::SessionTokenSource>();
  auto mc = Register(token, /*heartbeat=*/true);
  ASSERT_NE(mc, nullptr);
  const int64_t first_issued = token->Get().issued_ms;
  datapath::DataTransferOptions o;
  o.client = ClientOptions(token);
  datapath::DataTransfer transfer(*device_, {data_->endpoint()}, o);
  // Three token lifetimes of I/O, one block every 50 ms: every call must succeed, on
  // connections the pool replaces as their tokens age.
  const auto end = Clock::now() + std::chrono::milliseconds(3 * kLeaseMs);
  uint8_t block[4096], back[4096];
  int calls = 0;
  for (uint32_t i = 0; Clock::now() < end; ++i, ++calls) {
    std::memset(block, static_cast<int>(i), sizeof block);
    const uint64_t off = 4096ull * (i % 64);
    datapath::WritePiece w{{0, off}, sizeof block, block, {}};
    Status ws = transfer.Write({&w, 1});
    ASSERT_TRUE(ws.ok()) << "call " << i << ": " << ws.ToString();
    datapath::ReadPiece r{{0, off}, sizeof back, back, {}};
    Status rs = transfer.Read({&r, 1});
    ASSERT_TRUE(rs.ok()) << "call " << i << ": " << rs.ToString();
    ASSERT_EQ(std::memcmp(block, back, sizeof block), 0);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(calls, 20);
  EXPECT_GT(token->Get().issued_ms, first_issued) << "the token was never renewed";
  EXPECT_GE(transfer.connects(), 2u) << "connections were never replaced";
}

}  // namespace
}  // namespace dpmfs
