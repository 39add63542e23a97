#include "support/fault_load.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "support/util.h"

namespace k8shmir::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string Describe(const OpRecord& r) {
  return "client " + std::to_string(r.client) + " (proxy " + std::to_string(r.target) + ") op " +
         std::to_string(r.seq) + " " + r.op.Describe() + ": " + r.res.Describe();
}

// Collects problems and reports the first few, so that one systematic bug does not print
// thousands of lines.
class Problems {
 public:
  explicit Problems(std::string what) : what_(std::move(what)) {}
  ~Problems() {
    if (count_ > kShown) {
      ADD_FAILURE() << what_ << ": " << count_ - kShown << " more problems not shown";
    }
  }
  void Add(const std::string& message) {
    if (++count_ <= kShown) ADD_FAILURE() << what_ << ": " << message;
  }

 private:
  static constexpr int kShown = 15;
  std::string what_;
  int count_ = 0;
};

}  // namespace

// The identity of a journaled operation: its op and operand, without the index.
std::string EntryKey(const json& entry) {
  if (!entry.is_object()) return "<not an object>";
  const std::string op = entry.value("op", "?");
  if (op == "APPEND") return "APPEND " + entry.value("text", "");
  if (op == "RESET") return "RESET";
  return op + " " + (entry.contains("value") ? entry["value"].dump() : "?");
}

std::string OpKey(const CounterOp& op) { return EntryKey(op.JournalEntry(0)); }

std::string Truncated(const std::string& s, size_t n) {
  return s.size() > n ? s.substr(0, n) + "...(" + std::to_string(s.size()) + " bytes)" : s;
}

// Where two journals first differ (they are too long to print whole).
std::string JournalDiff(const json& actual, const json& expected) {
  if (!actual.is_array()) return "journal is not an array: " + Truncated(actual.dump());
  std::string out = "sizes " + std::to_string(actual.size()) + " vs " +
                    std::to_string(expected.size()) + " (reference)";
  const size_t n = std::min(actual.size(), expected.size());
  for (size_t i = 0; i < n; ++i) {
    if (actual[i] != expected[i]) {
      return out + "; first difference at position " + std::to_string(i) + ": " +
             Truncated(actual[i].dump()) + " vs " + Truncated(expected[i].dump());
    }
  }
  if (actual.size() > n) out += "; first extra entry " + Truncated(actual[n].dump());
  if (expected.size() > n) out += "; first missing entry " + Truncated(expected[n].dump());
  return out;
}

int64_t ResponseLogIndex(const HttpResult& r) {
  const std::string v = r.Header("K8shmir-Log-Index");
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 18) {
    return -1;
  }
  const int64_t index = std::stoll(v);
  return index > 0 ? index : -1;
}

Headers OpHeaders(const CounterOp& op) {
  Headers headers;
  if (op.Method() == "POST") {
    headers.emplace_back("Content-Type",
                         op.kind == CounterOp::Kind::kAppend ? "text/plain" : "application/json");
  }
  return headers;
}

HttpResult SendOp(HttpConnection& conn, const CounterOp& op, std::chrono::milliseconds timeout) {
  return conn.Request(op.Method(), op.Target(), op.Body(), OpHeaders(op), timeout);
}

int64_t SendAndCheck(uint16_t port, const CounterOp& op, CounterModel& model) {
  const HttpResult res = Http(port, op.Method(), op.Target(), op.Body(), OpHeaders(op), 15s);
  const int64_t index = ResponseLogIndex(res);
  EXPECT_GT(index, model.last_index()) << op.Describe() << ": " << res.Describe();
  if (index <= model.last_index()) return -1;
  const ModelResponse expected = model.Apply(op, index);
  EXPECT_EQ(res.status, expected.status) << op.Describe() << ": " << res.Describe();
  EXPECT_EQ(res.Header("K8shmir-Outcome"), "committed") << op.Describe() << ": " << res.Describe();
  if (expected.status == 200) {
    EXPECT_EQ(res.Json(), expected.body) << op.Describe() << ": " << res.Describe();
  }
  return res.status == expected.status ? index : -1;
}

