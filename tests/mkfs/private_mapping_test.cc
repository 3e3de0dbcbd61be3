// mkfs/private_mapping.h: what mkfs.dpmfs check's read-only promise rests on. The metadata
// store's own writes (a journal append, a whole checkpoint) through a private mapping
// must leave the pool file byte for byte as it was, while the process sees them.
#include "mkfs/private_mapping.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "metadata/meta_store.h"
#include "tests/metadata/meta_test_pool.h"

namespace dpmfs::mkfs {
namespace {

std::vector<char> Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

TEST(PrivateMappingTest, TheStoresWritesNeverReachTheFile) {
  const std::string dir = meta::MakeTestDir("private-mapping");
  const std::string path = dir + "/meta.pool";
  ASSERT_NO_FATAL_FAILURE(meta::FormatTestMetaPool(path, meta::TestMetaPool{}));
  const std::vector<char> before = Bytes(path);

  auto mem = MapPrivateCopy(path);
  ASSERT_TRUE(mem.ok()) << mem.status().ToString();
  auto store = meta::MetaStore::Open(std::move(*mem), pool::OpenExpectations{});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  meta::RecoveryStats stats;
  ASSERT_TRUE((*store)->Recover([](std::span<const uint8_t>) { return Status::OK(); },
                                [](uint64_t, std::span<const uint8_t>) { return Status::OK(); },
                                &stats)
                  .ok());
  const std::vector<uint8_t> record(100, 0x5a);
  auto lsn = (*store)->Append(record);
  ASSERT_TRUE(lsn.ok()) << lsn.status().ToString();
  const std::vector<uint8_t> blob(5000, 0xa5);
  ASSERT_TRUE((*store)->WriteCheckpoint(*lsn, blob).ok());
  EXPECT_EQ((*store)->last_lsn(), *lsn);  // the process saw its writes
  store->reset();

  EXPECT_TRUE(Bytes(path) == before) << "a store through the private mapping reached " << path;
  std::filesystem::remove_all(dir);
}

TEST(PrivateMappingTest, RefusesWhatItCannotMapPrivately) {
  auto missing = MapPrivateCopy("/nonexistent/dpmfs/meta.pool");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot open /nonexistent/dpmfs/meta.pool"),
            std::string::npos)
      << missing.status().ToString();
  auto dev = MapPrivateCopy("/dev/null");  // a character device, as device DAX is
  EXPECT_EQ(dev.status().code(), StatusCode::kNotSupported) << dev.status().ToString();
}

}  // namespace
}  // namespace dpmfs::mkfs
