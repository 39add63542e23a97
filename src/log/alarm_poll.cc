// EtcdLog::Core's poll of etcd's alarms. An alarm is raised cluster-wide and outlives its cause:
// NOSPACE stays until an operator compacts, defragments and disarms it, and while it stands etcd
// refuses every write. etcd 3.4 exports no metric for it, so without this poll an idle group
// whose etcd is out of space would look healthy until its next write is refused.
#include <chrono>

#include "common/tsan_annotations.h"
#include "log/etcd_log_core.h"

namespace k8shmir {

namespace {

// Alarms change on an operator's time scale; one small unary call per interval is negligible.
constexpr std::chrono::seconds kAlarmPollInterval{10};
constexpr std::chrono::seconds kAlarmCallTimeout{2};

}  // namespace

// One Alarm(GET) call in flight.
struct EtcdLog::Core::AlarmCall {
  grpc::ClientContext context;
  etcdserverpb::AlarmRequest request;
  etcdserverpb::AlarmResponse response;
  uint64_t attempt_id = 0;
};

void EtcdLog::Core::PollAlarms() {
  if (shutting_down_) return;
  // The member in use: alarms live in the replicated store, so any member answers for all.
  const size_t endpoint = preferred_.load() % channels_.size();
  auto* call = new AlarmCall;
  call->request.set_action(etcdserverpb::AlarmRequest::GET);
  call->context.set_deadline(ToSystemClock(Clock::now() + kAlarmCallTimeout));
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
          timer_.Schedule(Clock::now() + kAlarmPollInterval, [this] { PollAlarms(); });
        }
        OpFinished();
      });
}

}  // namespace k8shmir
