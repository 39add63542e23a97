#include "log/retrying_call.h"

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/tsan_annotations.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>

namespace k8shmir {

namespace {

using std::chrono::milliseconds;

// An attempt with less time than this left is not worth starting.
constexpr milliseconds kMinAttemptTime{20};
// Retry backoff while a member says it has no leader: an election takes about one election
// timeout, so waiting longer than this after it would only add to the clients' stall.
constexpr milliseconds kNoLeaderMaxBackoff{50};

}  // namespace

template <class Response>
void EtcdLog::Core::RetryingCall<Response>::Start(Core* core, std::string what, Deadline deadline,
                                                  Issue issue, Classify classify, Done done,
                                                  EndpointChoice choice) {
  auto call = std::make_shared<RetryingCall>(core, std::move(what), deadline, std::move(issue),
                                             classify, std::move(done), choice);
  core->OpStarted();
  call->Attempt(/*on_caller_thread=*/true);
}

template <class Response>
EtcdLog::Core::RetryingCall<Response>::RetryingCall(Core* core, std::string what, Deadline deadline,
                                                    Issue issue, Classify classify, Done done,
                                                    EndpointChoice choice)
    : core_(core),
      what_(std::move(what)),
      deadline_(deadline),
      issue_(std::move(issue)),
      classify_(classify),
      done_(std::move(done)),
      choice_(choice) {}

template <class Response>
void EtcdLog::Core::RetryingCall<Response>::Attempt(bool on_caller_thread) {
  auto now = Clock::now();
  if (now >= deadline_) return Finish(FinalError("deadline passed"), on_caller_thread);
  // Retries go the usual way: the leader may be what failed.
  endpoint_ = choice_ == EndpointChoice::kLeaderFirst && attempts_ == 0 ? core_->LeaderFirst()
                                                                        : core_->PickEndpoint();
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata(kHasLeaderKey, kHasLeaderValue);
  context->set_deadline(
      ToSystemClock(std::min<Clock::time_point>(deadline_, now + core_->options.rpc_timeout)));
  if (!core_->RegisterAttempt(context.get(), &attempt_id_, this)) {
    return Finish(FinalError("the etcd log is shutting down"), on_caller_thread);
  }
  // The previous attempt's context is gone: its callback released it (OnAttemptDone).
  context_ = std::move(context);
  ++attempts_;
  response_.Clear();
  // gRPC never runs this callback inline (callback API reactions are not inlineable), so it
  // cannot run inside the caller's call.
  grpc::ClientContext* context_of_attempt = context_.get();
  std::function<void(grpc::Status)> on_done = [self =
                                                   this->shared_from_this()](grpc::Status status) {
    K8SHMIR_HAPPENS_AFTER(self.get());
    self->OnAttemptDone(std::move(status));
  };
  // Everything of this attempt is read or written above: its callback may run before issue_
  // returns.
  K8SHMIR_HAPPENS_BEFORE(this);
  issue_(endpoint_, context_of_attempt, &response_, std::move(on_done));
}

template <class Response>
void EtcdLog::Core::RetryingCall<Response>::OnAttemptDone(grpc::Status status) {
  core_->UnregisterAttempt(attempt_id_);
  // Released here, on gRPC's thread inside the attempt's own callback (as gRPC allows), and
  // before a retry can be scheduled: the retry runs on the timer thread, possibly at once, and
  // must not destroy this context (Attempt replacing context_) while gRPC is still running its
  // callback. Not later either: the log may be gone once the operation finishes (Finish).
  context_.reset();
  // Past the unregistration nobody interrupts this attempt any more.
  const bool interrupted = interrupted_attempt_.load() == attempt_id_;
  if (status.ok()) {
    core_->NoteTerm(response_.header().raft_term());
    // A call sent to the leader says nothing about which member this process should prefer.
    if (choice_ == EndpointChoice::kPreferred) core_->EndpointWorked(endpoint_);
    return Finish(Result<Response>(std::move(response_)), false);
  }
  RpcFailure failure = classify_(status.error_code(), status.error_message());
  auto now = Clock::now();
  if (interrupted && status.error_code() == grpc::StatusCode::CANCELLED) {
    // etcd's leader changed under this attempt: it may have been lost on its way to the old
    // leader, which answers nothing. Not the member's fault; re-sent at once (a write with the
    // same batch id, as for any ambiguous attempt).
    last_error_ = core_->endpoints_[endpoint_] + ": cancelled: etcd's leader changed";
    if (failure.kind == FailureKind::kAmbiguous) NoteAmbiguous();
    LogLine(spdlog::level::debug, "etcd call attempt cancelled by a leader change; re-sent",
            {{"call", what_}, {"attempt", attempts_}, {"endpoint", core_->endpoints_[endpoint_]}});
    if (now + kMinAttemptTime >= deadline_) return Finish(FinalError("deadline reached"), false);
    core_->timer_.Post([self = this->shared_from_this()] { self->Attempt(false); });
    return;
  }
  last_error_ = core_->endpoints_[endpoint_] + ": " + failure.message;
  LogLine(spdlog::level::debug, "etcd call attempt failed",
          {{"call", what_},
           {"attempt", attempts_},
           {"endpoint", core_->endpoints_[endpoint_]},
           {"error", failure.message}});
  core_->EndpointFailed(endpoint_, failure.message);
  const bool no_leader = NoLeader(status.error_code(), status.error_message());
  core_->CountError(no_leader                                 ? 3
                    : failure.kind == FailureKind::kRejected  ? 2
                    : failure.kind == FailureKind::kAmbiguous ? 1
                                                              : 0);
  // etcd saying "no leader" tells what is going on; anything else may be a dead member.
  if (failure.kind != FailureKind::kRejected && !no_leader) {
    core_->SuspectLeaderLoss("etcd call failed", endpoint_, failure.message);
  }
  if (failure.kind == FailureKind::kAmbiguous) NoteAmbiguous();
  if (failure.kind == FailureKind::kRejected) {
    // This attempt was refused for good; an earlier ambiguous attempt may still have committed.
    if (ambiguous_) return Finish(FinalError("refused"), false);
    return Finish(Error{failure.code, what_ + ": " + last_error_}, false);
  }
  auto delay = core_->Backoff(attempts_);
  const int count = static_cast<int>(core_->channels_.size());
  if (NeverSent(status.error_code(), status.error_message()) && attempts_ < 2 * count &&
      core_->AnotherEndpointUsable(endpoint_)) {
    // It certainly did not reach etcd, and another member can be tried: no reason to wait.
    delay = Clock::duration::zero();
  }
  if (no_leader) delay = std::min<Clock::duration>(delay, kNoLeaderMaxBackoff);
  if (now + delay + kMinAttemptTime >= deadline_) {
    return Finish(FinalError("deadline reached"), false);
  }
  core_->timer_.Schedule(now + delay, [self = this->shared_from_this()] { self->Attempt(false); });
}

template <class Response>
void EtcdLog::Core::RetryingCall<Response>::NoteAmbiguous() {
  if (ambiguous_) return;
  ambiguous_ = true;
  ambiguous_error_ = "attempt " + std::to_string(attempts_) + " (" + last_error_ + ")";
}

template <class Response>
Error EtcdLog::Core::RetryingCall<Response>::FinalError(const std::string& why) const {
  std::string message = what_ + ": " + why;
  if (attempts_ > 0) {
    message += " after " + std::to_string(attempts_) + " attempt(s), last: " + last_error_;
  }
  if (ambiguous_) message += "; may have been applied since " + ambiguous_error_;
  return Error{ambiguous_ ? ErrorCode::kUnknown : ErrorCode::kUnavailable, std::move(message)};
}

template <class Response>
void EtcdLog::Core::RetryingCall<Response>::Finish(Result<Response> result, bool on_caller_thread) {
  if (on_caller_thread) {
    // The contract: never inside the calling function.
    core_->timer_.Post([self = this->shared_from_this(), result = std::move(result)]() mutable {
      self->Finish(std::move(result), false);
    });
    return;
  }
  // Released before the log may go: the context holds the channel, and dropping the process's
  // last gRPC channel from a gRPC callback thread after ~EtcdLog returned aborts gRPC 1.51
  // (it shuts its callback thread pool down from inside one of its threads).
  context_.reset();
  core_->EndOperation(done_, std::move(result));
}

void EtcdLog::Core::RunRange(std::string what, etcdserverpb::RangeRequest request,
                             Deadline deadline,
                             std::function<void(Result<etcdserverpb::RangeResponse>)> done,
                             Classify classify, EndpointChoice choice) {
  RetryingCall<etcdserverpb::RangeResponse>::Start(
      this, std::move(what), deadline,
      [this, request = std::move(request)](size_t endpoint, grpc::ClientContext* context,
                                           etcdserverpb::RangeResponse* response,
                                           std::function<void(grpc::Status)> callback) {
        kv_[endpoint]->async()->Range(context, &request, response, std::move(callback));
      },
      classify, std::move(done), choice);
}

void EtcdLog::Core::RunTxn(std::string what, etcdserverpb::TxnRequest request, Deadline deadline,
                           std::function<void(Result<etcdserverpb::TxnResponse>)> done,
                           Classify classify) {
  RetryingCall<etcdserverpb::TxnResponse>::Start(
      this, std::move(what), deadline,
      [this, request = std::move(request)](size_t endpoint, grpc::ClientContext* context,
                                           etcdserverpb::TxnResponse* response,
                                           std::function<void(grpc::Status)> callback) {
        kv_[endpoint]->async()->Txn(context, &request, response, std::move(callback));
      },
      classify, std::move(done));
}

void EtcdLog::Core::RunLeaseGrant(
    int64_t ttl_seconds, Deadline deadline,
    std::function<void(Result<etcdserverpb::LeaseGrantResponse>)> done) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  RetryingCall<etcdserverpb::LeaseGrantResponse>::Start(
      this, "lease grant", deadline,
      [this, request = std::move(request)](size_t endpoint, grpc::ClientContext* context,
                                           etcdserverpb::LeaseGrantResponse* response,
                                           std::function<void(grpc::Status)> callback) {
        lease_[endpoint]->async()->LeaseGrant(context, &request, response, std::move(callback));
      },
      ClassifyReadFailure, std::move(done));
}

void EtcdLog::Core::RunLeaseRevoke(
    int64_t lease, Deadline deadline,
    std::function<void(Result<etcdserverpb::LeaseRevokeResponse>)> done) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  RetryingCall<etcdserverpb::LeaseRevokeResponse>::Start(
      this, "lease revoke", deadline,
      [this, request = std::move(request)](size_t endpoint, grpc::ClientContext* context,
                                           etcdserverpb::LeaseRevokeResponse* response,
                                           std::function<void(grpc::Status)> callback) {
        lease_[endpoint]->async()->LeaseRevoke(context, &request, response, std::move(callback));
      },
      ClassifyReadFailure, std::move(done));
}

template class EtcdLog::Core::RetryingCall<etcdserverpb::TxnResponse>;
template class EtcdLog::Core::RetryingCall<etcdserverpb::RangeResponse>;
template class EtcdLog::Core::RetryingCall<etcdserverpb::CompactionResponse>;
template class EtcdLog::Core::RetryingCall<etcdserverpb::LeaseGrantResponse>;
template class EtcdLog::Core::RetryingCall<etcdserverpb::LeaseRevokeResponse>;

}  // namespace k8shmir
