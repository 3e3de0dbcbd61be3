// What the metadata server does on the data servers for the cluster map
// (docs/replication.md): probe one (is it alive and serving its pool?), copy a range
// from one server's pool to another's (resync), and raise one's fence (the epoch below
// which it serves no client). The zeroing of freed blocks is
// block_scrubber.h's.
//
// The real one goes through the transfer API (datapath/transfer.h) with its own
// connections: one-sided READs from the source, persistent WRITEs (the `read` persist
// method) to the target, every connection checked to serve the pool the metadata pool
// names at that index. Tests put a fake in its place (MetaServiceOptions).
//
// Thread-safety: thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/endpoint.h"
#include "common/status.h"
#include "datapath/data_server_identity.h"
#include "datapath/session_token.h"
#include "datapath/transfer.h"
#include "transport/transport.h"

namespace dpmfs::meta {

class DataServerAccess {
 public:
  virtual ~DataServerAccess() = default;
  // OK when data server `server` answers a one-byte READ of its pool (on a connection
  // that is fresh if the last one failed); the failure otherwise. A probe that had to
  // connect afresh may have met a restarted data server, whose fence is 0: the real
  // access installs the highest fence it installed anywhere there again, and fails the
  // probe when it cannot (docs/replication.md, "Fencing").
  virtual Status Probe(uint32_t server) = 0;
  // Which format of its pool `server` served at its latest successful probe
  // (datapath::ServerInfo::pool_instance, the pool header's creation time): 0 when
  // not known (never reached, or a data server that does not say it).
  virtual uint64_t PoolInstance(uint32_t server) = 0;
  // Copies `length` bytes from (from, from_offset) to (to, to_offset), durable on `to`
  // when it returns OK.
  virtual Status Copy(uint32_t from, uint64_t from_offset, uint32_t to, uint64_t to_offset,
                      uint64_t length) = 0;
  // Raises data server `server`'s fence to `epoch` (datapath::DataServer::RaiseFence):
  // OK once it refuses, and has revoked, every client connection whose token is of an
  // older epoch. This access's own connections carry `epoch` from then on.
  virtual Status InstallFence(uint32_t server, uint64_t epoch) = 0;
};

class TransferDataServerAccess : public DataServerAccess {
 public:
  // `servers[i]`: data server i's endpoint; `expect[i]`: who it must be; `token`: the
  // session token its connections present to data servers that check them (the
  // metadata server vouches for itself; null: none presented).
  TransferDataServerAccess(transport::Device& device, std::vector<Endpoint> servers,
                           std::vector<datapath::DataServerIdentity> expect,
                           std::shared_ptr<datapath::SessionTokenSource> token = nullptr);
  Status Probe(uint32_t server) override;
  // The instance the latest connection to it reported: a probe that succeeded used
  // either that connection or one made since.
  uint64_t PoolInstance(uint32_t server) override;
  Status Copy(uint32_t from, uint64_t from_offset, uint32_t to, uint64_t to_offset,
              uint64_t length) override;
  // On an admin connection of its own (datapath/data_admin_client.h).
  Status InstallFence(uint32_t server, uint64_t epoch) override;

 private:
  transport::Device& device_;
  std::shared_ptr<datapath::SessionTokenSource> token_;
  std::unique_ptr<datapath::DataTransfer> transfer_;
  // The highest fence a server took: at most the published epoch (a change is
  // journaled after its fences), so clients' current tokens pass it.
  std::atomic<uint64_t> fence_{0};
};

}  // namespace dpmfs::meta
