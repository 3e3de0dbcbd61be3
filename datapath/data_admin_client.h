// Asks a data server an admin request (stats, log level, fence) on a connection of its own
// (ConnectPurpose::kAdmin, data_protocol.h): `dpmfs stats`, `dpmfs log-level`. The
// connection is authenticated by the transport's cluster-key handshake like any other.
//
// Thread-safety: a free function; each call has its own connection.
#pragma once

#include <chrono>

#include "common/endpoint.h"
#include "common/status.h"
#include "datapath/data_protocol.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

// The server's reply (its own code and message when it refused the request), or the
// connection's failure (Unavailable naming the server, TimedOut after `timeout`).
Result<AdminReply> AskDataServer(transport::Device& device, const Endpoint& server,
                                 const AdminRequest& request, std::chrono::milliseconds timeout);

// AdminKind::kFence: raises the server's fence to `epoch` (docs/replication.md,
// "Fencing"); returns the fence now in force there (>= epoch). The server's refusal or
// the connection's failure otherwise, and Corruption for a reply without the fence.
Result<uint64_t> InstallFence(transport::Device& device, const Endpoint& server, uint64_t epoch,
                              std::chrono::milliseconds timeout);

}  // namespace dpmfs::datapath
