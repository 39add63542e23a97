// What the EtcdLog integration tests (etcd_log_*_test.cc) share: synchronous wrappers that check
// the callback contract, a Collector that checks the delivery contract, direct access to etcd as
// something other than k8shmir, and a fixture on a one-member etcd (the harness's EtcdCluster).
#pragma once

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "log/batch_format.h"
#include "log/etcd_errors.h"
#include "log/etcd_log.h"

#include "support/etcd_cluster.h"
#include "support/ports.h"

namespace k8shmir {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// The members' client endpoints, as EtcdLogOptions wants them.
inline std::vector<std::string> EndpointList(const testing::EtcdCluster& etcd) {
  std::vector<std::string> out;
  for (int i = 0; i < etcd.size(); ++i) out.push_back(etcd.Endpoint(i));
  return out;
}
// A hung member (SIGSTOP): its connections stay open, nothing answers them.
inline void PauseMember(testing::EtcdCluster& etcd, int i) { ::kill(etcd.MemberPid(i), SIGSTOP); }
inline void ResumeMember(testing::EtcdCluster& etcd, int i) { ::kill(etcd.MemberPid(i), SIGCONT); }

// ---- Synchronous wrappers that also check the callback contract -------------------------------

// Calls `start(callback)` and waits (bounded) for the callback. Fails the test if the callback
// runs inside `start` on the calling thread, more than once, or not within `timeout`.
template <class T>
std::optional<T> Await(const std::function<void(std::function<void(T)>)>& start,
                       std::chrono::milliseconds timeout) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<T> value;
    int calls = 0;
    bool inline_call = false;
    std::atomic<bool> in_start{true};
    std::thread::id caller = std::this_thread::get_id();
  };
  auto state = std::make_shared<State>();
  start([state](T value) {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->in_start && std::this_thread::get_id() == state->caller) state->inline_call = true;
    if (++state->calls == 1) state->value.emplace(std::move(value));
    state->cv.notify_all();
  });
  state->in_start = false;
  std::unique_lock<std::mutex> lock(state->mu);
  bool done = state->cv.wait_for(lock, timeout, [&] { return state->calls > 0; });
  EXPECT_TRUE(done) << "callback did not run within " << timeout.count() << " ms";
  EXPECT_FALSE(state->inline_call) << "callback ran inside the call";
  // A second call would show up here if it came quickly; the count is also checked at the end.
  lock.unlock();
  std::this_thread::sleep_for(1ms);
  lock.lock();
  EXPECT_LE(state->calls, 1) << "callback ran more than once";
  return state->value;
}

