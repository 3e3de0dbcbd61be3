// The data server's own limits (issue 17, "Resource limits"; datapath/README.md,
// "Limits"): connections in all and per peer address, connection buffers per connection
// and in all, each refused with a message naming the limit; no connection starts a
// server thread of its own; what a client held comes back when it leaves.
#include <dirent.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/data_protocol.h"
#include "datapath/data_server.h"

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;
using namespace transport;

size_t ThreadCount() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.' ? 1 : 0;
  ::closedir(d);
  return n;
}

class DataServerLimitsTest : public ::testing::Test {
 protected:
  void Start(const DataServerLimits& limits) {
    dir_ = fs::temp_directory_path() / ("dpmfs-dsl-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    pool_path_ = (dir_ / "data0.pool").string();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, pool::ClusterUuid::Generate(), 0, 4096, 16ull << 20};
    ASSERT_TRUE(pool::FormatPool(pool_path_, fo).ok());
    device_ = std::move(OpenDevice(DeviceOptions{})).value();
    DataServerOptions so;
    so.pool_path = pool_path_;
    so.listen = Endpoint{"127.0.0.1", 0};
    so.limits = limits;
    auto s = DataServer::Start(*device_, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  void TearDown() override {
    server_.reset();
    device_.reset();
    fs::remove_all(dir_);
  }
  Result<std::unique_ptr<DataClient>> Connect(PersistMethod m, uint32_t qd = 16,
                                              uint32_t io = 1u << 20) {
    DataClientOptions o;
    o.method = m;
    o.queue_depth = qd;
    o.max_io_size = io;
    return DataClient::Connect(*device_, server_->endpoint(), o);
  }
  // Waits until the server holds `n` connections (it reaps departed ones at accept).
  bool WaitOpen(uint64_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (server_->stats().open_connections == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  fs::path dir_;
  std::string pool_path_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<DataServer> server_;
};

TEST_F(DataServerLimitsTest, ConnectionsBeyondTheCapAreRefusedClearly) {
  DataServerLimits lim;
  lim.max_connections = 4;
  ASSERT_NO_FATAL_FAILURE(Start(lim));
  std::vector<std::unique_ptr<DataClient>> held;
  for (int i = 0; i < 4; ++i) {
    auto c = Connect(PersistMethod::kRead);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    held.push_back(std::move(c).value());
  }
  auto over = Connect(PersistMethod::kRead);
  ASSERT_FALSE(over.ok()) << "a fifth connection was accepted with --max-connections 4";
  EXPECT_EQ(over.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(over.status().message().find("--max-connections"), std::string::npos)
      << over.status().ToString();
  held.pop_back();  // one leaves: its place comes back
  auto again = Connect(PersistMethod::kRead);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST_F(DataServerLimitsTest, ConnectionsPerPeerAreCapped) {
  DataServerLimits lim;
  lim.max_connections_per_peer = 2;
  ASSERT_NO_FATAL_FAILURE(Start(lim));
  auto a = Connect(PersistMethod::kRead);
  auto b = Connect(PersistMethod::kRead);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = Connect(PersistMethod::kRead);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("127.0.0.1"), std::string::npos) << c.status().ToString();
  EXPECT_NE(c.status().message().find("--max-connections-per-peer"), std::string::npos);
}

// rpc connections hold queue depth x (32 + I/O size) of receive buffers: one asking for
// more than the per-connection limit, and any beyond the server's budget, are refused;
// the budget comes back when a client leaves.
TEST_F(DataServerLimitsTest, ConnectionBuffersAreBudgeted) {
  DataServerLimits lim;
  lim.max_connection_buffer_bytes = 8ull << 20;
  lim.max_buffer_bytes = 12ull << 20;
  ASSERT_NO_FATAL_FAILURE(Start(lim));
  auto big = Connect(PersistMethod::kRpc, 16, 1u << 20);  // 16 MiB
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("--max-connection-buffer-bytes"), std::string::npos)
      << big.status().ToString();
  auto first = Connect(PersistMethod::kRpc, 6, 1u << 20);  // ~6 MiB
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = Connect(PersistMethod::kRpc, 7, 1u << 20);  // ~7 MiB: over 12 in all
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("--max-buffer-bytes"), std::string::npos)
      << second.status().ToString();
  EXPECT_LE(server_->stats().buffer_bytes, lim.max_buffer_bytes);
  first->reset();
  ASSERT_TRUE(WaitOpen(0)) << "the departed client's connection was kept";
  EXPECT_EQ(server_->stats().buffer_bytes, 0u);
  auto third = Connect(PersistMethod::kRpc, 7, 1u << 20);
  EXPECT_TRUE(third.ok()) << "the budget did not come back: " << third.status().ToString();
}

// No connection starts a server thread of its own: one-sided methods never involve the
// server's CPU, and imm/rpc messages are handled on the transport's receive thread. Each
// connection costs the soft QPs' receive threads only (two here, initiator and target;
// a server thread per imm/rpc connection made it three); the server reaps departed
// ones by their QP state.
class DataServerThreadsTest : public DataServerLimitsTest,
                              public ::testing::WithParamInterface<PersistMethod> {};

TEST_P(DataServerThreadsTest, ConnectionsStartNoServerThread) {
  ASSERT_NO_FATAL_FAILURE(Start(DataServerLimits{}));
  const size_t before = ThreadCount();
  std::vector<std::unique_ptr<DataClient>> held;
  std::vector<uint8_t> data(4096, 0x5a);
  for (int i = 0; i < 20; ++i) {
    auto c = Connect(GetParam(), 4, 64u << 10);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    // A write each, so every thread a connection ever has is there.
    ASSERT_TRUE((*c)->Write(uint64_t(i) * data.size(), data.data(),
                            static_cast<uint32_t>(data.size())).ok());
    held.push_back(std::move(c).value());
  }
  ASSERT_TRUE(WaitOpen(20));
  const size_t added = ThreadCount() - before;
  EXPECT_LE(added, 2u * 20 + 2) << "20 " << PersistMethodName(GetParam())
                                << " connections added " << added << " threads";
  held.clear();
  EXPECT_TRUE(WaitOpen(0)) << "departed clients were kept";
}

INSTANTIATE_TEST_SUITE_P(Methods, DataServerThreadsTest,
                         ::testing::Values(PersistMethod::kRead, PersistMethod::kImm,
                                           PersistMethod::kRpc),
                         [](const auto& info) {
                           return std::string(PersistMethodName(info.param));
                         });

}  // namespace
}  // namespace dpmfs::datapath
