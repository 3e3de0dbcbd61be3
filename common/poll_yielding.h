// Busy-waiting that leaves the core to others: for latency-critical waits whose event
// comes soon, on machines where a sleeping waiter's wake-up (an idle virtual CPU brought
// back) costs more than the wait. Used by the data client for a lone request's
// completion and by dpmfs-mount's request loop for the next FUSE request.
//
// Thread-safety: a pure function of its arguments.
#pragma once

#include <sched.h>

#include <chrono>

namespace dpmfs {

// Calls `poll` (true: what the caller waits for is there) until it says true or `limit`
// has passed, yielding the core between tries; returns its last answer.
template <typename Poll>
bool PollYielding(std::chrono::microseconds limit, Poll poll) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!poll()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    sched_yield();
  }
  return true;
}

}  // namespace dpmfs
