// The replicated log on etcd 3.4 over gRPC (design brief, section 3).
//
// One replication group = one key prefix; each batch of entries is one key, prefix + batch id +
// "." + entry count, created once by a conditional transaction; entry i of a batch created at
// revision R has index R * 256 + i (src/log/batch_format.h). All calls
// are asynchronous: gRPC's callback API plus one small timer thread of our own (retry backoff,
// watch liveness checks). Nothing blocks the caller except the destructor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "k8shmir/group_registry.h"
#include "k8shmir/log.h"
#include "k8shmir/result.h"
#include "k8shmir/snapshot_store.h"

namespace k8shmir {

// TLS to etcd (see log/etcd_credentials.h). TLS is on when `ca_file` or `cert_file` is set, for
// every endpoint: the transport is one setting of the log, not of each endpoint, so an
// "http://" endpoint is connected with TLS too, and an "https://" endpoint without TLS options is
// refused by ValidateEtcdLogOptions rather than silently connected in plaintext.
struct EtcdTlsOptions {
  // PEM file of the CA(s) that signed the etcd server certificates. Empty with TLS on: gRPC's
  // default root store (the system's trusted roots) verifies the server.
  std::string ca_file;
  // PEM files of a client certificate and its private key, for etcd's --client-cert-auth. Both
  // or neither.
  std::string cert_file;
  std::string key_file;
  // The name the server certificate must carry, instead of the endpoint's host (e.g. when
  // connecting by IP address to a certificate that names only DNS names).
  std::string server_name;
};

struct EtcdLogOptions {
  // etcd client URLs as "host:port", "http://host:port" or "https://host:port". One gRPC channel
  // per endpoint; an operation that fails on one member is retried on the next, so any single
  // member may be down.
  std::vector<std::string> endpoints;
  // Key prefix of the group's log, e.g. "/k8shmir/<group>/log/". Must not be empty.
  std::string prefix;
  // Key prefix of the group's snapshots (log/snapshot_format.h); empty: derived from `prefix`
  // ("/k8shmir/<group>/snapshots/").
  std::string snapshot_prefix;
  // Upper bound of a single RPC attempt (an operation's own deadline may cut it shorter).
  std::chrono::milliseconds rpc_timeout{3000};
  // How often a subscription sends a WatchProgressRequest to check that its stream is alive.
  std::chrono::milliseconds progress_interval{2000};
  // No response at all within this time after a progress request => the stream is dead
  // (a killed or partitioned member): LogClosed{kUnavailable}.
  std::chrono::milliseconds liveness_timeout{5000};
  // Plaintext unless set.
  EtcdTlsOptions tls;
  // One ReadRange page holds the entries of at most this many keys, and stops once its values
  // reach this many bytes (at least one key). Values are fetched a few at a time, as many as
  // the bytes left hold at the largest value seen, so a page ends within about one value (at
  // most 1.5 MiB, etcd's request limit) of its bound.
  std::size_t range_page_keys = 4096;
  std::size_t range_page_bytes = 8 * 1024 * 1024;
  // The endpoint tried first (an index into `endpoints`, taken modulo their count). Proxies use
  // FirstEndpointFor so that a group's watch streams and appends do not all land on one member.
  std::size_t first_endpoint = 0;
};

// A stable spread of replicas over `count` endpoints: FNV-1a of the replica id, modulo count
// (the same id gives the same endpoint in every process and version). 0 when count is 0.
std::size_t FirstEndpointFor(std::string_view replica_id, std::size_t count);

// kInvalid with the reason if `options` cannot be used, including TLS files that cannot be read
// (so that a bad file is reported before the log is constructed).
Status ValidateEtcdLogOptions(const EtcdLogOptions& options);

class EtcdLog : public Log, public SnapshotStore, public GroupRegistry {
 public:
  // Throws std::invalid_argument if ValidateEtcdLogOptions fails. Connects lazily.
  explicit EtcdLog(EtcdLogOptions options);
  // Cancels every subscription (they deliver nothing more) and every RPC in flight (their
  // callbacks run with an error), then waits until all callbacks have returned. Must not run
  // inside one of this log's callbacks.
  ~EtcdLog() override;

