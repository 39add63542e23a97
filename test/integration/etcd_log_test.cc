// EtcdLog against real etcd processes (Debian's /usr/bin/etcd) on loopback ports. Self-contained:
// a minimal etcd launcher lives in this file.
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

namespace k8shmir {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// ---- A minimal etcd launcher ------------------------------------------------------------------

// Free loopback ports: all bound at once (so they differ), then released for etcd to take.
std::vector<int> FreePorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

class LocalEtcd {
 public:
  explicit LocalEtcd(int members, std::vector<std::string> extra_flags = {})
      : extra_flags_(std::move(extra_flags)) {
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string pattern = (base / "k8shmir-etcd-log-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    dir_ = pattern;
    auto ports = FreePorts(2 * members);
    for (int i = 0; i < members; ++i) {
      Member m;
      m.name = "m" + std::to_string(i);
      m.client_port = ports[2 * i];
      m.peer_port = ports[2 * i + 1];
      members_.push_back(m);
    }
  }

  ~LocalEtcd() {
    for (size_t i = 0; i < members_.size(); ++i) Kill(static_cast<int>(i));
    if (!::testing::Test::HasFailure()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    } else {
      for (size_t i = 0; i < members_.size(); ++i) {
        std::cerr << "---- tail of " << LogPath(static_cast<int>(i)) << "\n"
                  << Tail(static_cast<int>(i), 30) << "\n";
      }
    }
  }

  void StartAll() {
    for (size_t i = 0; i < members_.size(); ++i) Start(static_cast<int>(i));
  }

  void Start(int i) {
    Member& m = members_[i];
    if (m.pid > 0) return;
    std::string cluster;
    for (const auto& other : members_) {
      if (!cluster.empty()) cluster += ",";
      cluster += other.name + "=http://127.0.0.1:" + std::to_string(other.peer_port);
    }
    std::string client = "http://127.0.0.1:" + std::to_string(m.client_port);
    std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--name=" + m.name,
                                     "--data-dir=" + (dir_ / m.name).string(),
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=" + cluster,
                                     "--initial-cluster-state=new",
                                     "--initial-cluster-token=k8shmir-log-test",
                                     "--heartbeat-interval=50",
                                     "--election-timeout=500",
                                     "--logger=zap",
                                     "--log-outputs=stderr"};
    for (const auto& flag : extra_flags_) args.push_back(flag);
    std::string log = LogPath(i).string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ASSERT_GT(pid, 0);
    m.pid = pid;
  }

  void Kill(int i) {
    Member& m = members_[i];
    if (m.pid <= 0) return;
    ::kill(m.pid, SIGKILL);
    ::waitpid(m.pid, nullptr, 0);
    m.pid = 0;
  }
  void Pause(int i) { ::kill(members_[i].pid, SIGSTOP); }
  void Resume(int i) { ::kill(members_[i].pid, SIGCONT); }

  std::string Endpoint(int i) const {
    return "127.0.0.1:" + std::to_string(members_[i].client_port);
  }
  std::vector<std::string> Endpoints() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < members_.size(); ++i) out.push_back(Endpoint(static_cast<int>(i)));
    return out;
  }

  fs::path LogPath(int i) const { return dir_ / (members_[i].name + ".log"); }
  std::string Tail(int i, size_t lines) const {
    std::ifstream in(LogPath(i));
    std::vector<std::string> all;
    for (std::string line; std::getline(in, line);) all.push_back(line);
    std::string out;
    for (size_t j = all.size() > lines ? all.size() - lines : 0; j < all.size(); ++j) {
      out += all[j] + "\n";
    }
    return out;
  }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = 0;
  };
  std::vector<std::string> extra_flags_;
  fs::path dir_;
  std::vector<Member> members_;
};

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

