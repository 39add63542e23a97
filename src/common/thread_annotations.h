// Clang's thread-safety analysis (-Wthread-safety) attributes, named like Abseil's (ABSL_GUARDED_BY
// and so on; prefixed, because gRPC pulls in Abseil's unprefixed GUARDED_BY etc.). They are
// checked by `make check-thread-safety` (clang++-14 -Wthread-safety -Werror on src/log); with g++
// they expand to nothing. The standard library's std::mutex carries no capability attributes in
// libstdc++, so annotated state is guarded by k8shmir::Mutex (common/mutex.h).
//
// Strand-owned state is not annotated: the analysis knows no executors. Each such class says once,
// next to its members, which of them its strand owns (e.g. replica/replica.h, app/http_app.cc).
#pragma once

#if defined(__clang__)
#define K8SHMIR_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define K8SHMIR_THREAD_ANNOTATION(x)
#endif

// A type that is a lock ("capability"), or an RAII object that holds one.
#define K8SHMIR_CAPABILITY(x) K8SHMIR_THREAD_ANNOTATION(capability(x))
#define K8SHMIR_SCOPED_CAPABILITY K8SHMIR_THREAD_ANNOTATION(scoped_lockable)

// Data members: read or written only with the given mutex held (K8SHMIR_GUARDED_BY), or the data
// they point to (K8SHMIR_PT_GUARDED_BY).
#define K8SHMIR_GUARDED_BY(x) K8SHMIR_THREAD_ANNOTATION(guarded_by(x))
#define K8SHMIR_PT_GUARDED_BY(x) K8SHMIR_THREAD_ANNOTATION(pt_guarded_by(x))

// Lock ordering: this mutex is taken before (after) the given ones.
#define K8SHMIR_ACQUIRED_BEFORE(...) K8SHMIR_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define K8SHMIR_ACQUIRED_AFTER(...) K8SHMIR_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))

// Functions: the caller must hold (K8SHMIR_REQUIRES) or must not hold (K8SHMIR_EXCLUDES) the given
// mutexes.
#define K8SHMIR_REQUIRES(...) K8SHMIR_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define K8SHMIR_EXCLUDES(...) K8SHMIR_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

// Functions that take or release a mutex and return with it held or not.
#define K8SHMIR_ACQUIRE(...) K8SHMIR_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define K8SHMIR_RELEASE(...) K8SHMIR_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define K8SHMIR_TRY_ACQUIRE(...) K8SHMIR_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))

// Tells the analysis that the mutex is held here (checked at run time by nothing).
#define K8SHMIR_ASSERT_CAPABILITY(x) K8SHMIR_THREAD_ANNOTATION(assert_capability(x))

// A function returning a reference to the given mutex.
#define K8SHMIR_RETURN_CAPABILITY(x) K8SHMIR_THREAD_ANNOTATION(lock_returned(x))

// The analysis cannot follow this function (say why next to it).
#define K8SHMIR_NO_THREAD_SAFETY_ANALYSIS K8SHMIR_THREAD_ANNOTATION(no_thread_safety_analysis)
