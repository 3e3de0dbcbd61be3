#include "tools/bench/process_cpu.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>

namespace dpmfs::bench {
namespace {

// utime + stime (fields 14 and 15 of /proc/PID/stat) in clock ticks. The command name
// (field 2) is in parentheses and may contain spaces: the fields are counted from the
// last ')'.
Result<uint64_t> ReadStatTicks(pid_t pid) {
  std::string path = pid == 0 ? "/proc/self/stat" : "/proc/" + std::to_string(pid) + "/stat";
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return Status::NotFound("no process " + std::to_string(pid) + " (cannot read " + path + ")");
  }
  size_t close = line.rfind(')');
  if (close == std::string::npos) return Status::Corruption("unexpected format of " + path);
  std::istringstream fields(line.substr(close + 1));
  std::string skip;
  // After ')': field 3 (state) .. field 13 (cmajflt) are 11 fields, then utime, stime.
  for (int i = 3; i <= 13; ++i) fields >> skip;
  uint64_t utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return Status::Corruption("unexpected format of " + path);
  return utime + stime;
}

}  // namespace

Result<ProcessCpu> ProcessCpu::Open(pid_t pid) {
  ProcessCpu p;
  p.pid_ = pid;
  if (pid < 0) return Status::InvalidArgument("pid " + std::to_string(pid) + " is not a pid");
  if (pid != 0 && ::kill(pid, 0) != 0 && errno == ESRCH) {
    return Status::NotFound("no process with pid " + std::to_string(pid));
  }
  if (pid == 0) {
    p.clock_ = CLOCK_PROCESS_CPUTIME_ID;
    p.use_clock_ = true;
  } else if (::clock_getcpuclockid(pid, &p.clock_) == 0) {
    p.use_clock_ = true;
  }
  if (p.use_clock_) {
    timespec ts;
    if (::clock_gettime(p.clock_, &ts) != 0) p.use_clock_ = false;
  }
  if (!p.use_clock_) {
    long hz = ::sysconf(_SC_CLK_TCK);
    if (hz <= 0) hz = 100;
    p.tick_ns_ = 1'000'000'000ull / static_cast<uint64_t>(hz);
    DPMFS_RETURN_IF_ERROR(ReadStatTicks(pid).status());
  }
  return p;
}

Result<uint64_t> ProcessCpu::ReadNanos() const {
  if (use_clock_) {
    timespec ts;
    if (::clock_gettime(clock_, &ts) != 0) {
      return Status::FromErrno(errno, "reading the CPU clock of process " + std::to_string(pid_));
    }
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  }
  DPMFS_ASSIGN_OR_RETURN(uint64_t ticks, ReadStatTicks(pid_));
  return ticks * tick_ns_;
}

}  // namespace dpmfs::bench