Result<AppendResult> AppendSync(Log& log, const std::string& id, const std::string& value,
                                std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Result<AppendResult>>(
      [&](std::function<void(Result<AppendResult>)> cb) {
        log.Append(id, value, Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

Result<AppendResult> AppendBatchSync(Log& log, const std::string& batch_id,
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

Result<LogHead> HeadSync(Log& log, std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Result<LogHead>>(
      [&](std::function<void(Result<LogHead>)> cb) {
        log.Head(Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

Status CompactSync(EtcdLog& log, int64_t revision, std::chrono::milliseconds deadline = 5s) {
  auto result = Await<Status>(
      [&](std::function<void(Status)> cb) {
        log.Compact(revision, Clock::now() + deadline, std::move(cb));
      },
      deadline + 5s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return *result;
}

// The LogBatch events among `events`, and their records in delivery order.
std::size_t BatchCount(const std::vector<LogEvent>& events) {
  std::size_t n = 0;
  for (const auto& e : events) n += std::holds_alternative<LogBatch>(e) ? 1 : 0;
  return n;
}
std::vector<LogRecord> BatchRecords(const std::vector<LogEvent>& events) {
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

EtcdLogOptions Options(std::vector<std::string> endpoints, const std::string& group) {
  EtcdLogOptions options;
  options.endpoints = std::move(endpoints);
  options.prefix = "/k8shmir/" + group + "/log/";
  options.rpc_timeout = 1000ms;
  options.progress_interval = 300ms;
  options.liveness_timeout = 1000ms;
  return options;
}

// Waits until a linearizable read succeeds (the cluster has a leader and answers).
bool WaitReady(const std::vector<std::string>& endpoints, std::chrono::milliseconds timeout = 30s) {
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

// ---- Direct access to etcd, as something other than k8shmir ----------------------------------

std::unique_ptr<etcdserverpb::KV::Stub> RawKv(const std::string& endpoint) {
  return etcdserverpb::KV::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
}

// Puts key = value; returns the revision of the put (0, and a test failure, when it fails).
int64_t RawPut(const std::string& endpoint, const std::string& key, const std::string& value) {
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
RawRange RawKeys(const std::string& endpoint, const std::string& prefix) {
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
    etcd_ = std::make_unique<LocalEtcd>(
        1, std::vector<std::string>{"--max-request-bytes=" + std::to_string(kMaxRequestBytes),
                                    "--experimental-watch-progress-notify-interval=1s"});
    etcd_->StartAll();
    ASSERT_TRUE(WaitReady(etcd_->Endpoints())) << "etcd did not start";
  }

  std::unique_ptr<EtcdLog> MakeLog(const std::string& group = "g") {
    return std::make_unique<EtcdLog>(Options(etcd_->Endpoints(), group));
  }

  std::unique_ptr<LocalEtcd> etcd_;
};

TEST_F(EtcdLogTest, AppendAssignsIncreasingIndicesAndHeadReportsTheLast) {
  auto log = MakeLog();
  auto empty = HeadSync(*log);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(empty->last_index, 0);
  EXPECT_GE(empty->revision, 1);
  EXPECT_EQ(empty->end_index, EndIndexOfRevision(empty->revision));

  std::vector<int64_t> indices;
  for (int i = 0; i < 5; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(r->created);
    indices.push_back(r->first_index);
  }
  // Nothing else writes to this etcd: one revision per append, each a batch of one at position 0.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(indices[i], IndexOf(empty->revision + 1 + i, 0));

  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->last_index, indices[4]);
  EXPECT_EQ(head->revision, RevisionOfIndex(indices[4]));
  EXPECT_EQ(head->end_index, EndIndexOfRevision(head->revision));

  // On etcd: one key "<id>.1" per append, created at the revision of its index.
  auto raw = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(raw.revision, head->revision);
  std::map<std::string, int64_t> expected;
  for (int i = 0; i < 5; ++i) {
    expected[Prefix("g") + BatchKeySuffix("e" + std::to_string(i), 1)] =
        RevisionOfIndex(indices[i]);
  }
  EXPECT_EQ(raw.keys, expected);
}

TEST_F(EtcdLogTest, AppendingTheSameIdTwiceReturnsTheOriginalIndex) {
  auto log = MakeLog();
  auto first = AppendSync(*log, "dup", "v1");
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->created);
  auto second = AppendSync(*log, "dup", "v2");
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->first_index, first->first_index);
  // The failure branch of the transaction writes nothing.
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->revision, RevisionOfIndex(first->first_index));
  EXPECT_EQ(head->last_index, first->first_index);

  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));
  // Periodic notifications (1 s) or nothing more.
  ASSERT_TRUE(c.WaitProgress(EndIndexOfRevision(head->revision)));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id, "dup");
  EXPECT_EQ(records[0].value, "v1");
  EXPECT_EQ(records[0].index, first->first_index);
  EXPECT_FALSE(records[0].malformed);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, SubscriptionFromOneDeliversEverythingInOrder) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 10; ++i) {
    auto r = AppendSync(*log, "old" + std::to_string(i), Value("old" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(10));
  for (int i = 0; i < 5; ++i) {
    auto r = AppendSync(*log, "new" + std::to_string(i), Value("new" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  ASSERT_TRUE(c.WaitRecords(15));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 15u);
  for (int i = 0; i < 15; ++i) {
    std::string id = i < 10 ? "old" + std::to_string(i) : "new" + std::to_string(i - 10);
    EXPECT_EQ(records[i].id, id);
    EXPECT_EQ(records[i].value, Value(id));
    EXPECT_EQ(records[i].index, indices[i]);
    EXPECT_FALSE(records[i].malformed);
  }
  EXPECT_FALSE(c.Closed().has_value());
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, SubscriptionFromTheMiddleDeliversOnlyLaterEntries) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 10; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(indices[6], c.Callback());
  ASSERT_TRUE(c.WaitRecords(4));
  ASSERT_TRUE(c.WaitProgress(indices[9]));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(records[i].index, indices[6 + i]);
    EXPECT_EQ(records[i].id, "e" + std::to_string(6 + i));
  }
}

TEST_F(EtcdLogTest, GroupsAreIsolatedAndOnlyCreateGaps) {
  auto a = MakeLog("a");
  auto b = MakeLog("b");
  Collector ca, cb;
  auto sa = a->Subscribe(1, ca.Callback());
  auto sb = b->Subscribe(1, cb.Callback());
  auto a1 = AppendSync(*a, "x1", "a-1");
  auto b1 = AppendSync(*b, "x1", "b-1");  // same id, other group: another entry
  auto a2 = AppendSync(*a, "x2", "a-2");
  auto b2 = AppendSync(*b, "x2", "b-2");
  auto a3 = AppendSync(*a, "x3", "a-3");
  for (auto* r : {&a1, &b1, &a2, &b2, &a3}) {
    ASSERT_TRUE(r->ok()) << r->error().message;
    EXPECT_TRUE((*r)->created);
  }
  // One revision per append, whichever group: the other group's appends leave gaps.
  const int64_t r1 = RevisionOfIndex(a1->first_index);
  EXPECT_EQ(a1->first_index, IndexOf(r1, 0));
  EXPECT_EQ(b1->first_index, IndexOf(r1 + 1, 0));
  EXPECT_EQ(a2->first_index, IndexOf(r1 + 2, 0));
  EXPECT_EQ(b2->first_index, IndexOf(r1 + 3, 0));
  EXPECT_EQ(a3->first_index, IndexOf(r1 + 4, 0));

  ASSERT_TRUE(ca.WaitRecords(3));
  ASSERT_TRUE(cb.WaitRecords(2));
  ASSERT_TRUE(ca.WaitProgress(a3->first_index));
  ASSERT_TRUE(cb.WaitProgress(a3->first_index));
  auto ra = ca.Records();
  auto rb = cb.Records();
  ASSERT_EQ(ra.size(), 3u);
  ASSERT_EQ(rb.size(), 2u);
  EXPECT_EQ(ra[0].index, a1->first_index);
  EXPECT_EQ(ra[1].index, a2->first_index);
  EXPECT_EQ(ra[2].index, a3->first_index);
  EXPECT_EQ(ra[2].value, "a-3");
  EXPECT_EQ(rb[0].index, b1->first_index);
  EXPECT_EQ(rb[1].index, b2->first_index);
  EXPECT_EQ(rb[1].value, "b-2");

  auto head_a = HeadSync(*a);
  ASSERT_TRUE(head_a.ok());
  EXPECT_EQ(head_a->last_index, a3->first_index);
  auto head_b = HeadSync(*b);
  ASSERT_TRUE(head_b.ok());
  EXPECT_EQ(head_b->last_index, b2->first_index);
  EXPECT_EQ(head_b->revision, RevisionOfIndex(a3->first_index));
  EXPECT_EQ(head_b->end_index, EndIndexOfRevision(head_b->revision));
  EXPECT_TRUE(ca.Violations().empty());
  EXPECT_TRUE(cb.Violations().empty());
}

TEST_F(EtcdLogTest, RequestProgressComesAfterEveryEntryUpToTheHead) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 50; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), std::string(1000, 'a' + i % 26));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  // Asked at once, before the catch-up: the answer must still come after all 50 entries.
  sub->RequestProgress();
  ASSERT_TRUE(c.WaitProgress(indices.back(), 10s));
  EXPECT_EQ(c.Records().size(), 50u);
  c.CheckProgressAfterRecords(indices);

  // On an idle, caught-up subscription the answer is the current revision.
  auto other = MakeLog("other");
  auto foreign = AppendSync(*other, "f", "x");
  ASSERT_TRUE(foreign.ok());
  sub->RequestProgress();
  ASSERT_TRUE(c.WaitProgress(foreign->first_index, 10s));
  EXPECT_EQ(c.Records().size(), 50u);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, RequestProgressOnAnEmptyLogAndFromTheFuture) {
  auto log = MakeLog("empty");
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  Collector c1, c2;
  auto s1 = log->Subscribe(1, c1.Callback());
  auto s2 = log->Subscribe(IndexOf(head->revision + 100, 0), c2.Callback());
  s1->RequestProgress();
  s2->RequestProgress();
  ASSERT_TRUE(c1.WaitProgress(EndIndexOfRevision(head->revision), 5s));
  ASSERT_TRUE(c2.WaitProgress(EndIndexOfRevision(head->revision), 5s));
  EXPECT_TRUE(c1.Records().empty());
  EXPECT_TRUE(c2.Records().empty());
  EXPECT_TRUE(c1.Violations().empty());
  EXPECT_TRUE(c2.Violations().empty());
}

TEST_F(EtcdLogTest, PeriodicProgressNotificationsArrive) {
  // etcd runs with --experimental-watch-progress-notify-interval=1s.
  auto log = MakeLog();
  auto r = AppendSync(*log, "only", "v");
  ASSERT_TRUE(r.ok());
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));
  ASSERT_TRUE(c.WaitProgress(r->first_index, 5s));
  c.CheckProgressAfterRecords({r->first_index});
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, FragmentedWatchResponsesAreDeliveredAsTheyCome) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  // etcd 3.4 splits a watch response above max-request-bytes + 512 KiB (its allowance for gRPC
  // overhead), here 640 KiB: 12 x 100 kB needs at least two fragments.
  constexpr int kEntries = 12;
  constexpr size_t kValueBytes = 100000;
  for (int i = 0; i < kEntries; ++i) {
    auto r = AppendSync(*log, "big" + std::to_string(i), std::string(kValueBytes, 'A' + i));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(indices[0], c.Callback());
  ASSERT_TRUE(c.WaitRecords(kEntries));
  // etcd catches the new watcher up with one response, which it must split into fragments; they
  // are delivered as they come (at least two batches), so that no subscriber has to hold a whole
  // catch-up response (up to 1,000 revisions) before it can pause.
  const std::vector<LogRecord> records = BatchRecords(c.Events());
  EXPECT_GE(BatchCount(c.Events()), 2u);
  ASSERT_EQ(records.size(), static_cast<size_t>(kEntries));
  for (int i = 0; i < kEntries; ++i) {
    EXPECT_EQ(records[i].index, indices[i]);
    EXPECT_EQ(records[i].value, std::string(kValueBytes, 'A' + i));
  }
}

