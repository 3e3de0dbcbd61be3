// DataServerZeroer against a real data server in process: it zeroes through the zero
// request, and refuses a data server that does not serve the pool the metadata pool
// names at that address (wrong index, block size, data-area size or cluster), since
// zeroing there would destroy another pool's data.
#include "metadata/block_scrubber.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/data_server.h"

namespace dpmfs::meta {
namespace {

class BlockScrubberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("dpmfs-scrub-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string pool = (dir_ / "data1.pool").string();
    cluster_ = pool::ClusterUuid::Generate();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, cluster_, 1, 4096, 16ull << 20};
    auto info = pool::FormatPool(pool, fo);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    data_size_ = info->data_size;
    device_ = std::move(transport::OpenDevice(transport::DeviceOptions{})).value();
    datapath::DataServerOptions so;
    so.pool_path = pool;
    so.listen = Endpoint{"127.0.0.1", 0};
    auto s = datapath::DataServer::Start(*device_, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  void TearDown() override {
    server_.reset();
    device_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A zeroer that believes the server at server_'s address serves `want`.
  std::unique_ptr<DataServerZeroer> Zeroer(DataServerZeroer::Server want,
                                           const pool::ClusterUuid& cluster) {
    want.endpoint = server_->endpoint();
    return std::make_unique<DataServerZeroer>(*device_, cluster.bytes,
                                              std::vector<DataServerZeroer::Server>{want});
  }

  std::filesystem::path dir_;
  pool::ClusterUuid cluster_;
  uint64_t data_size_ = 0;
  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<datapath::DataServer> server_;
};

TEST_F(BlockScrubberTest, ZeroesThroughTheRightServerOnly) {
  datapath::DataClientOptions o;
  auto c = datapath::DataClient::Connect(*device_, server_->endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<uint8_t> data(3 << 20, 0xAB);  // three zero requests' worth
  for (uint32_t off = 0; off < data.size(); off += 1u << 20) {
    ASSERT_TRUE((*c)->Write(off, data.data() + off, 1u << 20).ok());
  }
  const DataServerZeroer::Server right{{}, 1, 4096, data_size_};
  for (auto wrong : {DataServerZeroer::Server{{}, 0, 4096, data_size_},
                     DataServerZeroer::Server{{}, 1, 8192, data_size_},
                     DataServerZeroer::Server{{}, 1, 4096, data_size_ + 4096}}) {
    Status st = Zeroer(wrong, cluster_)->Zero(0, 0, data.size());
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  }
  Status other = Zeroer(right, pool::ClusterUuid::Generate())->Zero(0, 0, data.size());
  EXPECT_EQ(other.code(), StatusCode::kFailedPrecondition) << other.ToString();
  EXPECT_EQ(server_->stats().zeroed_bytes, 0u) << "zeroed a pool it did not mean";

  Status ok = Zeroer(right, cluster_)->Zero(0, 4096, data.size() - 8192);
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  std::vector<uint8_t> back(1u << 20);
  ASSERT_TRUE((*c)->Read(0, back.data(), 4096).ok());
  EXPECT_EQ(back[0], 0xAB);
  ASSERT_TRUE((*c)->Read(4096, back.data(), 1u << 20).ok());
  EXPECT_EQ(back, std::vector<uint8_t>(1u << 20, 0));
  ASSERT_TRUE((*c)->Read(data.size() - 4096, back.data(), 4096).ok());
  EXPECT_EQ(back[0], 0xAB);
  EXPECT_EQ(server_->stats().zeroed_bytes, data.size() - 8192);
}

}  // namespace
}  // namespace dpmfs::meta
