// Whether a host named in a cluster file is this machine: mkfs.dpmfs cluster formats only
// the lines whose address is this host's, so one cluster file serves every host.
//
// A host is local when it resolves (getaddrinfo, numeric or by name) to a loopback
// address (127.0.0.0/8, ::1) or to an address of one of this machine's interfaces
// (getifaddrs). In a network namespace the interfaces are the namespace's.
//
// Thread-safety: free functions, safe to call concurrently.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace dpmfs {

// True when `host` is one of this machine's addresses; InvalidArgument when it does not
// resolve at all (a typo is reported, never taken as "another host").
Result<bool> IsLocalHost(const std::string& host);

// This machine's interface addresses, numeric ("10.0.0.1", "fe80::1"), for messages.
std::vector<std::string> LocalAddresses();

}  // namespace dpmfs
