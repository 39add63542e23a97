#include "log/watch_decoder.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace k8shmir {

WatchDecoder::WatchDecoder(std::string prefix, int64_t from_index)
    : prefix_(std::move(prefix)), from_index_(from_index), delivered_index_(from_index - 1) {}

std::vector<LogEvent> WatchDecoder::Close(Error error, int64_t compact_revision) {
  closed_ = true;
  fragment_records_.clear();
  std::vector<LogEvent> out;
  out.emplace_back(LogClosed{std::move(error), compact_revision});
  return out;
}

std::vector<LogEvent> WatchDecoder::Feed(const etcdserverpb::WatchResponse& resp) {
  if (closed_) return {};

  // The reply to a WatchProgressRequest is for the whole stream (watch_id -1). etcd before
  // 3.4.25/3.5.8 queues it separately from events (etcd issue #15220), so its revision may be
  // ahead of events still in flight: it only proves that the stream is alive. (A failed create
  // also carries watch_id -1, but with created and canceled set.)
  if (resp.watch_id() == -1 && !resp.created() && !resp.canceled() && resp.events_size() == 0) {
    return {};
  }

  if (!created_) {
    // etcd holds back a watch's events until it has sent the creation response.
    if (!resp.created()) {
      return Close(Error{ErrorCode::kProtocol, "etcd sent watch data before creating the watch"});
    }
    created_ = true;
    watch_id_ = resp.watch_id();
  } else if (resp.watch_id() != watch_id_) {
    spdlog::warn("etcd watch on {}: ignoring a response for watch id {} (ours is {})", prefix_,
                 resp.watch_id(), watch_id_);
    return {};
  }

  if (resp.compact_revision() != 0) {
    return Close(
        Error{ErrorCode::kCompacted, "etcd compacted the log up to revision " +
                                         std::to_string(resp.compact_revision()) + ", past index " +
                                         std::to_string(delivered_index_ + 1)},
        resp.compact_revision());
  }
  if (resp.canceled()) {
    return Close(
        Error{ErrorCode::kUnavailable,
              "etcd canceled the watch" +
                  (resp.cancel_reason().empty() ? std::string() : ": " + resp.cancel_reason())});
  }
  if (resp.created()) return {};

  if (resp.fragment()) {
    in_fragment_ = true;
    AppendRecords(resp.events(), fragment_records_);
    return {};
  }
  bool ends_fragments = std::exchange(in_fragment_, false);
  std::vector<LogRecord> records = std::move(fragment_records_);
  fragment_records_.clear();

  if (resp.events_size() == 0 && !ends_fragments) {
    // A progress notification for this watch. etcd sends those only while the watcher is synced,
    // through the same queue as its events, so every event up to this revision came before.
    int64_t revision = resp.header().revision();
    if (revision <= progress_revision_) return {};
    progress_revision_ = revision;
    std::vector<LogEvent> out;
    out.emplace_back(LogProgress{revision});
    return out;
  }

  AppendRecords(resp.events(), records);
  if (records.empty()) return {};
  delivered_index_ = records.back().index;
  delivered_id_ = records.back().id;
  std::vector<LogEvent> out;
  // header.revision is not a progress mark: when etcd catches a watcher up it sends its current
  // revision with the first chunk of old events.
  out.emplace_back(LogBatch{std::move(records), resp.header().revision()});
  return out;
}

void WatchDecoder::AppendRecords(const google::protobuf::RepeatedPtrField<mvccpb::Event>& events,
                                 std::vector<LogRecord>& out) {
  for (const auto& event : events) {
    const auto& kv = event.kv();
    if (event.type() != mvccpb::Event::PUT) {
      // The watch asks etcd to filter deletions out.
      spdlog::warn("etcd watch on {}: ignoring deletion of {} at revision {}", prefix_, kv.key(),
                   kv.mod_revision());
      continue;
    }
    if (kv.key().compare(0, prefix_.size(), prefix_) != 0) {
      spdlog::error("etcd watch on {}: ignoring key {} outside the prefix", prefix_, kv.key());
      continue;
    }
    std::string id = kv.key().substr(prefix_.size());
    if (kv.create_revision() != kv.mod_revision()) {
      // Entries are created once and never modified by k8shmir: something else wrote this key.
      spdlog::error(
          "etcd watch on {}: entry {} (index {}) was overwritten at revision {}; ignoring the "
          "overwrite",
          prefix_, id, kv.create_revision(), kv.mod_revision());
      continue;
    }
    int64_t index = kv.create_revision();
    int64_t last_index = out.empty() ? delivered_index_ : out.back().index;
    const std::string& last_id = out.empty() ? delivered_id_ : out.back().id;
    if (index < from_index_) {
      spdlog::warn("etcd watch on {}: ignoring entry {} at index {} before the start index {}",
                   prefix_, id, index, from_index_);
      continue;
    }
    if (index == last_index && id == last_id) {
      // Some etcd 3.4 releases may send an event twice (known watch bugs).
      spdlog::warn("etcd watch on {}: ignoring repeated entry {} at index {}", prefix_, id, index);
      continue;
    }
    if (index <= last_index) {
      spdlog::error(
          "etcd watch on {}: ignoring entry {} at index {}, not after the last delivered index "
          "{} (etcd went back in time, or a foreign transaction wrote several keys at once)",
          prefix_, id, index, last_index);
      continue;
    }
    out.push_back(LogRecord{index, std::move(id), kv.value()});
  }
}

}  // namespace k8shmir
