// The transfer API of the data path: "write these pieces durably" and "read these
// pieces", each one call with one result. Below it, hidden from callers: connections
// (DataClientPool), slots and their registered buffers, pipelining up to the queue depth
// of each connection, parallelism across data servers, splitting pieces larger than one
// I/O, and reconnect/retry.
//
// Parallelism: the pieces of one call that live on different data servers are posted to
// all of those servers before the call waits for any completion; each server's pieces
// are pipelined on one connection (queue depth from DataClientOptions).
//
// Retry: a connection that fails is dropped (DataClientPool). If it came from the idle
// list (its server may have restarted while it idled), that server's pieces go again,
// once, on a fresh connection; writes and reads are idempotent. Otherwise the call fails
// with the first error, naming the server.
//
// Replication (issue 20) lives here: a piece's `where` names one location today; a
// replicated piece will name its replica set (a small fixed array of locations), Write
// will fan it out to every location as parallel lanes of the same call and succeed when
// all are durable, and Read will pick one location. Callers build pieces the same way.
//
// No allocation per operation: every call works in per-thread scratch space that keeps
// its capacity, connections are reused from the pool, and slot buffers are registered
// once per connection (tests/datapath/transfer_test.cc counts allocations).
//
// Thread-safety: thread-safe; any number of calls at once from any threads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/endpoint.h"
#include "common/status.h"
#include "datapath/data_client_pool.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

// Where a piece lives: a data server (ClusterInfo order) and an offset in its pool's
// data area. A replica set will be several of these.
struct PieceLocation {
  uint32_t server = 0;
  uint64_t pool_offset = 0;
};

// `length` bytes from `source` to `where`, durably under the persist method. A null
// source writes zeros (with data on the wire: any persist method).
struct WritePiece {
  PieceLocation where;
  uint64_t length = 0;
  const uint8_t* source = nullptr;
};

// `length` bytes from `where` into `destination`.
struct ReadPiece {
  PieceLocation where;
  uint64_t length = 0;
  uint8_t* destination = nullptr;
};

struct DataTransferOptions {
  DataClientOptions client;           // persist method, queue depth, max I/O, timeout
  uint32_t max_idle_per_server = 16;  // idle connections kept per data server
  std::vector<DataServerIdentity> expect;  // DataClientPoolOptions::expect
};

class DataTransfer {
 public:
  // `servers[i]` is data server i (ClusterInfo order). The device outlives this.
  DataTransfer(transport::Device& device, std::vector<Endpoint> servers,
               const DataTransferOptions& options);
  ~DataTransfer();
  DataTransfer(const DataTransfer&) = delete;
  DataTransfer& operator=(const DataTransfer&) = delete;

  // Writes every piece durably (under the persist method) before returning OK. On an
  // error some pieces may have been written. InvalidArgument for an unknown server;
  // OutOfRange for a piece outside its pool; Unavailable/TimedOut for a data-path
  // failure, naming the server.
  Status Write(std::span<const WritePiece> pieces);
  // Reads every piece. Same errors.
  Status Read(std::span<const ReadPiece> pieces);

  // Connects to `server` (or finds an idle connection) and keeps the connection idle:
  // Unavailable naming the server when it cannot be reached, NotSupported-style
  // messages when the persist method cannot run on this device.
  Status Probe(uint32_t server);

  size_t num_servers() const { return pool_.num_servers(); }
  const Endpoint& endpoint(uint32_t server) const { return pool_.endpoint(server); }
  const DataTransferOptions& options() const { return options_; }
  // Connections made so far (tests: reconnects after a failure are visible here).
  uint64_t connects() const { return pool_.connects(); }

 private:
  struct Lane;
  struct Scratch;
  template <class Piece>
  Status Run(std::span<const Piece> pieces);

  const DataTransferOptions options_;
  DataClientPool pool_;
};

}  // namespace dpmfs::datapath
