#include "log/etcd_log_core.h"

#include "common/logging.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "log/batch_format.h"
#include "log/etcd_credentials.h"
#include "log/etcd_errors.h"
#include "log/leader_change.h"
#include "log/range_reader.h"
#include "log/retrying_call.h"
#include "log/watch_session.h"

namespace k8shmir {

namespace {

using std::chrono::milliseconds;

constexpr int kMaxReceiveMessageBytes = 16 << 20;
constexpr milliseconds kFirstBackoff{25};
constexpr milliseconds kMaxBackoff{1000};
constexpr std::chrono::seconds kEndpointWarningInterval{5};

// Txn{ if create_revision(key) == 0 then Range(head), Put(key, batch), Put(head) else Range(key) }.
// The committed head moves with every batch created, in the same transaction (read barriers);
// read before it moves, it names the newest batch before this one (AppendResult::
// committed_before). A retry after an ambiguous attempt takes the failure branch and reads the
// batch's key (only its create revision, not its possibly large value).
etcdserverpb::TxnRequest AppendTxn(const std::string& prefix, const std::string& key,
                                   std::string batch, std::size_t count) {
  etcdserverpb::TxnRequest request = CreateOnceTxn(key, std::move(batch), /*keys_only=*/true);
  // The head's range goes first, before the puts: etcd's later operations see earlier writes.
  request.add_success()->mutable_request_range()->set_key(CommittedHeadKey(prefix));
  request.mutable_success()->SwapElements(0, 1);
  auto* head = request.add_success()->mutable_request_put();
  head->set_key(CommittedHeadKey(prefix));
  head->set_value(EncodeCommittedHead(count));
  return request;
}

// The committed head as the append's transaction read it before moving it; -1 when the answer
// does not carry it (the batch's own append is still fine: only read barriers need it).
int64_t CommittedBefore(const etcdserverpb::TxnResponse& response) {
  if (response.responses_size() < 1 || !response.responses(0).has_response_range()) return -1;
  const auto& kvs = response.responses(0).response_range().kvs();
  if (kvs.empty()) return 0;  // the group's first batch
  Result<int64_t> head = ParseCommittedHead(kvs[0].mod_revision(), kvs[0].value());
  return head ? *head : -1;
}

// The outcome of an append's transaction (AppendTxn).
Result<AppendResult> AppendOutcome(const std::string& batch_id,
                                   const Result<etcdserverpb::TxnResponse>& result) {
  if (!result) return result.error();
  const auto& response = result.value();
  int64_t revision = 0;
  bool created = response.succeeded();
  if (created) {
    // The batch's revision is the one of the transaction that created its key.
    revision = response.header().revision();
  } else if (response.responses_size() == 1 && response.responses(0).has_response_range() &&
             response.responses(0).response_range().kvs_size() == 1) {
    revision = response.responses(0).response_range().kvs(0).create_revision();
  } else {
    return Error{ErrorCode::kProtocol,
                 "etcd says batch " + batch_id + " exists but did not return it"};
  }
  if (revision <= 0) {
    return Error{ErrorCode::kProtocol, "etcd did not tell the revision of batch " + batch_id};
  }
  if (revision >= kMaxBatchRevision) {
    LogLine(spdlog::level::critical, "etcd revision past the last one k8shmir can index",
            {{"revision", revision}, {"max_revision", kMaxBatchRevision - 1}});
    return Error{ErrorCode::kProtocol, "etcd revision " + std::to_string(revision) +
                                           " gives log indices of 2^53 and more"};
  }
  return AppendResult{IndexOf(revision, 0), created, created ? CommittedBefore(response) : -1};
}

}  // namespace

EtcdLog::Core::Core(EtcdLogOptions opts)
    : options(std::move(opts)),
      range_end(PrefixRangeEnd(options.prefix)),
      rng_(std::random_device{}()) {
  if (!options.endpoints.empty()) preferred_ = options.first_endpoint % options.endpoints.size();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  // Detect a dead peer under a call in flight: ping every 6 s, give up 3 s later. Not on idle
  // connections, and not at exactly 5 s: etcd 3.4 enforces a 5 s minimum ping interval and
  // forbids pings without streams (PermitWithoutStream=false); violations earn a GOAWAY
  // "too_many_pings", after which gRPC doubles the keepalive time for good. Idle connections
  // need no probing: the next operation's deadline (and the watch liveness check) covers them.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 6000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC's default reconnect backoff grows to 120 s; after an etcd outage we want to be back
  // within a second or so of the member.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // (Despite its name, the minimum time given to a connection attempt.)
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 3000);
  args.SetLoadBalancingPolicyName("pick_first");
  // Our own subchannels: per-endpoint failover must not be defeated by sharing.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The same credentials for every endpoint: TLS is a setting of the log (see EtcdTlsOptions).
  auto credentials = MakeEtcdChannelCredentials(options.tls);
  if (!credentials) throw std::invalid_argument(credentials.error().message);
  if (!options.tls.server_name.empty()) args.SetSslTargetNameOverride(options.tls.server_name);
  for (const auto& endpoint : options.endpoints) {
    auto normalized = NormalizeEndpoint(endpoint);
    if (!normalized) throw std::invalid_argument(normalized.error().message);
    auto channel = grpc::CreateCustomChannel("dns:///" + *normalized, *credentials, args);
    channel->GetState(/*try_to_connect=*/true);
    endpoints_.push_back(*normalized);
    kv_.push_back(etcdserverpb::KV::NewStub(channel));
    watch_.push_back(etcdserverpb::Watch::NewStub(channel));
    maintenance_.push_back(etcdserverpb::Maintenance::NewStub(channel));
    lease_.push_back(etcdserverpb::Lease::NewStub(channel));
    channel_states_.push_back(GRPC_CHANNEL_IDLE);
    channels_.push_back(std::move(channel));
  }
  timer_.Post([this] { PollChannels(); });
  timer_.Post([this] { PollCluster(); });
}

