// The open-file limit of a daemon: every connection is a descriptor, so a server that
// caps its connections at N needs N plus its own files. Raising the soft limit to what
// the caps need (up to the hard limit) keeps accept() from failing with EMFILE below
// the caps; what the hard limit does not allow is reported, not silently assumed.
//
// Thread-safety: call at start, before threads open descriptors.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace dpmfs {

// Raises RLIMIT_NOFILE's soft limit to at least `needed` if the hard limit allows (to
// the hard limit otherwise). Returns the soft limit now in force.
Result<uint64_t> RaiseOpenFileLimit(uint64_t needed);

}  // namespace dpmfs
