// EtcdLog's retention (Log::Trim): the trimmed marker (TrimmedMarkerKey) first, then the batches
// at or below it, found by a pass over the group's keys in key order (keys only, a page at a
// time: batch keys are named by batch id, not by index) and deleted a few per transaction. Every
// step is idempotent, so every step is retried, and a Trim cut short is finished by the next.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "common/logging.h"
#include "log/etcd_log_core.h"

namespace k8shmir {

namespace {

// Keys listed per Range: bounds the memory of one page (keys only).
constexpr int64_t kTrimKeysPerPage = 1024;
// Deletes per Txn: etcd's default --max-txn-ops is 128.
constexpr std::size_t kTrimDeletesPerTxn = 128;

}  // namespace

struct EtcdLog::Core::Trimmer : ChainedOperation<EtcdLog::Core, TrimResult>,
                                std::enable_shared_from_this<EtcdLog::Core::Trimmer> {
  int64_t through = 0;
  TrimResult result;
  std::string cursor;               // the next key of the pass
  std::vector<std::string> doomed;  // keys of this page to delete
  std::size_t deleted_in_page = 0;  // of doomed
  bool more = false;                // the pass has keys after this page

  // The marker is raised (compare-and-set on its mod revision) before anything is deleted: a
  // reader that finds an entry missing also finds the marker that explains it.
  void RaiseMarker() {
    etcdserverpb::RangeRequest request;
    request.set_key(TrimmedMarkerKey(core->options.prefix));
    core->RunRange("trim: read marker", std::move(request), deadline,
                   [self = shared_from_this()](Result<etcdserverpb::RangeResponse> r) {
                     if (!r) return self->Finish(r.error());
                     int64_t existing = 0;
                     int64_t mod_revision = 0;
                     if (!r->kvs().empty()) {
                       Result<int64_t> parsed = ParseTrimmedMarker(r->kvs(0).value());
                       if (!parsed) return self->Finish(parsed.error());
                       existing = *parsed;
                       mod_revision = r->kvs(0).mod_revision();
                     }
                     if (existing >= self->through) {
                       // Someone trimmed further: finish their deletes too.
                       self->through = existing;
                       self->result.trimmed_index = existing;
                       return self->ListKeys();
                     }
                     self->WriteMarker(mod_revision);
                   });
  }

  void WriteMarker(int64_t seen_mod_revision) {
    const std::string key = TrimmedMarkerKey(core->options.prefix);
    etcdserverpb::TxnRequest request;
    auto* compare = request.add_compare();
    compare->set_key(key);
    compare->set_target(etcdserverpb::Compare::MOD);
    compare->set_result(etcdserverpb::Compare::EQUAL);
    compare->set_mod_revision(seen_mod_revision);
    auto* put = request.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(EncodeTrimmedMarker(through));
    // Put only if unchanged since read, so a lower mark never overwrites a higher one; retried as
    // a whole (read again) when another trimmer got in between, or when an attempt was ambiguous.
    core->RunTxn(
        "trim: raise marker to " + std::to_string(through), std::move(request), deadline,
        [self = shared_from_this()](Result<etcdserverpb::TxnResponse> r) {
          if (!r) return self->Finish(r.error());
          if (!r->succeeded()) return self->RaiseMarker();
          self->result.trimmed_index = self->through;
          self->ListKeys();
        },
        ClassifyReadFailure);
  }

  void ListKeys() {
    if (cursor.empty()) cursor = core->options.prefix;
    etcdserverpb::RangeRequest request;
    request.set_key(cursor);
    request.set_range_end(core->range_end);
    request.set_limit(kTrimKeysPerPage);
    request.set_keys_only(true);
    core->RunRange("trim: list keys", std::move(request), deadline,
                   [self = shared_from_this()](Result<etcdserverpb::RangeResponse> r) {
                     if (!r) return self->Finish(r.error());
                     self->more = r->more() && r->kvs_size() > 0;
                     if (self->more) {
                       self->cursor = r->kvs(r->kvs_size() - 1).key();
                       self->cursor.push_back('\0');
                     }
                     self->doomed.clear();
                     self->deleted_in_page = 0;
                     const std::string& prefix = self->core->options.prefix;
                     for (const auto& kv : r->kvs()) {
                       std::string_view suffix(kv.key());
                       suffix.remove_prefix(prefix.size());
                       if (LastIndexOfBatch(kv.create_revision(), suffix) > self->through) continue;
                       self->result.entries_deleted += BatchCountOfKey(suffix);
                       self->doomed.push_back(kv.key());
                     }
                     self->DeleteSome();
                   });
  }

  void DeleteSome() {
    if (deleted_in_page == doomed.size()) {
      if (more) return ListKeys();
      LogLine(spdlog::level::info, "log trimmed",
              {{"prefix", core->options.prefix},
               {"index", through},
               {"batches", result.keys_deleted},
               {"entries", result.entries_deleted}});
      return Finish(result);
    }
    const std::size_t end = std::min(doomed.size(), deleted_in_page + kTrimDeletesPerTxn);
    etcdserverpb::TxnRequest request;
    for (std::size_t i = deleted_in_page; i < end; ++i) {
      request.add_success()->mutable_request_delete_range()->set_key(doomed[i]);
    }
    core->RunTxn(
        "trim: delete " + std::to_string(end - deleted_in_page) + " batches", std::move(request),
        deadline,
        [self = shared_from_this(), end](Result<etcdserverpb::TxnResponse> r) {
          if (!r) return self->Finish(r.error());
          self->result.keys_deleted += end - self->deleted_in_page;
          self->deleted_in_page = end;
          self->DeleteSome();
        },
        ClassifyReadFailure);  // deleting a deleted key is a no-op: every attempt may be retried
  }
};

void EtcdLog::Core::Trim(int64_t through_index, Deadline deadline, TrimCallback done) {
  auto trimmer = std::make_shared<Trimmer>();
  trimmer->through = through_index;
  trimmer->Begin(this, deadline, std::move(done));
  if (through_index <= 0) {
    timer_.Post([trimmer] {
      trimmer->Finish(Error{ErrorCode::kInvalid, "nothing to trim below index 1"});
    });
    return;
  }
  trimmer->RaiseMarker();
}

}  // namespace k8shmir
