// EtcdLog::Core's watch over etcd's leadership (log/leader_change.h says why): the channels'
// connectivity polled, and, once something suggests a member died, every member's Status asked
// until it is known whether the leader changed; then the calls in flight are re-sent at once.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/logging.h"
#include "common/tsan_annotations.h"
#include "log/etcd_log_core.h"

namespace k8shmir {

namespace {

using std::chrono::milliseconds;

// How often the channels' connectivity is looked at: a member whose connection broke may have
// been the leader, and then writes forwarded to it by the other members are lost (see
// log/leader_change.h). A SIGKILLed member's connection breaks at once (the kernel closes it).
constexpr milliseconds kChannelPollInterval{100};
// While the leadership is in doubt: how often every member is asked for its status and how long
// one such call may take (for at most rpc_timeout in all: past that the calls' own timeouts will
// have acted anyway).
constexpr milliseconds kLeaderPollInterval{50};
constexpr milliseconds kLeaderStatusTimeout{300};

}  // namespace

// One CallStatus.
struct EtcdLog::Core::StatusCall {
  grpc::ClientContext context;
  etcdserverpb::StatusRequest request;
  etcdserverpb::StatusResponse response;
  uint64_t attempt_id = 0;
  StatusAnswer answer;
};

void EtcdLog::Core::NoteTerm(uint64_t term) {
  uint64_t seen = term_seen_.load();
  while (term > seen && !term_seen_.compare_exchange_weak(seen, term)) {
  }
}

bool EtcdLog::Core::AnotherEndpointUsable(size_t index) {
  for (size_t i = 0; i < channels_.size(); ++i) {
    if (i != index && channels_[i]->GetState(false) != GRPC_CHANNEL_TRANSIENT_FAILURE) return true;
  }
  return false;
}

void EtcdLog::Core::PollChannels() {
  if (shutting_down_) return;
  for (size_t i = 0; i < channels_.size(); ++i) {
    // Connecting every channel keeps all members observed, not only those in use: the leader may
    // be one that no call of this process goes to, yet every write is forwarded to it.
    auto state = channels_[i]->GetState(/*try_to_connect=*/true);
    if (channel_states_[i] == GRPC_CHANNEL_READY && state != GRPC_CHANNEL_READY) {
      SuspectLeaderLoss("connection to the etcd member lost", i);
    }
    channel_states_[i] = state;
  }
  timer_.Schedule(Clock::now() + kChannelPollInterval, [this] { PollChannels(); });
}

void EtcdLog::Core::SuspectLeaderLoss(std::string_view reason, size_t endpoint,
                                      std::string_view error) {
  {
    MutexLock lock(mu_);
    if (check_running_ || shutting_down_) return;
    check_running_ = true;
    ++check_round_;  // answers of an earlier check count no more
    check_baseline_ = LeaderBaseline{known_leader_, term_seen_.load()};
    check_until_ = Clock::now() + options.rpc_timeout;
  }
  if (error.empty()) {
    LogLine(spdlog::level::debug, "etcd leader in doubt; asking every member who leads",
            {{"reason", reason}, {"endpoint", endpoints_[endpoint]}});
  } else {
    LogLine(spdlog::level::debug, "etcd leader in doubt; asking every member who leads",
            {{"reason", reason}, {"endpoint", endpoints_[endpoint]}, {"error", error}});
  }
  timer_.Post([this] { StartLeaderCheckRound(); });
}

void EtcdLog::Core::StartLeaderCheckRound() {
  uint64_t round = 0;
  {
    MutexLock lock(mu_);
    if (shutting_down_) {
      check_running_ = false;
      return;
    }
    round = ++check_round_;
    check_answers_.assign(channels_.size(), std::nullopt);
    check_pending_ = channels_.size();
    check_round_started_ = Clock::now();
  }
  for (size_t i = 0; i < channels_.size(); ++i) {
    CallStatus(
        i, Clock::now() + kLeaderStatusTimeout,
        [this, round, i](Result<etcdserverpb::StatusResponse> status) -> std::function<void()> {
          std::optional<MemberStatus> answer;
          if (status) {
            answer =
                MemberStatus{status->header().member_id(), status->leader(), status->raftterm()};
          }
          OnLeaderStatus(round, i, answer);
          return {};
        });
  }
}

void EtcdLog::Core::CallStatus(size_t endpoint, Deadline deadline, StatusAnswer answer) {
  auto* call = new StatusCall;
  call->answer = std::move(answer);
  call->context.set_deadline(ToSystemClock(deadline));
  OpStarted();
  if (!RegisterAttempt(&call->context, &call->attempt_id)) {
    timer_.Post([this, call] {
      auto then = call->answer(Error{ErrorCode::kCancelled, "the etcd log is shutting down"});
      delete call;
      EndOperation(then);
    });
    return;
  }
  K8SHMIR_HAPPENS_BEFORE(call);
  maintenance_[endpoint]->async()->Status(
      &call->context, &call->request, &call->response, [this, call, endpoint](grpc::Status status) {
        K8SHMIR_HAPPENS_AFTER(call);
        UnregisterAttempt(call->attempt_id);
        Result<etcdserverpb::StatusResponse> answer = std::move(call->response);
        if (!status.ok()) {
          answer = Error{ErrorCode::kUnavailable,
                         endpoints_[endpoint] + ": " +
                             DescribeGrpcStatus(status.error_code(), status.error_message())};
        }
        auto then = call->answer(std::move(answer));
        // Before the operation ends: the context holds the channel (see RetryingCall::Finish).
        delete call;
        EndOperation(then);
      });
}

void EtcdLog::Core::OnLeaderStatus(uint64_t round, size_t index,
                                   std::optional<MemberStatus> answer) {
  MutexLock lock(mu_);
  if (!check_running_ || round != check_round_) return;
  check_answers_[index] = answer;
  if (answer) NoteMemberStatusLocked(index, answer->member_id, /*leader=*/0);
  --check_pending_;
  LeaderJudgement judgement = JudgeLeader(check_answers_, check_baseline_);
  if (judgement.verdict == LeaderVerdict::kUnknown) {
    if (check_pending_ > 0) return;
    auto now = Clock::now();
    if (shutting_down_ || now >= check_until_) {
      check_running_ = false;
      LogLine(spdlog::level::debug, "etcd leader check: no leader known", {{"round", round}});
      return;
    }
    timer_.Schedule(std::max(now, check_round_started_ + kLeaderPollInterval),
                    [this] { StartLeaderCheckRound(); });
    return;
  }
  check_running_ = false;
  ++check_round_;
  NoteTerm(judgement.term);
  known_leader_ = judgement.leader;
  NoteMemberStatusLocked(index, /*member_id=*/0, judgement.leader);
  if (judgement.verdict == LeaderVerdict::kChanged) {
    int interrupted = InterruptAttemptsLocked();
    LogLine(spdlog::level::info, "etcd has a new leader; re-sending the calls in flight",
            {{"leader", fmt::format("{:x}", judgement.leader)},
             {"previous_leader", fmt::format("{:x}", check_baseline_.leader)},
             {"calls", interrupted}});
  } else {
    LogLine(spdlog::level::debug, "etcd leader check: the leader is alive",
            {{"leader", fmt::format("{:x}", judgement.leader)}});
  }
}

int EtcdLog::Core::InterruptAttemptsLocked() {
  int count = 0;
  for (auto& [id, attempt] : attempts_) {
    if (attempt.call == nullptr) continue;
    attempt.call->NoteInterrupted(id);
    attempt.context->TryCancel();
    ++count;
  }
  return count;
}

}  // namespace k8shmir
