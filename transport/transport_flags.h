// The daemons' command-line flags for the limits of their connections: the transport's
// (DeviceOptions' soft_* fields) and the connection caps of the server above it (the
// data server's, the RPC server's), in one place so dpmfs-data and dpmfs-meta list the
// same flags with the same words in --help.
//
// Thread-safety: call while building the command line, before parsing.
#pragma once

#include <CLI/CLI.hpp>

#include "transport/transport.h"

namespace dpmfs::transport {

void AddSoftLimitFlags(CLI::App& app, DeviceOptions* options);

// --max-connections and --max-connections-per-peer (per peer address, port aside).
void AddConnectionLimitFlags(CLI::App& app, uint32_t* max_connections,
                             uint32_t* max_connections_per_peer);

}  // namespace dpmfs::transport