ReplicatedClusterOptions FaultOptions(const std::string& group, const std::string& heartbeat_ms,
                                      const std::string& app_timeout_ms, FaultRetention retention) {
  ReplicatedClusterOptions o;
  o.group = group;
  o.request_timeout = 5000ms;
  o.extra_proxy_args = {"--heartbeat-interval-ms", heartbeat_ms, "--app-timeout-ms", app_timeout_ms,
                        "--etcd-timeout-ms",       "2000"};
  const std::vector<std::string> small = {
      "--snapshot-every-entries", "50",  "--snapshot-min-interval-ms", "200",
      "--retain-entries",         "100", "--trim-min-age-ms",          "6000"};
  const std::vector<std::string> off = {"--snapshot-every-entries", "0"};
  const auto& args = retention == FaultRetention::kSmall ? small : off;
  o.extra_proxy_args.insert(o.extra_proxy_args.end(), args.begin(), args.end());
  return o;
}

void StartAndWait(ReplicatedCluster& cluster) {
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitAllServing(60s)) << "logs in " << cluster.log_dir();
}

bool Ready(ReplicatedCluster& cluster, int i) {
  return Http(cluster.AdminPort(i), "GET", "/readyz", "", {}, 2s).status == 200;
}

int64_t StatusCounter(ReplicatedCluster& cluster, int i, const char* name) {
  const json s = cluster.Status(i);
  return s.is_object() ? s.value(name, int64_t{-1}) : -1;
}

StoppedProcess::StoppedProcess(pid_t pid) : pid_(pid) {
  stopped_ = pid_ > 0 && ::kill(pid_, SIGSTOP) == 0;
}

StoppedProcess::~StoppedProcess() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

bool StoppedProcess::Resume() { return pid_ > 0 && ::kill(pid_, SIGCONT) == 0; }

CounterOp UniqueOp(int client, int k) {
  const int64_t base = 1000000LL * (client + 1) + k;  // unique per (client, k) for k < 10^6
  switch (k % 5) {
    case 0:
      return CounterOp::Append("c" + std::to_string(client) + "-" + std::to_string(k));
    case 1:
      return CounterOp::Inc(base);
    case 2:
      return CounterOp::Mul(2 * base + 1);
    case 3:
      return CounterOp::Set(-base);
    default:
      return CounterOp::Dec(7 * base);
  }
}

CounterOp UniqueLargeAppend(int client, int k, std::size_t bytes) {
  std::string text = "c" + std::to_string(client) + "-" + std::to_string(k) + "-";
  if (text.size() < bytes) text.append(bytes - text.size(), static_cast<char>('a' + k % 26));
  return CounterOp::Append(std::move(text));
}

// ---- History -----------------------------------------------------------------------------------

void History::Add(OpRecord record) {
  std::lock_guard<std::mutex> lock(mu_);
  records_.push_back(std::move(record));
}

std::vector<OpRecord> History::Records() const {
  std::lock_guard<std::mutex> lock(mu_);
  return records_;
}

std::string History::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t ok = 0, committed_error = 0, not_committed = 0, unknown = 0, no_answer = 0, other = 0;
  for (const auto& r : records_) {
    const std::string outcome = r.res.Header("K8shmir-Outcome");
    if (r.res.status == 0) {
      ++no_answer;
    } else if (r.res.Ok()) {
      ++ok;
    } else if (outcome == "committed") {
      ++committed_error;
    } else if (outcome == "not-committed") {
      ++not_committed;
    } else if (outcome == "unknown") {
      ++unknown;
    } else {
      ++other;
    }
  }
  return std::to_string(records_.size()) + " requests: " + std::to_string(ok) + " 2xx, " +
         std::to_string(committed_error) + " committed errors, " + std::to_string(not_committed) +
         " not-committed, " + std::to_string(unknown) + " unknown, " + std::to_string(no_answer) +
         " without an answer, " + std::to_string(other) + " other";
}

// ---- Load --------------------------------------------------------------------------------------

Load::Load(ReplicatedCluster& cluster, History& history, std::vector<int> targets, Options options)
    : cluster_(cluster), history_(history), options_(options) {
  for (int target : targets) {
    auto c = std::make_unique<Client>();
    c->id = history_.NewClient();
    c->target = target;
    clients_.push_back(std::move(c));
  }
  for (auto& c : clients_) {
    Client* raw = c.get();
    c->thread = std::thread([this, raw] { Run(*raw); });
  }
}

Load::~Load() { Stop(); }

void Load::Stop() {
  stop_ = true;
  for (auto& c : clients_) {
    if (c->thread.joinable()) c->thread.join();
  }
}

