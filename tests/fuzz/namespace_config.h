// The namespace geometry the metadata fuzz targets (journal records, checkpoints, the
// metadata store) and their seed generator share: two small data pools, so that the
// allocators are cheap to build for every input and seeds made with it load in the
// targets.
#pragma once

#include <string>

#include "metadata/namespace.h"

namespace dpmfs::fuzz {

inline constexpr uint32_t kFuzzBlock = 4096;
inline constexpr uint32_t kFuzzStripeUnit = 64 * 1024;
inline constexpr uint64_t kFuzzDataPoolBytes = 16ull << 20;

inline meta::NamespaceConfig FuzzNamespaceConfig() {
  meta::NamespaceConfig c;
  c.block_size = kFuzzBlock;
  c.stripe_unit = kFuzzStripeUnit;
  for (uint32_t i = 0; i < 2; ++i) {
    c.pools.push_back(meta::DataPoolGeometry{i, kFuzzBlock, kFuzzDataPoolBytes});
  }
  c.root_time = meta::Timespec{1600000000, 5};
  c.max_inodes = 1u << 20;
  c.reply_cache_entries = 8;
  c.lease_ms = 1000;
  c.cluster.block_size = kFuzzBlock;
  c.cluster.stripe_unit = kFuzzStripeUnit;
  for (uint32_t i = 0; i < 2; ++i) {
    c.cluster.servers.push_back(
        meta::DataServerInfo{i, "127.0.0.1:" + std::to_string(7001 + i), kFuzzDataPoolBytes});
  }
  return c;
}

}  // namespace dpmfs::fuzz
