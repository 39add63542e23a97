// Subscriptions: the watch stream behind each one (WatchSession), the state it shares with the
// handle given to the subscriber and with timer tasks (SubShared), and that handle
// (SubscriptionHandle). Internal to src/log, nested in EtcdLog::Core (log/etcd_log_core.h);
// defined in watch_session.cc.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "k8shmir/log.h"
#include "k8shmir/result.h"
#include "log/etcd_log_core.h"
#include "log/watch_decoder.h"

namespace k8shmir {

// Shared by a watch session (which deletes itself when gRPC is done with it), the handle returned
// to the owner, timer tasks and progress queries, all of which may outlive the session.
struct EtcdLog::Core::SubShared {
  // Held while deciding what to deliver and delivering it, so that on_event calls never overlap
  // and come in order. Taken before `mu`; never taken by Cancel or RequestProgress, so on_event
  // may call them.
  Mutex deliver_mu K8SHMIR_ACQUIRED_BEFORE(mu);
  // Guards the fields below and the session's state.
  Mutex mu;
  WatchSession* session K8SHMIR_GUARDED_BY(mu) = nullptr;  // null once the session has ended
  bool cancelled K8SHMIR_GUARDED_BY(mu) = false;  // by its owner (or by the log's shutdown)
};

class EtcdLog::Core::WatchSession final
    : public grpc::ClientBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse> {
 public:
  WatchSession(Core* core, std::shared_ptr<SubShared> shared, size_t endpoint, int64_t from_index,
               EventCallback on_event);

  void Start() K8SHMIR_EXCLUDES(shared_->mu);

  // The methods named *Locked run with shared_->mu held.

  // For code that reached this session through a SubShared whose mu it holds (shared->session ==
  // this, so that mu is this session's shared_->mu): tells the analysis so.
  void AssertLocked() const K8SHMIR_ASSERT_CAPABILITY(shared_->mu) {}

  void CancelLocked() K8SHMIR_REQUIRES(shared_->mu) { context_.TryCancel(); }

  void RequestProgressLocked() K8SHMIR_REQUIRES(shared_->mu);

  void OnReadDone(bool ok) override K8SHMIR_EXCLUDES(shared_->deliver_mu, shared_->mu);

  void OnWriteDone(bool ok) override K8SHMIR_EXCLUDES(shared_->mu);

  void OnDone(const grpc::Status& status) override
      K8SHMIR_EXCLUDES(shared_->deliver_mu, shared_->mu);

 private:
  void WriteProgressRequestLocked() K8SHMIR_REQUIRES(shared_->mu);

  void ScheduleTickLocked(Clock::time_point when) K8SHMIR_REQUIRES(shared_->mu);

  // The liveness check: a WatchProgressRequest every progress_interval; no response at all
  // within liveness_timeout of one means the member is dead or cut off (a TCP connection to a
  // partitioned host can look healthy for a long time).
  void TickLocked() K8SHMIR_REQUIRES(shared_->mu);

  // Periodic progress notifications only count when they move forward.
  void FilterProgressLocked(std::vector<LogEvent>& events) K8SHMIR_REQUIRES(shared_->mu);

  // RequestProgress() is answered from a linearizable read of the head, not from etcd's reply to
  // a WatchProgressRequest: etcd 3.4.23 may send that reply ahead of events still in flight
  // (etcd issue #15220). The head read gives the revision R and the newest index M <= R; every
  // entry up to R has been delivered once M has (entries are never deleted by k8shmir).
  void StartQueryLocked() K8SHMIR_REQUIRES(shared_->mu);

  static void OnQueryDone(const std::shared_ptr<SubShared>& shared,
                          Result<etcdserverpb::RangeResponse> result)
      K8SHMIR_EXCLUDES(shared->deliver_mu, shared->mu);

  void ScheduleQueryRetryLocked() K8SHMIR_REQUIRES(shared_->mu);

  void AddSatisfiedProgressLocked(std::vector<LogEvent>& events) K8SHMIR_REQUIRES(shared_->mu);

  // With deliver_mu held and mu not held (on_event may call Cancel or RequestProgress).
  void Deliver(std::vector<LogEvent>& events) K8SHMIR_REQUIRES(shared_->deliver_mu)
      K8SHMIR_EXCLUDES(shared_->mu);
  // Deliver, from code that holds `shared`->deliver_mu where shared->session == this.
  void DeliverHeldBy(const SubShared* shared,
                     std::vector<LogEvent>& events) K8SHMIR_NO_THREAD_SAFETY_ANALYSIS;

  Core* const core_;
  const std::shared_ptr<SubShared> shared_;
  const size_t endpoint_;
  const int64_t from_index_;
  const EventCallback on_event_;
  grpc::ClientContext context_;
  etcdserverpb::WatchResponse response_;  // the read buffer; only reactions touch it

  WatchDecoder decoder_ K8SHMIR_GUARDED_BY(shared_->mu);
  etcdserverpb::WatchRequest write_ K8SHMIR_GUARDED_BY(shared_->mu);  // the request being written
  bool write_in_flight_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  bool progress_write_wanted_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  bool read_done_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  // A LogClosed was delivered (or is being delivered).
  bool closed_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  bool unresponsive_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  bool probe_outstanding_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  Clock::time_point probe_sent_at_ K8SHMIR_GUARDED_BY(shared_->mu);
  Clock::time_point next_probe_at_ K8SHMIR_GUARDED_BY(shared_->mu);
  int64_t last_progress_ K8SHMIR_GUARDED_BY(shared_->mu) = 0;
  bool query_in_flight_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  bool query_again_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  bool progress_pending_ K8SHMIR_GUARDED_BY(shared_->mu) = false;
  int64_t pending_revision_ K8SHMIR_GUARDED_BY(shared_->mu) = 0;
  int64_t pending_index_ K8SHMIR_GUARDED_BY(shared_->mu) = 0;
};

class EtcdLog::Core::SubscriptionHandle final : public Subscription {
 public:
  explicit SubscriptionHandle(std::shared_ptr<SubShared> shared) : shared_(std::move(shared)) {}
  ~SubscriptionHandle() override { Cancel(); }

  void RequestProgress() override;

  void Cancel() override;

 private:
  std::shared_ptr<SubShared> shared_;
};

}  // namespace k8shmir
