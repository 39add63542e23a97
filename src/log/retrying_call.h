// RetryingCall: one unary KV operation, retried inside its deadline. Internal to src/log, nested
// in EtcdLog::Core (log/etcd_log_core.h). A template whose members are defined in
// retrying_call.cc, which instantiates it for the calls the log makes (the end of this file).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "k8shmir/result.h"
#include "log/etcd_errors.h"
#include "log/etcd_log_core.h"

namespace k8shmir {

template <class Response>
class EtcdLog::Core::RetryingCall final
    : public std::enable_shared_from_this<EtcdLog::Core::RetryingCall<Response>>,
      public EtcdLog::Core::Interruptible {
 public:
  // Sends one attempt to member `endpoint` (an index into the core's stubs).
  using Issue = std::function<void(size_t endpoint, grpc::ClientContext*, Response*,
                                   std::function<void(grpc::Status)>)>;
  using Classify = RpcFailure (*)(grpc::StatusCode, std::string_view);
  using Done = std::function<void(Result<Response>)>;

  // From the leader check, with the core's mutex held, just before it cancels the attempt.
  void NoteInterrupted(uint64_t attempt_id) override { interrupted_attempt_.store(attempt_id); }

  // `done` runs exactly once, never inside Start.
  static void Start(Core* core, std::string what, Deadline deadline, Issue issue, Classify classify,
                    Done done, EndpointChoice choice = EndpointChoice::kPreferred);

  RetryingCall(Core* core, std::string what, Deadline deadline, Issue issue, Classify classify,
               Done done, EndpointChoice choice);

 private:
  void Attempt(bool on_caller_thread);

  void OnAttemptDone(grpc::Status status);

  // The outcome when no attempt gave a definitive answer: kUnavailable only if every attempt was
  // certainly not applied; one ambiguous attempt makes the whole operation ambiguous.
  Error FinalError(const std::string& why) const;
  // Records that the attempt just failed (last_error_) may have been applied.
  void NoteAmbiguous();

  void Finish(Result<Response> result, bool on_caller_thread);

  // No lock: the state below is used by one thread at a time, handed over with the work. The
  // caller's thread (Start), then gRPC's for the attempt's callback, then the timer thread for the
  // retry it schedules as its last action, and so on; each hand-over goes through gRPC or the
  // timer queue's mutex. The leader check touches only interrupted_attempt_ (atomic) and the
  // context through Core::attempts_ (under Core::mu_, while the attempt is registered).
  Core* const core_;
  const std::string what_;
  const Deadline deadline_;
  const Issue issue_;
  const Classify classify_;
  Done done_;
  const EndpointChoice choice_;

  int attempts_ = 0;
  bool ambiguous_ = false;
  std::string last_error_;
  // The first attempt that may have been applied, and how it ended: told in the final error,
  // since the last attempt's error alone would not say why the outcome is unknown.
  std::string ambiguous_error_;
  size_t endpoint_ = 0;
  uint64_t attempt_id_ = 0;
  std::atomic<uint64_t> interrupted_attempt_{0};
  std::unique_ptr<grpc::ClientContext> context_;
  Response response_;
};

// The calls the log makes (Txn, Range, Compaction, lease grant and revoke), instantiated in
// retrying_call.cc; a new kind of call adds its response type there and here.
extern template class EtcdLog::Core::RetryingCall<etcdserverpb::TxnResponse>;
extern template class EtcdLog::Core::RetryingCall<etcdserverpb::RangeResponse>;
extern template class EtcdLog::Core::RetryingCall<etcdserverpb::CompactionResponse>;
extern template class EtcdLog::Core::RetryingCall<etcdserverpb::LeaseGrantResponse>;
extern template class EtcdLog::Core::RetryingCall<etcdserverpb::LeaseRevokeResponse>;

}  // namespace k8shmir
