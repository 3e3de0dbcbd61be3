// Zeroing data-pool ranges from the metadata server: the scrub of freed blocks before
// they are allocated again, and the tail of a truncated file's last block.
//
// Why the metadata server does it (metadata/ops_files.cc, "Bytes nobody wrote"):
// a client that zeroes bytes it was not asked to write, on the strength of what it has
// cached (a size, an extent's unwritten flag), destroys what another client wrote and
// had acknowledged meanwhile. Only the side that frees or shrinks knows which bytes are
// no longer anybody's, so it makes them zero, and writers write their own bytes only.
//
// The data server does the zeroing itself on request (datapath/data_protocol.h,
// kDescriptorZero): nothing but a header crosses the wire, and a pool on tmpfs stays
// sparse.
//
// Thread-safety: Zero may be called from any number of threads (one connection per
// data server, taken for one request at a time, so a truncate's tail is not held up
// behind a long scrub of the same server).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "common/endpoint.h"
#include "common/mutex.h"
#include "common/status.h"
#include "datapath/data_client.h"
#include "transport/transport.h"

namespace dpmfs::meta {

class RangeZeroer {
 public:
  virtual ~RangeZeroer() = default;
  // Makes [pool_offset, pool_offset+length) of data pool `server` read as zeros,
  // durably, before returning OK.
  virtual Status Zero(uint32_t server, uint64_t pool_offset, uint64_t length) = 0;
};

// The real one: one rpc-method connection per data server, opened on first use and
// again after a failure. Before its first request on a connection it checks that the
// server serves the pool it is meant to (cluster, index, block size): zeroing another
// cluster's pool, or the data servers given in the wrong order, would destroy data.
class DataServerZeroer : public RangeZeroer {
 public:
  struct Server {
    Endpoint endpoint;
    uint32_t index = 0;
    uint32_t block_size = 0;
    uint64_t data_size = 0;  // bytes of the pool's data area, as the metadata pool says
  };
  // `token`: the session token its connections present (the metadata server vouches
  // for itself: SessionTokenSource::SelfIssued); null where data servers check none.
  DataServerZeroer(transport::Device& device, const std::array<uint8_t, 16>& cluster,
                   std::vector<Server> servers,
                   std::shared_ptr<datapath::SessionTokenSource> token = nullptr);
  ~DataServerZeroer() override;

  Status Zero(uint32_t server, uint64_t pool_offset, uint64_t length) override;

 private:
  struct Connection {
    Mutex mu;
    std::unique_ptr<datapath::DataClient> client GUARDED_BY(mu);
  };
  Status ConnectLocked(uint32_t server, Connection& c) REQUIRES(c.mu);

  transport::Device& device_;
  const std::array<uint8_t, 16> cluster_;
  const std::vector<Server> servers_;
  const std::shared_ptr<datapath::SessionTokenSource> token_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace dpmfs::meta
