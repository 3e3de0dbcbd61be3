// dpmfs-mount's request loop: worker threads reading /dev/fuse, in one of two modes
// chosen from what the requests do.
//
// Why not libfuse's multithreaded loop: there every idle worker sleeps in read() on
// /dev/fuse, so each request the kernel queues wakes a sleeping thread. On a small
// virtual machine that wake-up (an idle virtual CPU brought back) is a large part of a
// 4 KiB read's latency, and at queue depth 1 it is paid on every request.
//
// - Lone mode (requests one at a time, e.g. one process reading): one thread, the
//   leader, reads the device and serves each request itself; afterwards it keeps
//   reading without blocking, yielding the core between tries, for `poll` before it
//   sleeps in poll(2). The next request usually finds it awake. The other threads wait
//   in user space, where the kernel does not wake them. A watchdog looks every
//   millisecond: a request that keeps its leader longer (a data server that does not
//   answer, a metadata server restarting) switches to concurrent mode, so that it never
//   holds up the others.
// - Concurrent mode (requests overlap: several processes or threads): every idle
//   thread waits on the device (epoll, EPOLLEXCLUSIVE: one request wakes one thread)
//   and serves what it reads, as libfuse's loop does; a thread is added, up to
//   `max_threads`, when none is left waiting.
// The mode is picked again every 64 requests from how many of them overlapped. The
// calling thread serves no request: libfuse's SIGHUP/INT/TERM handlers run there
// (workers block those signals, so no wait inside a request sees EINTR), and it wakes
// every worker when the session ends.
//
// Measured through the mount on 2 vCPUs: see fs/README.md ("The request loop").
//
// Thread-safety: RunSessionLoop is called once, on the thread that mounted; it returns
// when the session ends (unmount, fuse_session_exit, a signal libfuse handles).
#pragma once

#include <chrono>
#include <cstdint>

struct fuse_session;

namespace dpmfs::fs {

struct SessionLoopOptions {
  uint32_t max_threads = 4;  // threads serving requests (>= 1); the caller is not one
  // How long the leader keeps trying the device before it sleeps. Zero: sleep at once.
  std::chrono::microseconds poll{0};
};

// Serves `se` until it ends. Returns 0, or a negative errno if reading the device
// failed for another reason than the session ending.
int RunSessionLoop(fuse_session* se, const SessionLoopOptions& options);

}  // namespace dpmfs::fs
