// EtcdLog::Core's poll of the etcd cluster: its alarms, and who leads.
//
// An alarm is raised cluster-wide and outlives its cause: NOSPACE stays until an operator
// compacts, defragments and disarms it, and while it stands etcd refuses every write. etcd 3.4
// exports no metric for it, so without this poll an idle group whose etcd is out of space would
// look healthy until its next write is refused.
//
// The leader: linearizable reads go to it first (leader_endpoint_). The leader check learns a new
// leader as soon as a connection breaks; this poll also catches a leadership moved without that
// (a transfer, a partition the client does not see), within one interval.
#include <chrono>

#include "common/tsan_annotations.h"
#include "log/etcd_log_core.h"

namespace k8shmir {

namespace {

// Alarms change on an operator's time scale, leaders rarely; a few small unary calls per
// interval are negligible.
constexpr std::chrono::seconds kClusterPollInterval{10};
constexpr std::chrono::seconds kPollCallTimeout{2};

}  // namespace

// One Alarm(GET) call in flight.
struct EtcdLog::Core::AlarmCall {
  grpc::ClientContext context;
  etcdserverpb::AlarmRequest request;
  etcdserverpb::AlarmResponse response;
  uint64_t attempt_id = 0;
};

void EtcdLog::Core::PollCluster() {
  if (shutting_down_) return;
  for (size_t i = 0; i < channels_.size(); ++i) {
    CallStatus(i, Clock::now() + kPollCallTimeout,
               [this, i](Result<etcdserverpb::StatusResponse> status) -> std::function<void()> {
                 NoteDbSize(i, status ? status->dbsize() : -1);
                 if (status) NoteMemberStatus(i, status->header().member_id(), status->leader());
                 return {};
               });
  }
  // The member in use: alarms live in the replicated store, so any member answers for all.
  const size_t endpoint = preferred_.load() % channels_.size();
  auto* call = new AlarmCall;
  call->request.set_action(etcdserverpb::AlarmRequest::GET);
  call->context.set_deadline(ToSystemClock(Clock::now() + kPollCallTimeout));
  OpStarted();
  if (!RegisterAttempt(&call->context, &call->attempt_id)) {
    delete call;
    OpFinished();
    return;
  }
  K8SHMIR_HAPPENS_BEFORE(call);
  maintenance_[endpoint]->async()->Alarm(
      &call->context, &call->request, &call->response, [this, call](grpc::Status status) {
        K8SHMIR_HAPPENS_AFTER(call);
        UnregisterAttempt(call->attempt_id);
        if (status.ok()) {
          uint8_t raised = 0;
          for (const auto& alarm : call->response.alarms()) {
            if (alarm.alarm() == etcdserverpb::NOSPACE) raised |= kNoSpaceAlarm;
            if (alarm.alarm() == etcdserverpb::CORRUPT) raised |= kCorruptAlarm;
          }
          alarms_.store(raised | kAlarmsKnown, std::memory_order_relaxed);
        }
        // A failed poll keeps the last answer: the member may be down while the alarm stands.
        // Before the operation ends: the context holds the channel (see RetryingCall::Finish).
        delete call;
        if (!shutting_down_) {
          timer_.Schedule(Clock::now() + kClusterPollInterval, [this] { PollCluster(); });
        }
        OpFinished();
      });
}

void EtcdLog::Core::NoteMemberStatus(size_t endpoint, uint64_t member_id, uint64_t leader) {
  MutexLock lock(mu_);
  NoteMemberStatusLocked(endpoint, member_id, leader);
}

void EtcdLog::Core::NoteDbSize(size_t endpoint, int64_t bytes) {
  MutexLock lock(mu_);
  if (db_sizes_.size() != channels_.size()) db_sizes_.assign(channels_.size(), -1);
  db_sizes_[endpoint] = bytes;
}

void EtcdLog::Core::NoteMemberStatusLocked(size_t endpoint, uint64_t member_id, uint64_t leader) {
  if (member_ids_.size() != channels_.size()) member_ids_.assign(channels_.size(), 0);
  if (member_id != 0) member_ids_[endpoint] = member_id;
  if (leader == 0) return;  // an election: keep the last known until a member names one
  int found = -1;
  for (size_t i = 0; i < member_ids_.size(); ++i) {
    if (member_ids_[i] == leader) found = static_cast<int>(i);
  }
  // A leader none of our endpoints is known to be (not every member asked yet, or one that is not
  // listed): unknown, so reads go the preferred way.
  leader_endpoint_.store(found);
}

size_t EtcdLog::Core::LeaderFirst() {
  const int leader = leader_endpoint_.load();
  if (leader >= 0 && static_cast<size_t>(leader) < channels_.size() &&
      channels_[leader]->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
    return static_cast<size_t>(leader);
  }
  return PickEndpoint();
}

}  // namespace k8shmir
