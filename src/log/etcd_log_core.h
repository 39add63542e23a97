// Core: everything behind EtcdLog, so that the public header stays free of gRPC. Internal to
// src/log: its nested classes live in retrying_call.h (one unary KV operation, retried) and
// watch_session.h (a subscription's watch stream); its methods in etcd_log_core.cc.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "k8shmir/group_registry.h"
#include "log/batch_format.h"
#include "log/etcd_errors.h"
#include "log/etcd_log.h"
#include "log/leader_change.h"
#include "log/timer_queue.h"

namespace k8shmir {

// Shared by the files of the etcd log (etcd_log_core.cc, retrying_call.cc, watch_session.cc).

using Clock = std::chrono::steady_clock;

// With this metadata etcd refuses requests ("etcdserver: no leader") instead of proposing them
// when the member has no leader, and cancels watch streams when the member loses its leader.
inline constexpr char kHasLeaderKey[] = "hasleader";
inline constexpr char kHasLeaderValue[] = "true";

// Wall-clock milliseconds, for the times written into etcd (snapshot manifests, replica records).
inline int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::chrono::system_clock::time_point ToSystemClock(Clock::time_point t) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(t - Clock::now());
}

// Index of the newest entry in the answer to a HeadRequest (0 for an empty log).
inline int64_t LastIndexOf(const etcdserverpb::RangeResponse& response, const std::string& prefix) {
  if (response.kvs().empty()) return 0;
  const auto& kv = response.kvs(0);
  std::string_view key = kv.key();
  if (key.substr(0, prefix.size()) == prefix) key.remove_prefix(prefix.size());
  return LastIndexOfBatch(kv.create_revision(), key);
}

// Txn{ if create_revision(key) == 0 then Put(key, value) else Range(key) }: writes a key once; a
// retry after an ambiguous attempt takes the failure branch and reads what is there (keys only:
// its create revision, not its value).
inline etcdserverpb::TxnRequest CreateOnceTxn(const std::string& key, std::string value,
                                              bool keys_only) {
  etcdserverpb::TxnRequest request;
  auto* compare = request.add_compare();
  compare->set_key(key);
  compare->set_target(etcdserverpb::Compare::CREATE);
  compare->set_result(etcdserverpb::Compare::EQUAL);
  compare->set_create_revision(0);
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::move(value));
  auto* range = request.add_failure()->mutable_request_range();
  range->set_key(key);
  range->set_keys_only(keys_only);
  return request;
}

// A read changes nothing: every failure means "no effect" and is worth retrying.
inline RpcFailure ClassifyReadFailure(grpc::StatusCode code, std::string_view message) {
  return {FailureKind::kRefused, ErrorCode::kUnavailable, DescribeGrpcStatus(code, message)};
}

class EtcdLog::Core {
 public:
  // Where a call's first attempt goes: the member this process prefers (the endpoint order and
  // failovers decide), or etcd's leader when it is known and reachable. Retries always go the
  // preferred way.
  enum class EndpointChoice { kPreferred, kLeaderFirst };
  struct SubShared;
  class WatchSession;
  struct StatusCall;
  // A KV call whose attempt in flight may be cancelled because etcd's leader changed under it.
  class Interruptible {
   public:
    virtual void NoteInterrupted(uint64_t attempt_id) = 0;

   protected:
    ~Interruptible() = default;
  };
  class SubscriptionHandle;
  template <class Response>
  class RetryingCall;
  class RangeReader;
  // The SnapshotStore's operations (snapshot_store.cc).
  struct SnapshotSave;
  struct SnapshotList;
  struct SnapshotLoad;
  // Retention (trimmer.cc) and the group registry's operations (group_registry.cc).
  struct Trimmer;
  struct RegistryRefresh;

  explicit Core(EtcdLogOptions opts);
  ~Core();