EtcdLog::Core::~Core() {
  if (timer_.InTimerThread()) {
    spdlog::critical("EtcdLog destroyed from inside one of its own callbacks");
    std::abort();
  }
  std::vector<std::shared_ptr<SubShared>> sessions;
  {
    MutexLock lock(mu_);
    shutting_down_ = true;
    for (auto& [id, attempt] : attempts_) attempt.context->TryCancel();
    for (auto& [key, shared] : sessions_) sessions.push_back(shared);
  }
  for (auto& shared : sessions) {
    MutexLock lock(shared->mu);
    shared->cancelled = true;
    if (shared->session == nullptr) continue;
    shared->session->AssertLocked();
    shared->session->CancelLocked();
  }
  // Operations waiting in a backoff finish now instead of at their deadline.
  timer_.RunEverythingNow();
  {
    MutexLock lock(mu_);
    // Subscribe registers no session once shutting_down_ is set, so every session counted here
    // is one cancelled above: the wait ends.
    while (ops_ != 0 || !sessions_.empty()) {
      if (!mu_.WaitFor(idle_cv_, std::chrono::seconds(5)) && (ops_ != 0 || !sessions_.empty())) {
        LogLine(spdlog::level::warn, "etcd log shutdown: still waiting for operations and watches",
                {{"operations", ops_}, {"watches", sessions_.size()}});
      }
    }
  }
  timer_.Stop();
}

etcdserverpb::RangeRequest EtcdLog::Core::HeadRequest() const {
  etcdserverpb::RangeRequest request;
  request.set_key(options.prefix);
  request.set_range_end(range_end);
  request.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  request.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  request.set_limit(1);
  request.set_keys_only(true);
  request.set_serializable(false);  // linearizable: the head must not be stale
  return request;
}