TEST_F(EtcdLogTest, AnOverwrittenEntryIsNotDeliveredAgain) {
  auto log = MakeLog();
  auto a = AppendSync(*log, "a", "original");
  ASSERT_TRUE(a.ok());
  // Something other than k8shmir overwrites the entry's batch key.
  int64_t overwritten_at =
      RawPut(etcd_->Endpoint(0), Prefix("g") + BatchKeySuffix("a", 1), "overwritten");
  ASSERT_EQ(overwritten_at, RevisionOfIndex(a->first_index) + 1);
  auto b = AppendSync(*log, "b", "vb");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->first_index, IndexOf(overwritten_at + 1, 0));
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(2));
  ASSERT_TRUE(c.WaitProgress(b->first_index));
  auto records = c.Records();
  ASSERT_EQ(records.size(), 2u);
  // The watch replays both revisions of "a": the creation is delivered, with its original
  // value; the overwrite is not.
  EXPECT_EQ(records[0].id, "a");
  EXPECT_EQ(records[0].index, a->first_index);
  EXPECT_EQ(records[0].value, "original");
  EXPECT_FALSE(records[0].malformed);
  EXPECT_EQ(records[1].id, "b");
  EXPECT_EQ(records[1].index, b->first_index);
  EXPECT_FALSE(records[1].malformed);
  // Appending "a" again still finds the (overwritten) batch: created=false, the original index.
  auto again = AppendSync(*log, "a", "original");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->first_index, a->first_index);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, CompactedHistoryClosesTheSubscription) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 5; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok());
    indices.push_back(r->first_index);
  }
  // Compaction works on revisions.
  const int64_t compact_revision = RevisionOfIndex(indices[3]);
  auto compacted = CompactSync(*log, compact_revision);
  ASSERT_TRUE(compacted.ok()) << compacted.error().message;

  Collector c;
  auto sub = log->Subscribe(indices[1], c.Callback());
  ASSERT_TRUE(c.WaitClosed(5s));
  auto closed = c.Closed();
  EXPECT_EQ(closed->error.code, ErrorCode::kCompacted) << closed->error.message;
  EXPECT_EQ(closed->compact_revision, compact_revision);
  EXPECT_TRUE(c.Records().empty());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(c.Events().size(), 1u);
  EXPECT_TRUE(c.Violations().empty());

  // After the compaction point the history is still there.
  Collector later;
  auto sub2 = log->Subscribe(IndexOf(compact_revision + 1, 0), later.Callback());
  ASSERT_TRUE(later.WaitRecords(1));
  EXPECT_EQ(later.Records()[0].index, indices[4]);
  // So is the compaction revision itself: etcd keeps it.
  Collector at;
  auto sub3 = log->Subscribe(indices[3], at.Callback());
  ASSERT_TRUE(at.WaitRecords(2));
  ASSERT_TRUE(at.WaitProgress(indices[4]));
  auto records = at.Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].index, indices[3]);
  EXPECT_EQ(records[0].id, "e3");
  EXPECT_EQ(records[1].index, indices[4]);
  EXPECT_FALSE(at.Closed().has_value());
  EXPECT_TRUE(later.Violations().empty());
  EXPECT_TRUE(at.Violations().empty());

  auto again = CompactSync(*log, RevisionOfIndex(indices[2]));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kCompacted) << again.error().message;
  auto future = CompactSync(*log, RevisionOfIndex(indices[4]) + 1000);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.error().code, ErrorCode::kInvalid) << future.error().message;
}

