// EtcdLog's SnapshotStore (k8shmir/snapshot_store.h): the layout is log/snapshot_format.h. Each
// operation is a chain of KV calls, one at a time, each started from the previous one's callback;
// the whole chain counts as one operation of the core (its destructor waits for it).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "common/logging.h"
#include "log/etcd_log_core.h"
#include "log/snapshot_format.h"

namespace k8shmir {

namespace {

// A snapshot operation also holds where the snapshots are.
template <class Core, class T>
struct SnapshotOperation : ChainedOperation<Core, T> {
  std::string prefix;

  void Begin(Core* c, std::string p, Deadline d, std::function<void(Result<T>)> callback) {
    prefix = std::move(p);
    ChainedOperation<Core, T>::Begin(c, d, std::move(callback));
  }
};

}  // namespace

// ---- Save -----------------------------------------------------------------------------------

// One SaveSnapshot: the pieces, the manifest, then the clean-up. Puts of the same key and value
// are idempotent, so every step may be retried.
struct EtcdLog::Core::SnapshotSave : SnapshotOperation<EtcdLog::Core, SnapshotManifest>,
                                     std::enable_shared_from_this<EtcdLog::Core::SnapshotSave> {
  AppSnapshot snapshot;
  SnapshotManifest manifest;
  int keep = 2;
  uint32_t next_chunk = 0;

  // An existing manifest at this index must describe the same state (two takers, or a retry).
  void CheckExisting() {
    etcdserverpb::RangeRequest request;
    request.set_key(SnapshotManifestKey(prefix, manifest.index));
    core->RunRange("snapshot manifest check", request, deadline,
                   [self = shared_from_this()](Result<etcdserverpb::RangeResponse> r) {
                     if (!r) return self->Finish(r.error());
                     if (r->kvs_size() == 1) {
                       auto existing = ParseManifest(r->kvs(0).value(), self->manifest.index);
                       if (existing && existing->sha256 == self->manifest.sha256 &&
                           existing->size == self->manifest.size) {
                         existing->revision = r->kvs(0).mod_revision();
                         return self->CleanUp(*existing);  // already stored
                       }
                       return self->Finish(
                           Error{ErrorCode::kInvalid, "a different snapshot at index " +
                                                          std::to_string(self->manifest.index) +
                                                          " is already stored"});
                     }
                     self->PutChunk();
                   });
  }

  void PutChunk() {
    if (next_chunk == manifest.chunks) return PutManifest();
    const std::size_t begin = static_cast<std::size_t>(next_chunk) * kSnapshotChunkBytes;
    const std::size_t length = std::min(kSnapshotChunkBytes, snapshot.data.size() - begin);
    etcdserverpb::TxnRequest request;
    auto* put = request.add_success()->mutable_request_put();
    put->set_key(SnapshotChunkKey(prefix, manifest.index, next_chunk));
    put->set_value(snapshot.data.substr(begin, length));
    core->RunTxn("snapshot chunk " + std::to_string(next_chunk), std::move(request), deadline,
                 [self = shared_from_this()](Result<etcdserverpb::TxnResponse> r) {
                   if (!r) return self->Finish(r.error());
                   ++self->next_chunk;
                   self->PutChunk();
                 });
  }

  void PutManifest() {
    etcdserverpb::TxnRequest request;
    auto* put = request.add_success()->mutable_request_put();
    put->set_key(SnapshotManifestKey(prefix, manifest.index));
    put->set_value(EncodeManifest(manifest));
    core->RunTxn("snapshot manifest", std::move(request), deadline,
                 [self = shared_from_this()](Result<etcdserverpb::TxnResponse> r) {
                   if (!r) return self->Finish(r.error());
                   self->manifest.revision = r->header().revision();
                   self->CleanUp(self->manifest);
                 });
  }

  // Keeps the newest `keep` snapshots; deletes older ones and pieces older than the newest
  // manifest that have none (a taker that died while writing). Failing here loses nothing: the
  // snapshot is stored, and the next save cleans up.
  void CleanUp(SnapshotManifest stored) {
    etcdserverpb::RangeRequest request;
    request.set_key(prefix);
    request.set_range_end(PrefixRangeEnd(prefix));
    request.set_keys_only(true);
    core->RunRange(
        "snapshot list for clean-up", request, deadline,
        [self = shared_from_this(), stored](Result<etcdserverpb::RangeResponse> r) mutable {
          if (!r) {
            LogLine(spdlog::level::warn, "snapshot stored; its clean-up skipped",
                    {{"index", stored.index}, {"error", r.error().message}});
            return self->Finish(stored);
          }
          std::vector<int64_t> with_manifest;
          std::vector<int64_t> dirs;
          for (const auto& kv : r->kvs()) {
            const SnapshotKey key = ParseSnapshotKey(self->prefix, kv.key());
            if (key.index < 0) continue;
            if (dirs.empty() || dirs.back() != key.index) dirs.push_back(key.index);
            if (key.manifest) with_manifest.push_back(key.index);
          }
          // Key order is index order: the newest `keep` manifests are at the back.
          const int64_t oldest_kept =
              with_manifest.size() > static_cast<std::size_t>(self->keep)
                  ? with_manifest[with_manifest.size() - static_cast<std::size_t>(self->keep)]
                  : (with_manifest.empty() ? stored.index : with_manifest.front());
          std::vector<int64_t> doomed;
          for (int64_t dir : dirs) {
            if (dir < oldest_kept) doomed.push_back(dir);
          }
          self->Delete(std::move(doomed), 0, stored);
        });
  }

  void Delete(std::vector<int64_t> doomed, std::size_t next, SnapshotManifest stored) {
    if (next == doomed.size()) return Finish(stored);
    etcdserverpb::TxnRequest request;
    auto* del = request.add_success()->mutable_request_delete_range();
    const std::string dir = SnapshotDir(prefix, doomed[next]);
    del->set_key(dir);
    del->set_range_end(PrefixRangeEnd(dir));
    // Named first: the callback below takes `doomed` away, in any order of evaluation.
    std::string what = "snapshot delete " + std::to_string(doomed[next]);
    core->RunTxn(std::move(what), std::move(request), deadline,
                 [self = shared_from_this(), doomed = std::move(doomed), next,
                  stored](Result<etcdserverpb::TxnResponse> r) mutable {
                   if (!r) {
                     LogLine(spdlog::level::warn, "snapshot clean-up failed",
                             {{"index", doomed[next]}, {"error", r.error().message}});
                     return self->Finish(stored);
                   }
                   self->Delete(std::move(doomed), next + 1, stored);
                 });
  }
};

void EtcdLog::Core::SaveSnapshot(const AppSnapshot& snapshot, const std::string& taker, int keep,
                                 Deadline deadline, SnapshotStore::SaveCallback done) {
  auto save = std::make_shared<EtcdLog::Core::SnapshotSave>();
  save->snapshot = snapshot;
  save->manifest.index = snapshot.index;
  save->manifest.size = snapshot.data.size();
  save->manifest.chunks = ChunkCount(snapshot.data.size());
  save->manifest.sha256 = Sha256Hex(snapshot.data);
  save->manifest.taker = taker;
  save->manifest.taken_unix_ms = UnixMillis();
  save->keep = std::max(keep, 1);
  save->Begin(this, options.snapshot_prefix, deadline, std::move(done));
  save->CheckExisting();
}

// ---- List and load --------------------------------------------------------------------------

struct EtcdLog::Core::SnapshotList
    : SnapshotOperation<EtcdLog::Core, std::vector<SnapshotManifest>>,
      std::enable_shared_from_this<EtcdLog::Core::SnapshotList> {
  void Run() {
    // Manifests are small and few (the newest two, plus any a clean-up missed): one range over
    // the prefix, values only for the manifests, read one by one.
    etcdserverpb::RangeRequest request;
    request.set_key(prefix);
    request.set_range_end(PrefixRangeEnd(prefix));
    request.set_keys_only(true);
    core->RunRange("snapshot list", request, deadline,
                   [self = shared_from_this()](Result<etcdserverpb::RangeResponse> r) {
                     if (!r) return self->Finish(r.error());
                     std::vector<int64_t> indices;
                     for (const auto& kv : r->kvs()) {
                       const SnapshotKey key = ParseSnapshotKey(self->prefix, kv.key());
                       if (key.manifest) indices.push_back(key.index);
                     }
                     std::reverse(indices.begin(), indices.end());  // newest first
                     self->Read(std::move(indices), 0, {});
                   });
  }

  void Read(std::vector<int64_t> indices, std::size_t next, std::vector<SnapshotManifest> out) {
    if (next == indices.size()) return Finish(std::move(out));
    etcdserverpb::RangeRequest request;
    request.set_key(SnapshotManifestKey(prefix, indices[next]));
    core->RunRange("snapshot manifest", request, deadline,
                   [self = shared_from_this(), indices = std::move(indices), next,
                    out = std::move(out)](Result<etcdserverpb::RangeResponse> r) mutable {
                     if (!r) return self->Finish(r.error());
                     if (r->kvs_size() == 1) {
                       auto manifest = ParseManifest(r->kvs(0).value(), indices[next]);
                       if (manifest) {
                         manifest->revision = r->kvs(0).mod_revision();
                         out.push_back(std::move(*manifest));
                       } else {
                         // Listed, so a reader can say why it skips it; never restored.
                         LogLine(spdlog::level::warn, "unreadable snapshot manifest skipped",
                                 {{"index", indices[next]}, {"error", manifest.error().message}});
                       }
                     }
                     self->Read(std::move(indices), next + 1, std::move(out));
                   });
  }
};

void EtcdLog::Core::ListSnapshots(Deadline deadline, SnapshotStore::ListCallback done) {
  auto list = std::make_shared<EtcdLog::Core::SnapshotList>();
  list->Begin(this, options.snapshot_prefix, deadline, std::move(done));
  list->Run();
}

struct EtcdLog::Core::SnapshotLoad : SnapshotOperation<EtcdLog::Core, AppSnapshot>,
                                     std::enable_shared_from_this<EtcdLog::Core::SnapshotLoad> {
  SnapshotManifest manifest;
  std::string data;
  uint32_t next_chunk = 0;

  Error Corrupt(const std::string& why) const {
    return Error{ErrorCode::kProtocol,
                 "snapshot at index " + std::to_string(manifest.index) + " is unusable: " + why};
  }

  void ReadChunk() {
    if (next_chunk == manifest.chunks) return Verify();
    etcdserverpb::RangeRequest request;
    request.set_key(SnapshotChunkKey(prefix, manifest.index, next_chunk));
    core->RunRange("snapshot chunk " + std::to_string(next_chunk), request, deadline,
                   [self = shared_from_this()](Result<etcdserverpb::RangeResponse> r) {
                     if (!r) return self->Finish(r.error());
                     if (r->kvs_size() != 1) {
                       return self->Finish(
                           self->Corrupt("piece " + std::to_string(self->next_chunk) + " of " +
                                         std::to_string(self->manifest.chunks) + " is missing"));
                     }
                     if (self->data.size() + r->kvs(0).value().size() > self->manifest.size) {
                       return self->Finish(self->Corrupt("larger than its manifest says"));
                     }
                     self->data += r->kvs(0).value();
                     ++self->next_chunk;
                     self->ReadChunk();
                   });
  }

  void Verify() {
    if (data.size() != manifest.size) {
      return Finish(Corrupt(std::to_string(data.size()) + " bytes, its manifest says " +
                            std::to_string(manifest.size)));
    }
    if (Sha256Hex(data) != manifest.sha256) return Finish(Corrupt("SHA-256 mismatch"));
    Finish(AppSnapshot{manifest.index, std::move(data)});
  }
};

void EtcdLog::Core::LoadSnapshot(const SnapshotManifest& manifest, Deadline deadline,
                                 SnapshotStore::LoadCallback done) {
  auto load = std::make_shared<EtcdLog::Core::SnapshotLoad>();
  load->manifest = manifest;
  load->Begin(this, options.snapshot_prefix, deadline, std::move(done));
  load->ReadChunk();
}

}  // namespace k8shmir
