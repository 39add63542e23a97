#include "k8shmir/result.h"

namespace k8shmir {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kUnknown:
      return "unknown";
    case ErrorCode::kCompacted:
      return "compacted";
    case ErrorCode::kProtocol:
      return "protocol";
    case ErrorCode::kIndexMismatch:
      return "index-mismatch";
    case ErrorCode::kInvalid:
      return "invalid";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kLogFull:
      return "log-full";
  }
  return "?";
}

}  // namespace k8shmir