void Load::Run(Client& c) {
  HttpConnection conn(cluster_.ProxyPort(c.target));
  for (int k = 0; k < options_.max_ops_per_client && !stop_; ++k) {
    OpRecord r;
    r.client = c.id;
    r.target = c.target;
    r.seq = k;
    r.op = options_.append_bytes > 0 ? UniqueLargeAppend(c.id, k, options_.append_bytes)
                                     : UniqueOp(c.id, k);
    r.sent = Clock::now();
    r.res = SendOp(conn, r.op, options_.client_timeout);
    r.answered = Clock::now();
    const bool ok = r.res.Ok();
    history_.Add(std::move(r));
    if (ok) ++c.ok;
    ++c.done;
    std::this_thread::sleep_for(ok ? options_.pause : options_.pause_after_error);
  }
}

int64_t Load::Ok(size_t client) const { return clients_.at(client)->ok.load(); }

int64_t Load::TotalOk() const {
  int64_t n = 0;
  for (const auto& c : clients_) n += c->ok.load();
  return n;
}

int64_t Load::TotalDone() const {
  int64_t n = 0;
  for (const auto& c : clients_) n += c->done.load();
  return n;
}

bool WaitClientsProgress(const std::vector<ClientProgress>& clients, int n,
                         std::chrono::milliseconds timeout, const std::string& who) {
  std::vector<int64_t> start;
  for (const auto& c : clients) start.push_back(c.ok->load());
  const bool ok = WaitFor(
      [&] {
        for (std::size_t i = 0; i < clients.size(); ++i) {
          if (clients[i].ok->load() < start[i] + n) return false;
        }
        return true;
      },
      timeout, 20ms);
  if (!ok) {
    std::cerr << who << "(" << n << "): not every client progressed within " << timeout.count()
              << " ms\n";
    for (std::size_t i = 0; i < clients.size(); ++i) {
      std::cerr << "  client " << clients[i].id << " -> proxy " << clients[i].target << ": "
                << clients[i].ok->load() - start[i] << " more 2xx\n";
    }
  }
  return ok;
}

bool Load::WaitProgress(int n, std::chrono::milliseconds timeout, std::vector<int> targets) {
  std::vector<ClientProgress> watched;
  for (auto& c : clients_) {
    if (targets.empty() || std::find(targets.begin(), targets.end(), c->target) != targets.end()) {
      watched.push_back({c->id, c->target, &c->ok});
    }
  }
  const bool ok = WaitClientsProgress(watched, n, timeout, "Load::WaitProgress");
  if (!ok) {
    for (int i = 0; i < cluster_.size(); ++i) {
      std::cerr << "  proxy " << i << " status: " << cluster_.Status(i).dump() << "\n";
    }
  }
  return ok;
}

HttpResult SendRecorded(ReplicatedCluster& cluster, History& history, int target,
                        std::chrono::milliseconds timeout) {
  HttpConnection conn(cluster.ProxyPort(target));
  OpRecord r;
  r.client = history.NewClient();
  r.target = target;
  r.op = UniqueOp(r.client, 0);
  r.sent = Clock::now();
  r.res = SendOp(conn, r.op, timeout);
  r.answered = Clock::now();
  HttpResult res = r.res;
  history.Add(std::move(r));
  return res;
}

void ExpectAllOk(const History& history, const std::vector<int>& targets) {
  Problems problems("a replica untouched by the fault");
  for (const OpRecord& r : history.Records()) {
    if (std::find(targets.begin(), targets.end(), r.target) == targets.end()) continue;
    if (!r.res.Ok()) problems.Add("request not answered 2xx: " + Describe(r));
  }
}

// ---- The final check ---------------------------------------------------------------------------