TEST_F(EtcdLogTest, KilledEtcdClosesSubscriptionsRefusesAppendsAndRecovers) {
  auto log = MakeLog();
  std::vector<int64_t> indices;
  for (int i = 0; i < 3; ++i) {
    auto r = AppendSync(*log, "e" + std::to_string(i), Value("e" + std::to_string(i)));
    ASSERT_TRUE(r.ok());
    indices.push_back(r->first_index);
  }
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(3));

  auto killed_at = Clock::now();
  etcd_->Kill(0);
  // liveness_timeout (1 s) + progress_interval (0.3 s) + slack; a killed local process is
  // usually noticed at once through the closed connection.
  ASSERT_TRUE(c.WaitClosed(3s));
  EXPECT_LT(Clock::now() - killed_at, 3s);
  EXPECT_EQ(c.Closed()->error.code, ErrorCode::kUnavailable) << c.Closed()->error.message;

  // Nothing can connect: certainly not committed, and answered by the deadline.
  auto started = Clock::now();
  auto down = AppendSync(*log, "during-outage", "x", 1500ms);
  auto took = Clock::now() - started;
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, ErrorCode::kUnavailable) << down.error().message;
  EXPECT_LT(took, 2s);
  auto head_down = HeadSync(*log, 500ms);
  ASSERT_FALSE(head_down.ok());
  EXPECT_EQ(head_down.error().code, ErrorCode::kUnavailable);

  etcd_->Start(0);
  // The same log object recovers (reconnect backoff is capped at 1 s).
  Result<AppendResult> after = Error{ErrorCode::kUnavailable, "not tried"};
  auto until = Clock::now() + 30s;
  while (Clock::now() < until) {
    after = AppendSync(*log, "after", Value("after"), 1000ms);
    if (after.ok()) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_GT(after->first_index, indices.back());

  Collector c2;
  auto sub2 = log->Subscribe(indices.back() + 1, c2.Callback());
  ASSERT_TRUE(c2.WaitRecords(1));
  ASSERT_TRUE(c2.WaitProgress(after->first_index));
  auto records = c2.Records();
  // "during-outage" was certainly not committed.
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id, "after");
  EXPECT_EQ(records[0].index, after->first_index);
  EXPECT_TRUE(RawKeys(etcd_->Endpoint(0), Prefix("g"))
                  .keys.count(Prefix("g") + BatchKeySuffix("during-outage", 1)) == 0);
  EXPECT_TRUE(c.Violations().empty());
  EXPECT_TRUE(c2.Violations().empty());
}

TEST_F(EtcdLogTest, UnresponsiveMemberIsDetectedAndAmbiguousAppendsCanBeRetried) {
  auto log = MakeLog();
  auto first = AppendSync(*log, "first", "v");
  ASSERT_TRUE(first.ok());
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));

  // A stopped process keeps its connections open: only the liveness check can tell.
  auto paused_at = Clock::now();
  etcd_->Pause(0);
  ASSERT_TRUE(c.WaitClosed(4s));
  auto detected = Clock::now() - paused_at;
  // Not before a probe went unanswered for liveness_timeout (the last probe may predate the
  // pause by up to progress_interval).
  EXPECT_GE(detected, 650ms);
  EXPECT_LT(detected, 2500ms);
  auto closed = c.Closed();
  EXPECT_EQ(closed->error.code, ErrorCode::kUnavailable);
  EXPECT_EQ(closed->error.message, "watch stream unresponsive");

  // The request reaches the stopped member, which may process it when it resumes: unknown.
  auto ambiguous = AppendSync(*log, "maybe", "m", 1000ms);
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_EQ(ambiguous.error().code, ErrorCode::kUnknown) << ambiguous.error().message;

  etcd_->Resume(0);
  // Retrying the same id tells the truth either way, with one index.
  auto retried = AppendSync(*log, "maybe", "m", 5000ms);
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  auto again = AppendSync(*log, "maybe", "m", 5000ms);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->first_index, retried->first_index);

  Collector c2;
  auto sub2 = log->Subscribe(1, c2.Callback());
  ASSERT_TRUE(c2.WaitRecords(2));
  auto records = c2.Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].id, "maybe");
  EXPECT_EQ(records[1].index, retried->first_index);
}

