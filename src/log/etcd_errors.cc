#include "log/etcd_errors.h"

#include <array>
#include <charconv>

namespace k8shmir {

namespace {

// etcd 3.4 rejects these in its gRPC interceptors (etcdserver/api/v3rpc/interceptor.go), before
// the request reaches the handler, so nothing was proposed. "no leader" is only sent because we
// attach `hasleader: true`: without it a leaderless member would accept the request and let it
// time out ("request timed out"), which is ambiguous.
constexpr std::array<std::string_view, 3> kRefusedByInterceptor = {
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: rpc not supported for learner",
};

// Produced by the gRPC client itself when no connection to the member could be used: the call
// failed in load balancing, before it was written to any transport. (gRPC retries transparently
// only when a previous attempt certainly never reached the server, so this status is never the
// end of an attempt that was sent.)
constexpr std::array<std::string_view, 3> kNeverSentPrefixes = {
    "failed to connect to all addresses",
    "DNS resolution failed",
    "empty address list",
};

// etcd's request validation (v3rpc/key.go checkTxnRequest and friends, and the size check in
// processInternalRaftRequestOnce) runs before proposing; the same request will fail again.
constexpr std::array<std::string_view, 4> kRejectedBeforeProposal = {
    "etcdserver: request is too large",
    "etcdserver: key is not provided",
    "etcdserver: too many operations in txn request",
    "etcdserver: duplicate key given in txn request",
};

template <size_t N>
bool IsOneOf(std::string_view message, const std::array<std::string_view, N>& list) {
  for (auto s : list) {
    if (message == s) return true;
  }
  return false;
}

template <size_t N>
bool StartsWithOneOf(std::string_view message, const std::array<std::string_view, N>& list) {
  for (auto s : list) {
    if (message.substr(0, s.size()) == s) return true;
  }
  return false;
}

const char* GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "CODE_UNKNOWN";
  }
}

}  // namespace

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  for (size_t i = end.size(); i-- > 0;) {
    auto byte = static_cast<unsigned char>(end[i]);
    if (byte < 0xff) {
      end[i] = static_cast<char>(byte + 1);
      end.resize(i + 1);
      return end;
    }
  }
  return std::string(1, '\0');
}

std::string DescribeGrpcStatus(grpc::StatusCode code, std::string_view message) {
  std::string out = GrpcCodeName(code);
  if (!message.empty()) {
    out += ": ";
    out += message;
  }
  return out;
}

RpcFailure ClassifyWriteFailure(grpc::StatusCode code, std::string_view message) {
  std::string text = DescribeGrpcStatus(code, message);
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
      // UNAVAILABLE alone proves nothing: etcd also uses it for "request timed out" (the proposal
      // may still commit), "leader changed" and "server stopped", and gRPC for connections that
      // broke after the request was written ("Socket closed", GOAWAY, keepalive timeout).
      if (IsOneOf(message, kRefusedByInterceptor) || StartsWithOneOf(message, kNeverSentPrefixes)) {
        return {FailureKind::kRefused, ErrorCode::kUnavailable, std::move(text)};
      }
      return {FailureKind::kAmbiguous, ErrorCode::kUnknown, std::move(text)};
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // "too many requests" is checked before proposing (apply lagging far behind commit).
      if (message == "etcdserver: too many requests") {
        return {FailureKind::kRefused, ErrorCode::kUnavailable, std::move(text)};
      }
      // Out of space (the NOSPACE alarm): retrying will not help until an operator frees space.
      // Not certainly unapplied: etcd 3.4 applies the put that crosses the quota and still
      // answers this, so the caller reads whether it committed (EtcdLog::AppendBatch).
      if (message == kNoSpaceMessage) {
        return {FailureKind::kRejected, ErrorCode::kLogFull, std::move(text)};
      }
      // etcd's gRPC server (Go) refused to read an oversized request. The C++ client's own
      // "Received message larger than max" is about the response, i.e. after etcd applied it,
      // hence the exact, case-sensitive prefix.
      if (message.substr(0, 38) == "grpc: received message larger than max") {
        return {FailureKind::kRejected, ErrorCode::kInvalid, std::move(text)};
      }
      return {FailureKind::kAmbiguous, ErrorCode::kUnknown, std::move(text)};
    case grpc::StatusCode::INVALID_ARGUMENT:
      // Only the known validation errors: other INVALID_ARGUMENTs (e.g. "etcdserver: key not
      // found") come from applying the request.
      if (IsOneOf(message, kRejectedBeforeProposal)) {
        return {FailureKind::kRejected, ErrorCode::kInvalid, std::move(text)};
      }
      return {FailureKind::kAmbiguous, ErrorCode::kUnknown, std::move(text)};
    default:
      // DEADLINE_EXCEEDED (even when the call was still waiting for a connection: we cannot tell),
      // CANCELLED, UNKNOWN, INTERNAL and anything else: the request may have been proposed.
      return {FailureKind::kAmbiguous, ErrorCode::kUnknown, std::move(text)};
  }
}

bool NeverSent(grpc::StatusCode code, std::string_view message) {
  return code == grpc::StatusCode::UNAVAILABLE && StartsWithOneOf(message, kNeverSentPrefixes);
}

bool NoLeader(grpc::StatusCode code, std::string_view message) {
  return code == grpc::StatusCode::UNAVAILABLE && message == kRefusedByInterceptor[0];
}

RpcFailure ClassifyCompactFailure(grpc::StatusCode code, std::string_view message) {
  if (code == grpc::StatusCode::OUT_OF_RANGE) {
    if (message == "etcdserver: mvcc: required revision has been compacted") {
      return {FailureKind::kRejected, ErrorCode::kCompacted, DescribeGrpcStatus(code, message)};
    }
    if (message == "etcdserver: mvcc: required revision is a future revision") {
      return {FailureKind::kRejected, ErrorCode::kInvalid, DescribeGrpcStatus(code, message)};
    }
  }
  return ClassifyWriteFailure(code, message);
}

Error WatchStreamError(grpc::StatusCode code, std::string_view message) {
  std::string text = "watch stream ended: " + DescribeGrpcStatus(code, message);
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
      return Error{ErrorCode::kUnavailable, std::move(text)};
    default:
      return Error{ErrorCode::kUnknown, std::move(text)};
  }
}

Result<std::string> NormalizeEndpoint(std::string_view endpoint) {
  std::string_view rest = endpoint;
  // The scheme only says whether the member wants TLS; whether the log uses TLS is decided by its
  // TLS options, which ValidateEtcdTlsOptions checks against an https:// scheme.
  if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  } else if (rest.substr(0, 8) == "https://") {
    rest.remove_prefix(8);
  } else if (rest.find("://") != std::string_view::npos) {
    return Error{ErrorCode::kInvalid, "etcd endpoint '" + std::string(endpoint) +
                                          "': only http:// and https:// are supported"};
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Error{ErrorCode::kInvalid,
                 "etcd endpoint '" + std::string(endpoint) + "': expected host:port"};
  }
  std::string_view port = rest.substr(colon + 1);
  int value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value <= 0 ||
      value > 65535) {
    return Error{ErrorCode::kInvalid, "etcd endpoint '" + std::string(endpoint) + "': bad port '" +
                                          std::string(port) + "'"};
  }
  if (rest.find('/') != std::string_view::npos) {
    return Error{ErrorCode::kInvalid,
                 "etcd endpoint '" + std::string(endpoint) + "': unexpected path"};
  }
  return std::string(rest);
}

}  // namespace k8shmir