  void AppendBatch(const std::string& batch_id, std::vector<LogEntry> entries, Deadline deadline,
                   AppendCallback done);
  void Head(Deadline deadline, HeadCallback done);
  void ReadCommittedIndex(Deadline deadline, CommittedCallback done);
  void ReadRange(int64_t from_index, int64_t revision, Deadline deadline, RangeCallback done);
  void CheckSpace(Deadline deadline, SpaceCallback done);
  // SnapshotStore (snapshot_store.cc).
  void SaveSnapshot(const AppSnapshot& snapshot, const std::string& taker, int keep,
                    Deadline deadline, SnapshotStore::SaveCallback done);
  void ListSnapshots(Deadline deadline, SnapshotStore::ListCallback done);
  void LoadSnapshot(const SnapshotManifest& manifest, Deadline deadline,
                    SnapshotStore::LoadCallback done);
  void Trim(int64_t through_index, Deadline deadline, TrimCallback done);
  // GroupRegistry (group_registry.cc).
  void CheckFormat(Deadline deadline, GroupRegistry::StatusCallback done);
  void Refresh(const ReplicaRecord& self, std::chrono::seconds ttl, Deadline deadline,
               GroupRegistry::RefreshCallback done);
  void Leave(Deadline deadline, GroupRegistry::StatusCallback done);

  // One KV call, retried inside `deadline` (reads retried on any failure, writes classified by
  // ClassifyWriteFailure), for operations made of several calls. Such an operation holds
  // OpStarted() from its start until just before its own callback (OpFinished(), then nothing
  // of the log may be touched): the destructor waits for it.
  using Classify = RpcFailure (*)(grpc::StatusCode, std::string_view);
  void RunRange(std::string what, etcdserverpb::RangeRequest request, Deadline deadline,
                std::function<void(Result<etcdserverpb::RangeResponse>)> done,
                Classify classify = ClassifyReadFailure,
                EndpointChoice choice = EndpointChoice::kPreferred);
  void RunTxn(std::string what, etcdserverpb::TxnRequest request, Deadline deadline,
              std::function<void(Result<etcdserverpb::TxnResponse>)> done,
              Classify classify = ClassifyWriteFailure);
  // Lease calls, retried like reads: granting twice leaves a spare lease that expires by
  // itself, and revoking twice is harmless.
  void RunLeaseGrant(int64_t ttl_seconds, Deadline deadline,
                     std::function<void(Result<etcdserverpb::LeaseGrantResponse>)> done);
  void RunLeaseRevoke(int64_t lease, Deadline deadline,
                      std::function<void(Result<etcdserverpb::LeaseRevokeResponse>)> done);
  void OpStarted() K8SHMIR_EXCLUDES(mu_);
  void OpFinished() K8SHMIR_EXCLUDES(mu_);
  // Ends an operation begun with OpStarted, then runs `callback(value)`: after OpFinished the log
  // may be gone (its destructor was waiting for this), so nothing of it is touched any more.
  template <class Callback, class Value>
  void EndOperation(Callback& callback, Value value) {
    auto run = std::move(callback);
    OpFinished();
    run(std::move(value));
  }
  // The same for a continuation without a value, which may be empty.
  void EndOperation(std::function<void()>& then) {
    auto run = std::move(then);
    OpFinished();
    if (run) run();
  }

  // One Status call to member `endpoint` (answered by that member alone), within `deadline`,
  // counted as an operation. `answer` runs exactly once, never inside this call, while the log is
  // alive: with the member's answer, or an error when the call failed or the log is shutting
  // down. What it returns (may be empty) runs once the operation ended, when the log may be gone:
  // a caller's own callback goes there.
  using StatusAnswer = std::function<std::function<void()>(Result<etcdserverpb::StatusResponse>)>;
  void CallStatus(size_t endpoint, Deadline deadline, StatusAnswer answer);
  std::unique_ptr<Subscription> Subscribe(int64_t from_index, EventCallback on_event);
  void Compact(int64_t revision, Deadline deadline, std::function<void(Status)> done);

  // The member in use, failovers, failed attempts (EtcdLog::ClientStats). Any thread.
  LogClientStats ClientStats() const K8SHMIR_EXCLUDES(mu_);

  const EtcdLogOptions options;
  const std::string range_end;

