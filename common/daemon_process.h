// A dpmfs daemon (dpmfs-data, dpmfs-meta) run as a child process of a tool or test:
// started with fork/exec, ready once it printed its `READY <host:port>` line, killed with
// SIGKILL (a crash / the simulated power loss) and reaped. The child never outlives its
// parent: the destructor kills and reaps it, the child asks the kernel for SIGKILL when
// the parent dies (PR_SET_PDEATHSIG), and InstallSignalCleanup covers SIGINT/SIGTERM.
// Note: PR_SET_PDEATHSIG fires when the THREAD that called Start exits, not only the
// process: start long-lived daemons from a thread that outlives their use.
//
// The daemon's stdout and stderr go to files in `log_dir` (not pipes: a pipe nobody
// reads could block the daemon, and a closed one would kill it with SIGPIPE); the
// stderr tail goes into every error message about the daemon.
//
// Thread-safety: one thread owns a DaemonProcess; SendKill() may be called from any
// thread while the owner is not calling Wait/destroying it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.h"
#include "common/status.h"

namespace dpmfs {

struct DaemonOptions {
  std::vector<std::string> argv;  // argv[0] is the executable's path
  std::string name = "daemon";    // for messages: "data server", "metadata server"
  std::string log_dir;            // where the daemon's stdout/stderr files go
  std::string log_prefix = "daemon";  // files are <log_prefix>-<generation>.{out,err}
  bool keep_logs = false;         // leave the log files behind
  std::chrono::milliseconds start_timeout{10000};
};

class DaemonProcess {
 public:
  // Spawns the daemon and waits for its READY line. `generation` numbers the log files.
  // Errors name the command and carry the daemon's stderr tail.
  static Result<std::unique_ptr<DaemonProcess>> Start(const DaemonOptions& options,
                                                      uint64_t generation);
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  pid_t pid() const { return pid_; }
  const Endpoint& endpoint() const { return endpoint_; }
  const std::string& command() const { return command_; }

  // kill(pid, SIGKILL); async-signal-safe and callable from another thread.
  void SendKill();
  // Reaps the child (after SendKill or when it exited by itself) within `timeout`.
  // Returns how it ended ("killed by signal 9", "exited with status 1").
  Result<std::string> Wait(std::chrono::milliseconds timeout);
  // Whether the child has exited (reaping it if so), without blocking.
  bool Exited();
  // After Wait/Exited returned true: whether SIGKILL ended it (and not a crash or exit).
  bool KilledBySigkill() const;
  // The last `max_bytes` of the daemon's stderr, for error messages.
  std::string StderrTail(size_t max_bytes = 4096) const;

 private:
  DaemonProcess() = default;
  Status WaitReady(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  Endpoint endpoint_;
  std::string command_;
  std::string name_;
  std::string out_path_;
  std::string err_path_;
  bool keep_logs_ = false;
};

// Installs SIGINT/SIGTERM/SIGHUP handlers that SIGKILL every running daemon and note
// the signal, so that the run stops at the next check and cleans up (scratch directory)
// on its way out. A second signal acts at once (default action). Call once, early.
void InstallSignalCleanup();
// The signal that asked the run to stop, or 0.
int InterruptSignal();

}  // namespace dpmfs