void CheckHistory(ReplicatedCluster& cluster, History& history, const CheckOptions& options,
                  json* journal_out) {
  std::vector<int> replicas = options.replicas;
  if (replicas.empty()) {
    for (int i = 0; i < cluster.size(); ++i) replicas.push_back(i);
  }

  // 1. The checked replicas serve again.
  for (int i : replicas) {
    ASSERT_TRUE(cluster.WaitServing(i, options.serving_timeout))
        << "proxy " << i << " is not serving after " << options.serving_timeout.count()
        << " ms: " << cluster.Status(i).dump();
  }

  // 2. A marker through the first of them: committed after everything acknowledged before.
  {
    const int client = history.NewClient();
    const int target = replicas.front();
    HttpConnection conn(cluster.ProxyPort(target));
    bool committed = false;
    HttpResult last;
    const auto deadline = Clock::now() + 60s;
    for (int k = 0; !committed && Clock::now() < deadline; ++k) {
      OpRecord r;
      r.client = client;
      r.target = target;
      r.seq = k;
      r.op = CounterOp::Append("marker-c" + std::to_string(client) + "-" + std::to_string(k));
      r.sent = Clock::now();
      r.res = SendOp(conn, r.op, 30s);
      r.answered = Clock::now();
      committed = r.res.Ok();
      last = r.res;
      history.Add(std::move(r));
      if (!committed) std::this_thread::sleep_for(200ms);
    }
    ASSERT_TRUE(committed) << "the marker request was never answered 2xx: " << last.Describe();
  }

  // 3. Every checked app applied every entry the log holds: up to its newest one. (Retention may
  //    have deleted the oldest: step 4 counts the entries above the trimmed point.)
  const std::string prefix = "/k8shmir/" + cluster.group() + "/log/";
  int64_t trimmed = 0;
  EtcdCluster::LogCount log;
  auto read_log = [&] {
    // The trimmed point and the entries above it, read until both agree (a trim in between).
    for (;;) {
      trimmed = cluster.Etcd().TrimmedIndex(prefix);
      log = cluster.Etcd().CountLogEntriesAbove(prefix, trimmed);
      if (cluster.Etcd().TrimmedIndex(prefix) == trimmed) return;
    }
  };
  const int64_t& keys = log.entries;
  const bool converged = WaitFor(
      [&] {
        try {
          read_log();
        } catch (const std::exception&) {
          return false;
        }
        for (int i : replicas) {
          const json d = cluster.Digest(i);
          if (!d.is_object() || d.value("last_index", int64_t{-1}) != log.last_index) return false;
        }
        return true;
      },
      options.apply_timeout, 100ms);
  if (!converged) {
    std::string state;
    for (int i : replicas) {
      state += "\n  app " + std::to_string(i) + ": " + cluster.Digest(i).dump() + "; proxy " +
               cluster.Status(i).dump();
    }
    FAIL() << "the apps did not apply the " << keys << " entries of the log within "
           << options.apply_timeout.count() << " ms:" << state;
  }

  // 4. Identical journals, in full.
  const json journal = cluster.Journal(replicas.front());
  ASSERT_TRUE(journal.is_array()) << "cannot read the journal of app " << replicas.front();
  for (int i : replicas) {
    const json other = cluster.Journal(i);
    EXPECT_TRUE(other == journal) << "app " << i << " vs app " << replicas.front() << ": "
                                  << JournalDiff(other, journal);
  }
  ASSERT_NO_THROW(read_log());
  int64_t journal_above = 0;
  for (const auto& entry : journal) {
    if (entry.value("index", int64_t{0}) > trimmed) ++journal_above;
  }
  EXPECT_EQ(journal_above, keys) << "journal entries vs entries in the log above its trimmed "
                                    "point "
                                 << trimmed;

  // 5. The journal replays with the reference model; each entry comes from one request, once.
  const std::vector<OpRecord> records = history.Records();
  std::map<std::string, size_t> sent;  // op key -> record
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_TRUE(sent.emplace(OpKey(records[i].op), i).second)
        << "test bug: operation sent twice: " << records[i].op.Describe();
  }
  CounterModel model;
  std::map<std::string, size_t> position;  // op key -> journal position
  std::vector<json> expected_body(journal.size());
  {
    Problems problems("journal");
    for (size_t pos = 0; pos < journal.size(); ++pos) {
      const json& entry = journal[pos];
      ASSERT_TRUE(model.ApplyEntry(entry))
          << "journal position " << pos << " cannot follow the previous ones (index not "
          << "increasing, or malformed): " << entry.dump();
      const int64_t index = entry["index"].get<int64_t>();
      expected_body[pos] = entry.value("op", "") == "APPEND"
                               ? json{{"length", pos + 1}, {"index", index}}
                               : json{{"value", model.value()}, {"index", index}};
      const std::string key = EntryKey(entry);
      if (sent.count(key) == 0) problems.Add("an entry nobody sent: " + entry.dump());
      if (!position.emplace(key, pos).second) {
        problems.Add("applied twice: " + entry.dump() + " at positions " +
                     std::to_string(position[key]) + " and " + std::to_string(pos));
      }
    }
  }
  if (journal_out != nullptr) *journal_out = journal;

  // 6. Each app's own digest agrees, with no ordering violation; each proxy serves at the end.
  for (int i : replicas) {
    SCOPED_TRACE("replica " + std::to_string(i));
    const json digest = cluster.Digest(i);
    ASSERT_TRUE(digest.is_object());
    EXPECT_EQ(digest.value("last_index", int64_t{-1}), model.last_index());
    EXPECT_EQ(digest.value("value", int64_t{-1}), model.value());
    EXPECT_EQ(digest.value("count", size_t{0}), model.journal().size());
    EXPECT_EQ(digest.value("hash", ""), model.hash());
    EXPECT_EQ(digest.value("violations", int64_t{-1}), 0)
        << "the app refused stale or invalid Log-Index values";
    json status;
    EXPECT_TRUE(WaitFor(
        [&] {
          status = cluster.Status(i);
          return status.is_object() &&
                 status.value("applied_index", int64_t{-1}) == model.last_index() &&
                 status.value("state", "") == "serving";
        },
        10s))
        << "proxy status: " << status.dump();
  }

  // 7. Every answer holds against the history.
  Problems problems("answers");
  std::map<int, int64_t> last_ok_index;  // client -> index of its last 2xx
  for (const OpRecord& r : records) {
    const std::string key = OpKey(r.op);
    const auto at = position.find(key);
    const bool present = at != position.end();
    const std::string outcome = r.res.Header("K8shmir-Outcome");
    const int64_t index = ResponseLogIndex(r.res);
    if (r.res.Ok()) {
      if (outcome != "committed") problems.Add("2xx without outcome committed: " + Describe(r));
      if (!present) {
        problems.Add("answered 2xx but not in the journal: " + Describe(r));
        continue;
      }
      const json& entry = journal[at->second];
      if (entry.value("index", int64_t{-1}) != index) {
        problems.Add("answered with index " + std::to_string(index) + " but applied at " +
                     entry.dump() + ": " + Describe(r));
      }
      if (r.res.Json() != expected_body[at->second]) {
        problems.Add("response is not the app's answer at position " + std::to_string(at->second) +
                     " (expected " + expected_body[at->second].dump() + "): " + Describe(r));
      }
      auto& last = last_ok_index[r.client];
      if (index <= last) problems.Add("client order violated: " + Describe(r));
      last = index;
    } else if (r.res.status != 0 && outcome == "committed") {
      if (!present) {
        problems.Add("answered committed but not in the journal: " + Describe(r));
      } else if (index > 0 && journal[at->second].value("index", int64_t{-1}) != index) {
        problems.Add("committed at index " + std::to_string(index) + " but applied as " +
                     journal[at->second].dump() + ": " + Describe(r));
      }
    } else if (r.res.status != 0 && outcome == "not-committed") {
      if (present) {
        problems.Add("answered not-committed but applied as " + journal[at->second].dump() + ": " +
                     Describe(r));
      }
    } else if (r.res.status == 0 || outcome == "unknown") {
      // May or may not be applied; "at most once" is checked with the journal above.
    } else {
      problems.Add("an answer without a valid K8shmir-Outcome: " + Describe(r));
    }
  }
  std::cout << "[history] group " << cluster.group() << ": " << history.Summary() << "; journal "
            << journal.size() << " entries, last index " << model.last_index() << std::endl;
}