TEST_F(EtcdLogTest, CancelStopsDeliveryWithoutLogClosed) {
  auto log = MakeLog();
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  auto r = AppendSync(*log, "a", "v");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(c.WaitRecords(1));
  sub->Cancel();
  sub->RequestProgress();  // harmless after Cancel
  auto before = c.Events().size();
  ASSERT_TRUE(AppendSync(*log, "b", "v").ok());
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(c.Events().size(), before);
  EXPECT_FALSE(c.Closed().has_value());
  sub.reset();
  // Destroying a live subscription's handle cancels it too.
  Collector c2;
  log->Subscribe(1, c2.Callback());
  std::this_thread::sleep_for(300ms);
  auto n = c2.Events().size();
  ASSERT_TRUE(AppendSync(*log, "c", "v").ok());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(c2.Events().size(), n);
}

TEST_F(EtcdLogTest, DestroyingTheLogWithLiveSubscriptionsAndCallsIsClean) {
  Collector c;
  std::unique_ptr<Subscription> sub;
  auto counter = std::make_shared<std::atomic<int>>(0);
  {
    auto log = MakeLog();
    sub = log->Subscribe(1, c.Callback());
    for (int i = 0; i < 20; ++i) {
      log->Append("x" + std::to_string(i), "v", Clock::now() + 10s,
                  [counter](Result<AppendResult>) { ++*counter; });
    }
  }
  EXPECT_EQ(counter->load(), 20);
  EXPECT_FALSE(c.Closed().has_value());
  sub->RequestProgress();
  sub.reset();
  EXPECT_TRUE(c.Violations().empty());
}

// ---- Batches ----------------------------------------------------------------------------------

// Entries "<stem>-0" ... "<stem>-<n-1>", valued Value(id) or, with value_bytes, that many bytes.
std::vector<LogEntry> Entries(const std::string& stem, int n, size_t value_bytes = 0) {
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

void ExpectRecords(const std::vector<LogRecord>& got, const std::vector<ExpectedRecord>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].index, want[i].index) << "record " << i;
    EXPECT_EQ(got[i].id, want[i].id) << "record " << i;
    EXPECT_EQ(got[i].value, want[i].value) << "record " << i;
    EXPECT_EQ(got[i].malformed, want[i].malformed) << "record " << i;
  }
}

TEST_F(EtcdLogTest, AppendBatchPutsItsEntriesAtConsecutiveIndicesOfOneRevision) {
  auto log = MakeLog();
  auto before = HeadSync(*log);
  ASSERT_TRUE(before.ok()) << before.error().message;
  auto r = AppendBatchSync(*log, "batch", Entries("b", 5));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->created);
  // Nothing else writes to this etcd: the batch's transaction is the next revision.
  const int64_t revision = before->revision + 1;
  EXPECT_EQ(r->first_index, IndexOf(revision, 0));

  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->revision, revision);
  EXPECT_EQ(head->last_index, r->first_index + 4);
  EXPECT_EQ(head->end_index, EndIndexOfRevision(head->revision));

  // One key "<prefix><batch id>.<count>" for the whole batch.
  auto raw = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(raw.revision, revision);
  EXPECT_EQ(raw.keys, (std::map<std::string, int64_t>{{"/k8shmir/g/log/batch.5", revision}}));

  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(5));
  ASSERT_TRUE(c.WaitProgress(head->last_index));
  std::vector<ExpectedRecord> expected;
  for (int i = 0; i < 5; ++i) {
    std::string id = "b-" + std::to_string(i);
    expected.push_back({r->first_index + i, id, Value(id)});
  }
  ExpectRecords(c.Records(), expected);
  EXPECT_FALSE(c.Closed().has_value());
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, RetryingABatchReturnsTheOriginalAndAppendsItOnce) {
  auto log = MakeLog();
  auto first = AppendBatchSync(*log, "retry", Entries("r", 5));
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->created);
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->revision, RevisionOfIndex(first->first_index));

  auto second = AppendBatchSync(*log, "retry", Entries("r", 5));
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->first_index, first->first_index);
  // The failure branch of the transaction writes nothing.
  auto head2 = HeadSync(*log);
  ASSERT_TRUE(head2.ok());
  EXPECT_EQ(head2->revision, head->revision);
  EXPECT_EQ(head2->last_index, first->first_index + 4);
  auto after = AppendSync(*log, "after", Value("after"));
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->first_index, IndexOf(head->revision + 1, 0));

  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(6));
  ASSERT_TRUE(c.WaitProgress(after->first_index));
  std::vector<ExpectedRecord> expected;
  for (int i = 0; i < 5; ++i) {
    std::string id = "r-" + std::to_string(i);
    expected.push_back({first->first_index + i, id, Value(id)});
  }
  expected.push_back({after->first_index, "after", Value("after")});
  ExpectRecords(c.Records(), expected);
  EXPECT_EQ(RawKeys(etcd_->Endpoint(0), Prefix("g")).keys.size(), 2u);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, SubscriptionFromInsideABatchDeliversItsRestThenLaterAppends) {
  auto log = MakeLog();
  auto before = AppendSync(*log, "before", Value("before"));
  ASSERT_TRUE(before.ok()) << before.error().message;
  auto batch = AppendBatchSync(*log, "mid", Entries("m", 5));
  ASSERT_TRUE(batch.ok()) << batch.error().message;
  const int64_t revision = RevisionOfIndex(batch->first_index);
  ASSERT_EQ(batch->first_index, IndexOf(RevisionOfIndex(before->first_index) + 1, 0));

  Collector c;      // from entry 2 of the batch
  Collector last;   // from its last entry
  Collector after;  // from just past it, within its revision (what a replica at end_index asks)
  auto sub = log->Subscribe(batch->first_index + 2, c.Callback());
  auto sub_last = log->Subscribe(batch->first_index + 4, last.Callback());
  auto sub_after = log->Subscribe(batch->first_index + 5, after.Callback());
  ASSERT_TRUE(c.WaitRecords(3));
  ASSERT_TRUE(c.WaitProgress(batch->first_index + 4));
  ExpectRecords(c.Records(), {{batch->first_index + 2, "m-2", Value("m-2")},
                              {batch->first_index + 3, "m-3", Value("m-3")},
                              {batch->first_index + 4, "m-4", Value("m-4")}});

  auto later = AppendSync(*log, "later", Value("later"));
  ASSERT_TRUE(later.ok()) << later.error().message;
  EXPECT_EQ(later->first_index, IndexOf(revision + 1, 0));
  auto later_batch = AppendBatchSync(*log, "later-batch", Entries("l", 2));
  ASSERT_TRUE(later_batch.ok()) << later_batch.error().message;
  EXPECT_EQ(later_batch->first_index, IndexOf(revision + 2, 0));

  std::vector<ExpectedRecord> tail = {{later->first_index, "later", Value("later")},
                                      {later_batch->first_index, "l-0", Value("l-0")},
                                      {later_batch->first_index + 1, "l-1", Value("l-1")}};
  ASSERT_TRUE(c.WaitRecords(6));
  ASSERT_TRUE(c.WaitProgress(later_batch->first_index + 1));
  std::vector<ExpectedRecord> expected = {{batch->first_index + 2, "m-2", Value("m-2")},
                                          {batch->first_index + 3, "m-3", Value("m-3")},
                                          {batch->first_index + 4, "m-4", Value("m-4")}};
  expected.insert(expected.end(), tail.begin(), tail.end());
  ExpectRecords(c.Records(), expected);

  ASSERT_TRUE(last.WaitRecords(4));
  ASSERT_TRUE(last.WaitProgress(later_batch->first_index + 1));
  std::vector<ExpectedRecord> expected_last = {{batch->first_index + 4, "m-4", Value("m-4")}};
  expected_last.insert(expected_last.end(), tail.begin(), tail.end());
  ExpectRecords(last.Records(), expected_last);

  ASSERT_TRUE(after.WaitRecords(3));
  ASSERT_TRUE(after.WaitProgress(later_batch->first_index + 1));
  ExpectRecords(after.Records(), tail);

  for (auto* collector : {&c, &last, &after}) {
    EXPECT_FALSE(collector->Closed().has_value());
    EXPECT_TRUE(collector->Violations().empty());
  }
}