void EtcdLog::Core::AppendBatch(const std::string& batch_id, std::vector<LogEntry> entries,
                                Deadline deadline, AppendCallback done) {
  std::size_t count = entries.size();
  Result<std::string> value =
      batch_id.empty() ? Result<std::string>(Error{ErrorCode::kInvalid, "empty batch id"})
                       : EncodeBatch(std::move(entries));
  if (!value) {
    // Counted like any operation, so that shutdown waits for this callback too.
    OpStarted();
    timer_.Post([this, done = std::move(done), error = value.error()]() mutable {
      EndOperation(done, Result<AppendResult>(std::move(error)));
    });
    return;
  }
  std::string key = options.prefix + BatchKeySuffix(batch_id, count);
  etcdserverpb::TxnRequest request = AppendTxn(options.prefix, key, std::move(*value), count);

  // Retrying is safe whatever happened to an earlier attempt: if it committed, the retry takes
  // the failure branch and returns the same index with created=false. The operation is counted
  // until `done` runs: a refusal for lack of space is followed by a read (ResolveRefusedAppend).
  OpStarted();
  RunTxn("append " + batch_id, std::move(request), deadline,
         [this, batch_id, key, deadline,
          done = std::move(done)](Result<etcdserverpb::TxnResponse> result) mutable {
           if (!result && result.error().code == ErrorCode::kLogFull) {
             return ResolveRefusedAppend(batch_id, key, deadline, result.error(), std::move(done));
           }
           EndOperation(done, AppendOutcome(batch_id, result));
         });
}

void EtcdLog::Core::ResolveRefusedAppend(const std::string& batch_id, const std::string& key,
                                         Deadline deadline, Error refusal, AppendCallback done) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  request.set_keys_only(true);
  // The refusal came fast; the read gets at least one attempt's time even when it took long.
  const Deadline read_deadline = std::max(deadline, Clock::now() + options.rpc_timeout);
  RunRange("read refused append " + batch_id, std::move(request), read_deadline,
           [this, batch_id, refusal = std::move(refusal),
            done = std::move(done)](Result<etcdserverpb::RangeResponse> result) mutable {
             Result<AppendResult> outcome = refusal;
             if (!result) {
               outcome = Error{ErrorCode::kUnknown,
                               refusal.message + "; whether it committed could not be read: " +
                                   result.error().message};
             } else if (result->kvs_size() == 1 && result->kvs(0).create_revision() > 0) {
               // The put that crossed the quota: applied, and its entries are in the log.
               LogLine(spdlog::level::warn,
                       "etcd append refused for lack of space, but it committed",
                       {{"batch", batch_id}});
               outcome = AppendResult{IndexOf(result->kvs(0).create_revision(), 0), true};
             }
             // Otherwise absent after the answer: refused, before or at its apply, and for good (no
             // attempt of it can still commit: RetryingCall reports kUnknown, not kLogFull, when an
             // earlier attempt was ambiguous).
             EndOperation(done, std::move(outcome));
           });
}

void EtcdLog::Core::Head(Deadline deadline, HeadCallback done) {
  // The newest entry and the retention marker at one revision: a read-only Txn is a
  // linearizable read, like the Range alone.
  etcdserverpb::TxnRequest request;
  *request.add_success()->mutable_request_range() = HeadRequest();
  request.add_success()->mutable_request_range()->set_key(TrimmedMarkerKey(options.prefix));
  RunTxn(
      "head", std::move(request), deadline,
      [done = std::move(done),
       core_prefix = options.prefix](Result<etcdserverpb::TxnResponse> result) {
        if (!result) return done(result.error());
        const auto& response = result.value();
        if (response.responses_size() != 2) {
          return done(Error{ErrorCode::kUnavailable, "etcd answered the head read with " +
                                                         std::to_string(response.responses_size()) +
                                                         " responses"});
        }
        const int64_t revision = response.header().revision();
        LogHead head{revision, LastIndexOf(response.responses(0).response_range(), core_prefix),
                     EndIndexOfRevision(revision)};
        const auto& marker = response.responses(1).response_range().kvs();
        if (!marker.empty()) {
          Result<int64_t> trimmed = ParseTrimmedMarker(marker[0].value());
          if (!trimmed) return done(trimmed.error());
          head.trimmed_index = *trimmed;
        }
        done(head);
      },
      ClassifyReadFailure);
}

