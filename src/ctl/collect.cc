#include "ctl/collect.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include "log/batch_format.h"
#include "log/etcd_errors.h"
#include "log/group_format.h"
#include "log/snapshot_format.h"

namespace k8shmir::ctl {
namespace {

using etcdserverpb::RangeRequest;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The reachable endpoints, the leader's member first (its reads need no forwarding).
std::vector<std::size_t> ReadOrder(const EtcdHealth& health) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < health.endpoints.size(); ++i) {
    if (health.endpoints[i].reachable) order.push_back(i);
  }
  std::stable_partition(order.begin(), order.end(), [&](std::size_t i) {
    const auto& e = health.endpoints[i];
    return e.leader != 0 && e.leader == e.member_id;
  });
  return order;
}

// The first of `order` that answers; linearizable first, and if no member could confirm it
// (no leader), one member's own copy, flagged as such: stale data beats none when debugging.
template <class Response>
Result<Response> AskInOrder(const std::vector<std::size_t>& order, bool& serializable,
                            const std::function<Result<Response>(std::size_t, bool)>& call) {
  Error last{ErrorCode::kUnavailable, "no etcd endpoint answered"};
  for (bool stale : {false, true}) {
    for (std::size_t i : order) {
      auto r = call(i, stale);
      if (r) {
        serializable = stale;
        return r;
      }
      last = r.error();
    }
  }
  return last;
}

RangeRequest Prefix(const std::string& prefix) {
  RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(PrefixRangeEnd(prefix));
  return r;
}

RangeRequest Key(const std::string& key) {
  RangeRequest r;
  r.set_key(key);
  return r;
}

// The batch of lowest (ASCEND) or highest (DESCEND) create revision under the log prefix.
RangeRequest EdgeBatch(const std::string& prefix, RangeRequest::SortOrder order) {
  RangeRequest r = Prefix(prefix);
  r.set_sort_target(RangeRequest::CREATE);
  r.set_sort_order(order);
  r.set_limit(1);
  r.set_keys_only(true);
  return r;
}

std::string Suffix(const std::string& key, const std::string& prefix) {
  return key.substr(std::min(prefix.size(), key.size()));
}

Result<TxnResponse> ReadTxn(const EtcdClient& client, const std::vector<std::size_t>& order,
                            TxnRequest request, bool& serializable) {
  return AskInOrder<TxnResponse>(order, serializable, [&](std::size_t i, bool stale) {
    TxnRequest r = request;
    for (auto& op : *r.mutable_success()) op.mutable_request_range()->set_serializable(stale);
    return client.Txn(i, r);
  });
}

std::optional<int64_t> SumLogBytes(const EtcdClient& client, std::size_t endpoint, bool stale,
                                   const std::string& prefix, int64_t revision) {
  int64_t bytes = 0;
  RangeRequest r = Prefix(prefix);
  r.set_limit(64);
  r.set_revision(revision);  // every page at one revision: a consistent sum
  r.set_serializable(stale);
  for (;;) {
    auto page = client.Range(endpoint, r);
    if (!page) return std::nullopt;
    for (const auto& kv : page->kvs()) bytes += static_cast<int64_t>(kv.value().size());
    if (!page->more() || page->kvs().empty()) return bytes;
    r.set_key(page->kvs(page->kvs_size() - 1).key() + std::string(1, '\0'));
  }
}

}  // namespace

std::string GroupLogPrefix(const std::string& group) { return "/k8shmir/" + group + "/log/"; }

EtcdHealth CollectEtcdHealth(const EtcdClient& client, int64_t quota_bytes) {
  EtcdHealth health;
  health.quota_bytes = quota_bytes;
  health.endpoints.resize(client.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < client.size(); ++i) {
    threads.emplace_back([&client, &health, i] {
      EndpointHealth& e = health.endpoints[i];
      e.endpoint = client.endpoint(i);
      auto s = client.Status(i);
      if (!s) {
        e.error = s.error().message;
        return;
      }
      e.reachable = true;
      e.member_id = s->header().member_id();
      e.leader = s->leader();
      e.version = s->version();
      e.db_size = s->dbsize();
      e.db_size_in_use = s->dbsizeinuse();
      e.raft_term = s->raftterm();
      e.raft_index = s->raftindex();
      e.is_learner = s->islearner();
      e.errors.assign(s->errors().begin(), s->errors().end());
    });
  }
  for (auto& t : threads) t.join();

  const auto order = ReadOrder(health);
  for (std::size_t i : order) {
    auto members = client.MemberList(i);
    if (!members) continue;
    health.members_known = true;
    for (const auto& m : members->members()) {
      health.members.push_back(ClusterMember{
          m.id(), m.name(), {m.clienturls().begin(), m.clienturls().end()}, m.islearner()});
    }
    break;
  }
  for (std::size_t i : order) {
    auto alarms = client.Alarms(i);
    if (!alarms) continue;
    health.alarms_known = true;
    for (const auto& a : alarms->alarms()) {
      health.alarms.push_back(EtcdAlarm{a.memberid(), etcdserverpb::AlarmType_Name(a.alarm())});
    }
    break;
  }
  return health;
}

