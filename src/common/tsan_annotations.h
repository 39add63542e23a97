// Happens-before edges that ThreadSanitizer cannot see by itself. Debian's gRPC is not
// instrumented: it hands a call's completion to its own thread through synchronization TSan does
// not observe, so our state written before a call starts and read in its callback looks like a
// race. K8SHMIR_HAPPENS_BEFORE(p) just before starting the call and K8SHMIR_HAPPENS_AFTER(p)
// first thing in its callback, on the same address, state the edge gRPC guarantees. No-ops
// outside the TSan build.
#pragma once

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define K8SHMIR_HAPPENS_BEFORE(addr) __tsan_release(static_cast<void*>(addr))
#define K8SHMIR_HAPPENS_AFTER(addr) __tsan_acquire(static_cast<void*>(addr))
#else
#define K8SHMIR_HAPPENS_BEFORE(addr) static_cast<void>(addr)
#define K8SHMIR_HAPPENS_AFTER(addr) static_cast<void>(addr)
#endif