TEST_F(EtcdLogTest, MixedAppendsAndBatchesLookTheSameToEverySubscription) {
  auto log = MakeLog();
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  int64_t revision = head->revision;
  std::vector<ExpectedRecord> expected;
  // Nothing else writes to this etcd: each append takes the next revision.
  auto single = [&](const std::string& id) {
    auto r = AppendSync(*log, id, Value(id));
    ASSERT_TRUE(r.ok()) << id << ": " << r.error().message;
    EXPECT_TRUE(r->created);
    EXPECT_EQ(r->first_index, IndexOf(++revision, 0)) << id;
    expected.push_back({r->first_index, id, Value(id)});
  };
  auto batch = [&](const std::string& batch_id, int n) {
    auto r = AppendBatchSync(*log, batch_id, Entries(batch_id, n));
    ASSERT_TRUE(r.ok()) << batch_id << ": " << r.error().message;
    EXPECT_TRUE(r->created);
    EXPECT_EQ(r->first_index, IndexOf(++revision, 0)) << batch_id;
    for (int i = 0; i < n; ++i) {
      std::string id = batch_id + "-" + std::to_string(i);
      expected.push_back({r->first_index + i, id, Value(id)});
    }
  };

  Collector early;  // before anything was appended
  auto s1 = log->Subscribe(1, early.Callback());
  single("s0");
  batch("b1", 3);
  single("s1");
  batch("b2", 1);
  Collector middle;  // halfway: catches up, then follows
  auto s2 = log->Subscribe(1, middle.Callback());
  batch("b3", 4);
  single("s2");
  batch("b4", 2);
  single("s3");
  Collector late;  // after everything
  auto s3 = log->Subscribe(1, late.Callback());

  ASSERT_EQ(expected.size(), 14u);
  for (size_t i = 1; i < expected.size(); ++i) {
    EXPECT_GT(expected[i].index, expected[i - 1].index) << "record " << i;
  }
  for (auto* c : {&early, &middle, &late}) {
    ASSERT_TRUE(c->WaitRecords(expected.size()));
    ASSERT_TRUE(c->WaitProgress(expected.back().index));
    ExpectRecords(c->Records(), expected);
    EXPECT_FALSE(c->Closed().has_value());
    EXPECT_TRUE(c->Violations().empty());
  }
  auto end = HeadSync(*log);
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(end->revision, revision);
  EXPECT_EQ(end->last_index, expected.back().index);
}

