#include "log/watch_decoder.h"

#include <spdlog/spdlog.h>
#include "common/logging.h"

#include <algorithm>
#include <utility>

#include "log/batch_format.h"

namespace k8shmir {

WatchDecoder::WatchDecoder(std::string prefix, int64_t from_index)
    : prefix_(std::move(prefix)), from_index_(from_index), delivered_index_(from_index - 1) {}

std::vector<LogEvent> WatchDecoder::Close(Error error, int64_t compact_revision) {
  closed_ = true;
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
    LogLine(spdlog::level::warn, "etcd watch: a response for another watch ignored",
            {{"prefix", prefix_}, {"watch_id", resp.watch_id()}, {"expected_watch_id", watch_id_}});
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

  // A response etcd split into fragments (fragment=true on all but the last) is delivered piece
  // by piece: one catch-up response may hold up to 1,000 revisions of up to 1.5 MiB each, and
  // holding them all before delivery would defeat the consumer's byte bound on its queue.
  const bool ends_fragments = std::exchange(in_fragment_, resp.fragment());
  std::vector<LogRecord> records;

  if (resp.events_size() == 0 && !ends_fragments && !resp.fragment()) {
    // A progress notification for this watch. etcd sends those only while the watcher is synced,
    // through the same queue as its events, so every event up to this revision came before.
    int64_t revision = resp.header().revision();
    if (revision <= progress_revision_) return {};
    progress_revision_ = revision;
    std::vector<LogEvent> out;
    out.emplace_back(LogProgress{revision, EndIndexOfRevision(revision)});
    return out;
  }

  AppendRecords(resp.events(), records);
  if (records.empty()) return {};
  delivered_index_ = records.back().index;
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
      LogLine(spdlog::level::warn, "etcd watch: a deletion ignored",
              {{"prefix", prefix_}, {"key", kv.key()}, {"revision", kv.mod_revision()}});
      continue;
    }
    if (kv.key().compare(0, prefix_.size(), prefix_) != 0) {
      LogLine(spdlog::level::err, "etcd watch: a key outside the prefix ignored",
              {{"prefix", prefix_}, {"key", kv.key()}});
      continue;
    }
    std::string_view suffix = std::string_view(kv.key()).substr(prefix_.size());
    int64_t revision = kv.create_revision();
    if (revision != kv.mod_revision()) {
      // Batches are created once and never modified by k8shmir: something else wrote this key.
      LogLine(spdlog::level::err,
              "etcd watch: an overwritten batch ignored (batches are written once)",
              {{"prefix", prefix_},
               {"batch", suffix},
               {"revision", revision},
               {"mod_revision", kv.mod_revision()}});
      continue;
    }
    if (revision < RevisionOfIndex(from_index_)) {
      LogLine(spdlog::level::warn, "etcd watch: a batch before the start index ignored",
              {{"prefix", prefix_},
               {"batch", suffix},
               {"revision", revision},
               {"start_index", from_index_}});
      continue;
    }
    if (revision == accepted_revision_ && suffix == accepted_key_) {
      // Some etcd 3.4 releases may send an event twice (known watch bugs).
      LogLine(spdlog::level::warn, "etcd watch: a repeated batch ignored",
              {{"prefix", prefix_}, {"batch", suffix}, {"revision", revision}});
      continue;
    }
    if (revision == accepted_revision_) {
      // A foreign transaction wrote several keys at once. Head() may name this key's announced
      // last index as the log's newest; deliver that index (malformed, so skipped) to keep it
      // reachable, unless an earlier key of the revision already covered it.
      int64_t index = LastIndexOfBatch(revision, suffix);
      int64_t last = out.empty() ? delivered_index_ : out.back().index;
      LogLine(spdlog::level::err,
              "etcd watch: two batches share a revision (a foreign multi-key transaction); the "
              "second one's index will be skipped",
              {{"prefix", prefix_},
               {"batch", suffix},
               {"revision", revision},
               {"other_batch", accepted_key_},
               {"index", index}});
      if (index > last && index >= from_index_) {
        out.push_back(LogRecord{index, std::string(suffix), std::string(), true});
      }
      continue;
    }
    if (revision < accepted_revision_) {
      LogLine(spdlog::level::err,
              "etcd watch: a batch not after the last delivered revision ignored (etcd went back "
              "in time, or a foreign transaction wrote several keys at once)",
              {{"prefix", prefix_},
               {"batch", suffix},
               {"revision", revision},
               {"last_revision", accepted_revision_}});
      continue;
    }
    accepted_revision_ = revision;
    accepted_key_.assign(suffix);
    std::size_t first = out.size();
    DecodeBatch(revision, suffix, kv.value(), out);
    // A subscription may start inside a batch (a replica that applied part of it).
    auto begin = out.begin() + static_cast<std::ptrdiff_t>(first);
    auto keep = std::find_if(begin, out.end(),
                             [this](const LogRecord& r) { return r.index >= from_index_; });
    out.erase(begin, keep);
  }
}

}  // namespace k8shmir
