#include "tests/support/allocation_counter.h"

#include <cstdlib>
#include <new>

namespace dpmfs::test_support {
thread_local bool t_counting = false;
thread_local uint64_t t_allocations = 0;
}  // namespace dpmfs::test_support

#ifndef DPMFS_SANITIZED
// GCC flags free() in a replaced operator delete as mismatched with operator new, which
// is exactly what a replacement pair built on malloc/free is.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (dpmfs::test_support::t_counting) ++dpmfs::test_support::t_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif
