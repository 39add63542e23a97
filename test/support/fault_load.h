// Load and verification for the fault suite (test/fault): client threads that send uniquely
// identifiable, non-commutative operations to chosen proxies while a test injects faults, and a
// final check that every replica applied exactly the committed history.
//
// Every operation a client sends is unique: APPEND "<tag>c<client>-<k>" or an integer operation
// (INC, MUL, SET, DEC) whose operand is unique to (client, k). A journal entry therefore names the
// request it came from, and the check can hold every answer to the history:
//   - 2xx (outcome committed): in the journal exactly once, at the K8shmir-Log-Index it was
//     answered with, with the response the app gives at that position of the history;
//   - committed errors (502/504 committed): in the journal exactly once (at their index if given);
//   - not-committed: absent;
//   - unknown (504 unknown, or no answer at all): at most once;
// and every replica holds the same journal, equal to replaying it with the reference model, with
// no ordering violation, and as many entries as the log holds keys.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/counter_model.h"
#include "support/http_client.h"
#include "support/replicated_cluster.h"

namespace k8shmir::testing {

// The K8shmir-Log-Index of a proxy response, -1 when absent or not a positive integer.
int64_t ResponseLogIndex(const HttpResult& r);

// The headers `op` is sent with: Content-Type for POST bodies.
Headers OpHeaders(const CounterOp& op);

// Sends `op` on `conn` (with OpHeaders).
HttpResult SendOp(HttpConnection& conn, const CounterOp& op, std::chrono::milliseconds timeout);

// Sends `op` through the proxy on `port` and checks the answer against the model, which it
// advances: an index above the model's, committed, the model's status and body. Returns the
// entry's log index, or -1 after a failed assertion.
int64_t SendAndCheck(uint16_t port, const CounterOp& op, CounterModel& model);

// One request and its answer.
struct OpRecord {
  int client = 0;  // unique within the History
  int target = 0;  // replica index the request was sent to
  int seq = 0;     // position in the client's sequence
  CounterOp op;
  HttpResult res;
  std::chrono::steady_clock::time_point sent;
  std::chrono::steady_clock::time_point answered;
};

// Everything sent during a test, from every Load and every marker. Thread-safe.
class History {
 public:
  void Add(OpRecord record);
  std::vector<OpRecord> Records() const;
  // A client number never handed out before in this history.
  int NewClient() { return next_client_++; }
  // "12 ops: 9 2xx, 1 committed error, 1 not-committed, 1 unknown" over the records that match.
  std::string Summary() const;

 private:
  mutable std::mutex mu_;
  std::vector<OpRecord> records_;
  std::atomic<int> next_client_{0};
};

// One load client's count of 2xx answers, for WaitClientsProgress.
struct ClientProgress {
  int id = 0;
  int target = 0;
  const std::atomic<int64_t>* ok = nullptr;
};
// Waits until every client got at least `n` more 2xx answers than when called, at most
// `timeout`. False on timeout, after printing each client's progress under `who`.
bool WaitClientsProgress(const std::vector<ClientProgress>& clients, int n,
                         std::chrono::milliseconds timeout, const std::string& who);

// Client threads, each sending its own sequence of unique operations to one proxy over a
// keep-alive connection, one request at a time, until Stop() or `max_ops_per_client`.
class Load {
 public:
  struct Options {
    std::chrono::milliseconds client_timeout{30000};  // per request, far above the proxy's
    std::chrono::milliseconds pause{5};               // between two requests of one client
    std::chrono::milliseconds pause_after_error{50};  // after a refusal or a transport error
    int max_ops_per_client = 3000;                    // the load is bounded even if never stopped
    // Above 0: every operation is a journal append of this many bytes (a large body), still
    // unique per (client, k). 0: the mix of UniqueOp.
    std::size_t append_bytes = 0;
  };

  // One client per entry of `targets` (replica indices), sending to cluster.ProxyPort(target).
  // Threads start at once.
  Load(ReplicatedCluster& cluster, History& history, std::vector<int> targets, Options options);
  Load(ReplicatedCluster& cluster, History& history, std::vector<int> targets)
      : Load(cluster, history, std::move(targets), Options{}) {}
  ~Load();  // Stop()
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  // Asks every client to stop after its current request, and joins them.
  void Stop();

  // 2xx answers received so far by each client / in total.
  int64_t Ok(size_t client) const;
  int64_t TotalOk() const;
  // Requests answered (any way) so far in total.
  int64_t TotalDone() const;

