// Integration tests of replication through real k8shmir proxies, a real 3-member etcd cluster
// and the counter example app. Operations are non-commutative (SET, MUL, RESET, journal appends)
// and every assertion is exact: the expected journal is computed by a reference model of the app
// from the log indices the proxies report, and every replica must show exactly that journal.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/counter_model.h"
#include "support/etcd_cluster.h"
#include "support/fault_load.h"
#include "support/http_client.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kServingTimeout = 60s;
constexpr auto kApplyTimeout = 30s;

// A raw HTTP/1.1 request head: "<method> <target>" line, Host, `headers`, Connection: close.
std::string Http11Request(const std::string& method_and_target, const Headers& headers) {
  std::string out = method_and_target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [name, value] : headers) out += name + ": " + value + "\r\n";
  return out + "Connection: close\r\n\r\n";
}

HttpResult Send(uint16_t port, const CounterOp& op, std::chrono::milliseconds timeout = 15s) {
  return Http(port, op.Method(), op.Target(), op.Body(), OpHeaders(op), timeout);
}

HttpResult Send(HttpConnection& conn, const CounterOp& op) {
  return conn.Request(op.Method(), op.Target(), op.Body(), OpHeaders(op));
}

// 1. Sequential mixed operations sent to one replica reach every replica, exactly.
TEST(Replication, SequentialMixedOpsReachEveryReplicaExactly) {
  ReplicatedCluster cluster;
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  std::vector<CounterOp> ops;
  for (int k = 0; k < 50; ++k) {
    switch (k % 10) {
      case 0:
        ops.push_back(CounterOp::Set(7 + k));
        break;
      case 1:
        ops.push_back(CounterOp::Mul(3));
        break;
      case 2:
        ops.push_back(CounterOp::Inc(k));
        break;
      case 3:
        ops.push_back(CounterOp::Append("seq-" + std::to_string(k)));
        break;
      case 4:
        ops.push_back(CounterOp::Mul(-2));
        break;
      case 5:
        ops.push_back(CounterOp::Dec(5));
        break;
      case 6:
        ops.push_back(CounterOp::Read());  // a replicated read: advances the app's index
        break;
      case 7:
        ops.push_back(CounterOp::Append("seq-" + std::to_string(k) +
                                        " \"quoted\" \\ tab\t newline\n utf8 \xc3\xa9"));
        break;
      case 8:
        // The app's own 400 is a committed, replicated answer (unlike the proxy's 400).
        ops.push_back(k == 28 ? CounterOp::Invalid() : CounterOp::Mul(k + 1));
        break;
      case 9:
        ops.push_back(k == 39 ? CounterOp::Reset() : CounterOp::Inc(1000 + k));
        break;
    }
  }

  CounterModel model;
  for (const CounterOp& op : ops) {
    ASSERT_GT(SendAndCheck(cluster.ProxyPort(0), op, model), 0);
  }
  ASSERT_EQ(model.journal().size(), 44u);  // 50 less 5 reads and 1 invalid op
  ExpectReplicasMatch(cluster, model);
}