void EtcdLog::Core::ReadCommittedIndex(Deadline deadline, CommittedCallback done) {
  etcdserverpb::RangeRequest request;
  request.set_key(CommittedHeadKey(options.prefix));
  request.set_serializable(false);  // linearizable: etcd confirms its leadership (ReadIndex)
  RunRange(
      "committed index", std::move(request), deadline,
      [done = std::move(done)](Result<etcdserverpb::RangeResponse> result) {
        if (!result) return done(result.error());
        // No head yet: nothing was appended by a proxy that writes it.
        if (result->kvs().empty()) return done(int64_t{0});
        const auto& kv = result->kvs(0);
        done(ParseCommittedHead(kv.mod_revision(), kv.value()));
      },
      ClassifyReadFailure, EndpointChoice::kLeaderFirst);
}

void EtcdLog::Core::ReadRange(int64_t from_index, int64_t revision, Deadline deadline,
                              RangeCallback done) {
  RangeReader::Start(this, from_index, revision, deadline, std::move(done));
}

void EtcdLog::Core::CheckSpace(Deadline deadline, SpaceCallback done) {
  // The preferred member alone: alarms are cluster-wide, and the caller asks again soon.
  const size_t endpoint = PickEndpoint();
  const Deadline call_deadline = std::min(deadline, Clock::now() + options.rpc_timeout);
  CallStatus(endpoint, call_deadline,
             [this, endpoint, done = std::move(done)](
                 Result<etcdserverpb::StatusResponse> status) mutable -> std::function<void()> {
               Result<LogSpace> space = Error{ErrorCode::kUnavailable, ""};
               if (status) {
                 LogSpace answer;
                 // etcd lists each raised alarm as "memberID:<id> alarm:NOSPACE " (or CORRUPT).
                 for (const auto& error : status->errors()) {
                   if (error.find("NOSPACE") == std::string::npos) continue;
                   answer.full = true;
                   if (!answer.detail.empty()) answer.detail += "; ";
                   answer.detail += "etcd alarm: " + error;
                 }
                 space = std::move(answer);
               } else {
                 space = Error{status.error().code,
                               "status of " + endpoints_[endpoint] + ": " + status.error().message};
               }
               return [done = std::move(done), space = std::move(space)]() mutable {
                 done(std::move(space));
               };
             });
}

void EtcdLog::Core::Compact(int64_t revision, Deadline deadline, std::function<void(Status)> done) {
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  RetryingCall<etcdserverpb::CompactionResponse>::Start(
      this, "compact to " + std::to_string(revision), deadline,
      [this, request](size_t endpoint, grpc::ClientContext* context,
                      etcdserverpb::CompactionResponse* response,
                      std::function<void(grpc::Status)> callback) {
        kv_[endpoint]->async()->Compact(context, &request, response, std::move(callback));
      },
      ClassifyCompactFailure,
      [done = std::move(done)](Result<etcdserverpb::CompactionResponse> result) {
        if (!result) return done(result.error());
        done(OkStatus());
      });
}

std::unique_ptr<Subscription> EtcdLog::Core::Subscribe(int64_t from_index, EventCallback on_event) {
  from_index = std::max<int64_t>(from_index, 1);
  auto shared = std::make_shared<SubShared>();
  bool refused = false;
  {
    // Registered, or refused, under the same lock as the destructor's snapshot of the sessions it
    // cancels: a subscription made while the log is being destroyed (from one of its callbacks
    // on another thread) is born cancelled and starts nothing, instead of running unseen by the
    // destructor (which then waited for it forever, or returned under it).
    MutexLock lock(mu_);
    refused = shutting_down_;
    if (!refused) sessions_.emplace(shared.get(), shared);
  }
  if (refused) {
    MutexLock lock(shared->mu);
    shared->cancelled = true;
    return std::make_unique<SubscriptionHandle>(std::move(shared));
  }
  auto* session = new WatchSession(this, shared, PickEndpoint(), from_index, std::move(on_event));
  {
    MutexLock lock(shared->mu);
    shared->session = session;
  }
  session->Start();
  return std::make_unique<SubscriptionHandle>(std::move(shared));
}

