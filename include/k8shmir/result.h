// Errors as values for the data path: no exception crosses an async boundary in k8shmir.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace k8shmir {

enum class ErrorCode {
  // The operation certainly had no effect (refused before it was proposed, or never sent).
  kUnavailable,
  // The operation may or may not have taken effect (timeout, broken connection after sending).
  kUnknown,
  // The requested history is gone (etcd compacted it); a state transfer is needed.
  kCompacted,
  // The peer answered something that violates its contract (garbage, wrong index, bad framing).
  kProtocol,
  // The app's index differs from what the caller expected.
  kIndexMismatch,
  // Input rejected by a limit or a validation rule.
  kInvalid,
  // The operation was cancelled by its owner (shutdown, newer generation).
  kCancelled,
  // The log service refused the write for lack of space (etcd's NOSPACE alarm); it certainly
  // did not commit.
  kLogFull,
};

const char* ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;
};

// Either a T or an Error. A minimal stand-in for C++23 std::expected.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status OkStatus() { return Unit{}; }

}  // namespace k8shmir
