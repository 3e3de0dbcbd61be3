// The supplementary groups of a process, read from /proc/PID/status ourselves rather
// than with libfuse's fuse_req_getgroups: the libfuse of Debian 12 (3.14) reads the file
// into a 4096-byte buffer and searches it with strstr without terminating it, which
// ASan reports as a heap-buffer-overflow once the file is 4096 bytes or longer (it is,
// on this kernel), i.e. on every request of every sanitized mount.
//
// Thread-safety: pure functions (ReadProcessGroups reads a file).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace dpmfs::fs {

// The numbers of the "Groups:" line of a /proc/PID/status text, in order. False when
// there is no such line or it holds something else than numbers (nothing is appended
// then). `limit` bounds how many are kept; the rest are counted in *total.
bool ParseStatusGroups(std::string_view status, size_t limit, std::vector<uint32_t>* out,
                       size_t* total);

// The groups of process `pid` (at most `limit`; *total says how many it has). False when
// the process is gone or its status cannot be read or parsed.
bool ReadProcessGroups(pid_t pid, size_t limit, std::vector<uint32_t>* out, size_t* total);

}  // namespace dpmfs::fs
