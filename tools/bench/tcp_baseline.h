// The raw-TCP floor the soft transport is measured against: what one plain TCP round
// trip of the same bytes costs on this machine, with no RNIC model on top.
//
//   ping-pong: the client sends an N-byte message, the server answers with 8 bytes; the
//              next message goes once the answer arrived (QD1). N -> 8 is the least a
//              persistent write of N bytes must move over a software NIC in one round trip.
//   stream:    `depth` messages outstanding, each answered by 8 bytes; a new message goes
//              as soon as an answer arrives (the queue-depth equivalent of Submit/Reap).
//
// The server is a thread of the benchmark on 127.0.0.1, port 0. Per connection it reads
// whatever bytes have arrived (one recv of up to 256 KiB) and answers every message they
// complete with one send of 8 bytes each, coalesced: the cheapest a blocking TCP server
// can be without busy-polling.
//
// Thread-safety: TcpBaselineServer::Start/Stop from one thread; the Run* functions are
// independent and each uses its own connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "common/endpoint.h"
#include "common/socket.h"
#include "common/status.h"
#include "tools/bench/latency_histogram.h"

namespace dpmfs::bench {

// How long a cell runs: a warm-up whose operations are not recorded, then the measured
// window.
struct CellTiming {
  double warmup_seconds = 0.05;
  double seconds = 1.0;
};

class TcpBaselineServer {
 public:
  static Result<std::unique_ptr<TcpBaselineServer>> Start();
  ~TcpBaselineServer();

  Endpoint endpoint() const { return endpoint_; }
  // Stops accepting, closes the connection being served, joins the thread. Idempotent.
  void Stop();

 private:
  TcpBaselineServer() = default;
  void Loop();
  void Serve(UniqueFd fd);

  UniqueFd listen_fd_;
  Endpoint endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<int> active_fd_{-1};
  std::thread thread_;
};

// One ping-pong cell: N-byte message, 8-byte answer, QD1. Latency per message is
// send -> answer received.
Result<Measurement> RunTcpPingPong(const Endpoint& server, uint32_t size,
                                   const CellTiming& timing, LatencyHistogram* hist);
// One stream cell: `depth` N-byte messages outstanding. Latency per message is its send
// -> its answer received (answers come back in order).
Result<Measurement> RunTcpStream(const Endpoint& server, uint32_t size, uint32_t depth,
                                 const CellTiming& timing, LatencyHistogram* hist);

}  // namespace dpmfs::bench