TEST_F(EtcdLogTest, AFullBatchUsesEveryIndexOfItsRevision) {
  auto log = MakeLog();
  auto before = HeadSync(*log);
  ASSERT_TRUE(before.ok());
  auto full = AppendBatchSync(*log, "full", Entries("f", static_cast<int>(kMaxBatchEntries)));
  ASSERT_TRUE(full.ok()) << full.error().message;
  const int64_t revision = before->revision + 1;
  EXPECT_EQ(full->first_index, IndexOf(revision, 0));
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->last_index, full->first_index + 255);
  EXPECT_EQ(head->last_index, EndIndexOfRevision(revision));
  EXPECT_EQ(head->end_index, EndIndexOfRevision(revision));
  auto next = AppendSync(*log, "next", Value("next"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->first_index, EndIndexOfRevision(revision) + 1);

  Collector c;
  auto sub = log->Subscribe(full->first_index, c.Callback());
  ASSERT_TRUE(c.WaitRecords(257));
  ASSERT_TRUE(c.WaitProgress(next->first_index));
  std::vector<ExpectedRecord> expected;
  for (int i = 0; i < 256; ++i) {
    std::string id = "f-" + std::to_string(i);
    expected.push_back({full->first_index + i, id, Value(id)});
  }
  expected.push_back({next->first_index, "next", Value("next")});
  ExpectRecords(c.Records(), expected);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, InvalidBatchesAreRefusedAndWriteNothing) {
  auto log = MakeLog();
  ASSERT_TRUE(AppendSync(*log, "existing", Value("existing")).ok());
  auto before = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  ASSERT_EQ(before.keys.size(), 1u);

  auto no_id = Entries("x", 3);
  no_id[1].id.clear();
  struct Case {
    std::string name;
    std::string batch_id;
    std::vector<LogEntry> entries;
  };
  std::vector<Case> cases;
  cases.push_back({"no entries", "empty", {}});
  cases.push_back({"257 entries", "too-many", Entries("t", 257)});
  cases.push_back({"an entry without id", "no-id", no_id});
  cases.push_back({"no batch id", "", Entries("y", 2)});
  cases.push_back({"a single entry without id", "single-no-id", {LogEntry{"", "v"}}});
  for (auto& c : cases) {
    auto r = AppendBatchSync(*log, c.batch_id, std::move(c.entries));
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid) << c.name << ": " << r.error().message;
  }
  auto single = AppendSync(*log, "", "v");
  ASSERT_FALSE(single.ok());
  EXPECT_EQ(single.error().code, ErrorCode::kInvalid) << single.error().message;

  auto after = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(after.revision, before.revision);
  EXPECT_EQ(after.keys, before.keys);
}

TEST_F(EtcdLogTest, ABatchTooLargeForEtcdIsInvalid) {
  auto log = MakeLog();
  ASSERT_TRUE(AppendSync(*log, "existing", Value("existing")).ok());
  auto before = RawKeys(etcd_->Endpoint(0), Prefix("g"));

  // 200 kB: above --max-request-bytes (128 KiB), below what etcd's gRPC server reads at all
  // (max-request-bytes + 512 KiB): etcd's own check refuses it before proposing.
  auto too_large = AppendBatchSync(*log, "too-large", Entries("l", 2, 100000));
  ASSERT_FALSE(too_large.ok());
  EXPECT_EQ(too_large.error().code, ErrorCode::kInvalid) << too_large.error().message;
  EXPECT_NE(too_large.error().message.find("etcdserver: request is too large"), std::string::npos)
      << too_large.error().message;

  // 2 MiB: etcd's gRPC server refuses to read the request.
  auto huge = AppendBatchSync(*log, "huge", Entries("h", 16, 128 * 1024));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, ErrorCode::kInvalid) << huge.error().message;
  EXPECT_NE(huge.error().message.find("grpc: received message larger than max"), std::string::npos)
      << huge.error().message;

  auto after = RawKeys(etcd_->Endpoint(0), Prefix("g"));
  EXPECT_EQ(after.revision, before.revision);
  EXPECT_EQ(after.keys, before.keys);

  // The limit is on the batch as a whole: the same entries fit one at a time.
  auto one = AppendSync(*log, "l-0", std::string(100000, 'a'));
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->first_index, IndexOf(before.revision + 1, 0));
}

TEST_F(EtcdLogTest, FragmentedWatchResponsesOfBatchesAreDeliveredAsTheyCome) {
  auto log = MakeLog();
  // As FragmentedWatchResponsesAreDeliveredAsTheyCome, with batches of 2 x 50 kB: 12 keys of 100 kB
  // need at least two fragments of etcd's catch-up response.
  constexpr int kBatches = 12;
  constexpr size_t kValueBytes = 50000;
  std::vector<ExpectedRecord> expected;
  for (int b = 0; b < kBatches; ++b) {
    std::string batch_id = "big" + std::to_string(b);
    auto entries = Entries(batch_id, 2, kValueBytes);
    auto r = AppendBatchSync(*log, batch_id, entries);
    ASSERT_TRUE(r.ok()) << r.error().message;
    for (int i = 0; i < 2; ++i) {
      expected.push_back({r->first_index + i, entries[i].id, entries[i].value});
    }
  }
  // From the second entry of the first batch.
  expected.erase(expected.begin());
  Collector c;
  auto sub = log->Subscribe(expected.front().index, c.Callback());
  ASSERT_TRUE(c.WaitRecords(expected.size()));
  EXPECT_GE(BatchCount(c.Events()), 2u);
  ExpectRecords(BatchRecords(c.Events()), expected);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogTest, ForeignKeysBecomeMalformedRecords) {
  auto log = MakeLog();
  auto a = AppendSync(*log, "a", "va");
  ASSERT_TRUE(a.ok()) << a.error().message;
  Collector live;  // follows the foreign writes as they happen
  auto sub = log->Subscribe(1, live.Callback());
  ASSERT_TRUE(live.WaitRecords(1));

  // Written by something other than k8shmir: a key that names no batch, a batch whose key
  // announces 3 entries but holds 1, and an empty value (no entries) under a key announcing 2.
  const std::string endpoint = etcd_->Endpoint(0);
  int64_t plain = RawPut(endpoint, Prefix("g") + "plain-key", "not a batch");
  int64_t liar = RawPut(endpoint, Prefix("g") + "liar.3", *EncodeBatch({{"only", "one"}}));
  int64_t empty = RawPut(endpoint, Prefix("g") + "empty.2", "");
  EXPECT_EQ(plain, RevisionOfIndex(a->first_index) + 1);
  EXPECT_EQ(liar, plain + 1);
  EXPECT_EQ(empty, liar + 1);

  // Each is one malformed record at the index its key announces last; the head agrees.
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->revision, empty);
  EXPECT_EQ(head->last_index, IndexOf(empty, 1));
  // A progress request is answered once the malformed record at the head was delivered.
  sub->RequestProgress();
  ASSERT_TRUE(live.WaitProgress(head->last_index));

  auto b = AppendSync(*log, "b", "vb");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->first_index, IndexOf(empty + 1, 0));

  std::vector<ExpectedRecord> expected = {{a->first_index, "a", "va"},
                                          {IndexOf(plain, 0), "plain-key", "", true},
                                          {IndexOf(liar, 2), "liar.3", "", true},
                                          {IndexOf(empty, 1), "empty.2", "", true},
                                          {b->first_index, "b", "vb"}};
  Collector replay;  // reads them back from history
  auto sub2 = log->Subscribe(1, replay.Callback());
  for (auto* c : {&live, &replay}) {
    ASSERT_TRUE(c->WaitRecords(expected.size()));
    ASSERT_TRUE(c->WaitProgress(b->first_index));
    ExpectRecords(c->Records(), expected);
    EXPECT_FALSE(c->Closed().has_value());
    EXPECT_TRUE(c->Violations().empty());
  }
}

