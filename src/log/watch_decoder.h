// Turns the WatchResponses of one etcd watch on a log prefix into LogEvents: delivers fragments as
// they come, keeps only key creations, drops what etcd 3.4 may repeat, and recognises the end of
// the watch. Not thread-safe: the subscription calls it under its lock. Unit-tested without etcd.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "etcdserverpb/rpc.pb.h"
#include "k8shmir/log.h"

namespace k8shmir {

class WatchDecoder {
 public:
  // `prefix` is the watched key prefix; `from_index` the first index to deliver (the watch starts
  // at its revision, RevisionOfIndex(from_index)).
  WatchDecoder(std::string prefix, int64_t from_index);

  // The events `resp` yields, in delivery order (usually zero or one). Once a LogClosed was
  // returned, closed() is true and every later response yields nothing.
  std::vector<LogEvent> Feed(const etcdserverpb::WatchResponse& resp);

  bool closed() const { return closed_; }
  bool created() const { return created_; }
  // Highest index delivered so far (from_index - 1 before the first record).
  int64_t delivered_index() const { return delivered_index_; }
  // Highest revision delivered in a LogProgress (0 before the first).
  int64_t progress_revision() const { return progress_revision_; }

 private:
  std::vector<LogEvent> Close(Error error, int64_t compact_revision = 0);
  void AppendRecords(const google::protobuf::RepeatedPtrField<mvccpb::Event>& events,
                     std::vector<LogRecord>& out);

  const std::string prefix_;
  const int64_t from_index_;
  bool created_ = false;
  bool closed_ = false;
  int64_t watch_id_ = 0;
  int64_t delivered_index_;
  // The newest batch delivered: repeats and rewinds of etcd's watch are recognised by batch.
  int64_t accepted_revision_ = 0;
  std::string accepted_key_;
  int64_t progress_revision_ = 0;
  // Inside a response etcd split into fragments (fragment=true on all but the last one): an
  // empty last fragment ends it and is no progress notification.
  bool in_fragment_ = false;
};

}  // namespace k8shmir
