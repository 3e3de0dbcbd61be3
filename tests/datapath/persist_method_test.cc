// Each persist method, end to end over the soft transport: a real data server on a
// real pool file (libpmem mapping), a DataClient, and the pool's memory inspected
// directly. The soft NIC's drain delay is set far above the test's duration, so the
// only way written bytes reach the pool in time is the method's own persistence step:
// a durable method's completion must mean "in the pool", and `none` must show the
// hazard the project exists to close.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/data_server.h"

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;
using transport::DeviceOptions;

constexpr uint32_t kHugeDrainDelayUs = 30'000'000;  // 30 s: nothing drains by itself

class PersistMethodTest : public ::testing::TestWithParam<PersistMethod> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-persist-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(counter_++));
    fs::create_directories(dir_);
    pool_path_ = (dir_ / "data0.pool").string();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, pool::ClusterUuid::Generate(), 0, 4096, 64ull << 20};
    ASSERT_TRUE(pool::FormatPool(pool_path_, fo).ok());

    DeviceOptions server_dev;
    server_dev.soft_drain_delay_us = kHugeDrainDelayUs;
    auto sd = transport::OpenDevice(server_dev);
    ASSERT_TRUE(sd.ok()) << sd.status().ToString();
    server_device_ = std::move(sd).value();
    DataServerOptions so;
    so.pool_path = pool_path_;
    so.listen = Endpoint{"127.0.0.1", 0};
    auto server = DataServer::Start(*server_device_, so);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();

    auto cd = transport::OpenDevice(DeviceOptions{});
    ASSERT_TRUE(cd.ok());
    client_device_ = std::move(cd).value();

    // The test inspects the pool through its own mapping of the same file.
    auto view = pool::MappedPool::Open(pool_path_, {});
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    view_ = std::make_unique<pool::MappedPool>(std::move(view).value());
  }

  void TearDown() override {
    view_.reset();
    server_.reset();
    server_device_.reset();
    client_device_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<DataClient> Connect(uint32_t qd = 1, uint32_t max_io = 1 << 16) {
    DataClientOptions o;
    o.method = GetParam();
    o.queue_depth = qd;
    o.max_io_size = max_io;
    auto c = DataClient::Connect(*client_device_, server_->endpoint(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  bool InPool(uint64_t offset, const std::vector<uint8_t>& data) {
    return std::memcmp(view_->data() + offset, data.data(), data.size()) == 0;
  }

  static inline int counter_ = 0;
  fs::path dir_;
  std::string pool_path_;
  std::unique_ptr<transport::Device> server_device_, client_device_;
  std::unique_ptr<DataServer> server_;
  std::unique_ptr<pool::MappedPool> view_;
};

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng() | 1);  // never all zero
  return v;
}

// A completed write is in the pool (durable methods) or, for none, not yet.
TEST_P(PersistMethodTest, CompletionMeansDataIsInThePool) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  for (uint32_t size : {64u, 4096u, 65536u}) {
    auto data = Pattern(size, size);
    uint64_t offset = uint64_t{size} * 7;
    ASSERT_TRUE(client->Write(offset, data.data(), size).ok());
    if (IsDurable(GetParam())) {
      EXPECT_TRUE(InPool(offset, data)) << "size " << size << ": completion before placement";
    } else {
      EXPECT_FALSE(InPool(offset, data)) << "none: the NIC buffer hazard did not show";
    }
  }
}

// Pipelined writes at queue depth 16 all complete, each durable, data intact.
TEST_P(PersistMethodTest, PipelinedWritesAreEachDurable) {
  constexpr uint32_t kQd = 16, kSize = 4096, kWrites = 3000;
  auto client = Connect(kQd, kSize);
  ASSERT_NE(client, nullptr);
  std::vector<std::vector<uint8_t>> expect(kWrites);
  std::vector<uint64_t> offset_of_slot(kQd);
  std::vector<uint32_t> write_of_slot(kQd);
  uint32_t next = 0, completed = 0;
  std::vector<SlotResult> done;
  std::vector<uint32_t> free_slots;
  for (uint32_t s = 0; s < kQd; ++s) free_slots.push_back(s);
  while (completed < kWrites) {
    while (!free_slots.empty() && next < kWrites) {
      uint32_t s = free_slots.back();
      free_slots.pop_back();
      expect[next] = Pattern(kSize, 1000 + next);
      std::memcpy(client->slot_buffer(s), expect[next].data(), kSize);
      offset_of_slot[s] = uint64_t{next} * kSize;
      write_of_slot[s] = next;
      ASSERT_TRUE(client->Submit(s, offset_of_slot[s], kSize).ok());
      ++next;
    }
    done.clear();
    ASSERT_TRUE(client->Reap(&done).ok());
    for (const SlotResult& r : done) {
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      if (IsDurable(GetParam())) {
        ASSERT_TRUE(InPool(offset_of_slot[r.slot], expect[write_of_slot[r.slot]]))
            << "write " << write_of_slot[r.slot] << " reported durable but not in the pool";
      }
      free_slots.push_back(r.slot);
      ++completed;
    }
  }
  // Read back through the client: READ drains, so even `none` data is visible now.
  std::vector<uint8_t> got(kSize);
  for (uint32_t i = 0; i < kWrites; i += 37) {
    ASSERT_TRUE(client->Read(uint64_t{i} * kSize, got.data(), kSize).ok());
    EXPECT_EQ(got, expect[i]) << "write " << i;
  }
}

// Ranges outside the pool are refused on the client before anything is sent.
TEST_P(PersistMethodTest, OutOfRangeWritesAreRefused) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  std::vector<uint8_t> data(4096, 0xAB);
  uint64_t size = client->data_size();
  EXPECT_EQ(client->Write(size - 100, data.data(), 4096).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(client->Write(~uint64_t{0} - 10, data.data(), 4096).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(client->Write(size - 4096, data.data(), 4096).ok());
}

INSTANTIATE_TEST_SUITE_P(AllMethods, PersistMethodTest,
                         ::testing::ValuesIn(AllPersistMethods()),
                         [](const auto& info) { return std::string(PersistMethodName(info.param)); });

}  // namespace
}  // namespace dpmfs::datapath