  EtcdLog(const EtcdLog&) = delete;
  EtcdLog& operator=(const EtcdLog&) = delete;

  // Txn{ if create_revision(key) == 0 then Put(key, batch) else Range(key) } on the batch's key
  // (src/log/batch_format.h), retried until the deadline while the outcome is not definitive.
  // Errors: kUnavailable = certainly not committed, kUnknown = may have committed (a later
  // append of the same batch tells), kInvalid = refused as malformed (e.g. too large),
  // kLogFull = refused for lack of space and certainly not committed (after etcd's NOSPACE the
  // key is read: the put that crossed the quota did commit, and is reported as appended),
  // kProtocol = etcd's answer made no sense.
  void AppendBatch(const std::string& batch_id, std::vector<LogEntry> entries, Deadline deadline,
                   AppendCallback done) override;

  // A linearizable read of the newest entry of the prefix and of the retention marker. Errors
  // are kUnavailable (kProtocol for a marker that makes no sense).
  void Head(Deadline deadline, HeadCallback done) override;

  // One linearizable Range of the committed head (CommittedHeadKey), which every created batch
  // rewrites in its own transaction. Errors: kUnavailable, kProtocol for a head that is not a
  // count.
  void ReadCommittedIndex(Deadline deadline, CommittedCallback done) override;

  // A page of the live keys, in two bounded steps (src/log/range_page.h): a pass over the
  // group's keys in key order, keys only, then their values in log order. The retention marker
  // (TrimmedMarkerKey) is read at the same revision. Errors: kCompacted when `revision` was
  // compacted, kProtocol for a marker or answer that makes no sense, otherwise kUnavailable.
  void ReadRange(int64_t from_index, int64_t revision, Deadline deadline,
                 RangeCallback done) override;

  // The marker (compare-and-set), then the batches at or below it: a keys-only pass over the
  // group's keys, 1024 per Range, deleted 128 per Txn (etcd's default --max-txn-ops). Every step
  // is retried within the deadline. Errors: kUnavailable, kProtocol for a marker that makes no
  // sense, kInvalid for through_index < 1.
  void Trim(int64_t through_index, Deadline deadline, TrimCallback done) override;

  // GroupRegistry (log/group_format.h): one transaction per call; a Refresh grants a lease of
  // `ttl`, writes the record and the taker's key with it, then revokes the previous lease.
  void CheckFormat(Deadline deadline, StatusCallback done) override;
  void Refresh(const ReplicaRecord& self, std::chrono::seconds ttl, Deadline deadline,
               RefreshCallback done) override;
  void Leave(Deadline deadline, StatusCallback done) override;

  // A Status call to one member: full while etcd lists a NOSPACE alarm.
  void CheckSpace(Deadline deadline, SpaceCallback done) override;

  // SnapshotStore, under options().snapshot_prefix (log/snapshot_format.h). Errors as Append's
  // for writes, kUnavailable for reads, kProtocol for a corrupt or incomplete snapshot.
  void SaveSnapshot(const AppSnapshot& snapshot, const std::string& taker, int keep,
                    Deadline deadline, SaveCallback done) override;
  void ListSnapshots(Deadline deadline, ListCallback done) override;
  void LoadSnapshot(const SnapshotManifest& manifest, Deadline deadline,
                    LoadCallback done) override;

  // A Watch on the prefix from `from_index`. LogProgress comes from etcd's periodic progress
  // notifications and, after RequestProgress(), from a linearizable read of the head once every
  // entry up to it was delivered.
  std::unique_ptr<Subscription> Subscribe(int64_t from_index, EventCallback on_event) override;

  // Compacts etcd's history up to `revision` (physically). For tests and operators. Errors:
  // kCompacted if already compacted past it, kInvalid for a future revision, otherwise as Append.
  // The callback runs exactly once, never inside this call.
  void Compact(int64_t revision, Deadline deadline, std::function<void(Status)> done);

  const EtcdLogOptions& options() const;

  LogClientStats ClientStats() const override;

 private:
  class Core;
  std::unique_ptr<Core> core_;
};

}  // namespace k8shmir
