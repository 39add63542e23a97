// RangeReader: one Log::ReadRange on etcd (log/range_page.h says why it takes two bounded steps).
// Internal to src/log, nested in EtcdLog::Core (log/etcd_log_core.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "log/etcd_log_core.h"
#include "log/range_page.h"

namespace k8shmir {

class EtcdLog::Core::RangeReader final : public std::enable_shared_from_this<RangeReader> {
 public:
  // Keys per request of the pass (fewer when a page keeps fewer), and keys per value fetch. The
  // page's own bounds are EtcdLogOptions::range_page_keys and range_page_bytes.
  static constexpr int64_t kKeysPerPassRequest = 1024;
  static constexpr std::size_t kKeysPerFetch = 16;

  // `done` runs exactly once, never inside Start. The whole read counts as one operation of the
  // core (its destructor waits for it), from Start until `done` returns.
  static void Start(Core* core, int64_t from_index, int64_t revision, Deadline deadline,
                    RangeCallback done);

  RangeReader(Core* core, int64_t from_index, int64_t revision, Deadline deadline,
              RangeCallback done);

 private:
  // The retention marker, which also fixes the revision every later request reads at.
  void ReadMarker();
  void ReadKeys();
  void FetchValues();
  void Finish(Result<LogRange> result);

  // No lock: one request at a time, each step started from the previous one's callback (the
  // hand-over goes through gRPC or the timer queue, as for RetryingCall).
  Core* const core_;
  const int64_t from_index_;
  const Deadline deadline_;
  RangeCallback done_;
  int64_t revision_;
  RangePagePlan plan_;
  std::string cursor_;  // the next key of the pass
  std::size_t fetched_ = 0;
  std::size_t bytes_ = 0;
  std::size_t largest_value_ = 0;
  LogRange page_;
};

}  // namespace k8shmir
