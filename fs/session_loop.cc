#include "fs/session_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/poll_yielding.h"
#include "common/mutex.h"
#include "common/unique_fd.h"

namespace dpmfs::fs {
namespace {

// The calling thread looks at fuse_session_exited this often besides when a signal
// interrupts it: the kernel may deliver the signal to a thread started before the loop
// (transport, metadata client), which does not block it, and then the handler's mark is
// all there is.
constexpr int kExitCheckMs = 1000;
// The mode is chosen again after every kWindow requests: concurrent if at least
// kWindow / kOverlapShare of them overlapped another (a lone request now and then looks
// like one: its successor can be read just before its own thread has left libfuse).
constexpr uint32_t kWindow = 64;
constexpr uint32_t kOverlapShare = 8;
// How long a request served by the leader may keep the device unread (a request that
// blocks: a data server that does not answer, a metadata server restarting) before the
// other threads are called in.
constexpr auto kWatchTick = std::chrono::milliseconds(1);

class SessionLoop {
 public:
  SessionLoop(fuse_session* se, const SessionLoopOptions& options)
      : se_(se), fd_(fuse_session_fd(se)), options_(options) {
    if (options_.max_threads == 0) options_.max_threads = 1;
  }

  int Run() {
    // Non-blocking: the leader polls it. Every thread sleeps in poll/epoll on it and on
    // stop_fd_, which Stop() makes readable for good.
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_fd_.valid()) return -errno;
    // libfuse's handlers of SIGHUP/INT/TERM mark the session exited. They run on this
    // thread, which serves no request: the workers (and the threads they start) block
    // them, so that no wait inside a request sees EINTR.
    sigset_t exit_signals, old_mask;
    sigemptyset(&exit_signals);
    for (int sig : {SIGHUP, SIGINT, SIGTERM}) sigaddset(&exit_signals, sig);
    pthread_sigmask(SIG_BLOCK, &exit_signals, &old_mask);
    {
      MutexLock lock(mu_);
      spawned_.emplace_back([this] { Work(); });
    }
    std::thread watchdog;
    if (options_.max_threads > 1) watchdog = std::thread([this] { Watch(); });
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

    pollfd p{stop_fd_.get(), POLLIN, 0};
    while (!fuse_session_exited(se_) && ::poll(&p, 1, kExitCheckMs) <= 0) {
    }
    Stop();
    if (watchdog.joinable()) watchdog.join();
    // Workers start workers, under mu_; none does once done_ is set.
    std::vector<std::thread> spawned;
    {
      MutexLock lock(mu_);
      spawned.swap(spawned_);
    }
    for (auto& t : spawned) t.join();
    stop_fd_.reset();
    MutexLock lock(mu_);  // every worker has been joined
    return error_;
  }

 private:
  enum class Role { kLeader, kArmed };

  // Ends the loop: every thread wakes up and leaves. Idempotent.
  void Stop() {
    MutexLock lock(mu_);
    if (done_) return;
    done_ = true;
    cv_.notify_all();
    watch_cv_.notify_all();
    const uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);
  }

  // Counts a request taken from the device and picks the mode at the end of a window.
  void Count(bool overlapped) REQUIRES(mu_) {
    overlaps_ += overlapped ? 1 : 0;
    if (++window_ < kWindow) {
      if (concurrent_ && overlapped) CallIn();
      return;
    }
    const bool concurrent = overlaps_ * kOverlapShare >= kWindow;
    window_ = overlaps_ = 0;
    if (concurrent) {
      CallIn();
    } else if (concurrent_) {
      concurrent_ = false;
      watch_cv_.notify_one();  // lone mode: the watchdog ticks again
    }
  }

  // Concurrent mode: parked followers go and wait on the device, and if nobody waits
  // there a new thread is started.
  void CallIn() REQUIRES(mu_) {
    concurrent_ = true;
    if (parked_ > 0) cv_.notify_all();
    // Never once done_: Run() has taken the list of threads to join.
    if (!done_ && parked_ + armed_ == 0 && spawned_.size() < options_.max_threads) {
      spawned_.emplace_back([this] { Work(); });  // inherits the blocked exit signals
    }
  }

  void Work() {
    fuse_buf buf{};
    UniqueFd epoll_fd;  // this thread's, for waiting on the device with EPOLLEXCLUSIVE
    MutexLock lock(mu_);
    while (!done_) {
      Role role;
      if (concurrent_) {
        role = Role::kArmed;
        ++armed_;
      } else if (!leader_) {
        role = Role::kLeader;
        leader_ = true;
      } else {
        ++parked_;
        lock.Wait(cv_, [&]() REQUIRES(mu_) { return done_ || !leader_ || concurrent_; });
        --parked_;
        continue;
      }
      lock.Unlock();
      bool backlog = false;
      const int res = role == Role::kLeader ? ReceiveAsLeader(&buf, &backlog)
                                            : ReceiveArmed(&buf, &epoll_fd);
      lock.Lock();
      if (role == Role::kLeader) {
        leader_ = false;
      } else {
        --armed_;
      }
      if (res == -EAGAIN) continue;  // another thread took it: look at the mode again
      ++served_;
      if (res <= 0) {
        // 0: the session ended (unmounted, aborted, exited); < 0: the device failed.
        if (res < 0) {
          spdlog::error("reading /dev/fuse failed: {}", std::strerror(-res));
          error_ = res;
        }
        lock.Unlock();
        Stop();
        lock.Lock();
        break;
      }
      // Requests that overlap are served side by side, each on the thread that read
      // it, the others waiting on the device. A lone request is served by the thread
      // that read it, which reads on afterwards; the watchdog covers a long one.
      Count(backlog || serving_ > 0);
      ++serving_;
      lock.Unlock();
      fuse_session_process_buf(se_, &buf);
      lock.Lock();
      --serving_;
    }
    lock.Unlock();
    std::free(buf.mem);
  }

