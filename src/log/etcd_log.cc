#include "log/etcd_log.h"

#include <chrono>
#include <memory>
#include <stdexcept>
#include <utility>

#include "log/etcd_credentials.h"
#include "log/etcd_errors.h"
#include "log/etcd_log_core.h"
#include "log/snapshot_format.h"

namespace k8shmir {

namespace {

using std::chrono::milliseconds;

EtcdLogOptions Validated(EtcdLogOptions options) {
  auto status = ValidateEtcdLogOptions(options);
  if (!status) throw std::invalid_argument(status.error().message);
  if (options.snapshot_prefix.empty()) options.snapshot_prefix = SnapshotPrefixOf(options.prefix);
  return options;
}

}  // namespace

std::size_t FirstEndpointFor(std::string_view replica_id, std::size_t count) {
  if (count == 0) return 0;
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char ch : replica_id) {
    hash ^= ch;
    hash *= 1099511628211ull;
  }
  return static_cast<std::size_t>(hash % count);
}

Status ValidateEtcdLogOptions(const EtcdLogOptions& options) {
  if (options.endpoints.empty()) return Error{ErrorCode::kInvalid, "no etcd endpoint given"};
  for (const auto& endpoint : options.endpoints) {
    auto normalized = NormalizeEndpoint(endpoint);
    if (!normalized) return normalized.error();
  }
  if (options.prefix.empty()) return Error{ErrorCode::kInvalid, "the etcd key prefix is empty"};
  if (options.range_page_keys == 0 || options.range_page_bytes == 0) {
    return Error{ErrorCode::kInvalid, "range_page_keys and range_page_bytes must be positive"};
  }
  if (options.prefix.back() != '/') {
    // The group's other keys (TrimmedMarkerKey) sit beside the log's, outside its key range.
    return Error{ErrorCode::kInvalid,
                 "the etcd key prefix '" + options.prefix + "' does not end with '/'"};
  }
  if (!options.snapshot_prefix.empty() &&
      (options.snapshot_prefix.back() != '/' ||
       options.snapshot_prefix.compare(0, options.prefix.size(), options.prefix) == 0 ||
       options.prefix.compare(0, options.snapshot_prefix.size(), options.snapshot_prefix) == 0)) {
    return Error{ErrorCode::kInvalid, "the snapshot prefix '" + options.snapshot_prefix +
                                          "' must end with '/' and not overlap the log's"};
  }
  if (options.rpc_timeout <= milliseconds::zero() ||
      options.progress_interval <= milliseconds::zero() ||
      options.liveness_timeout <= milliseconds::zero()) {
    return Error{ErrorCode::kInvalid, "etcd log timeouts and intervals must be positive"};
  }
  return ValidateEtcdTlsOptions(options.endpoints, options.tls);
}

EtcdLog::EtcdLog(EtcdLogOptions options)
    : core_(std::make_unique<Core>(Validated(std::move(options)))) {}

EtcdLog::~EtcdLog() = default;

void EtcdLog::AppendBatch(const std::string& batch_id, std::vector<LogEntry> entries,
                          Deadline deadline, AppendCallback done) {
  core_->AppendBatch(batch_id, std::move(entries), deadline, std::move(done));
}

void EtcdLog::Head(Deadline deadline, HeadCallback done) { core_->Head(deadline, std::move(done)); }
void EtcdLog::ReadCommittedIndex(Deadline deadline, CommittedCallback done) {
  core_->ReadCommittedIndex(deadline, std::move(done));
}

void EtcdLog::ReadRange(int64_t from_index, int64_t revision, Deadline deadline,
                        RangeCallback done) {
  core_->ReadRange(from_index, revision, deadline, std::move(done));
}

void EtcdLog::CheckSpace(Deadline deadline, SpaceCallback done) {
  core_->CheckSpace(deadline, std::move(done));
}

void EtcdLog::Trim(int64_t through_index, Deadline deadline, TrimCallback done) {
  core_->Trim(through_index, deadline, std::move(done));
}

void EtcdLog::CheckFormat(Deadline deadline, StatusCallback done) {
  core_->CheckFormat(deadline, std::move(done));
}

void EtcdLog::Refresh(const ReplicaRecord& self, std::chrono::seconds ttl, Deadline deadline,
                      RefreshCallback done) {
  core_->Refresh(self, ttl, deadline, std::move(done));
}

void EtcdLog::Leave(Deadline deadline, StatusCallback done) {
  core_->Leave(deadline, std::move(done));
}

void EtcdLog::SaveSnapshot(const AppSnapshot& snapshot, const std::string& taker, int keep,
                           Deadline deadline, SaveCallback done) {
  core_->SaveSnapshot(snapshot, taker, keep, deadline, std::move(done));
}

void EtcdLog::ListSnapshots(Deadline deadline, ListCallback done) {
  core_->ListSnapshots(deadline, std::move(done));
}

void EtcdLog::LoadSnapshot(const SnapshotManifest& manifest, Deadline deadline, LoadCallback done) {
  core_->LoadSnapshot(manifest, deadline, std::move(done));
}

std::unique_ptr<Subscription> EtcdLog::Subscribe(int64_t from_index, EventCallback on_event) {
  return core_->Subscribe(from_index, std::move(on_event));
}

void EtcdLog::Compact(int64_t revision, Deadline deadline, std::function<void(Status)> done) {
  core_->Compact(revision, deadline, std::move(done));
}

const EtcdLogOptions& EtcdLog::options() const { return core_->options; }

LogClientStats EtcdLog::ClientStats() const { return core_->ClientStats(); }

}  // namespace k8shmir
