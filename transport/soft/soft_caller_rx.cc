// Caller-driven reception of send completions on a soft QP (see soft_internal.h).
//
// Without it a synchronous READ costs, on the initiator, two wake-ups after the
// response arrives: the rx thread's (blocked in recv) and then, when it has queued the
// completion, the waiting caller's. On a 2-CPU machine every wake-up is a context
// switch on the one CPU the whole request chain runs on (perf sched: the FUSE worker,
// the data server's rx thread and this rx thread all ran on CPU 0, and switching was
// most of the client's CPU time). Here the waiting caller reads the socket itself, so
// the response wakes it directly; the rx thread stays parked away from the socket.
//
// Who reads: whoever holds rx_mu_. The rx thread parks (releasing it) only at a frame
// boundary with nothing buffered, and only while MayPark() holds; it comes back when a
// caller hands the socket back (the connection ended, a peer request or a receive
// made the QP unsuitable), on Disconnect, and now and then to look for traffic nobody
// asked for (a peer's request on a QP it was not expected on, an EOF on an idle QP).
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "transport/soft/soft_internal.h"

namespace dpmfs::transport::soft {
namespace {

// The parked rx thread's look at the socket: often enough that unexpected traffic is
// served, rarely enough that idle pooled connections cost (almost) nothing.
constexpr auto kParkFirst = std::chrono::milliseconds(10);
constexpr auto kParkMax = std::chrono::milliseconds(200);
// A caller waiting for the socket re-checks its completion queue this often (the rx
// thread may hold the socket in recv while it handles the caller's completion).
constexpr auto kLockSlice = std::chrono::milliseconds(1);

std::atomic<uint64_t> g_caller_frames{0};

}  // namespace

uint64_t CallerReceivedFrames() { return g_caller_frames.load(std::memory_order_relaxed); }

bool SoftQueuePair::MayPark() {
  const bool callers_read =
      (waited_send_.load(std::memory_order_acquire) && MayDrive()) ||
      (drove_receives_.load(std::memory_order_acquire) && MayDriveReceives());
  return callers_read && rx_begin_ == rx_end_ && held_responses_.empty() &&
         held_deliveries_.empty();
}

bool SoftQueuePair::ParkRx(std::unique_lock<std::timed_mutex>& rx) {
  rx.unlock();
  auto interval = std::chrono::duration_cast<Clock::duration>(kParkFirst);
  while (true) {
    bool handed;
    {
      MutexLock park_lock(park_mu_);
      handed = park_lock.WaitFor(park_cv_, interval, [&]() REQUIRES(park_mu_) { return unpark_; });
      unpark_ = false;
    }
    if (rx.try_lock()) {  // else a caller reads: it hands back if it must
      if (rx_failed_) return false;
      if (handed || !MayPark()) return true;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) return true;  // traffic nobody waits for, or EOF
      rx.unlock();
    }
    interval = std::min<Clock::duration>(interval * 2, kParkMax);
  }
}

void SoftQueuePair::HandBack() {
  {
    MutexLock park_lock(park_mu_);
    unpark_ = true;
  }
  park_cv_.notify_one();
}

size_t SoftQueuePair::DriveSend(std::span<Completion> out, Clock::time_point deadline,
                                bool block) {
  while (true) {
    if (size_t n = send_cq_.Poll(out); n > 0) return n;
    if (rx_failed_ || peer_initiated_.load() || error_.load(std::memory_order_acquire)) return 0;
    if (rx_begin_ == rx_end_ && !TryFillRx()) {
      if (!block || Clock::now() >= deadline) return 0;
      WaitReadable(deadline);
      continue;
    }
    // A NAK's own completion is queued already.
    if (!CallerReceiveFrame()) return send_cq_.Poll(out);
  }
}

