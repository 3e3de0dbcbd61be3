// Identity at connect (issue 18), against real dpmfs-data processes: a client whose
// cluster map names pool 0 at a data server that serves pool 1 (servers started in
// swapped order), or a pool of another cluster, is refused with a message naming both;
// the right map connects.
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/daemon_process.h"
#include "common/pool.h"
#include "datapath/transfer.h"
#include "tests/support/test_cluster_key.h"

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kPoolSize = 8ull << 20;

class DataServerIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-identity-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    cluster_ = pool::ClusterUuid::Generate();
    for (uint32_t i = 0; i < 2; ++i) {
      const std::string path = (dir_ / ("data" + std::to_string(i) + ".pool")).string();
      pool::FormatOptions fo;
      fo.geometry = {pool::Role::kData, i == 1 && other_cluster_for_1_ ? pool::ClusterUuid::Generate()
                                                                      : cluster_,
                     i, 4096, kPoolSize};
      auto made = pool::FormatPool(path, fo);
      ASSERT_TRUE(made.ok()) << made.status().ToString();
      data_size_ = made->data_size;
      DaemonOptions d;
      d.name = "data server " + std::to_string(i);
      d.log_prefix = "data" + std::to_string(i);
      d.log_dir = dir_.string();
      d.argv = {DPMFS_DATA_BIN, "--pool", path, "--listen", "127.0.0.1:0"};
      auto p = DaemonProcess::Start(d, 1);
      ASSERT_TRUE(p.ok()) << p.status().ToString();
      servers_[i] = std::move(*p);
    }
    transport::DeviceOptions o;
    o.cluster_key = test_support::TestClusterKey();
    device_ = std::move(transport::OpenDevice(o)).value();
  }
  void TearDown() override {
    servers_[0].reset();
    servers_[1].reset();
    fs::remove_all(dir_);
  }

  // A transfer whose map says data server i is at `endpoints[i]`, pool i of cluster_.
  std::unique_ptr<DataTransfer> Transfer(const Endpoint& e0, const Endpoint& e1) {
    DataTransferOptions o;
    o.client.queue_depth = 1;
    o.client.max_io_size = 4096;
    o.client.token = SessionTokenSource::SelfIssued(test_support::TestClusterKey(), "identity_test",
                                                    kSelfIssuedTokenLifetime);
    for (uint32_t i = 0; i < 2; ++i) o.expect.push_back({cluster_.bytes, i, 4096, data_size_});
    return std::make_unique<DataTransfer>(*device_, std::vector<Endpoint>{e0, e1}, o);
  }

  bool other_cluster_for_1_ = false;
  fs::path dir_;
  pool::ClusterUuid cluster_;
  uint64_t data_size_ = 0;
  std::unique_ptr<DaemonProcess> servers_[2];
  std::unique_ptr<transport::Device> device_;
};

TEST_F(DataServerIdentityTest, TheRecordedServersConnect) {
  auto t = Transfer(servers_[0]->endpoint(), servers_[1]->endpoint());
  EXPECT_TRUE(t->Probe(0).ok());
  EXPECT_TRUE(t->Probe(1).ok());
}

TEST_F(DataServerIdentityTest, ServersInSwappedOrderAreRefusedNamingBothSides) {
  auto t = Transfer(servers_[1]->endpoint(), servers_[0]->endpoint());
  Status st = t->Probe(0);
  ASSERT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("serves pool 1 of cluster " + cluster_.ToString()), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("name pool 0 of cluster " + cluster_.ToString()), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find(servers_[1]->endpoint().ToString()), std::string::npos);
  EXPECT_EQ(t->Probe(1).code(), StatusCode::kFailedPrecondition);
}

class OtherClusterTest : public DataServerIdentityTest {
 protected:
  void SetUp() override {
    other_cluster_for_1_ = true;
    DataServerIdentityTest::SetUp();
  }
};

TEST_F(OtherClusterTest, APoolOfAnotherClusterIsRefused) {
  auto t = Transfer(servers_[0]->endpoint(), servers_[1]->endpoint());
  EXPECT_TRUE(t->Probe(0).ok());
  Status st = t->Probe(1);
  ASSERT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("a pool of another cluster"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace dpmfs::datapath