GroupReport CollectStatus(const EtcdClient& client, const CtlOptions& options) {
  GroupReport report;
  report.group = options.group;
  report.etcd = CollectEtcdHealth(client, options.quota_backend_bytes);
  const auto order = ReadOrder(report.etcd);
  if (order.empty()) {
    report.group_error = "no etcd endpoint answered";
    report.now_unix_ms = NowUnixMs();
    return report;
  }
  const std::string log_prefix = GroupLogPrefix(options.group);
  const std::string registry = ReplicaRegistryPrefix(log_prefix);
  const std::string snapshots = SnapshotPrefixOf(log_prefix);

  // Everything at one revision: a read-only transaction.
  TxnRequest txn;
  auto add = [&](RangeRequest r) { *txn.add_success()->mutable_request_range() = std::move(r); };
  add(Key(GroupFormatKey(log_prefix)));               // 0
  add(Prefix(registry));                              // 1
  add(Key(SnapshotTakerKey(log_prefix)));             // 2
  add(EdgeBatch(log_prefix, RangeRequest::DESCEND));  // 3
  add(EdgeBatch(log_prefix, RangeRequest::ASCEND));   // 4
  add(Key(TrimmedMarkerKey(log_prefix)));             // 5
  add(Key(CommittedHeadKey(log_prefix)));             // 6
  RangeRequest count = Prefix(log_prefix);
  count.set_count_only(true);
  add(count);  // 7
  RangeRequest snapshot_keys = Prefix(snapshots);
  snapshot_keys.set_keys_only(true);
  add(snapshot_keys);  // 8

  auto answer = ReadTxn(client, order, txn, report.serializable);
  report.now_unix_ms = NowUnixMs();
  if (!answer) {
    report.group_error = answer.error().message;
    return report;
  }
  if (answer->responses_size() != txn.success_size()) {
    report.group_error =
        "etcd answered the read with " + std::to_string(answer->responses_size()) + " responses";
    return report;
  }
  report.group_read = true;
  auto range = [&](int i) -> const etcdserverpb::RangeResponse& {
    return answer->responses(i).response_range();
  };
  report.log.revision = answer->header().revision();

  if (!range(0).kvs().empty()) {
    auto format = ParseGroupFormat(range(0).kvs(0).value());
    if (format) {
      report.format = *format;
    } else {
      report.format_error = format.error().message;
    }
  }
  for (const auto& kv : range(1).kvs()) {
    auto record = ParseReplicaRecord(kv.value());
    if (record) {
      report.replicas.push_back(std::move(*record));
    } else {
      report.malformed_records.push_back(kv.key() + ": " + record.error().message);
    }
  }
  std::sort(report.replicas.begin(), report.replicas.end(),
            [](const auto& a, const auto& b) { return a.replica_id < b.replica_id; });
  if (!range(2).kvs().empty()) report.snapshot_taker = range(2).kvs(0).value();
  if (!range(3).kvs().empty()) {
    const auto& kv = range(3).kvs(0);
    report.log.last_index = LastIndexOfBatch(kv.create_revision(), Suffix(kv.key(), log_prefix));
  }
  if (!range(4).kvs().empty())
    report.log.first_index = IndexOf(range(4).kvs(0).create_revision(), 0);
  if (!range(5).kvs().empty()) {
    auto trimmed = ParseTrimmedMarker(range(5).kvs(0).value());
    if (trimmed) report.log.trimmed_index = *trimmed;
  }
  if (!range(6).kvs().empty()) {
    const auto& kv = range(6).kvs(0);
    auto head = ParseCommittedHead(kv.mod_revision(), kv.value());
    if (head) report.log.committed_index = *head;
  }
  report.log.keys = range(7).count();

  // The manifests, newest first: pieces without one are a save in progress or left over.
  std::vector<int64_t> indices;
  for (const auto& kv : range(8).kvs()) {
    SnapshotKey key = ParseSnapshotKey(snapshots, kv.key());
    if (key.index >= 0 && key.manifest) indices.push_back(key.index);
  }
  std::sort(indices.rbegin(), indices.rend());
  if (indices.size() > 4) indices.resize(4);
  if (!indices.empty()) {
    TxnRequest manifests;
    for (int64_t index : indices) {
      *manifests.add_success()->mutable_request_range() =
          Key(SnapshotManifestKey(snapshots, index));
    }
    bool stale = false;
    auto got = ReadTxn(client, order, manifests, stale);
    for (std::size_t i = 0; i < indices.size(); ++i) {
      SnapshotSummary s;
      s.index = indices[i];
      if (!got || static_cast<int>(i) >= got->responses_size() ||
          got->responses(static_cast<int>(i)).response_range().kvs().empty()) {
        s.error = got ? "manifest deleted meanwhile" : got.error().message;
      } else {
        auto m = ParseManifest(got->responses(static_cast<int>(i)).response_range().kvs(0).value(),
                               s.index);
        if (m) {
          s.size = m->size;
          s.chunks = m->chunks;
          s.taker = m->taker;
          s.taken_unix_ms = m->taken_unix_ms;
        } else {
          s.error = m.error().message;
        }
      }
      report.snapshots.push_back(std::move(s));
    }
  }
  if (options.log_bytes) {
    report.log.bytes =
        SumLogBytes(client, order.front(), report.serializable, log_prefix, report.log.revision);
  }
  return report;
}

