// CPU time of a whole process (every thread, including threads that already exited),
// for the CPU-per-operation columns of `dpmfs-bench meta`.
//
// Why a file of its own: on a machine with few cores the benchmark's client threads and
// the server it measures share the CPUs, so ops/s says little about what the server alone
// could sustain. CPU time per operation of each process does: it is what separates
// "the server is the bottleneck" from "the clients ate the machine".
//
// Source: the process's CPU-time clock (clock_getcpuclockid + clock_gettime), which the
// kernel keeps in ns (sum_exec_runtime of the thread group) and which includes threads
// that exited. Summing /proc/PID/task/*/schedstat would give the same precision for live
// threads only: the benchmark's own client threads exit before the window's end is
// sampled, and a server thread that exits inside a window would make the delta wrong.
// When the clock is unavailable, utime+stime of /proc/PID/stat is used instead: whole
// process too, but in clock ticks (1/sysconf(_SC_CLK_TCK), 10 ms on usual kernels), which
// is good to ~1% only for windows of >= 1 s.
//
// Thread-safety: a ProcessCpu is immutable after Open; Read() may be called from any
// thread.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace dpmfs::bench {

class ProcessCpu {
 public:
  // The process `pid`; 0 means this process. NotFound when there is no such process.
  static Result<ProcessCpu> Open(pid_t pid);

  // CPU time (user + system, all threads) the process has used since it started, in ns.
  // Fails once the process is gone.
  Result<uint64_t> ReadNanos() const;

  pid_t pid() const { return pid_; }
  // "cpu-clock" (ns) or "proc-stat" (clock ticks of `tick_ns()`), for reports.
  const char* source() const { return use_clock_ ? "cpu-clock" : "proc-stat"; }
  // Granularity of ReadNanos in ns: 1 for the CPU clock, a clock tick for /proc/PID/stat.
  uint64_t tick_ns() const { return tick_ns_; }

 private:
  pid_t pid_ = 0;
  bool use_clock_ = false;
  clockid_t clock_{};
  uint64_t tick_ns_ = 1;
};

}  // namespace dpmfs::bench
