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
// Replication (docs/replication.md): a piece names its replica set, `where` (the first
// copy) plus `more[0..more_count)`, each on a distinct data server. Write gives every copy
// a lane of the same call, so all copies are posted (each with the persist method) before
// any is waited on, and succeeds only when every copy is durable. Read takes each piece
// from one copy (spread by offset) and reads the pieces whose server failed again from
// the next copy, until every copy was tried.
//
// No allocation per operation: every call works in per-thread scratch space that keeps
// its capacity, connections are reused from the pool, and slot buffers are registered
// once per connection (tests/datapath/transfer_test.cc counts allocations).
//
// Thread-safety: thread-safe; any number of calls at once from any threads.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "common/endpoint.h"
#include "common/status.h"
#include "datapath/data_client_pool.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

// Where a piece lives: a data server (ClusterInfo order) and an offset in its pool's
// data area. A replica set is several of these, on distinct servers.
struct PieceLocation {
  uint32_t server = 0;
  uint64_t pool_offset = 0;
};

// The most copies of a piece (== meta::kMaxReplicas).
inline constexpr uint32_t kMaxReplicas = 3;

// The copies of a piece beyond `where`: more[0..count). Empty for an unreplicated piece.
struct MoreReplicas {
  std::array<PieceLocation, kMaxReplicas - 1> at{};
  uint32_t count = 0;
};

// `length` bytes from `source` to `where` and every location of `more`, durably under
// the persist method. A null source writes zeros (with data on the wire: any persist
// method).
struct WritePiece {
  PieceLocation where;
  uint64_t length = 0;
  const uint8_t* source = nullptr;
  MoreReplicas more;
};

// `length` bytes from `where` (or, if it fails, a location of `more`) into `destination`.
struct ReadPiece {
  PieceLocation where;
  uint64_t length = 0;
  uint8_t* destination = nullptr;
  MoreReplicas more;
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

  // Writes every piece durably (under the persist method) to every copy before returning
  // OK. On an error some pieces may have been written. InvalidArgument for an unknown
  // server or a replica set naming a server twice;
  // OutOfRange for a piece outside its pool; Unavailable/TimedOut for a data-path
  // failure, naming the server.
  Status Write(std::span<const WritePiece> pieces);
  // Reads every piece from one of its copies. Same errors, the last copy's when every
  // copy of a piece failed.
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
  // DataClientPool::pool_instance: which format of its pool `server` served at the
  // latest connection (0: none yet, or not said).
  uint64_t pool_instance(uint32_t server) const { return pool_.pool_instance(server); }

 private:
  struct Lane;
  struct Scratch;
  // The calling thread's scratch (kept between calls: no allocation once warm).
  static Scratch& ThreadScratch();
  // One round: every piece on every lane it goes to (a write: every copy; a read: the
  // copy sc.copy names, none for kDone).
  template <class Piece>
  Status Run(std::span<const Piece> pieces, Scratch& sc);

  const DataTransferOptions options_;
  DataClientPool pool_;
};

}  // namespace dpmfs::datapath
