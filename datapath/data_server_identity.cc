#include "datapath/data_server_identity.h"

#include <string>

#include "common/pool.h"

namespace dpmfs::datapath {
namespace {

std::string Describe(const std::array<uint8_t, 16>& cluster, uint32_t index, uint32_t block_size,
                     uint64_t data_size) {
  return "pool " + std::to_string(index) + " of cluster " + pool::ClusterUuid{cluster}.ToString() +
         " (block size " + std::to_string(block_size) + ", data area " +
         std::to_string(data_size) + " bytes)";
}

}  // namespace

Status CheckDataServerIdentity(const ServerInfo& got, const DataServerIdentity& want,
                               const Endpoint& where, std::string_view records) {
  if (got.cluster == want.cluster && got.pool_index == want.index &&
      got.block_size == want.block_size && got.pool.length == want.data_size) {
    return Status::OK();
  }
  std::string what = got.cluster != want.cluster ? "a pool of another cluster"
                     : got.pool_index != want.index ? "another pool of this cluster"
                                                    : "a pool of another geometry";
  return Status::FailedPrecondition(
      "data server " + where.ToString() + " serves " +
      Describe(got.cluster, got.pool_index, got.block_size, got.pool.length) + ", but " +
      std::string(records) + " name " +
      Describe(want.cluster, want.index, want.block_size, want.data_size) +
      " at that address (" + what +
      ": data servers started in another order, or with another pool?); refused");
}

}  // namespace dpmfs::datapath
