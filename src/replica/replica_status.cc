#include "replica/replica_status.h"

namespace k8shmir {

const char* ReplicaStateName(ReplicaState state) {
  switch (state) {
    case ReplicaState::kStarting:
      return "starting";
    case ReplicaState::kCatchingUp:
      return "catching-up";
    case ReplicaState::kServing:
      return "serving";
    case ReplicaState::kRecovering:
      return "recovering";
    case ReplicaState::kNeedsStateTransfer:
      return "needs-state-transfer";
    case ReplicaState::kAppContractViolation:
      return "app-contract-violation";
    case ReplicaState::kAppNotAnswering:
      return "app-not-answering";
    case ReplicaState::kLogFull:
      return "log-full";
    case ReplicaState::kTransferringState:
      return "transferring-state";
    case ReplicaState::kIncompatibleLog:
      return "incompatible-log";
  }
  return "?";
}

const char* RejectionName(Rejection rejection) {
  switch (rejection) {
    case Rejection::kTooLarge:
      return "too-large";
    case Rejection::kBadRequest:
      return "bad-request";
    case Rejection::kTooManyConnections:
      return "too-many-connections";
    case Rejection::kTooManyPending:
      return "too-many-pending";
    case Rejection::kNotServing:
      return "not-serving";
    case Rejection::kLogFull:
      return "log-full";
    case Rejection::kLogUnavailable:
      return "log-unavailable";
  }
  return "?";
}

void Histogram::Observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  ++counts[i];
  sum += seconds;
  ++count;
}

}  // namespace k8shmir
