// Scratch space for metadata tests: a directory (MakeTestDir) and a formatted metadata
// pool for two fictitious data pools (FormatTestMetaPool). The metadata server never
// talks to data servers, so nothing else needs to exist.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "common/pool.h"
#include "metadata/meta_store.h"

namespace dpmfs::meta {

// A new scratch directory, on tmpfs where there is one: /dev/shm/dpmfs-WHAT-XXXXXX.
inline std::string MakeTestDir(const std::string& what) {
  std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
  std::string tmpl = base + "/dpmfs-" + what + "-XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  EXPECT_NE(made, nullptr);
  return tmpl;
}

struct TestMetaPool {
  uint64_t pool_size = 8ull << 20;
  uint32_t block_size = 4096;
  uint64_t stripe_unit = 64 * 1024;
  uint64_t data_pool_bytes = 64ull << 20;
  double journal_fraction = MetaFormatOptions{}.journal_fraction;
};

// Use with ASSERT_NO_FATAL_FAILURE.
inline void FormatTestMetaPool(const std::string& path, const TestMetaPool& p) {
  pool::FormatOptions fo;
  fo.geometry.role = pool::Role::kMetadata;
  fo.geometry.cluster = pool::ClusterUuid::Generate();
  fo.geometry.index = 0;
  fo.geometry.block_size = p.block_size;
  fo.geometry.pool_size = p.pool_size;
  auto made = pool::FormatPool(path, fo);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  auto mapped = pool::MappedPool::Open(path, {});
  ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
  MetaFormatOptions mo;
  mo.stripe_unit = p.stripe_unit;
  mo.journal_fraction = p.journal_fraction;
  for (uint32_t i = 0; i < 2; ++i) {
    mo.data_pools.push_back(DataPoolGeometry{i, p.block_size, p.data_pool_bytes});
  }
  Status st = MetaStore::Format(*mapped, mo);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

}  // namespace dpmfs::meta