inline Result<AppendResult> AppendSync(Log& log, const std::string& id, const std::string& value,
                                       std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Result<AppendResult>>(
      [&](std::function<void(Result<AppendResult>)> cb) {
        log.Append(id, value, Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

inline Result<AppendResult> AppendBatchSync(Log& log, const std::string& batch_id,
                                            std::vector<LogEntry> entries,
                                            std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Result<AppendResult>>(
      [&](std::function<void(Result<AppendResult>)> cb) {
        log.AppendBatch(batch_id, std::move(entries), Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

inline Result<LogHead> HeadSync(Log& log, std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Result<LogHead>>(
      [&](std::function<void(Result<LogHead>)> cb) {
        log.Head(Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

inline Status CompactSync(EtcdLog& log, int64_t revision, std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Status>(
      [&](std::function<void(Status)> cb) {
        log.Compact(revision, Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

// The LogBatch events among `events`, and their records in delivery order.
inline std::size_t BatchCount(const std::vector<LogEvent>& events) {
  std::size_t n = 0;
  for (const auto& e : events) n += std::holds_alternative<LogBatch>(e) ? 1 : 0;
  return n;
}
inline std::vector<LogRecord> BatchRecords(const std::vector<LogEvent>& events) {
  std::vector<LogRecord> out;
  for (const auto& e : events) {
    if (const auto* b = std::get_if<LogBatch>(&e)) {
      out.insert(out.end(), b->records.begin(), b->records.end());
    }
  }
  return out;
}

// Collects a subscription's events and checks the delivery contract as they come: no
// overlapping calls, nothing after LogClosed, strictly increasing indices, no record at or below
// an end_index already announced by a LogProgress, and LogProgress{revision, end_index} in etcd's
// mapping (end_index = EndIndexOfRevision(revision)).
class Collector {
 public:
  Collector() : state_(std::make_shared<State>()) {}

  Log::EventCallback Callback() {
    return [state = state_](LogEvent event) {
      if (state->in_callback.exchange(true)) state->violations.push_back("overlapping on_event");
      {
        std::lock_guard<std::mutex> lock(state->mu);
        if (state->closed) state->violations.push_back("event after LogClosed");
        if (auto* batch = std::get_if<LogBatch>(&event)) {
          for (const auto& record : batch->records) {
            if (record.index <= state->last_index)
              state->violations.push_back("index not increasing");
            if (record.index <= state->progress_end_index) {
              state->violations.push_back("record " + std::to_string(record.index) +
                                          " after LogProgress{end_index " +
                                          std::to_string(state->progress_end_index) + "}");
            }
            state->last_index = record.index;
            state->records.push_back(record);
          }
        } else if (auto* p = std::get_if<LogProgress>(&event)) {
          if (p->end_index != EndIndexOfRevision(p->revision)) {
            state->violations.push_back("LogProgress{" + std::to_string(p->revision) +
                                        "} with end_index " + std::to_string(p->end_index));
          }
          state->progress_end_index = std::max(state->progress_end_index, p->end_index);
        } else if (std::holds_alternative<LogClosed>(event)) {
          state->closed = true;
        }
        state->events.push_back(std::move(event));
      }
      state->cv.notify_all();
      state->in_callback = false;
    };
  }

  bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(state_->mu);
    return state_->cv.wait_for(lock, timeout, predicate);
  }
  bool WaitRecords(size_t n, std::chrono::milliseconds timeout = 10s) {
    return WaitFor([&] { return state_->records.size() >= n; }, timeout);
  }
  bool WaitClosed(std::chrono::milliseconds timeout) {
    return WaitFor([&] { return state_->closed; }, timeout);
  }
  // Waits for a LogProgress whose end_index is at or past `index` (a LogProgress at or past
  // revision R: WaitProgress(EndIndexOfRevision(R))).
  bool WaitProgress(int64_t index, std::chrono::milliseconds timeout = 10s) {
    return WaitFor(
        [&] {
          for (const auto& e : state_->events) {
            if (auto* p = std::get_if<LogProgress>(&e); p != nullptr && p->end_index >= index) {
              return true;
            }
          }
          return false;
        },
        timeout);
  }

  std::vector<LogRecord> Records() {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->records;
  }
  std::vector<LogEvent> Events() {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->events;
  }
  std::optional<LogClosed> Closed() {
    std::lock_guard<std::mutex> lock(state_->mu);
    for (const auto& e : state_->events) {
      if (auto* c = std::get_if<LogClosed>(&e)) return *c;
    }
    return std::nullopt;
  }
  std::vector<std::string> Violations() {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->violations;
  }

  // Every LogProgress must come after every record with index <= its end_index among
  // `expected`.
  void CheckProgressAfterRecords(const std::vector<int64_t>& expected) {
    std::lock_guard<std::mutex> lock(state_->mu);
    std::set<int64_t> seen;
    for (const auto& e : state_->events) {
      if (auto* batch = std::get_if<LogBatch>(&e)) {
        for (const auto& r : batch->records) seen.insert(r.index);
      } else if (auto* p = std::get_if<LogProgress>(&e)) {
        for (int64_t index : expected) {
          if (index <= p->end_index) {
            EXPECT_TRUE(seen.count(index)) << "LogProgress{" << p->revision << ", " << p->end_index
                                           << "} came before the record at index " << index;
          }
        }
      }
    }
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<LogEvent> events;
    std::vector<LogRecord> records;
    std::vector<std::string> violations;
    int64_t last_index = 0;
    int64_t progress_end_index = 0;
    bool closed = false;
    std::atomic<bool> in_callback{false};
  };
  std::shared_ptr<State> state_;
};

inline EtcdLogOptions Options(std::vector<std::string> endpoints, const std::string& group) {
  EtcdLogOptions options;
  options.endpoints = std::move(endpoints);
  options.prefix = "/k8shmir/" + group + "/log/";
  options.rpc_timeout = 1000ms;
  options.progress_interval = 300ms;
  options.liveness_timeout = 1000ms;
  return options;
}

// Waits until a linearizable read succeeds (the cluster has a leader and answers).
inline bool WaitReady(const std::vector<std::string>& endpoints,
                      std::chrono::milliseconds timeout = 30s) {
  EtcdLog probe(Options(endpoints, "probe"));
  auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (HeadSync(probe, 500ms).ok()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

std::string Value(const std::string& id) { return "value of " + id; }

std::string Prefix(const std::string& group) { return "/k8shmir/" + group + "/log/"; }

inline Result<int64_t> CommittedIndexSync(Log& log, std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Result<int64_t>>(
      [&](std::function<void(Result<int64_t>)> cb) {
        log.ReadCommittedIndex(Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

// ---- Direct access to etcd, as something other than k8shmir ----------------------------------

inline std::unique_ptr<etcdserverpb::KV::Stub> RawKv(const std::string& endpoint) {
  return etcdserverpb::KV::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
}

// Puts key = value; returns the revision of the put (0, and a test failure, when it fails).
inline int64_t RawPut(const std::string& endpoint, const std::string& key,
                      const std::string& value) {
  auto stub = RawKv(endpoint);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  etcdserverpb::PutRequest put;
  put.set_key(key);
  put.set_value(value);
  etcdserverpb::PutResponse response;
  auto status = stub->Put(&context, put, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return status.ok() ? response.header().revision() : 0;
}

// A linearizable read of the keys under `prefix`: etcd's revision, and each key with its
// create_revision.
struct RawRange {
  int64_t revision = 0;
  std::map<std::string, int64_t> keys;
};
inline RawRange RawKeys(const std::string& endpoint, const std::string& prefix) {
  auto stub = RawKv(endpoint);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  etcdserverpb::RangeRequest range;
  range.set_key(prefix);
  range.set_range_end(PrefixRangeEnd(prefix));
  range.set_keys_only(true);
  etcdserverpb::RangeResponse response;
  auto status = stub->Range(&context, range, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  RawRange out;
  out.revision = response.header().revision();
  for (const auto& kv : response.kvs()) out.keys.emplace(kv.key(), kv.create_revision());
  return out;
}

// ---- Single-member tests ----------------------------------------------------------------------

constexpr int kMaxRequestBytes = 128 * 1024;

class EtcdLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::EtcdClusterOptions options;
    options.extra_flags = {"--max-request-bytes=" + std::to_string(kMaxRequestBytes)};
    etcd_ = std::make_unique<testing::EtcdCluster>(1, std::filesystem::path(),
                                                   testing::EtcdClusterTls{}, options);
    etcd_->Start();
    ASSERT_TRUE(WaitReady(EndpointList(*etcd_))) << "etcd did not start";
  }

  std::unique_ptr<EtcdLog> MakeLog(const std::string& group = "g") {
    return std::make_unique<EtcdLog>(Options(EndpointList(*etcd_), group));
  }

  std::unique_ptr<testing::EtcdCluster> etcd_;
};

// ---- Batches -----------------------------------------------------------------------------------

// Entries "<stem>-0" ... "<stem>-<n-1>", valued Value(id) or, with value_bytes, that many bytes.
inline std::vector<LogEntry> Entries(const std::string& stem, int n, size_t value_bytes = 0) {
  std::vector<LogEntry> out;
  for (int i = 0; i < n; ++i) {
    std::string id = stem + "-" + std::to_string(i);
    std::string value = value_bytes == 0 ? Value(id) : std::string(value_bytes, 'a' + i % 26);
    out.push_back(LogEntry{std::move(id), std::move(value)});
  }
  return out;
}

struct ExpectedRecord {
  int64_t index = 0;
  std::string id;
  std::string value;
  bool malformed = false;
};

inline void ExpectRecords(const std::vector<LogRecord>& got,
                          const std::vector<ExpectedRecord>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].index, want[i].index) << "record " << i;
    EXPECT_EQ(got[i].id, want[i].id) << "record " << i;
    EXPECT_EQ(got[i].value, want[i].value) << "record " << i;
    EXPECT_EQ(got[i].malformed, want[i].malformed) << "record " << i;
  }
}

}  // namespace k8shmir