 private:
  // An append etcd refused for lack of space may still have committed (etcd 3.4 applies the put
  // that crosses the quota and answers NOSPACE): a read of its key after the answer tells. Runs
  // inside AppendBatch's operation, which it ends.
  void ResolveRefusedAppend(const std::string& batch_id, const std::string& key, Deadline deadline,
                            Error refusal, AppendCallback done);

  // The Range behind Head and behind the progress queries of subscriptions.
  etcdserverpb::RangeRequest HeadRequest() const;

  // Endpoint choice: stay on the endpoint that works; skip endpoints whose channel is known to
  // be unable to connect; move on after a failure.
  size_t PickEndpoint();
  // The leader's endpoint when known and its channel is not failing, else PickEndpoint().
  size_t LeaderFirst();
  // The cluster poll's answer from `endpoint` (null: the call failed): its database size, the
  // alarms, and the member id and leader it names.
  void NotePolledStatus(size_t endpoint, const etcdserverpb::StatusResponse* status)
      K8SHMIR_EXCLUDES(mu_);
  // A member's Status answer (member id, and the leader it knows, 0 if none) from `endpoint`:
  // the endpoint of the leader is learnt from these (leader_endpoint_).
  void NoteMemberStatusLocked(size_t endpoint, uint64_t member_id, uint64_t leader)
      K8SHMIR_REQUIRES(mu_);
  void EndpointFailed(size_t index, const std::string& why);
  void EndpointWorked(size_t index);
  // A failed attempt of kind `kind` (an index into kLogErrorKinds).
  void CountError(std::size_t kind) { errors_[kind].fetch_add(1, std::memory_order_relaxed); }

  // Backoff before the retry that follows `failures` failed attempts: the other members are
  // tried at once, then exponentially (with jitter) up to kMaxBackoff.
  Clock::duration Backoff(int failures) K8SHMIR_EXCLUDES(mu_);

  // Registers an attempt's context so that shutdown can cancel it, and, when `call` is given, so
  // that a leader change re-sends it; false when shutting down.
  bool RegisterAttempt(grpc::ClientContext* context, uint64_t* id, Interruptible* call = nullptr)
      K8SHMIR_EXCLUDES(mu_);
  void UnregisterAttempt(uint64_t id) K8SHMIR_EXCLUDES(mu_);
  void SessionFinished(SubShared* shared) K8SHMIR_EXCLUDES(mu_);

  // The newest raft term seen in any answer.
  void NoteTerm(uint64_t term);
  // Something suggests that a member died (a broken connection, a failed call): find out whether
  // the leader changed, and if so re-send the calls in flight (see log/leader_change.h). No-op
  // while a check is running. `endpoint`: the member whose failure raised the doubt; `error`, if
  // any, what it answered (both for the log line only).
  void SuspectLeaderLoss(std::string_view reason, size_t endpoint, std::string_view error = {})
      K8SHMIR_EXCLUDES(mu_);
  void StartLeaderCheckRound() K8SHMIR_EXCLUDES(mu_);
  void OnLeaderStatus(uint64_t round, size_t index, std::optional<MemberStatus> answer)
      K8SHMIR_EXCLUDES(mu_);
  // Cancels every interruptible attempt in flight (they are re-sent at once); returns how many.
  int InterruptAttemptsLocked() K8SHMIR_REQUIRES(mu_);
  // Runs every kChannelPollInterval on the timer thread.
  void PollChannels();
  // Some endpoint other than `index` has a channel that is not in TRANSIENT_FAILURE.
  bool AnotherEndpointUsable(size_t index);
  // Asks every member for its Status (alarms, database size, who leads), then again every
  // kClusterPollInterval (cluster_poll.cc).
  void PollCluster();

