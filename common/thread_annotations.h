// Clang thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html):
// what a mutex guards and which functions need it held, checked at compile time by
// clang's -Wthread-safety (CMake: -DDPMFS_THREAD_SAFETY=ON with clang). Empty on other
// compilers. Use with the annotated dpmfs::Mutex / MutexLock of common/mutex.h
// (libstdc++'s std::mutex and std::lock_guard carry no annotations).
//
// Thread-safety: macros only.
#pragma once

#if defined(__clang__)
#define DPMFS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define DPMFS_THREAD_ANNOTATION(x)
#endif

// A type that is a lock (a mutex).
#define CAPABILITY(x) DPMFS_THREAD_ANNOTATION(capability(x))
// An RAII type that holds a lock for its lifetime (and may drop and retake it).
#define SCOPED_CAPABILITY DPMFS_THREAD_ANNOTATION(scoped_lockable)
// A member only read or written with the lock held.
#define GUARDED_BY(x) DPMFS_THREAD_ANNOTATION(guarded_by(x))
// A pointer member whose pointee is only touched with the lock held.
#define PT_GUARDED_BY(x) DPMFS_THREAD_ANNOTATION(pt_guarded_by(x))
// Lock ordering: this lock is taken after (before) the named ones.
#define ACQUIRED_AFTER(...) DPMFS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) DPMFS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
// The caller must hold (exclusively / shared) the lock.
#define REQUIRES(...) DPMFS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) DPMFS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// The function takes / releases the lock.
#define ACQUIRE(...) DPMFS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) DPMFS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) DPMFS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) DPMFS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) DPMFS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The caller must not hold the lock (the function takes it).
#define EXCLUDES(...) DPMFS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// Tells the analysis the lock is held here (checked at run time where possible).
#define ASSERT_CAPABILITY(x) DPMFS_THREAD_ANNOTATION(assert_capability(x))
// The function returns a reference to the lock.
#define RETURN_CAPABILITY(x) DPMFS_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function (say why beside it).
#define NO_THREAD_SAFETY_ANALYSIS DPMFS_THREAD_ANNOTATION(no_thread_safety_analysis)