size_t EtcdLog::Core::PickEndpoint() {
  size_t count = channels_.size();
  size_t start = preferred_.load() % count;
  for (size_t i = 0; i < count; ++i) {
    size_t index = (start + i) % count;
    if (channels_[index]->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
      return index;
    }
  }
  return start;  // all failing: fail fast on the preferred one
}

void EtcdLog::Core::EndpointFailed(size_t index, const std::string& why) {
  size_t count = channels_.size();
  if (count < 2) return;
  size_t expected = index;
  if (!preferred_.compare_exchange_strong(expected, (index + 1) % count)) return;
  failovers_.fetch_add(1, std::memory_order_relaxed);
  // Rate-limited: during an outage every operation moves the preference along.
  int64_t now_ms =
      std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
  int64_t last = last_endpoint_warning_ms_.load();
  if (now_ms - last >= std::chrono::duration_cast<milliseconds>(kEndpointWarningInterval).count() &&
      last_endpoint_warning_ms_.compare_exchange_strong(last, now_ms)) {
    LogLine(spdlog::level::warn, "etcd endpoint failed; switching",
            {{"endpoint", endpoints_[index]},
             {"next_endpoint", endpoints_[(index + 1) % count]},
             {"error", why}});
  }
}

void EtcdLog::Core::EndpointWorked(size_t index) { preferred_.store(index); }

LogClientStats EtcdLog::Core::ClientStats() const {
  LogClientStats stats;
  const size_t preferred = preferred_.load();
  if (preferred < endpoints_.size()) stats.endpoint = endpoints_[preferred];
  stats.failovers = failovers_.load(std::memory_order_relaxed);
  const int leader = leader_endpoint_.load();
  if (leader >= 0 && static_cast<size_t>(leader) < endpoints_.size()) {
    stats.leader_endpoint = endpoints_[leader];
  }
  {
    MutexLock lock(mu_);
    for (int64_t size : db_sizes_) stats.db_size_bytes = std::max(stats.db_size_bytes, size);
  }
  const uint8_t alarms = alarms_.load(std::memory_order_relaxed);
  stats.alarms_known = (alarms & kAlarmsKnown) != 0;
  stats.nospace_alarm = (alarms & kNoSpaceAlarm) != 0;
  stats.corrupt_alarm = (alarms & kCorruptAlarm) != 0;
  for (std::size_t i = 0; i < stats.errors.size(); ++i) {
    stats.errors[i] = errors_[i].load(std::memory_order_relaxed);
  }
  return stats;
}

Clock::duration EtcdLog::Core::Backoff(int failures) {
  int count = static_cast<int>(channels_.size());
  int step = count > 1 ? failures - count : failures - 1;
  if (step < 0) return Clock::duration::zero();
  auto base = kFirstBackoff * (int64_t{1} << std::min(step, 10));
  base = std::min<milliseconds>(base, kMaxBackoff);
  MutexLock lock(mu_);
  std::uniform_int_distribution<int64_t> jitter(base.count() / 2, base.count());
  return milliseconds(jitter(rng_));
}

void EtcdLog::Core::OpStarted() {
  MutexLock lock(mu_);
  ++ops_;
}

void EtcdLog::Core::OpFinished() {
  MutexLock lock(mu_);
  --ops_;
  // Notified under the lock: the destructor cannot finish before we release it, and we touch
  // nothing after.
  if (ops_ == 0) idle_cv_.notify_all();
}

bool EtcdLog::Core::RegisterAttempt(grpc::ClientContext* context, uint64_t* id,
                                    Interruptible* call) {
  MutexLock lock(mu_);
  if (shutting_down_) return false;
  *id = next_attempt_id_++;
  attempts_.emplace(*id, Attempt{context, call});
  return true;
}

void EtcdLog::Core::UnregisterAttempt(uint64_t id) {
  MutexLock lock(mu_);
  attempts_.erase(id);
}

void EtcdLog::Core::SessionFinished(SubShared* shared) {
  MutexLock lock(mu_);
  sessions_.erase(shared);
  if (sessions_.empty()) idle_cv_.notify_all();
}

}  // namespace k8shmir
