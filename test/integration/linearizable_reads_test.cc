// Reads that skip the log, with real etcd, counter apps and proxies: read-your-writes across
// proxies (write through A, read through B and C at once, non-commutative operations with exact
// expected values), no log entry for a read, local reads, a replica that cannot serve, and an
// app that cannot keep a read route's promise.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "support/counter_model.h"
#include "support/fault_load.h"
#include "support/http_client.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

ReplicatedClusterOptions Options(const std::string& group) {
  ReplicatedClusterOptions o;
  o.group = group;
  o.request_timeout = 5000ms;
  o.extra_proxy_args = {"--heartbeat-interval-ms", "200", "--read-routes",
                        "GET /integer, GET /journal, GET /journal/digest local"};
  return o;
}

int64_t ValueOf(const HttpResult& r) {
  const json j = r.Json();
  return j.is_object() && j.contains("value") && j["value"].is_number_integer()
             ? j["value"].get<int64_t>()
             : INT64_MIN;
}

TEST(LinearizableReads, ReadYourWritesAcrossProxies) {
  ReplicatedCluster cluster(Options("lin-ryw"));
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitAllServing());
  CounterModel model;
  HttpConnection writer(cluster.ProxyPort(0));
  HttpConnection reader1(cluster.ProxyPort(1));
  HttpConnection reader2(cluster.ProxyPort(2));
  const int kRounds = 60;
  int64_t last_index = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // SET, MUL, INC in turn: the value after each depends on the order of all before it.
    const CounterOp op = round % 3 == 0   ? CounterOp::Set(round + 2)
                         : round % 3 == 1 ? CounterOp::Mul(3)
                                          : CounterOp::Inc(round);
    const HttpResult w = SendOp(writer, op, 20s);
    ASSERT_TRUE(w.Ok()) << w.Describe();
    const int64_t index = ResponseLogIndex(w);
    ASSERT_GT(index, last_index);
    last_index = index;
    const ModelResponse expected = model.Apply(op, index);
    ASSERT_EQ(ValueOf(w), model.value());
    (void)expected;
    // Both other proxies at once, right after the write was acknowledged.
    auto read1 = std::async(std::launch::async,
                            [&] { return reader1.Request("GET", "/integer", "", {}, 20s); });
    auto read2 = std::async(std::launch::async,
                            [&] { return reader2.Request("GET", "/integer", "", {}, 20s); });
    for (HttpResult r : {read1.get(), read2.get()}) {
      ASSERT_EQ(r.status, 200u) << r.Describe();
      EXPECT_EQ(ValueOf(r), model.value()) << "a read missed the write acknowledged before it";
      EXPECT_EQ(r.Header("K8shmir-Read"), "linearizable");
      EXPECT_FALSE(r.HasHeader("K8shmir-Outcome"));
      EXPECT_GE(std::stoll(r.Header("K8shmir-Log-Index")), index);
    }
  }
  // The journal through a linearizable read equals the model's, on every proxy.
  for (int i = 0; i < cluster.size(); ++i) {
    const HttpResult j = Http(cluster.ProxyPort(i), "GET", "/journal", "", {}, 20s);
    ASSERT_EQ(j.status, 200u) << j.Describe();
    EXPECT_EQ(j.Json()["entries"], model.journal()) << "proxy " << i;
  }
  // Reads made no entries: the log holds the writes only, and every app applied exactly them.
  ASSERT_TRUE(cluster.WaitAppsApplied(last_index));
  EXPECT_EQ(cluster.Etcd().CountLogEntries("/k8shmir/" + cluster.group() + "/log/"), kRounds);
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_EQ(cluster.Journal(i), model.journal()) << "app " << i;
    const json s = cluster.Status(i);
    EXPECT_GE(s["reads"]["linearizable"]["served"].get<int64_t>(), i == 0 ? 1 : kRounds + 1);
  }
}

TEST(LinearizableReads, LocalReadsAndARefusingReplica) {
  ReplicatedCluster cluster(Options("lin-local"));
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitAllServing());
  const HttpResult w = Http(cluster.ProxyPort(0), "POST", "/journal", "first", {}, 20s);
  ASSERT_TRUE(w.Ok()) << w.Describe();
  ASSERT_TRUE(cluster.WaitAppsApplied(ResponseLogIndex(w)));
  const HttpResult local = Http(cluster.ProxyPort(1), "GET", "/journal/digest", "", {}, 20s);
  ASSERT_EQ(local.status, 200u) << local.Describe();
  EXPECT_EQ(local.Header("K8shmir-Read"), "local");
  EXPECT_EQ(local.Json()["count"], 1);
  EXPECT_EQ(std::stoll(local.Header("K8shmir-Log-Index")), ResponseLogIndex(w));

  // Replica 2's app is gone: its proxy stops serving, and refuses linearizable reads at once,
  // naming why; a local read of a dead app fails too (502), never stale.
  cluster.KillApp(2);
  ASSERT_TRUE(WaitFor([&] { return !Ready(cluster, 2); }, 10s, 20ms));
  const auto started = std::chrono::steady_clock::now();
  const HttpResult refused = Http(cluster.ProxyPort(2), "GET", "/integer", "", {}, 20s);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(refused.status, 503u) << refused.Describe();
  EXPECT_EQ(refused.Header("K8shmir-Outcome"), "not-committed");
  EXPECT_EQ(refused.Header("K8shmir-Read"), "linearizable");
  EXPECT_NE(refused.body.find("needs a serving replica"), std::string::npos) << refused.body;
  const HttpResult dead = Http(cluster.ProxyPort(2), "GET", "/journal/digest", "", {}, 20s);
  EXPECT_EQ(dead.status, 502u) << dead.Describe();
  EXPECT_EQ(dead.Header("K8shmir-Outcome"), "not-committed");

  // Back (empty): it replays, serves again, and its reads see the write.
  cluster.StartApp(2);
  ASSERT_TRUE(cluster.WaitServing(2));
  const HttpResult again = Http(cluster.ProxyPort(2), "GET", "/journal", "", {}, 20s);
  ASSERT_EQ(again.status, 200u) << again.Describe();
  ASSERT_EQ(again.Json()["entries"].size(), 1u);
  EXPECT_EQ(again.Json()["entries"][0]["text"], "first");
}

// The thesis's app records the index header of every request, reads included: a read route's
// promise does not hold for it. The proxy does not hide that: after a read, the app's last index
// is null, and the proxy says so and stops serving, replaying nothing.
TEST(LinearizableReads, AnAppThatRecordsReadsIsCaughtNotSilentlyServed) {
  ReplicatedClusterOptions o = Options("lin-thesis");
  o.replicas = 1;
  o.etcd_members = 1;
  o.extra_app_args = {"--thesis-index"};
  ReplicatedCluster cluster(o);
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitAllServing());
  const HttpResult w = Http(cluster.ProxyPort(0), "POST", "/journal", "x", {}, 20s);
  ASSERT_TRUE(w.Ok()) << w.Describe();
  const HttpResult r = Http(cluster.ProxyPort(0), "GET", "/journal", "", {}, 20s);
  ASSERT_EQ(r.status, 200u) << r.Describe();
  ASSERT_TRUE(WaitFor(
      [&] {
        const json s = cluster.Status(0);
        return s.is_object() && s["state"] == "app-contract-violation";
      },
      10s, 20ms))
      << cluster.Status(0).dump();
  EXPECT_NE(cluster.Status(0)["state_reason"].get<std::string>().find("null"), std::string::npos)
      << cluster.Status(0).dump();
}

}  // namespace
}  // namespace k8shmir::testing
