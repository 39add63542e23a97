#include "log/range_reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace k8shmir {

namespace {

// A read changes nothing, so it is retried; only a compacted revision is final (the caller
// starts again at the current one).
RpcFailure ClassifyRangeFailure(grpc::StatusCode code, std::string_view message) {
  if (code == grpc::StatusCode::OUT_OF_RANGE &&
      message == "etcdserver: mvcc: required revision has been compacted") {
    return {FailureKind::kRejected, ErrorCode::kCompacted, DescribeGrpcStatus(code, message)};
  }
  return ClassifyReadFailure(code, message);
}

}  // namespace

void EtcdLog::Core::RangeReader::Start(Core* core, int64_t from_index, int64_t revision,
                                       Deadline deadline, RangeCallback done) {
  auto reader =
      std::make_shared<RangeReader>(core, from_index, revision, deadline, std::move(done));
  core->OpStarted();
  reader->ReadMarker();
}

EtcdLog::Core::RangeReader::RangeReader(Core* core, int64_t from_index, int64_t revision,
                                        Deadline deadline, RangeCallback done)
    : core_(core),
      from_index_(from_index),
      deadline_(deadline),
      done_(std::move(done)),
      revision_(revision),
      plan_(from_index, core->options.range_page_keys),
      cursor_(core->options.prefix) {}

void EtcdLog::Core::RangeReader::ReadMarker() {
  etcdserverpb::RangeRequest request;
  request.set_key(TrimmedMarkerKey(core_->options.prefix));
  request.set_revision(revision_);
  core_->RunRange(
      "read range: trimmed marker", std::move(request), deadline_,
      [self = shared_from_this()](Result<etcdserverpb::RangeResponse> result) {
        if (!result) return self->Finish(result.error());
        const auto& response = result.value();
        if (self->revision_ == 0) self->revision_ = response.header().revision();
        if (!response.kvs().empty()) {
          Result<int64_t> trimmed = ParseTrimmedMarker(response.kvs(0).value());
          if (!trimmed) return self->Finish(trimmed.error());
          self->page_.trimmed_index = *trimmed;
        }
        self->ReadKeys();
      },
      ClassifyRangeFailure);
}

void EtcdLog::Core::RangeReader::ReadKeys() {
  etcdserverpb::RangeRequest request;
  request.set_key(cursor_);
  request.set_range_end(core_->range_end);
  request.set_revision(revision_);
  request.set_limit(
      std::min<int64_t>(kKeysPerPassRequest, static_cast<int64_t>(core_->options.range_page_keys)));
  // Neither sorted nor filtered: etcd then stops after `limit` keys (log/range_page.h).
  request.set_keys_only(true);
  core_->RunRange(
      "read range: keys", std::move(request), deadline_,
      [self = shared_from_this()](Result<etcdserverpb::RangeResponse> result) {
        if (!result) return self->Finish(result.error());
        auto& response = result.value();
        const bool more = response.more() && response.kvs_size() > 0;
        if (more) {
          // The next key after the last one: the same bytes plus a zero byte.
          self->cursor_ = response.kvs(response.kvs_size() - 1).key();
          self->cursor_.push_back('\0');
        }
        for (auto& kv : *response.mutable_kvs()) {
          self->plan_.AddKey(std::move(*kv.mutable_key()), kv.create_revision());
        }
        if (more) return self->ReadKeys();
        self->FetchValues();
      },
      ClassifyRangeFailure);
}

void EtcdLog::Core::RangeReader::FetchValues() {
  const auto& keys = plan_.Keys();
  if (fetched_ == keys.size() || (fetched_ > 0 && bytes_ >= core_->options.range_page_bytes)) {
    plan_.Finish(fetched_, revision_, page_);
    return Finish(std::move(page_));
  }
  etcdserverpb::TxnRequest request;
  // As many keys as the bytes left hold at the largest value seen so far (one to begin with), so
  // that a page of large values stops close to its bound.
  std::size_t count = 1;
  if (largest_value_ > 0) {
    const std::size_t left = core_->options.range_page_bytes - bytes_;
    count = std::clamp<std::size_t>(left / largest_value_, 1, kKeysPerFetch);
  }
  const std::size_t end = std::min(keys.size(), fetched_ + count);
  for (std::size_t i = fetched_; i < end; ++i) {
    auto* range = request.add_success()->mutable_request_range();
    range->set_key(keys[i].key);
    range->set_revision(revision_);
  }
  core_->RunTxn(
      "read range: values", std::move(request), deadline_,
      [self = shared_from_this(), end](Result<etcdserverpb::TxnResponse> result) {
        if (!result) return self->Finish(result.error());
        const auto& response = result.value();
        const auto& keys = self->plan_.Keys();
        const std::string& prefix = self->core_->options.prefix;
        if (response.responses_size() != static_cast<int>(end - self->fetched_)) {
          return self->Finish(Error{ErrorCode::kProtocol,
                                    "etcd answered a read of " +
                                        std::to_string(end - self->fetched_) + " log keys with " +
                                        std::to_string(response.responses_size())});
        }
        for (int i = 0; i < response.responses_size(); ++i) {
          const auto& want = keys[self->fetched_ + static_cast<std::size_t>(i)];
          const auto& kvs = response.responses(i).response_range().kvs();
          // Read at the pass's revision: a key the pass saw is there.
          if (kvs.size() != 1 || kvs[0].key() != want.key ||
              kvs[0].create_revision() != want.create_revision) {
            return self->Finish(Error{ErrorCode::kProtocol, "etcd did not return log key " +
                                                                want.key + " at revision " +
                                                                std::to_string(self->revision_)});
          }
          std::string_view suffix(kvs[0].key());
          suffix.remove_prefix(prefix.size());
          std::vector<LogRecord> records;
          DecodeBatch(kvs[0].create_revision(), suffix, kvs[0].value(), records);
          for (auto& record : records) {
            if (record.index >= self->from_index_) self->page_.records.push_back(std::move(record));
          }
          self->bytes_ += kvs[0].value().size();
          self->largest_value_ = std::max(self->largest_value_, kvs[0].value().size());
        }
        self->fetched_ = end;
        self->FetchValues();
      },
      ClassifyRangeFailure);
}

void EtcdLog::Core::RangeReader::Finish(Result<LogRange> result) {
  core_->EndOperation(done_, std::move(result));
}

}  // namespace k8shmir
