// Counts the heap allocations of one thread, for the tests that check a warm path
// allocates nothing (meta_protocol_test, transfer_test, file_io_test). Linking the
// dpmfs_test_allocation_counter object replaces the test binary's global operator
// new/delete (malloc/free underneath) with one that counts while the calling thread has
// t_counting set. Sanitizer runtimes bring their own operator new: under a sanitizer
// nothing is replaced, DPMFS_SANITIZED is defined, and the allocation tests skip.
//
// Thread-safety: the flag and the count are thread_local; each thread counts its own.
#pragma once

#include <cstdint>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DPMFS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define DPMFS_SANITIZED 1
#endif
#endif

namespace dpmfs::test_support {

extern thread_local bool t_counting;         // count this thread's allocations while set
extern thread_local uint64_t t_allocations;  // how many were counted

// Suspends the count for its scope (a call whose allocations are not the code under test).
struct NotCounted {
  bool was = t_counting;
  NotCounted() { t_counting = false; }
  ~NotCounted() { t_counting = was; }
};

}  // namespace dpmfs::test_support
