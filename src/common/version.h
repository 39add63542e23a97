// What this build is: the project's version (CMakeLists.txt) and the git revision it was built
// from ("unknown" outside a git checkout, e.g. in a container build without .git).
#pragma once

namespace k8shmir {

#ifndef K8SHMIR_VERSION
#define K8SHMIR_VERSION "0.0.0"
#endif
#ifndef K8SHMIR_REVISION
#define K8SHMIR_REVISION "unknown"
#endif

inline constexpr const char* kVersion = K8SHMIR_VERSION;
inline constexpr const char* kRevision = K8SHMIR_REVISION;

}  // namespace k8shmir