// 2. Concurrent clients on every replica: one total order, every answered request exactly once,
// each client's requests in the order it sent them, responses consistent with that order.
TEST(Replication, ConcurrentClientsOnAllReplicasAgreeOnOneOrder) {
  ReplicatedCluster cluster;
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  constexpr int kClients = 3;
  constexpr int kOpsPerClient = 200;
  struct Result {
    CounterOp op;
    HttpResult res;
    int64_t index = -1;
  };

  std::vector<std::vector<Result>> results(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      HttpConnection conn(cluster.ProxyPort(c));  // keep-alive, one request at a time
      for (int k = 0; k < kOpsPerClient; ++k) {
        Result r;
        r.op = UniqueOp(c, k);
        r.res = Send(conn, r.op);
        r.index = ResponseLogIndex(r.res);
        results[static_cast<size_t>(c)].push_back(std::move(r));
      }
    });
  }
  for (auto& t : threads) t.join();

  // Every request was answered by its app, with its log index.
  std::map<std::string, std::pair<int, int>> by_key;  // op key -> (client, k), answered ones
  int64_t max_index = 0;
  for (int c = 0; c < kClients; ++c) {
    int64_t previous = 0;
    for (int k = 0; k < kOpsPerClient; ++k) {
      const Result& r = results[static_cast<size_t>(c)][static_cast<size_t>(k)];
      SCOPED_TRACE("client " + std::to_string(c) + " op " + std::to_string(k) + " " +
                   r.op.Describe());
      EXPECT_EQ(r.res.status, 200u) << r.res.Describe();
      if (!r.res.Ok()) {
        // Not answered: only an outcome that says it was not committed is acceptable here, and
        // then it must not be in the journal (checked below, as it is not in by_key).
        continue;
      }
      EXPECT_EQ(r.res.Header("K8shmir-Outcome"), "committed");
      ASSERT_GT(r.index, 0) << r.res.Describe();
      const json body = r.res.Json();
      ASSERT_TRUE(body.is_object()) << r.res.Describe();
      EXPECT_EQ(body.value("index", int64_t{-1}), r.index) << "body and header disagree";
      // A sequential client sees its own requests in the order it sent them.
      EXPECT_GT(r.index, previous) << "client order violated";
      previous = r.index;
      max_index = std::max(max_index, r.index);
      ASSERT_TRUE(by_key.emplace(OpKey(r.op), std::make_pair(c, k)).second);
    }
  }
  ASSERT_GT(max_index, 0);
  ASSERT_TRUE(cluster.WaitAppsApplied(max_index, kApplyTimeout));

  // All journals are identical, in full.
  const json journal = cluster.Journal(0);
  ASSERT_TRUE(journal.is_array());
  for (int i = 1; i < cluster.size(); ++i) {
    const json other = cluster.Journal(i);
    EXPECT_TRUE(other == journal) << "replica " << i
                                  << " vs replica 0: " << JournalDiff(other, journal);
  }

  // The journal holds exactly the answered requests, once each, at the index each was answered
  // with; replaying it gives every response that was returned.
  CounterModel model;
  std::set<std::string> seen;
  for (size_t pos = 0; pos < journal.size(); ++pos) {
    const json& entry = journal[pos];
    const std::string key = EntryKey(entry);
    SCOPED_TRACE("journal position " + std::to_string(pos) + ": " + entry.dump());
    auto it = by_key.find(key);
    ASSERT_NE(it, by_key.end()) << "an entry nobody got an answer for";
    ASSERT_TRUE(seen.insert(key).second) << "applied twice";
    const Result& r =
        results[static_cast<size_t>(it->second.first)][static_cast<size_t>(it->second.second)];
    EXPECT_EQ(entry.value("index", int64_t{-1}), r.index);
    ASSERT_TRUE(model.ApplyEntry(entry)) << "entry out of order or malformed";
    const json body = r.res.Json();
    if (r.op.kind == CounterOp::Kind::kAppend) {
      EXPECT_EQ(body.value("length", size_t{0}), pos + 1);
    } else {
      EXPECT_EQ(body.value("value", int64_t{0}), model.value()) << "response not from this order";
    }
  }
  EXPECT_EQ(seen.size(), by_key.size()) << "answered requests missing from the journal";
  EXPECT_EQ(journal.size(), static_cast<size_t>(kClients * kOpsPerClient));
  EXPECT_EQ(model.last_index(), max_index);
  ExpectReplicasMatch(cluster, model);
}