  // Waits until every client (or only those sending to one of `targets`, when not empty) got at
  // least `n` more 2xx answers than when called, at most `timeout`. False on timeout (and prints
  // each client's progress).
  bool WaitProgress(int n, std::chrono::milliseconds timeout, std::vector<int> targets = {});

 private:
  struct Client {
    int id = 0;
    int target = 0;
    std::atomic<int64_t> ok{0};
    std::atomic<int64_t> done{0};
    std::thread thread;
  };
  void Run(Client& c);

  ReplicatedCluster& cluster_;
  History& history_;
  Options options_;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Client>> clients_;
};

// Retention in a fault scenario: kSmall snapshots every 50 entries and trims behind a tail of
// 100 (entries younger than 6 s kept; the request timeout is 5 s), so that every fault also
// meets snapshots and trims; kOff for the scenarios about the log itself (compaction without
// trims, a full log) or about memory bounds with large entries.
enum class FaultRetention { kSmall, kOff };

// The cluster options every fault scenario starts from: small timeouts keep the suite fast (no
// assertion depends on them except as an upper bound).
ReplicatedClusterOptions FaultOptions(const std::string& group,
                                      const std::string& heartbeat_ms = "200",
                                      const std::string& app_timeout_ms = "2000",
                                      FaultRetention retention = FaultRetention::kSmall);
// Starts every process of `cluster` and asserts that every replica serves within 60 s.
void StartAndWait(ReplicatedCluster& cluster);
// Proxy `i`'s /readyz answers 200.
bool Ready(ReplicatedCluster& cluster, int i);
// The counter `name` of proxy `i`'s /status, -1 when unreadable.
int64_t StatusCounter(ReplicatedCluster& cluster, int i, const char* name);

// A hung process: SIGSTOP on construction (its connections stay open, nothing answers them),
// SIGCONT on Resume() and again on destruction, so that a failed assertion never leaves it stopped.
class StoppedProcess {
 public:
  explicit StoppedProcess(pid_t pid);
  ~StoppedProcess();
  StoppedProcess(const StoppedProcess&) = delete;
  StoppedProcess& operator=(const StoppedProcess&) = delete;
  // The SIGSTOP was delivered.
  bool stopped() const { return stopped_; }
  // Sends SIGCONT; true when delivered.
  bool Resume();

 private:
  pid_t pid_;
  bool stopped_ = false;
};

// The `k`-th operation of client `client`: unique across clients and k.
CounterOp UniqueOp(int client, int k);
// A journal append of exactly `bytes` bytes (at least its unique prefix), unique per (client, k).
CounterOp UniqueLargeAppend(int client, int k, std::size_t bytes);

// Sends one unique operation of a new client of `history` to proxy `target` and records it.
HttpResult SendRecorded(ReplicatedCluster& cluster, History& history, int target,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Every request of `history` sent to one of `targets` was answered 2xx (replicas that no fault
// touched must not be affected by one).
void ExpectAllOk(const History& history, const std::vector<int>& targets);

// What the final check looks at.
struct CheckOptions {
  // Replicas that must hold the whole history and be serving; empty: all.
  std::vector<int> replicas;
  std::chrono::milliseconds serving_timeout{60000};
  std::chrono::milliseconds apply_timeout{60000};
};

// Ends a fault scenario: waits until the checked replicas serve, sends a marker request through
// one of them (retried while refused as not-committed; every attempt is part of the history), waits
// until every checked app applied every entry the log holds, then verifies the history as described
// at the top of this file. Non-fatal failures are reported with EXPECT; fatal ones with ASSERT (use
// ASSERT_NO_FATAL_FAILURE). `journal_out`, when given, receives the common journal.
void CheckHistory(ReplicatedCluster& cluster, History& history, const CheckOptions& options = {},
                  json* journal_out = nullptr);

// The identity of a journaled operation: its op and operand, without the index.
std::string EntryKey(const json& entry);
std::string OpKey(const CounterOp& op);
// `s`, cut to `n` bytes with a note of its full size.
std::string Truncated(const std::string& s, size_t n = 200);
// Where two journals first differ (they are too long to print whole).
std::string JournalDiff(const json& actual, const json& expected);

// Every app of `cluster` holds exactly the model's journal, value, count, hash and last index,
// refused no index, and every proxy applied it all and serves (as "replica-<i>" of its group).
void ExpectReplicasMatch(ReplicatedCluster& cluster, const CounterModel& model,
                         std::chrono::milliseconds apply_timeout = std::chrono::seconds(30));

}  // namespace k8shmir::testing