bool SoftQueuePair::TryFillRx() {
  // Bytes are waited for by the caller (WaitReadable), not in ReadExact's blocking recv,
  // so that its deadline holds.
  ssize_t r = ::recv(fd_.get(), rx_buf_.get(), kRxBufferSize, MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  // Data, or EOF / an error that ReceiveFrame's own recv reports again.
  if (r > 0) {
    rx_begin_ = 0;
    rx_end_ = static_cast<size_t>(r);
  }
  return true;
}

void SoftQueuePair::WaitReadable(Clock::time_point deadline) {
  auto now = Clock::now();
  if (now >= deadline) return;
  auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
  timespec ts{static_cast<time_t>(wait.count() / 1000000000),
              static_cast<long>(wait.count() % 1000000000)};
  pollfd p{fd_.get(), POLLIN, 0};
  (void)::ppoll(&p, 1, &ts, nullptr);
}

bool SoftQueuePair::CallerReceiveFrame() {
  CompletionStatus why = CompletionStatus::kTransportError;
  if (!ReceiveFrame(&why)) {
    // The rx thread winds the QP down (EnterError) once handed back.
    rx_failed_ = true;
    rx_failed_why_ = stopping_.load() ? CompletionStatus::kFlushed : why;
    return false;
  }
  g_caller_frames.fetch_add(1, std::memory_order_relaxed);
  return true;
}

size_t SoftQueuePair::PollSend(std::span<Completion> out) {
  size_t n = send_cq_.Poll(out);
  if (n > 0 || !waited_send_.load(std::memory_order_acquire)) return n;
  if (!MayDrive()) return 0;
  std::unique_lock rx(rx_mu_, std::try_to_lock);
  if (!rx) return 0;
  n = DriveSend(out, Clock::time_point{}, /*block=*/false);
  bool hand_back = rx_failed_ || !MayDrive();
  rx.unlock();
  if (hand_back) HandBack();
  return n;
}

size_t SoftQueuePair::WaitSend(std::span<Completion> out, Duration timeout) {
  if (size_t n = send_cq_.Poll(out); n > 0) return n;
  waited_send_.store(true, std::memory_order_release);
  auto deadline = Clock::now() + timeout;
  while (MayDrive()) {
    std::unique_lock rx(rx_mu_, std::defer_lock);
    if (!rx.try_lock_for(kLockSlice)) {
      // The rx thread has the socket (it is delivering, or has not parked yet).
      if (size_t n = send_cq_.Poll(out); n > 0) return n;
      if (Clock::now() >= deadline) return 0;
      continue;
    }
    if (!MayDrive()) break;
    size_t n = DriveSend(out, deadline, /*block=*/true);
    bool hand_back = rx_failed_ || !MayDrive();
    rx.unlock();
    if (hand_back) HandBack();
    if (n > 0) return n;
    if (Clock::now() >= deadline) return 0;
    if (hand_back) break;
  }
  // The rx thread reads for this QP: wait for what it queues.
  auto now = Clock::now();
  return send_cq_.Wait(out, deadline > now ? std::chrono::duration_cast<Duration>(deadline - now)
                                           : Duration(0));
}

QueuePair::DriveResult SoftQueuePair::DriveReceives(Duration timeout, Duration poll_first,
                                                    const std::function<bool()>& done) {
  if (!MayDriveReceives()) return DriveResult::kUnsupported;
  drove_receives_.store(true, std::memory_order_release);  // the rx thread parks from now on
  std::unique_lock rx(rx_mu_, std::try_to_lock);
  if (!rx) return DriveResult::kBusy;  // the rx thread (not parked yet) or another caller
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  const auto poll_end = start + std::min(poll_first, timeout);
  DriveResult result = DriveResult::kTimedOut;
  while (true) {
    if (rx_begin_ == rx_end_) {
      // A batch boundary: acknowledge what was received and hand it to on_recv, which
      // is where `done` becomes true (for this caller or, delivered on the way, others).
      FlushResponses();
      DeliverHeld();
      if (done()) {
        result = DriveResult::kDone;
        break;
      }
      if (rx_failed_ || !MayDriveReceives()) {
        result = DriveResult::kUnsupported;
        break;
      }
      if (!TryFillRx()) {
        auto now = Clock::now();
        if (now >= deadline) break;
        if (now < poll_end) {
          sched_yield();  // a core to the threads that bring the message, if they need it
        } else {
          WaitReadable(deadline);
        }
        continue;
      }
    }
    if (!CallerReceiveFrame()) {
      result = DriveResult::kUnsupported;
      break;
    }
  }
  // Nothing received may wait for the next reader: it could be the parked rx thread.
  FlushResponses();
  DeliverHeld();
  if (result == DriveResult::kTimedOut && done()) result = DriveResult::kDone;
  const bool hand_back = rx_failed_ || !MayDriveReceives();
  rx.unlock();
  if (hand_back) HandBack();
  return result;
}

bool SoftQueuePair::MayDriveReceives() const {
  return options_.caller_driven_receives && options_.on_recv && !peer_initiated_.load() &&
         !stopping_.load() && !error_.load(std::memory_order_acquire);
}

bool SoftQueuePair::MayDrive() const {
  return !receives_posted_.load(std::memory_order_seq_cst) && !peer_initiated_.load() &&
         !stopping_.load() && !error_.load(std::memory_order_acquire);
}

}  // namespace dpmfs::transport::soft