void ExpectReplicasMatch(ReplicatedCluster& cluster, const CounterModel& model,
                         std::chrono::milliseconds apply_timeout) {
  const int64_t last = model.last_index();
  ASSERT_TRUE(cluster.WaitAppsApplied(last, apply_timeout)) << "group " << cluster.group();
  for (int i = 0; i < cluster.size(); ++i) {
    SCOPED_TRACE("group " + cluster.group() + " replica " + std::to_string(i));
    const json journal = cluster.Journal(i);
    ASSERT_FALSE(journal.is_discarded()) << "cannot read the journal of app " << i;
    EXPECT_TRUE(journal == model.journal()) << JournalDiff(journal, model.journal());
    const json digest = cluster.Digest(i);
    ASSERT_TRUE(digest.is_object());
    EXPECT_EQ(digest.value("last_index", int64_t{-1}), last);
    EXPECT_EQ(digest.value("value", int64_t{-1}), model.value());
    EXPECT_EQ(digest.value("count", size_t{0}), model.journal().size());
    EXPECT_EQ(digest.value("hash", ""), model.hash());
    EXPECT_EQ(digest.value("violations", int64_t{-1}), 0) << "the app saw out-of-order indices";
    json status;
    EXPECT_TRUE(WaitFor(
        [&] {
          status = cluster.Status(i);
          return status.is_object() && status.value("applied_index", int64_t{-1}) == last;
        },
        std::chrono::seconds(10)))
        << "proxy status: " << status.dump();
    if (status.is_object()) {
      EXPECT_EQ(status.value("state", ""), "serving");
      EXPECT_EQ(status.value("group", ""), cluster.group());
      EXPECT_EQ(status.value("replica_id", ""), "replica-" + std::to_string(i));
    }
  }
}

}  // namespace k8shmir::testing