// 3. Requests beyond the limits, or malformed, are refused before anything is appended.
TEST(Replication, OversizedAndMalformedRequestsAreRefusedWithoutAppending) {
  ReplicatedClusterOptions options;
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  CounterModel model;
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(1), CounterOp::Append("before-limits"), model), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectReplicasMatch(cluster, model));
  const int64_t applied = model.last_index();

  {
    SCOPED_TRACE("body of body-limit + 1 bytes, Content-Length");
    const HttpResult r =
        Http(cluster.ProxyPort(0), "POST", "/journal", std::string(options.body_limit + 1, 'x'));
    EXPECT_EQ(r.status, 413u) << r.Describe();
    EXPECT_EQ(r.Header("K8shmir-Outcome"), "not-committed") << r.Describe();
  }
  {
    SCOPED_TRACE("body of body-limit + 1 bytes, chunked");
    const size_t size = options.body_limit + 1;
    char hex[32];
    std::snprintf(hex, sizeof hex, "%zx", size);
    const std::string raw = Http11Request("POST /journal", {{"Transfer-Encoding", "chunked"}}) +
                            hex + "\r\n" + std::string(size, 'y') + "\r\n0\r\n\r\n";
    const std::string response = RawExchange(cluster.ProxyPort(1), raw, 15s);
    EXPECT_EQ(RawStatus(response), 413u) << Truncated(response, 400);
    EXPECT_EQ(RawHeader(response, "K8shmir-Outcome"), "not-committed") << Truncated(response, 400);
  }
  {
    SCOPED_TRACE("80 KiB of headers (default header limit 64 KiB)");
    const HttpResult r = Http(cluster.ProxyPort(2), "POST", "/journal", "header-too-large",
                              {{"X-Padding-1", std::string(40 * 1024, 'h')},
                               {"X-Padding-2", std::string(40 * 1024, 'h')}});
    EXPECT_EQ(r.status, 431u) << r.Describe();
    EXPECT_EQ(r.Header("K8shmir-Outcome"), "not-committed") << r.Describe();
  }
  {
    SCOPED_TRACE("malformed request line");
    const std::string response =
        RawExchange(cluster.ProxyPort(0), "THIS IS NOT HTTP AT ALL\r\n\r\n", 15s);
    EXPECT_EQ(RawStatus(response), 400u) << Truncated(response, 400);
    EXPECT_EQ(RawHeader(response, "K8shmir-Outcome"), "not-committed") << Truncated(response, 400);
  }
  {
    SCOPED_TRACE("invalid Content-Length");
    const std::string response = RawExchange(
        cluster.ProxyPort(1),
        Http11Request("POST /journal", {{"Content-Length", "12abc"}}) + "malformed!!!", 15s);
    EXPECT_EQ(RawStatus(response), 400u) << Truncated(response, 400);
    EXPECT_EQ(RawHeader(response, "K8shmir-Outcome"), "not-committed") << Truncated(response, 400);
  }

  // Nothing was applied anywhere, and the proxies did not move.
  for (int i = 0; i < cluster.size(); ++i) {
    const json digest = cluster.Digest(i);
    EXPECT_EQ(digest.value("last_index", int64_t{-1}), applied) << "app " << i;
    EXPECT_EQ(digest.value("count", size_t{0}), model.journal().size()) << "app " << i;
    const json status = cluster.Status(i);
    EXPECT_EQ(status.value("applied_index", int64_t{-1}), applied) << status.dump();
  }
  // A marker written afterwards is the very next entry on every replica: nothing refused above
  // was appended before it.
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(2), CounterOp::Append("after-limits"), model), 0);
  ExpectReplicasMatch(cluster, model);
}

// 3b. A body of exactly the limit is accepted and replicated intact.
TEST(Replication, BodyOfExactlyTheLimitIsReplicated) {
  ReplicatedClusterOptions options;
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  std::string text;
  text.reserve(options.body_limit);
  for (size_t i = 0; text.size() < options.body_limit; ++i) text += std::to_string(i) + ",";
  text.resize(options.body_limit);

  CounterModel model;
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(0), CounterOp::Append(text), model), 0);
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(1), CounterOp::Set(42), model), 0);
  ExpectReplicasMatch(cluster, model);
}

