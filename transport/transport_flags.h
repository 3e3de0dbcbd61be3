// The daemons' command-line flags for the transport's resource limits (DeviceOptions'
// soft_* fields), in one place so dpmfs-data and dpmfs-meta list the same flags with
// the same defaults in --help.
//
// Thread-safety: call while building the command line, before parsing.
#pragma once

#include <CLI/CLI.hpp>

#include "transport/transport.h"

namespace dpmfs::transport {

void AddSoftLimitFlags(CLI::App& app, DeviceOptions* options);

}  // namespace dpmfs::transport
