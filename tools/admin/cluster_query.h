// Asks every server of a cluster (the metadata server and each data server) an admin
// request on its usual, authenticated port: stats (and, through the metadata server,
// the clients' last pushed stats) and the log level. dpmfs-admin's engine.
//
// Thread-safety: free functions; one call at a time per Device is not required.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/endpoint.h"
#include "common/stats_report.h"
#include "common/status.h"
#include "transport/transport.h"

namespace dpmfs::admin {

// One server asked: what it answered, or why not.
struct ServerAnswer {
  std::string role;  // "meta" or "data"
  int index = -1;    // a data server's index in the cluster file
  Endpoint endpoint;
  Status error;      // OK when it answered
  std::vector<metrics::StatsReport> reports;  // meta: its own first, then its clients'
};

struct ClusterAddresses {
  Endpoint meta;
  std::vector<Endpoint> data;
};

// Asks each server for its stats; a server that does not answer is an answer too.
std::vector<ServerAnswer> AskStats(transport::Device& device, const ClusterAddresses& cluster,
                                   std::chrono::milliseconds timeout);

// Sets the log level of the metadata server (`data_index` < 0 and meta true), or of one
// data server, or of every server. Returns each server's answer (error set on refusal).
std::vector<ServerAnswer> SetLogLevel(transport::Device& device, const ClusterAddresses& cluster,
                                      const std::string& target, const std::string& level,
                                      std::chrono::milliseconds timeout);

}  // namespace dpmfs::admin
