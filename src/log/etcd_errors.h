// Pure helpers of the etcd log: key ranges, endpoint parsing and, above all, the classification
// of gRPC failures into "certainly not committed" and "may have committed". Kept free of I/O so
// that they are unit-testable (test/log/etcd_log_unit_test.cc).
#pragma once

#include <grpcpp/support/status_code_enum.h>

#include <string>
#include <string_view>

#include "k8shmir/result.h"

namespace k8shmir {

// The end of the key range holding every key that starts with `prefix` (etcd's own rule, as in
// clientv3.GetPrefixRangeEnd): the prefix with its last byte below 0xff incremented and what
// follows it dropped; "\0" (meaning "to the end of the keyspace") if every byte is 0xff.
std::string PrefixRangeEnd(std::string_view prefix);

enum class FailureKind {
  // Certainly not applied: etcd refused before proposing, or the request never left this process.
  // Retrying (possibly on another member) may succeed.
  kRefused,
  // Certainly not applied, and retrying the same request will not help (e.g. it is too large).
  kRejected,
  // May or may not have been applied (timeouts, connections broken after sending, anything
  // unrecognised). Only an idempotent request may be retried.
  kAmbiguous,
};

struct RpcFailure {
  FailureKind kind;
  ErrorCode code;  // the code to report if this failure is final
  std::string message;
};

// "UNAVAILABLE: etcdserver: no leader".
std::string DescribeGrpcStatus(grpc::StatusCode code, std::string_view message);

// etcd's answer (RESOURCE_EXHAUSTED) to a write while it is out of space.
inline constexpr char kNoSpaceMessage[] = "etcdserver: mvcc: database space exceeded";

// Classifies the failure of a write (Txn/Put) sent with the `hasleader: true` metadata.
RpcFailure ClassifyWriteFailure(grpc::StatusCode code, std::string_view message);

// The call failed in the gRPC client before it was written to any connection (no usable
// connection to the member): it certainly did not reach etcd, so another member may be tried at
// once.
bool NeverSent(grpc::StatusCode code, std::string_view message);

// The member refused because it has no leader (an election is under way): worth retrying soon,
// since a leader is usually elected within about an election timeout.
bool NoLeader(grpc::StatusCode code, std::string_view message);

// Like ClassifyWriteFailure, plus etcd's answers to a Compaction that cannot be done.
RpcFailure ClassifyCompactFailure(grpc::StatusCode code, std::string_view message);

// The error a subscription reports when its watch stream ends with this status.
Error WatchStreamError(grpc::StatusCode code, std::string_view message);

// "host:port" from "host:port", "http://host:port", "https://host:port" or the same with a
// trailing "/". Other schemes and anything without a port are rejected (kInvalid).
Result<std::string> NormalizeEndpoint(std::string_view endpoint);

}  // namespace k8shmir
