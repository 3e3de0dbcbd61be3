#include "common/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>

namespace dpmfs {

Result<uint64_t> RaiseOpenFileLimit(uint64_t needed) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::FromErrno(errno, "getrlimit(NOFILE)");
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? needed : std::min<rlim_t>(needed, rl.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return Status::FromErrno(errno, "setrlimit(NOFILE)");
  }
  return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : uint64_t{rl.rlim_cur};
}

}  // namespace dpmfs
