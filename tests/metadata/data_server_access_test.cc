// The metadata server's access to the data servers (metadata/data_server_access.h)
// against a real DataServer in process over the soft transport: fences installed on its
// admin connections, its own connections moving to the fenced epoch, and a data server
// that restarted (fence 0 again) fenced again by the next probe, which had to connect
// afresh (docs/replication.md, "Fencing"); and the pool instance a probe reports, new
// after the pool is formatted again.
#include "metadata/data_server_access.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/pool.h"
#include "datapath/data_server.h"
#include "datapath/session_token.h"

namespace dpmfs::meta {
namespace {

namespace fs = std::filesystem;

class DataServerAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-access-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    pool_ = (dir_ / "data0.pool").string();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, pool::ClusterUuid::Generate(), 0, 4096, 8ull << 20};
    ASSERT_TRUE(pool::FormatPool(pool_, fo).ok());
    transport::DeviceOptions dev;
    dev.cluster_key = key_;
    server_device_ = std::move(transport::OpenDevice(dev)).value();
    client_device_ = std::move(transport::OpenDevice(dev)).value();
    ASSERT_NO_FATAL_FAILURE(StartServer(Endpoint{"127.0.0.1", 0}));
    token_ = datapath::SessionTokenSource::SelfIssued(key_, "data_server_access_test",
                                                      datapath::kSelfIssuedTokenLifetime);
    access_ = std::make_unique<TransferDataServerAccess>(
        *client_device_, std::vector<Endpoint>{server_->endpoint()},
        std::vector<datapath::DataServerIdentity>{}, token_);
  }
  void TearDown() override {
    access_.reset();
    server_.reset();
    fs::remove_all(dir_);
  }
  void StartServer(const Endpoint& listen) {
    datapath::DataServerOptions so;
    so.pool_path = pool_;
    so.listen = listen;
    so.token_key = key_;
    auto s = datapath::DataServer::Start(*server_device_, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }

  fs::path dir_;
  std::string pool_;
  std::shared_ptr<const ClusterKey> key_ = std::make_shared<const ClusterKey>(ClusterKey::Generate());
  std::unique_ptr<transport::Device> server_device_, client_device_;
  std::unique_ptr<datapath::DataServer> server_;
  std::shared_ptr<datapath::SessionTokenSource> token_;
  std::unique_ptr<TransferDataServerAccess> access_;
};

TEST_F(DataServerAccessTest, FenceMovesItsOwnConnectionsAlongAndSurvivesARestartOfTheServer) {
  ASSERT_TRUE(access_->Probe(0).ok());  // an idle connection of epoch 0
  Status st = access_->InstallFence(0, 5);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(server_->stats().fence, 5u);
  EXPECT_EQ(token_->Get().epoch, 5u) << "its own tokens carry the fenced epoch";
  // Its epoch-0 connection was revoked; the probe goes on a fresh one, which is served.
  st = access_->Probe(0);
  EXPECT_TRUE(st.ok()) << st.ToString();

  // The data server restarts (same pool, same port): its fence is 0 again, and the
  // metadata server saw no probe fail.
  const Endpoint at = server_->endpoint();
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(StartServer(at));
  EXPECT_EQ(server_->stats().fence, 0u);
  st = access_->Probe(0);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(server_->stats().fence, 5u) << "the restarted server was not fenced again";
  // A probe on the connection it keeps installs nothing more (no admin connection).
  const uint64_t accepted = server_->stats().connections;
  ASSERT_TRUE(access_->Probe(0).ok());
  EXPECT_EQ(server_->stats().connections, accepted);
}

TEST_F(DataServerAccessTest, AProbeSaysWhichFormatOfThePoolTheServerServes) {
  EXPECT_EQ(access_->PoolInstance(0), 0u);  // never reached yet
  ASSERT_TRUE(access_->Probe(0).ok());
  auto info = pool::ReadPoolHeader(pool_);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  const uint64_t first = access_->PoolInstance(0);
  EXPECT_EQ(first, info->created_unix_ns);
  EXPECT_NE(first, 0u);

  // The pool deleted and formatted again (same cluster, index and geometry), the server
  // started on it at the same address: the next probe sees another instance.
  const Endpoint at = server_->endpoint();
  server_.reset();
  pool::FormatOptions fo;
  fo.geometry = {pool::Role::kData, info->cluster, 0, 4096, 8ull << 20};
  fo.force = true;
  ASSERT_TRUE(pool::FormatPool(pool_, fo).ok());
  ASSERT_NO_FATAL_FAILURE(StartServer(at));
  Status st = access_->Probe(0);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto again = pool::ReadPoolHeader(pool_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(access_->PoolInstance(0), again->created_unix_ns);
  EXPECT_NE(access_->PoolInstance(0), first);
}

}  // namespace
}  // namespace dpmfs::meta