  std::vector<std::string> endpoints_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv_;
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> watch_;
  std::vector<std::unique_ptr<etcdserverpb::Maintenance::Stub>> maintenance_;
  std::vector<std::unique_ptr<etcdserverpb::Lease::Stub>> lease_;
  std::vector<grpc_connectivity_state> channel_states_;  // only PollChannels touches them
  std::atomic<uint64_t> term_seen_{0};
  std::atomic<size_t> preferred_{0};
  std::atomic<bool> shutting_down_{false};
  std::atomic<int64_t> last_endpoint_warning_ms_{0};
  std::atomic<uint64_t> failovers_{0};
  std::array<std::atomic<uint64_t>, std::size(kLogErrorKinds)> errors_{};
  // etcd's alarms as last polled: kAlarmsKnown once a poll was answered, with the raised ones.
  static constexpr uint8_t kAlarmsKnown = 1, kNoSpaceAlarm = 2, kCorruptAlarm = 4;
  std::atomic<uint8_t> alarms_{0};
  // The endpoint of etcd's leader as last learnt, -1 when unknown. Linearizable reads go there
  // first: the leader serves a ReadIndex itself, a follower forwards it (two more messages, and
  // a hop).
  std::atomic<int> leader_endpoint_{-1};
  // The lease of the registry's record and taker key (Refresh replaces it every time); 0: none.
  std::atomic<int64_t> registry_lease_{0};

  // Taken after a subscription's SubShared::mu when both are held (a watch session starts its
  // progress query with its mu held); never the other way round.
  mutable Mutex mu_;
  std::condition_variable idle_cv_;          // ops_ == 0 && sessions_.empty(), notified under mu_
  int64_t ops_ K8SHMIR_GUARDED_BY(mu_) = 0;  // unary operations whose callback has not started yet
  uint64_t next_attempt_id_ K8SHMIR_GUARDED_BY(mu_) = 1;
  struct Attempt {
    grpc::ClientContext* context;
    Interruptible* call;  // null: not re-sent on a leader change
  };
  std::map<uint64_t, Attempt> attempts_ K8SHMIR_GUARDED_BY(mu_);
  // The leader check (SuspectLeaderLoss): one at a time, in rounds of one Status call per member.
  bool check_running_ K8SHMIR_GUARDED_BY(mu_) = false;
  // known_leader_ and term_seen_ when it started
  LeaderBaseline check_baseline_ K8SHMIR_GUARDED_BY(mu_);
  // The leader's member id found by the last check, 0 if none.
  uint64_t known_leader_ K8SHMIR_GUARDED_BY(mu_) = 0;
  Clock::time_point check_until_ K8SHMIR_GUARDED_BY(mu_);
  uint64_t check_round_ K8SHMIR_GUARDED_BY(mu_) = 0;
  size_t check_pending_ K8SHMIR_GUARDED_BY(mu_) = 0;
  Clock::time_point check_round_started_ K8SHMIR_GUARDED_BY(mu_);
  std::vector<std::optional<MemberStatus>> check_answers_ K8SHMIR_GUARDED_BY(mu_);
  // Each endpoint's member id as its Status answers said (0: not known yet).
  std::vector<uint64_t> member_ids_ K8SHMIR_GUARDED_BY(mu_);
  // Each endpoint's database size (bytes) as its last Status answer said; -1: unknown or that
  // poll failed. etcd's quota applies to each member's database: the largest crosses it first.
  std::vector<int64_t> db_sizes_ K8SHMIR_GUARDED_BY(mu_);
  std::map<SubShared*, std::shared_ptr<SubShared>> sessions_ K8SHMIR_GUARDED_BY(mu_);
  std::minstd_rand rng_ K8SHMIR_GUARDED_BY(mu_);

  // Last: its thread runs tasks that use the members above, and is stopped first.
  TimerQueue timer_;
};

// What every operation made of a chain of KV calls holds (the snapshot store's, the trimmer, the
// registry refresh): the core, its deadline and its callback. It counts as one operation of the
// core from Begin until Finish, which runs the callback (the core may be gone after it). `Core`
// is EtcdLog::Core, a parameter because that class is private to EtcdLog: only its own nested
// classes name it.
template <class Core, class T>
struct ChainedOperation {
  Core* core = nullptr;
  Deadline deadline;
  std::function<void(Result<T>)> done;

  void Begin(Core* c, Deadline d, std::function<void(Result<T>)> callback) {
    core = c;
    deadline = d;
    done = std::move(callback);
    core->OpStarted();
  }

  void Finish(Result<T> result) { core->EndOperation(done, std::move(result)); }
};

}  // namespace k8shmir
