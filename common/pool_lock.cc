#include "common/pool_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace dpmfs::pool {
namespace {

Status InUse(const std::string& path) {
  return Status::FailedPrecondition(path + " is in use by " + DescribeLockHolder(path) +
                                    ", which holds its pool lock (a running dpmfs-data, "
                                    "dpmfs-meta or mkfs.dpmfs); stop it first");
}

// The command name of `pid` ("dpmfs-data"), or empty.
std::string CommandOf(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

}  // namespace

Status PoolLock::LockDescriptor(int fd, const std::string& path) {
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return InUse(path);
    return Status::FromErrno(errno, "cannot lock pool " + path);
  }
  return Status::OK();
}

Result<PoolLock> PoolLock::Acquire(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status::NotFound("pool " + path + " does not exist");
    return Status::FromErrno(errno, "cannot open pool " + path + " to lock it");
  }
  DPMFS_RETURN_IF_ERROR(LockDescriptor(fd.get(), path));
  return PoolLock(std::move(fd));
}

Status CheckPoolNotInUse(const std::string& path) {
  Result<PoolLock> probe = PoolLock::Acquire(path);
  if (probe.ok() || probe.status().code() == StatusCode::kNotFound) return Status::OK();
  return probe.status();
}

std::string DescribeLockHolder(const std::string& path) {
  const std::string unknown = "another process";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return unknown;
  // /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF" (major:minor in hex,
  // then the inode); blocked waiters are "1: -> FLOCK ..." and are skipped.
  std::ifstream in("/proc/locks");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string id, type, mode, access, pid, where;
    if (!(words >> id >> type) || type == "->" || type != "FLOCK") continue;
    if (!(words >> mode >> access >> pid >> where) || access != "WRITE") continue;
    unsigned major = 0, minor = 0;
    unsigned long long ino = 0;
    if (std::sscanf(where.c_str(), "%x:%x:%llu", &major, &minor, &ino) != 3) continue;
    if (ino != st.st_ino || major != ::major(st.st_dev) || minor != ::minor(st.st_dev)) {
      continue;
    }
    std::string comm = CommandOf(pid);
    return "pid " + pid + (comm.empty() ? "" : " (" + comm + ")");
  }
  return unknown;
}

}  // namespace dpmfs::pool