// 4. etcd stopped entirely: requests are refused in time, nobody applies anything; the service
// resumes when etcd comes back, and the replicas still agree exactly.
TEST(Replication, EtcdOutageRefusesRequestsAndServiceResumes) {
  ReplicatedClusterOptions options;
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  CounterModel model;
  for (int i = 0; i < cluster.size(); ++i) {
    ASSERT_GT(
        SendAndCheck(cluster.ProxyPort(i), CounterOp::Append("before-" + std::to_string(i)), model),
        0);
  }
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(0), CounterOp::Set(11), model), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectReplicasMatch(cluster, model));
  const json journal_before = model.journal();
  std::vector<json> digests_before;
  for (int i = 0; i < cluster.size(); ++i) digests_before.push_back(cluster.Digest(i));

  cluster.Etcd().KillAll();
  const auto killed_at = Clock::now();

  struct Attempt {
    CounterOp op;
    HttpResult res;
    std::chrono::milliseconds elapsed{0};
  };
  std::vector<std::vector<Attempt>> attempts(static_cast<size_t>(cluster.size()));
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < cluster.size(); ++i) {
      threads.emplace_back([&, i] {
        for (int k = 0; k < 2; ++k) {
          // The second round probes the settled outage, not only its first moments.
          if (k == 1) std::this_thread::sleep_until(killed_at + 2s);
          Attempt a;
          a.op = CounterOp::Append("down-" + std::to_string(i) + "-" + std::to_string(k));
          const auto start = Clock::now();
          a.res = Send(cluster.ProxyPort(i), a.op, options.request_timeout + 15s);
          a.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
          attempts[static_cast<size_t>(i)].push_back(std::move(a));
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  std::set<std::string> maybe_committed;  // outcome unknown: may appear at most once
  for (const auto& per_replica : attempts) {
    for (const Attempt& a : per_replica) {
      SCOPED_TRACE(a.op.Describe());
      EXPECT_LE(a.elapsed.count(), (options.request_timeout + 5s).count()) << "ms: too late";
      EXPECT_TRUE(a.res.status == 503 || a.res.status == 504) << a.res.Describe();
      if (a.res.status == 503) {
        EXPECT_EQ(a.res.Header("K8shmir-Outcome"), "not-committed") << a.res.Describe();
        EXPECT_TRUE(a.res.HasHeader("Retry-After")) << a.res.Describe();
      } else if (a.res.status == 504) {
        EXPECT_EQ(a.res.Header("K8shmir-Outcome"), "unknown") << a.res.Describe();
        maybe_committed.insert(OpKey(a.op));
      }
    }
  }
  // While etcd is down nothing reaches any app, not even after a while.
  std::this_thread::sleep_until(killed_at + 3s);
  for (int i = 0; i < cluster.size(); ++i) {
    const json digest = cluster.Digest(i);
    EXPECT_EQ(digest, digests_before[static_cast<size_t>(i)]) << "app " << i << " changed";
  }

  cluster.Etcd().RestartAll(60s);
  ASSERT_TRUE(cluster.WaitAllServing(kServingTimeout));

  // New requests succeed. Only a refusal that says "not committed" may be retried.
  std::map<std::string, int64_t> after;  // op key -> index
  for (int i = 0; i < cluster.size(); ++i) {
    const CounterOp op = CounterOp::Append("after-" + std::to_string(i));
    HttpResult res;
    const bool answered = WaitFor(
        [&] {
          res = Send(cluster.ProxyPort(i), op);
          return !(res.status == 503 && res.Header("K8shmir-Outcome") == "not-committed");
        },
        30s, 200ms);
    ASSERT_TRUE(answered) << "service did not resume on proxy " << i << ": " << res.Describe();
    ASSERT_EQ(res.status, 200u) << res.Describe();
    EXPECT_EQ(res.Header("K8shmir-Outcome"), "committed");
    const int64_t index = ResponseLogIndex(res);
    ASSERT_GT(index, 0) << res.Describe();
    EXPECT_EQ(res.Json().value("index", int64_t{-1}), index);
    after[OpKey(op)] = index;
  }
  int64_t max_index = 0;
  for (const auto& [key, index] : after) max_index = std::max(max_index, index);
  ASSERT_TRUE(cluster.WaitAppsApplied(max_index, kApplyTimeout));

  // Exactly: the journal from before, then each "after" entry once at its index, and possibly
  // (once) the requests whose outcome was unknown; nothing refused as not-committed.
  const json journal = cluster.Journal(0);
  ASSERT_TRUE(journal.is_array());
  ASSERT_GE(journal.size(), journal_before.size());
  for (size_t pos = 0; pos < journal_before.size(); ++pos) {
    ASSERT_EQ(journal[pos], journal_before[pos]) << "history changed at position " << pos;
  }
  CounterModel replay;
  std::set<std::string> seen;
  for (size_t pos = 0; pos < journal.size(); ++pos) {
    const json& entry = journal[pos];
    ASSERT_TRUE(replay.ApplyEntry(entry)) << entry.dump();
    if (pos < journal_before.size()) continue;
    const std::string key = EntryKey(entry);
    ASSERT_TRUE(seen.insert(key).second) << "applied twice: " << entry.dump();
    if (auto it = after.find(key); it != after.end()) {
      EXPECT_EQ(entry.value("index", int64_t{-1}), it->second) << entry.dump();
    } else {
      EXPECT_EQ(maybe_committed.count(key), 1u)
          << "an entry that was refused as not-committed, or never sent: " << entry.dump();
    }
  }
  for (const auto& [key, index] : after) EXPECT_EQ(seen.count(key), 1u) << key << " missing";
  ExpectReplicasMatch(cluster, replay);
}

// 5. Two groups on one etcd cluster are isolated from each other, exactly.
TEST(Replication, TwoGroupsSharingEtcdStayIsolated) {
  EtcdCluster etcd(3);
  etcd.Start();
  ReplicatedClusterOptions alpha_options;
  alpha_options.group = "alpha";
  ReplicatedClusterOptions beta_options;
  beta_options.group = "beta";
  ReplicatedCluster alpha(alpha_options, &etcd);
  ReplicatedCluster beta(beta_options, &etcd);
  alpha.StartAll();
  beta.StartAll();
  ASSERT_TRUE(alpha.WaitAllServing(kServingTimeout));
  ASSERT_TRUE(beta.WaitAllServing(kServingTimeout));

  // Both groups write at once, so their entries interleave in etcd's revisions (index gaps).
  constexpr int kOps = 60;
  auto make_op = [](const std::string& g, int k) {
    switch (k % 6) {
      case 0:
        return CounterOp::Append(g + "-" + std::to_string(k));
      case 1:
        return CounterOp::Mul(k + 2);
      case 2:
        return CounterOp::Inc(g == "alpha" ? 100 + k : 10000 + k);
      case 3:
        return CounterOp::Append(g + "-" + std::to_string(k) + "-x");
      case 4:
        return CounterOp::Set(g == "alpha" ? -k : k * 3);
      default:
        return k % 4 == 1 ? CounterOp::Reset() : CounterOp::Dec(k);
    }
  };
  CounterModel alpha_model;
  CounterModel beta_model;
  auto writer = [&](ReplicatedCluster& cluster, CounterModel& model) {
    for (int k = 0; k < kOps; ++k) {
      // Round-robin over the replicas; each request is sent after the previous one's answer, so
      // its index must be greater even though another proxy appended it.
      if (SendAndCheck(cluster.ProxyPort(k % cluster.size()), make_op(cluster.group(), k), model) <=
          0) {
        return;
      }
    }
  };
  std::thread alpha_writer([&] { writer(alpha, alpha_model); });
  std::thread beta_writer([&] { writer(beta, beta_model); });
  alpha_writer.join();
  beta_writer.join();
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_EQ(alpha_model.journal().size(), static_cast<size_t>(kOps));
  ASSERT_EQ(beta_model.journal().size(), static_cast<size_t>(kOps));

  ExpectReplicasMatch(alpha, alpha_model);
  ExpectReplicasMatch(beta, beta_model);
}

// 6. A client cannot choose the index the app sees: a Log-Index header from the client is not
// what reaches the app (if it did, a huge value would make the app refuse every later entry).
TEST(Replication, ClientSuppliedLogIndexHeaderIsNotTrusted) {
  ReplicatedCluster cluster;
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  CounterModel model;
  const CounterOp spoofed = CounterOp::Append("spoofed");
  const HttpResult res = Http(cluster.ProxyPort(0), "POST", "/journal", spoofed.Body(),
                              {{"Log-Index", "999999999999"}, {"log-index", "1"}});
  ASSERT_EQ(res.status, 200u) << res.Describe();
  const int64_t index = ResponseLogIndex(res);
  ASSERT_GT(index, 0) << res.Describe();
  EXPECT_EQ(res.Json(), model.Apply(spoofed, index).body) << res.Describe();
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(1), CounterOp::Mul(5), model), 0);
  ASSERT_GT(SendAndCheck(cluster.ProxyPort(2), CounterOp::Append("after-spoof"), model), 0);
  ExpectReplicasMatch(cluster, model);
}

// 7. The K8ShMiR thesis's Express app records the Log-Index header of every request it gets,
// reads included, so one read straight to the app (around the proxy) makes it answer
// {"index": null}. That is a contract violation, never "index 0": taken for an empty app, the
// whole log was replayed onto its live state (the value doubled and the replicas diverged while
// every /status said serving). The replica stops, says so, and replays nothing; the others go
// on; once the app restarts (empty, index 0) it catches up from the log exactly.
TEST(Replication, NullLastIndexIsAContractViolationAndNothingIsReplayed) {
  ReplicatedClusterOptions options;
  options.group = "thesis-null";
  options.extra_app_args = {"--thesis-index"};
  options.extra_proxy_args = {"--heartbeat-interval-ms", "200"};
  ReplicatedCluster cluster(options);
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));

  // Direct reads change what this app reports, so progress is read from the proxies only.
  auto wait_applied = [&](int i, int64_t index) {
    return WaitFor(
        [&] {
          json s = cluster.Status(i);
          return s.is_object() && s.value("applied_index", int64_t{-1}) == index;
        },
        kApplyTimeout);
  };
  CounterModel model;
  for (int k = 0; k < 20; ++k) {
    const CounterOp op = k % 4 == 0   ? CounterOp::Set(k + 3)
                         : k % 4 == 1 ? CounterOp::Mul(3)
                         : k % 4 == 2 ? CounterOp::Inc(k)
                                      : CounterOp::Append("thesis-" + std::to_string(k));
    ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 3), op, model), 0);
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(wait_applied(i, model.last_index())) << i;
  const int64_t violated_at = model.last_index();
  const int64_t value_then = model.value();

  // One read around the proxy: app 1 now answers {"index": null}.
  HttpResult direct = Http(cluster.AppPort(1), "GET", "/integer", "", {}, 5s);
  ASSERT_EQ(direct.status, 200) << direct.Describe();
  ASSERT_EQ(direct.Json().value("value", int64_t{-1}), value_then);
  HttpResult null_index = Http(cluster.AppPort(1), "GET", "/last-index", "", {}, 5s);
  ASSERT_TRUE(null_index.Json().is_object() && null_index.Json()["index"].is_null())
      << null_index.Describe();

  json status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = cluster.Status(1);
        return status.is_object() && status.value("state", "") == "app-contract-violation";
      },
      20s))
      << status.dump();
  EXPECT_NE(status.value("last_error", "").find("null"), std::string::npos) << status.dump();
  EXPECT_GE(status.value("app_contract_violations", int64_t{0}), 1) << status.dump();
  HttpResult ready = Http(cluster.AdminPort(1), "GET", "/readyz", "", {}, 5s);
  EXPECT_EQ(ready.status, 503) << ready.Describe();
  EXPECT_NE(ready.body.find("app-contract-violation"), std::string::npos) << ready.Describe();
  HttpResult metrics = Http(cluster.AdminPort(1), "GET", "/metrics", "", {}, 5s);
  EXPECT_NE(metrics.body.find("k8shmir_state{group=\"thesis-null\",replica=\"replica-1\","
                              "state=\"app-contract-violation\"} 1"),
            std::string::npos);

  // The others go on; replica 1 forwards nothing and replays nothing meanwhile.
  for (int k = 0; k < 6; ++k) {
    const CounterOp op =
        k % 2 == 0 ? CounterOp::Mul(-2) : CounterOp::Append("after-" + std::to_string(k));
    ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 2 == 0 ? 0 : 2), op, model), 0);
  }
  ASSERT_TRUE(wait_applied(0, model.last_index()));
  ASSERT_TRUE(wait_applied(2, model.last_index()));
  std::this_thread::sleep_for(1s);  // five heartbeats: time for a wrong replay to show
  status = cluster.Status(1);
  EXPECT_EQ(status.value("state", ""), "app-contract-violation") << status.dump();
  EXPECT_EQ(status.value("applied_index", int64_t{-1}), violated_at) << status.dump();
  EXPECT_EQ(status.value("entries_replayed", int64_t{-1}), 0) << status.dump();
  direct = Http(cluster.AppPort(1), "GET", "/integer", "", {}, 5s);
  EXPECT_EQ(direct.Json().value("value", int64_t{-1}), value_then) << direct.Describe();

  // Restarted, the app is empty and reports 0: the replica rebuilds it from the log.
  cluster.KillApp(1);
  cluster.StartApp(1);
  ASSERT_TRUE(cluster.WaitServing(1, kServingTimeout)) << cluster.Status(1).dump();
  ASSERT_TRUE(wait_applied(1, model.last_index()));
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("replica " + std::to_string(i));
    const json journal = cluster.Journal(i);
    EXPECT_TRUE(journal == model.journal()) << JournalDiff(journal, model.journal());
    const json digest = cluster.Digest(i);
    EXPECT_EQ(digest.value("value", int64_t{-1}), model.value());
    EXPECT_EQ(digest.value("duplicates", int64_t{-1}), 0);
  }
}

}  // namespace
}  // namespace k8shmir::testing