GroupsReport CollectGroups(const EtcdClient& client, const CtlOptions& options) {
  GroupsReport report;
  report.etcd = CollectEtcdHealth(client, options.quota_backend_bytes);
  const auto order = ReadOrder(report.etcd);
  if (order.empty()) {
    report.error = "no etcd endpoint answered";
    report.now_unix_ms = NowUnixMs();
    return report;
  }
  // Skip scan: the first key under /k8shmir/ names a group; the next Range starts past that
  // group's keys. One call per group, whatever the size of its log.
  const std::string root = "/k8shmir/";
  std::string from = root;
  bool stale = false;
  for (;;) {
    RangeRequest r;
    r.set_key(from);
    r.set_range_end(PrefixRangeEnd(root));
    r.set_limit(1);
    r.set_keys_only(true);
    auto page = AskInOrder<etcdserverpb::RangeResponse>(order, stale, [&](std::size_t i, bool s) {
      RangeRequest copy = r;
      copy.set_serializable(s);
      return client.Range(i, copy);
    });
    if (!page) {
      report.error = page.error().message;
      report.now_unix_ms = NowUnixMs();
      return report;
    }
    if (page->kvs().empty()) break;
    const std::string& key = page->kvs(0).key();
    const auto slash = key.find('/', root.size());
    if (slash == std::string::npos) {
      // A key directly under the root ("/k8shmir/x"): not a group's; step past it.
      from = key + std::string(1, '\0');
      continue;
    }
    const std::string name = key.substr(root.size(), slash - root.size());
    from = PrefixRangeEnd(root + name + "/");

    const std::string log_prefix = root + name + "/log/";
    TxnRequest txn;
    *txn.add_success()->mutable_request_range() = Key(GroupFormatKey(log_prefix));
    RangeRequest replicas = Prefix(ReplicaRegistryPrefix(log_prefix));
    replicas.set_count_only(true);
    *txn.add_success()->mutable_request_range() = replicas;
    *txn.add_success()->mutable_request_range() = EdgeBatch(log_prefix, RangeRequest::DESCEND);
    RangeRequest count = Prefix(log_prefix);
    count.set_count_only(true);
    *txn.add_success()->mutable_request_range() = count;
    auto got = ReadTxn(client, order, txn, stale);
    if (!got || got->responses_size() != 4) {
      report.error =
          got ? "etcd answered a group's read with too few responses" : got.error().message;
      report.now_unix_ms = NowUnixMs();
      return report;
    }
    const auto& format = got->responses(0).response_range();
    if (format.kvs().empty()) continue;  // not a k8shmir group (no format marker)
    GroupListing g;
    g.name = name;
    if (auto f = ParseGroupFormat(format.kvs(0).value())) g.format = *f;
    g.replicas = got->responses(1).response_range().count();
    const auto& head = got->responses(2).response_range();
    if (!head.kvs().empty()) {
      g.last_index =
          LastIndexOfBatch(head.kvs(0).create_revision(), Suffix(head.kvs(0).key(), log_prefix));
    }
    g.keys = got->responses(3).response_range().count();
    report.groups.push_back(std::move(g));
  }
  report.read = true;
  report.now_unix_ms = NowUnixMs();
  return report;
}

}  // namespace k8shmir::ctl
