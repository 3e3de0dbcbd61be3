// Who a data server says it is, checked against the cluster's records at connect (issue
// 18): after authentication the data server states its cluster UUID, pool index, block
// size and data-area size (ServerInfo, in the accept private data); a client (from the
// metadata server's ClusterInfo) and the metadata server (from its superblock) compare
// them and refuse a mismatch, so two data servers given in swapped order, or a pool of
// another cluster, never receive a byte.
//
// Thread-safety: values and a pure function.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "common/endpoint.h"
#include "common/status.h"
#include "datapath/data_protocol.h"

namespace dpmfs::datapath {

struct DataServerIdentity {
  std::array<uint8_t, 16> cluster{};
  uint32_t index = 0;
  uint32_t block_size = 0;
  uint64_t data_size = 0;  // bytes of the pool's data area
};

// OK when `got` is `want`; else FailedPrecondition naming both sides: what the server at
// `where` serves and what `records` (e.g. "the metadata server's cluster map") say.
Status CheckDataServerIdentity(const ServerInfo& got, const DataServerIdentity& want,
                               const Endpoint& where, std::string_view records);

}  // namespace dpmfs::datapath
