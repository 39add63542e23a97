// EtcdLog's GroupRegistry (k8shmir/group_registry.h), laid out as log/group_format.h says.
//
// A record and the taker's key live on a lease of their holder. Each Refresh grants a new lease,
// writes both under it in one transaction, then revokes the previous lease: every call is unary
// and retried like the log's others (no keep-alive stream to supervise), and a holder that stops
// refreshing (killed, cut off) loses both when its last lease expires.
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <utility>

#include "common/logging.h"
#include "log/etcd_log_core.h"
#include "log/group_format.h"

namespace k8shmir {

void EtcdLog::Core::CheckFormat(Deadline deadline, GroupRegistry::StatusCallback done) {
  const std::string key = GroupFormatKey(options.prefix);
  etcdserverpb::TxnRequest request =
      CreateOnceTxn(key, EncodeGroupFormat(kGroupFormat), /*keys_only=*/false);
  // Retried whole: a retry of a put that committed takes the failure branch and reads it back.
  RunTxn(
      "group format", std::move(request), deadline,
      [key, done = std::move(done)](Result<etcdserverpb::TxnResponse> r) {
        if (!r) return done(r.error());
        if (r->succeeded()) return done(OkStatus());
        const auto& kvs = r->responses(0).response_range().kvs();
        if (kvs.empty()) {
          return done(Error{ErrorCode::kUnavailable,
                            "the group's format marker " + key + " vanished while it was read"});
        }
        Result<int> format = ParseGroupFormat(kvs[0].value());
        if (!format) {
          return done(Error{ErrorCode::kInvalid, key +
                                                     " does not hold a k8shmir format "
                                                     "marker (" +
                                                     format.error().message + ")"});
        }
        if (*format != kGroupFormat) {
          return done(Error{ErrorCode::kInvalid, "the group's log and snapshots are in format " +
                                                     std::to_string(*format) + " (" + key +
                                                     "), but this proxy reads format " +
                                                     std::to_string(kGroupFormat) +
                                                     " only: run a k8shmir version that knows it"});
        }
        done(OkStatus());
      },
      ClassifyReadFailure);
}

// One Refresh: grant, write, revoke the previous lease, then answer.
struct EtcdLog::Core::RegistryRefresh
    : ChainedOperation<EtcdLog::Core, GroupView>,
      std::enable_shared_from_this<EtcdLog::Core::RegistryRefresh> {
  ReplicaRecord self_record;
  std::chrono::seconds ttl{10};
  int64_t lease = 0;
  GroupView view;

  void Grant() {
    core->RunLeaseGrant(ttl.count(), deadline,
                        [self = shared_from_this()](Result<etcdserverpb::LeaseGrantResponse> r) {
                          if (!r) return self->Finish(r.error());
                          if (!r->error().empty() || r->id() == 0) {
                            return self->Finish(Error{ErrorCode::kUnavailable,
                                                      "etcd granted no lease: " + r->error()});
                          }
                          self->lease = r->id();
                          self->Write();
                        });
  }

  void Write() {
    const std::string& prefix = core->options.prefix;
    const std::string taker_key = SnapshotTakerKey(prefix);
    const std::string registry = ReplicaRegistryPrefix(prefix);
    self_record.updated_unix_ms = UnixMillis();

    auto put_record = [&](etcdserverpb::RequestOp* op) {
      auto* put = op->mutable_request_put();
      put->set_key(registry + self_record.replica_id);
      put->set_value(EncodeReplicaRecord(self_record));
      put->set_lease(lease);
    };
    auto put_taker = [&](etcdserverpb::RequestOp* op) {
      auto* put = op->mutable_request_put();
      put->set_key(taker_key);
      put->set_value(self_record.replica_id);
      put->set_lease(lease);
    };
    auto list = [&](etcdserverpb::RequestOp* op) {
      auto* range = op->mutable_request_range();
      range->set_key(registry);
      range->set_range_end(PrefixRangeEnd(registry));
    };
    // Nobody holds the taker's role: take it. Otherwise keep it if it is ours (moving it to the
    // new lease), or read who holds it.
    etcdserverpb::TxnRequest request;
    auto* free = request.add_compare();
    free->set_key(taker_key);
    free->set_target(etcdserverpb::Compare::CREATE);
    free->set_result(etcdserverpb::Compare::EQUAL);
    free->set_create_revision(0);
    put_taker(request.add_success());
    put_record(request.add_success());
    list(request.add_success());
    auto* keep = request.add_failure()->mutable_request_txn();
    auto* ours = keep->add_compare();
    ours->set_key(taker_key);
    ours->set_target(etcdserverpb::Compare::VALUE);
    ours->set_result(etcdserverpb::Compare::EQUAL);
    ours->set_value(self_record.replica_id);
    put_taker(keep->add_success());
    keep->add_failure()->mutable_request_range()->set_key(taker_key);
    put_record(request.add_failure());
    list(request.add_failure());
    // Puts of the same values are idempotent: retried whole.
    core->RunTxn(
        "registry refresh", std::move(request), deadline,
        [self = shared_from_this()](Result<etcdserverpb::TxnResponse> r) {
          if (!r) return self->Revoke(self->lease, r.error());
          self->Read(*r);
        },
        ClassifyReadFailure);
  }

  void Read(const etcdserverpb::TxnResponse& r) {
    if (r.responses_size() != 3) {
      return Revoke(lease, Error{ErrorCode::kProtocol, "etcd answered the registry refresh with " +
                                                           std::to_string(r.responses_size()) +
                                                           " responses"});
    }
    if (r.succeeded()) {
      view.taker = true;
      view.taker_id = self_record.replica_id;
    } else {
      const auto& keep = r.responses(0).response_txn();
      if (keep.succeeded()) {
        view.taker = true;
        view.taker_id = self_record.replica_id;
      } else if (keep.responses_size() == 1 && !keep.responses(0).response_range().kvs().empty()) {
        view.taker_id = keep.responses(0).response_range().kvs(0).value();
      }
    }
    for (const auto& kv : r.responses(2).response_range().kvs()) {
      Result<ReplicaRecord> record = ParseReplicaRecord(kv.value());
      if (!record) {
        LogLine(spdlog::level::warn, "unreadable registry record skipped",
                {{"key", kv.key()}, {"error", record.error().message}});
        continue;
      }
      view.replicas.push_back(std::move(*record));
    }
    const int64_t previous = core->registry_lease_.exchange(lease);
    if (previous != 0 && previous != lease) return Revoke(previous, view);
    Finish(std::move(view));
  }

  // Best effort: an unrevoked lease expires by itself.
  void Revoke(int64_t id, Result<GroupView> then) {
    core->RunLeaseRevoke(id, deadline,
                         [self = shared_from_this(), id, then = std::move(then)](
                             Result<etcdserverpb::LeaseRevokeResponse> r) mutable {
                           if (!r) {
                             LogLine(spdlog::level::debug, "lease revoke failed",
                                     {{"lease", id}, {"error", r.error().message}});
                           }
                           self->Finish(std::move(then));
                         });
  }
};

void EtcdLog::Core::Refresh(const ReplicaRecord& self, std::chrono::seconds ttl, Deadline deadline,
                            GroupRegistry::RefreshCallback done) {
  auto refresh = std::make_shared<RegistryRefresh>();
  refresh->self_record = self;
  refresh->ttl = std::max(ttl, std::chrono::seconds(2));
  refresh->Begin(this, deadline, std::move(done));
  refresh->Grant();
}

void EtcdLog::Core::Leave(Deadline deadline, GroupRegistry::StatusCallback done) {
  const int64_t lease = registry_lease_.exchange(0);
  OpStarted();
  if (lease == 0) {
    timer_.Post([this, done = std::move(done)]() mutable { EndOperation(done, OkStatus()); });
    return;
  }
  RunLeaseRevoke(
      lease, deadline,
      [this, done = std::move(done)](Result<etcdserverpb::LeaseRevokeResponse> r) mutable {
        Status status = OkStatus();
        if (!r) status = r.error();
        EndOperation(done, std::move(status));
      });
}

}  // namespace k8shmir
