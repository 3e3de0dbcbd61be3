#include "metadata/placement.h"

#include <algorithm>
#include <string>

namespace dpmfs::meta {

Result<Placement> Placement::Make(uint32_t replicas, uint32_t block_size,
                                  const std::vector<uint64_t>& data_sizes) {
  if (replicas == 0 || replicas > kMaxReplicas) {
    return Status::InvalidArgument("replication factor " + std::to_string(replicas) +
                                   " is not in 1.." + std::to_string(kMaxReplicas));
  }
  if (data_sizes.size() < replicas) {
    return Status::InvalidArgument("replication factor " + std::to_string(replicas) +
                                   " needs at least as many data servers; there are " +
                                   std::to_string(data_sizes.size()));
  }
  if (block_size == 0) return Status::InvalidArgument("block size 0");
  uint64_t region = 0;
  if (replicas > 1) {
    const uint64_t smallest = *std::min_element(data_sizes.begin(), data_sizes.end());
    region = smallest / replicas / block_size * block_size;
    if (region == 0) {
      return Status::InvalidArgument("data pools of " + std::to_string(smallest) +
                                     " bytes are too small for " + std::to_string(replicas) +
                                     " copies of a block");
    }
  }
  return Placement(replicas, region, data_sizes);
}

Result<Placement> Placement::For(const ClusterInfo& cluster) {
  std::vector<uint64_t> sizes;
  sizes.reserve(cluster.servers.size());
  for (const DataServerInfo& s : cluster.servers) sizes.push_back(s.data_size);
  return Make(cluster.replicas, cluster.block_size, sizes);
}

}  // namespace dpmfs::meta
