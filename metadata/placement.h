// Placement of a block's copies: one pure function shared by the metadata server
// (allocation, scrubbing of freed blocks, resync) and the client (reads and writes), so
// both always agree where the R copies of a block are. docs/replication.md.
//
// Chained declustering over regions: with R > 1 every data pool's data area is cut into
// R regions of region() bytes (the smallest pool's data area / R, whole blocks). Region 0
// of server s holds its primaries; region k holds the k-th copies of server (s-k)'s:
//
//   replica k of the block at primary (s, o), o < region():  ((s+k) mod N, k*region() + o)
//
// The allocator of server s hands out [0, PrimaryCapacity(s)) only. An extent names its
// replica set by its primary (Extent::server, Extent::pool_offset). With R = 1 the
// function is the identity and a server's whole data area is its primary region: the
// layout of a cluster without replication.
//
// Thread-safety: an immutable value; any number of threads may use one.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/status.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

struct ReplicaLocation {
  uint32_t server = 0;
  uint64_t pool_offset = 0;
  bool operator==(const ReplicaLocation&) const = default;
};

class Placement {
 public:
  // `data_sizes[i]`: bytes of data pool i's data area. InvalidArgument when replicas is
  // not in 1..kMaxReplicas or exceeds the pool count, or a region would hold no block.
  static Result<Placement> Make(uint32_t replicas, uint32_t block_size,
                                const std::vector<uint64_t>& data_sizes);
  // From what the metadata server tells its clients.
  static Result<Placement> For(const ClusterInfo& cluster);

  uint32_t replicas() const { return replicas_; }
  uint32_t servers() const { return static_cast<uint32_t>(data_sizes_.size()); }
  // Bytes of each region (R > 1); with R = 1, 0 (no regions: the whole pool is primary).
  uint64_t region() const { return region_; }
  // Bytes at the start of server s's data area that hold its primaries.
  uint64_t PrimaryCapacity(uint32_t server) const {
    return replicas_ == 1 ? data_sizes_[server] : region_;
  }
  // Copy k (0 = the primary itself) of the bytes at primary (server, pool_offset).
  ReplicaLocation Replica(uint32_t server, uint64_t pool_offset, uint32_t k) const {
    return {(server + k) % servers(), k * region_ + pool_offset};
  }
  // Whether [pool_offset, pool_offset+length) lies inside server's primary region.
  bool InPrimaryRegion(uint32_t server, uint64_t pool_offset, uint64_t length) const {
    return server < servers() && pool_offset <= PrimaryCapacity(server) &&
           length <= PrimaryCapacity(server) - pool_offset;
  }

 private:
  Placement(uint32_t replicas, uint64_t region, std::vector<uint64_t> data_sizes)
      : replicas_(replicas), region_(region), data_sizes_(std::move(data_sizes)) {}

  uint32_t replicas_ = 1;
  uint64_t region_ = 0;
  std::vector<uint64_t> data_sizes_;
};

}  // namespace dpmfs::meta