// ---- Three members ----------------------------------------------------------------------------

TEST(EtcdLogClusterTest, FailsOverWhenMembersDie) {
  LocalEtcd etcd(3);
  etcd.StartAll();
  ASSERT_TRUE(WaitReady(etcd.Endpoints())) << "cluster did not start";

  // A dead endpoint first: it must not matter.
  auto endpoints = etcd.Endpoints();
  auto closed_port = FreePorts(1)[0];
  endpoints.insert(endpoints.begin(), "127.0.0.1:" + std::to_string(closed_port));
  EtcdLog log(Options(endpoints, "g"));

  std::vector<std::string> ids;
  std::vector<int64_t> indices;
  auto append = [&](const std::string& id) {
    auto r = AppendSync(log, id, Value(id), 10s);
    ASSERT_TRUE(r.ok()) << id << ": " << r.error().message;
    ids.push_back(id);
    indices.push_back(r->first_index);
  };
  for (int i = 0; i < 3; ++i) append("before" + std::to_string(i));

  Collector c;
  auto sub = log.Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitRecords(3));

  // The log prefers the first member that works, m0 here: kill it (it may be the leader).
  etcd.Kill(0);
  for (int i = 0; i < 3; ++i) append("after-m0" + std::to_string(i));
  auto head = HeadSync(log, 10s);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->last_index, indices.back());

  // Resubscribing from the last delivered index + 1 yields the rest, whichever member serves.
  std::vector<LogRecord> all = c.Records();
  if (c.Closed().has_value()) {
    EXPECT_EQ(c.Closed()->error.code, ErrorCode::kUnavailable);
  } else {
    ASSERT_TRUE(c.WaitRecords(6));
    all = c.Records();
  }
  if (all.size() < 6) {
    Collector c2;
    auto sub2 = log.Subscribe(all.back().index + 1, c2.Callback());
    ASSERT_TRUE(c2.WaitRecords(6 - all.size()));
    for (auto& r : c2.Records()) all.push_back(r);
  }
  ASSERT_EQ(all.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(all[i].id, ids[i]);
    EXPECT_EQ(all[i].index, indices[i]);
  }

  // Without a quorum nothing commits; the answer comes by the deadline.
  etcd.Kill(1);
  auto started = Clock::now();
  auto no_quorum = AppendSync(log, "no-quorum", "x", 2000ms);
  ASSERT_FALSE(no_quorum.ok());
  EXPECT_TRUE(no_quorum.error().code == ErrorCode::kUnavailable ||
              no_quorum.error().code == ErrorCode::kUnknown)
      << no_quorum.error().message;
  EXPECT_LT(Clock::now() - started, 2500ms);

  // Back to a quorum: it works again, and the retried id gives one answer.
  etcd.Start(0);
  Result<AppendResult> retried = Error{ErrorCode::kUnavailable, "not tried"};
  auto until = Clock::now() + 30s;
  while (Clock::now() < until) {
    retried = AppendSync(log, "no-quorum", "x", 2000ms);
    if (retried.ok()) break;
  }
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  EXPECT_GT(retried->first_index, indices.back());
}

// The endpoint tried first is the one the options name: with member 0 hung (connections open,
// nothing answers) and attempts longer than the deadline, a log that starts with member 0 cannot
// append in time; one that starts with member 1 appends and watches as if nothing happened.
TEST(EtcdLogClusterTest, TheFirstEndpointIsTheOneTheOptionsName) {
  LocalEtcd etcd(3);
  etcd.StartAll();
  // Member 0 itself must answer: a log whose first endpoint is not up yet moves on at once.
  ASSERT_TRUE(WaitReady({etcd.Endpoints()[0]})) << "member 0 did not start";
  EtcdLogOptions starts_at_1 = Options(etcd.Endpoints(), "g");
  starts_at_1.rpc_timeout = 20s;
  starts_at_1.first_endpoint = 4;  // modulo 3: member 1
  EtcdLogOptions starts_at_0 = starts_at_1;
  starts_at_0.first_endpoint = 0;
  EtcdLog log(starts_at_1);
  EtcdLog control(starts_at_0);
  // Both connected and used once: each now prefers the endpoint that answered, its first.
  ASSERT_TRUE(AppendSync(log, "warm-1", Value("warm-1"), 10s).ok());
  ASSERT_TRUE(AppendSync(control, "warm-0", Value("warm-0"), 10s).ok());

  etcd.Pause(0);
  // Member 0 may have been the leader: the others elect a new one within about a second.
  auto r = AppendSync(log, "via-1", Value("via-1"), 10s);
  auto stalled = AppendSync(control, "via-0", Value("via-0"), 2s);
  etcd.Resume(0);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(stalled.ok());
  EXPECT_TRUE(stalled.error().code == ErrorCode::kUnknown ||
              stalled.error().code == ErrorCode::kUnavailable)
      << stalled.error().message;

  Collector c;
  auto sub = log.Subscribe(r->first_index, c.Callback());
  ASSERT_TRUE(c.WaitRecords(1));
  EXPECT_EQ(c.Records()[0].id, "via-1");
  EXPECT_EQ(c.Records()[0].index, r->first_index);
}

}  // namespace
}  // namespace k8shmir
