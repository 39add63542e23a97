// EtcdLog::Core's poll of the etcd cluster: every member's Status, which names its alarms, its
// database size, and who leads.
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

#include "log/etcd_log_core.h"

namespace k8shmir {

namespace {

// Alarms change on an operator's time scale, leaders rarely; a few small unary calls per
// interval are negligible.
constexpr std::chrono::seconds kClusterPollInterval{10};
constexpr std::chrono::seconds kPollCallTimeout{2};

}  // namespace

void EtcdLog::Core::PollCluster() {
  if (shutting_down_) return;
  for (size_t i = 0; i < channels_.size(); ++i) {
    CallStatus(i, Clock::now() + kPollCallTimeout,
               [this, i](Result<etcdserverpb::StatusResponse> status) -> std::function<void()> {
                 NotePolledStatus(i, status ? &*status : nullptr);
                 return {};
               });
  }
  // The calls' timeout is shorter than the interval: polls never overlap.
  timer_.Schedule(Clock::now() + kClusterPollInterval, [this] { PollCluster(); });
}

void EtcdLog::Core::NotePolledStatus(size_t endpoint, const etcdserverpb::StatusResponse* status) {
  MutexLock lock(mu_);
  if (db_sizes_.size() != channels_.size()) db_sizes_.assign(channels_.size(), -1);
  db_sizes_[endpoint] = status != nullptr ? status->dbsize() : -1;
  // A failed call keeps the last alarms known: the member may be down while an alarm stands.
  if (status == nullptr) return;
  // Alarms are cluster-wide: every member lists them all, as "memberID:<id> alarm:NOSPACE".
  uint8_t raised = kAlarmsKnown;
  for (const auto& error : status->errors()) {
    if (error.find("alarm:NOSPACE") != std::string::npos) raised |= kNoSpaceAlarm;
    if (error.find("alarm:CORRUPT") != std::string::npos) raised |= kCorruptAlarm;
  }
  alarms_.store(raised, std::memory_order_relaxed);
  NoteMemberStatusLocked(endpoint, status->header().member_id(), status->leader());
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