  // The leader's read: tries the device for options_.poll, yielding the core between
  // tries, then sleeps in poll(2) until it is readable. Returns what
  // fuse_session_receive_buf returns (> 0: a request in buf; 0: the session is over);
  // *backlog: the request was there at the first try (requests are queueing).
  int ReceiveAsLeader(fuse_buf* buf, bool* backlog) {
    int res = 0;
    auto take = [&] {  // true: a request, or the end
      res = fuse_session_receive_buf(se_, buf);
      if (res != -EAGAIN && res != -EINTR) return true;
      if (!fuse_session_exited(se_)) return false;
      res = 0;
      return true;
    };
    *backlog = take();
    if (*backlog || PollYielding(options_.poll, take)) return res;
    while (true) {
      {
        MutexLock lock(mu_);
        asleep_ = true;
      }
      // The device readable (or POLLERR once unmounted), or Stop().
      pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
      (void)::poll(p, 2, -1);
      {
        MutexLock lock(mu_);
        asleep_ = false;
        if (done_) return 0;
        watch_cv_.notify_one();
      }
      if (take()) return res;
    }
  }

  // An armed thread's read (concurrent mode): sleeps until the device is readable,
  // woken alone (EPOLLEXCLUSIVE: one request wakes one sleeper, as read(2) on a
  // blocking device would). -EAGAIN: another thread took the request.
  int ReceiveArmed(fuse_buf* buf, UniqueFd* epoll_fd) {
    if (!epoll_fd->valid()) {
      epoll_fd->reset(::epoll_create1(EPOLL_CLOEXEC));
      if (!epoll_fd->valid()) return -errno;
      epoll_event dev{};
      dev.events = EPOLLIN | EPOLLEXCLUSIVE;
      dev.data.fd = fd_;
      epoll_event stop{};
      stop.events = EPOLLIN;  // wakes every thread
      stop.data.fd = stop_fd_.get();
      if (::epoll_ctl(epoll_fd->get(), EPOLL_CTL_ADD, fd_, &dev) != 0 ||
          ::epoll_ctl(epoll_fd->get(), EPOLL_CTL_ADD, stop_fd_.get(), &stop) != 0) {
        return -errno;
      }
    }
    // Level-triggered: returns at once if a request is already waiting.
    epoll_event ev;
    const int n = ::epoll_wait(epoll_fd->get(), &ev, 1, -1);
    if (n < 0) return errno == EINTR ? -EAGAIN : -errno;
    if (ev.data.fd == stop_fd_.get()) return 0;
    const int res = fuse_session_receive_buf(se_, buf);
    return res == -EINTR ? -EAGAIN : res;
  }

  // In lone mode the leader serves its request itself, so while it does nobody reads
  // the device. If that lasts a whole tick with a request still being served, the
  // others are called in. Ticks only in lone mode while requests come.
  void Watch() {
    MutexLock lock(mu_);
    uint64_t seen = served_;
    while (!done_) {
      if (asleep_ || concurrent_) {
        // Nothing to watch: the leader sleeps, or every idle thread waits on the device.
        lock.Wait(watch_cv_, [&]() REQUIRES(mu_) { return (!asleep_ && !concurrent_) || done_; });
        seen = served_;
        continue;
      }
      lock.WaitFor(watch_cv_, kWatchTick);
      if (!done_ && !leader_ && armed_ == 0 && serving_ > 0 && served_ == seen) CallIn();
      seen = served_;
    }
  }

  fuse_session* const se_;
  const int fd_;
  SessionLoopOptions options_;

  Mutex mu_;
  std::condition_variable cv_;        // the seat is free, the mode changed, or the end
  std::condition_variable watch_cv_;  // the leader woke from sleeping, or the end
  bool leader_ GUARDED_BY(mu_) = false;               // the seat: a thread polls/sleeps on the device
  bool asleep_ GUARDED_BY(mu_) = false;               // ... and sleeps in poll(2)
  bool done_ GUARDED_BY(mu_) = false;
  bool concurrent_ GUARDED_BY(mu_) = false;           // the mode: see Count()
  uint32_t window_ GUARDED_BY(mu_) = 0;               // requests in this window
  uint32_t overlaps_ GUARDED_BY(mu_) = 0;             // ... that came while another was served
  uint64_t served_ GUARDED_BY(mu_) = 0;   // requests taken from the device
  uint32_t parked_ GUARDED_BY(mu_) = 0;   // followers waiting on cv_
  uint32_t armed_ GUARDED_BY(mu_) = 0;    // threads waiting on the device in concurrent mode
  uint32_t serving_ GUARDED_BY(mu_) = 0;  // threads serving a request
  int error_ GUARDED_BY(mu_) = 0;
  UniqueFd stop_fd_;  // eventfd, readable once Stop() ran
  std::vector<std::thread> spawned_ GUARDED_BY(mu_);  // the workers (the calling thread is not one)
};

}  // namespace

int RunSessionLoop(fuse_session* se, const SessionLoopOptions& options) {
  return SessionLoop(se, options).Run();
}

}  // namespace dpmfs::fs
