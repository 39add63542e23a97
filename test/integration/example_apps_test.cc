// The example apps in other languages, examples/node-counter (Node.js) and
// examples/python-counter (Python's http.server), each replicated behind three real k8shmir
// proxies on a real 3-member etcd cluster, and each on its own against the app contract and
// against counter-app, whose answers, journal, digest hash and snapshots they must reproduce.
// Every assertion is exact: the expected answers and journal come from the reference model of
// counter-app (support/counter_model.h), fed with the log indices the proxies report.
//
// The interpreters are the ones CMake found (test/CMakeLists.txt): a missing one fails the test.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "support/counter_model.h"
#include "support/fault_load.h"
#include "support/http_client.h"
#include "support/ports.h"
#include "support/process.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kServingTimeout = 60s;
constexpr auto kApplyTimeout = 30s;

struct ExampleApp {
  const char* name;         // the test name's suffix
  const char* interpreter;  // what find_program found, or "<VAR>-NOTFOUND"
  const char* script;       // under examples/
  bool pipelining;          // what its /last-index declares
  // Its answer to a method no HTTP library knows: Node's parser refuses it itself (the app reads
  // its Log-Index from the raw head); http.server hands any method to the app, which has no such
  // endpoint.
  unsigned unknown_method_status;
};

const ExampleApp kNode{"node", K8SHMIR_NODE_BIN, "node-counter/server.js", false, 400};
const ExampleApp kPython{"python", K8SHMIR_PYTHON3_BIN, "python-counter/server.py", true, 404};

std::vector<std::string> Command(const ExampleApp& app) {
  return {app.interpreter, std::string(K8SHMIR_EXAMPLES_DIR) + "/" + app.script,
          "--host",        "127.0.0.1",
          "--port",        "{port}"};
}

// `op` as a client (or, with `index` > 0, a proxy: with that Log-Index) sends it.
HttpResult Send(uint16_t port, const CounterOp& op, int64_t index = 0) {
  Headers headers = OpHeaders(op);
  if (index > 0) headers.emplace_back("Log-Index", std::to_string(index));
  return Http(port, op.Method(), op.Target(), op.Body(), headers, 15s);
}

// Non-commutative operations: SET, MUL (negative too), INC, DEC, journal appends with quotes,
// control characters and UTF-8, resets, a replicated read and an op the app refuses (its 400 is
// a committed answer like any other). `k` varies the operands.
CounterOp MixedOp(int k) {
  switch (k % 9) {
    case 0:
      return CounterOp::Set(7 + k);
    case 1:
      return CounterOp::Mul(-3);
    case 2:
      return CounterOp::Inc(k);
    case 3:
      return CounterOp::Append("e" + std::to_string(k) + " \"q\" \\ \t\n \x01 \xc3\xa9");
    case 4:
      return CounterOp::Mul(k + 2);
    case 5:
      return CounterOp::Dec(5);
    case 6:
      return k % 2 == 0 ? CounterOp::Read() : CounterOp::Invalid();
    case 7:
      return k % 4 == 3 ? CounterOp::Reset() : CounterOp::Append("r" + std::to_string(k));
    default:
      return CounterOp::Inc(1000 + k);
  }
}

void PrintTo(const ExampleApp& app, std::ostream* out) { *out << "examples/" << app.script; }

class ExampleApps : public ::testing::TestWithParam<ExampleApp> {
 protected:
  void SetUp() override {
    const std::string path = GetParam().interpreter;
    ASSERT_TRUE(path.find("NOTFOUND") == std::string::npos && ::access(path.c_str(), X_OK) == 0)
        << "the interpreter of examples/" << GetParam().script << " is missing ('" << path
        << "', what CMake's find_program found when the build was configured): install it "
        << "(scripts/install-deps.sh installs Debian's nodejs and python3) and run CMake again";
  }

  ReplicatedClusterOptions Options(std::vector<std::string> proxy_args) const {
    ReplicatedClusterOptions o;
    o.group = std::string("example-") + GetParam().name;
    o.app_command = Command(GetParam());
    o.extra_proxy_args = std::move(proxy_args);
    return o;
  }
};

// A single app, started and stopped by the test, with its log in a directory of its own.
class App {
 public:
  App(std::vector<std::string> argv, const std::string& name)
      : dir_(MakeTempDir("k8shmir-" + CurrentTestName() + "-")),
        log_(dir_ / (name + ".log")),
        port_(FreePort()) {
    for (auto& arg : argv) {
      if (arg == "{port}") arg = std::to_string(port_);
    }
    process_.Start(argv, {}, log_);
    up_ = WaitFor(
              [&] {
                return !process_.Running() ||
                       Http(port_, "GET", "/last-index", "", {}, 1s).status == 200;
              },
              10s, 20ms) &&
          process_.Running();
  }
  ~App() {
    process_.Kill();
    if (ShouldKeepLogs()) {
      std::cerr << "--- " << process_.DescribeExit() << ", last 50 lines of " << log_.string()
                << "\n"
                << TailFile(log_, 50);
    } else {
      RemoveTree(dir_);
    }
  }
  bool up() const { return up_; }
  uint16_t port() const { return port_; }
  json Get(const std::string& path) { return Http(port_, "GET", path, "", {}, 5s).Json(); }

 private:
  std::filesystem::path dir_;
  std::filesystem::path log_;
  uint16_t port_;
  ChildProcess process_;
  bool up_ = false;
};

// 1. Replicated behind three proxies, through all of them in turn: the exact answers, and one
// journal on every replica. One app is SIGKILLed mid-run and restarted empty while the others go
// on; its proxy replays the log (snapshots off) until it holds the identical journal.
TEST_P(ExampleApps, ReplicatesThroughEveryProxyAndAKilledAppCatchesUpByReplay) {
  ReplicatedCluster cluster(Options({"--snapshot-every-entries", "0"}));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  for (int i = 0; i < cluster.size(); ++i) {
    const json status = cluster.Status(i);
    ASSERT_TRUE(status.is_object()) << "proxy " << i;
    EXPECT_EQ(status.value("app_pipelining", !GetParam().pipelining), GetParam().pipelining);
    EXPECT_EQ(status.value("app_snapshots", false), true);
  }

  CounterModel model;
  int k = 0;
  for (; k < 45; ++k) ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 3), MixedOp(k), model), 0) << k;
  // A method the app's HTTP library may not know is an entry like any other: every app records
  // its index (else its proxy would send it again, and again) and the group goes on.
  const HttpResult unknown = Http(cluster.ProxyPort(0), "FOO", "/integer", "", {}, 15s);
  ASSERT_GT(ResponseLogIndex(unknown), model.last_index()) << unknown.Describe();
  EXPECT_EQ(unknown.status, GetParam().unknown_method_status) << unknown.Describe();
  EXPECT_EQ(unknown.Header("K8shmir-Outcome"), "committed") << unknown.Describe();
  model.Apply(CounterOp::Read(),
              ResponseLogIndex(unknown));  // for the model: the index moves, no more

  cluster.KillApp(1);
  for (; k < 75; ++k) {
    const int proxy = k % 2 == 0 ? 0 : 2;  // replica 1 is not serving without its app
    ASSERT_GT(SendAndCheck(cluster.ProxyPort(proxy), MixedOp(k), model), 0) << k;
  }
  // A new process, empty (its /last-index is not checked here: its proxy, retrying, may already
  // have replayed entries into it by then).
  cluster.StartApp(1);
  ASSERT_TRUE(cluster.WaitServing(1, kServingTimeout)) << cluster.Status(1).dump();
  for (; k < 105; ++k) ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 3), MixedOp(k), model), 0) << k;

  // 105 ops less 6 reads and 5 refused ops.
  ASSERT_EQ(model.journal().size(), 94u);
  ExpectReplicasMatch(cluster, model);
  const json status = cluster.Status(1);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status.at("retention").value("snapshots_restored", int64_t{-1}), 0)
      << "replica 1 was restored from a snapshot instead of replaying the log";
}

// 2. The app's snapshots through the proxies: one replica stores them (GET /snapshot) and the log
// is trimmed below them, so that an app restarted empty can only be restored from one (PUT
// /snapshot) before it replays the retained tail.
TEST_P(ExampleApps, AnAppRestartedEmptyAfterATrimIsRestoredFromASnapshot) {
  ReplicatedClusterOptions o =
      Options({"--snapshot-every-entries", "20", "--snapshot-min-interval-ms", "200",
               "--retain-entries", "10", "--trim-min-age-ms", "3000"});
  o.request_timeout = 2500ms;  // below --trim-min-age-ms, as the proxy requires
  ReplicatedCluster cluster(std::move(o));
  ASSERT_NO_FATAL_FAILURE(StartAndWait(cluster));
  const std::string log_prefix = "/k8shmir/" + cluster.group() + "/log/";
  CounterModel model;
  int k = 0;
  for (; k < 40; ++k) ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 3), MixedOp(k), model), 0) << k;
  // Trims wait for entries to age, and run after a snapshot: keep writing until one is done.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (cluster.Etcd().TrimmedIndex(log_prefix) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << cluster.Status(0).dump();
    ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 3), MixedOp(k), model), 0) << k;
    ++k;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(cluster.WaitAppsApplied(model.last_index(), kApplyTimeout));

  cluster.KillApp(2);
  cluster.StartApp(2);
  EXPECT_TRUE(WaitFor(
      [&] {
        const json s = cluster.Status(2);
        return s.is_object() && s.at("retention").value("snapshots_restored", int64_t{0}) >= 1;
      },
      kServingTimeout))
      << cluster.Status(2).dump();
  ASSERT_TRUE(cluster.WaitServing(2, kServingTimeout)) << cluster.Status(2).dump();
  const int64_t restored_at = k;
  for (; k < restored_at + 20; ++k) {
    ASSERT_GT(SendAndCheck(cluster.ProxyPort(k % 3), MixedOp(k), model), 0) << k;
  }
  ExpectReplicasMatch(cluster, model);
  const json status = cluster.Status(2);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status.at("retention").value("snapshots_rejected", int64_t{-1}), 0);
}

// 3. The contract, straight against one app: a Log-Index not above the last applied one is
// refused with 409 and changes nothing; a malformed one is refused with 400; requests without
// Log-Index read and leave the last index alone, and a write without it is refused (403); a
// logged read, a logged 404, a logged refused op, a logged unknown method and a logged request
// with a large head advance the index like any entry.
TEST_P(ExampleApps, RefusesAStaleLogIndexAndReadsLeaveTheLastIndexAlone) {
  App app(Command(GetParam()), "app");
  ASSERT_TRUE(app.up()) << "examples/" << GetParam().script << " did not come up";
  const uint16_t port = app.port();
  json last_index{{"index", 0}, {"snapshots", true}};
  if (GetParam().pipelining) last_index["pipelining"] = true;
  EXPECT_EQ(app.Get("/last-index"), last_index);

  CounterModel model;
  auto apply = [&](const CounterOp& op, int64_t index) {
    const HttpResult res = Send(port, op, index);
    const ModelResponse expected = model.Apply(op, index);
    EXPECT_EQ(res.status, expected.status) << op.Describe() << ": " << res.Describe();
    if (expected.status == 200) {
      EXPECT_EQ(res.Json(), expected.body) << res.Describe();
    }
  };
  apply(CounterOp::Set(7), 256);
  apply(CounterOp::Append("first"), 512);

  // Stale: the last index itself, and one below it. Nothing changes.
  for (int64_t stale : {512, 300}) {
    const HttpResult res = Send(port, CounterOp::Mul(3), stale);
    EXPECT_EQ(res.status, 409u) << res.Describe();
    EXPECT_EQ(res.Json(),
              (json{{"error", "stale Log-Index"}, {"index", stale}, {"last_index", 512}}))
        << res.Describe();
  }
  const HttpResult malformed = Http(port, "POST", "/journal", "x", {{"Log-Index", "12abc"}}, 5s);
  EXPECT_EQ(malformed.status, 400u) << malformed.Describe();

  // Without Log-Index: reads answer from the state; a write is refused.
  EXPECT_EQ(app.Get("/integer"), (json{{"value", 7}}));
  EXPECT_EQ(app.Get("/journal"), (json{{"entries", model.journal()}}));
  const HttpResult direct = Send(port, CounterOp::Inc(1));
  EXPECT_EQ(direct.status, 403u) << direct.Describe();
  last_index["index"] = 512;
  EXPECT_EQ(app.Get("/last-index"), last_index);
  EXPECT_EQ(app.Get("/journal/digest"), (json{{"count", 2},
                                              {"hash", model.hash()},
                                              {"value", 7},
                                              {"last_index", 512},
                                              {"violations", 3}}));

  // Logged requests advance the index whatever they are.
  apply(CounterOp::Read(), 768);
  apply(CounterOp::Invalid(), 1024);
  const HttpResult missing = Http(port, "DELETE", "/nothing", "", {{"Log-Index", "1280"}}, 5s);
  EXPECT_EQ(missing.status, 404u) << missing.Describe();
  const HttpResult foo = Http(port, "FOO", "/integer", "", {{"Log-Index", "1408"}}, 5s);
  EXPECT_EQ(foo.status, GetParam().unknown_method_status) << foo.Describe();
  last_index["index"] = 1408;
  EXPECT_EQ(app.Get("/last-index"), last_index);
  apply(CounterOp::Mul(6), 1536);
  // A head the proxy passes (under its 64 KiB --header-limit) but over the framework's own
  // limits (Node: 16 KiB, http.server: 100 lines), which it would refuse before the app records
  // the index.
  Headers many = {{"Log-Index", "1792"}};
  for (int i = 0; i < 300; ++i) many.emplace_back("X-" + std::to_string(i), std::string(100, 'a'));
  const HttpResult big_head = Http(port, "GET", "/integer", "", many, 5s);
  EXPECT_EQ(big_head.status, 200u) << big_head.Describe();
  EXPECT_EQ(big_head.Json(), (json{{"value", 42}}));
  last_index["index"] = 1792;
  EXPECT_EQ(app.Get("/last-index"), last_index);
  EXPECT_EQ(app.Get("/journal/digest"), (json{{"count", 3},
                                              {"hash", model.hash()},
                                              {"value", 42},
                                              {"last_index", 1792},
                                              {"violations", 3}}));
}

// 4. The same replicated requests to the app and to counter-app give the same answers, journal,
// digest and snapshot (byte for byte), and each restores the other's snapshot. Operands large
// enough that MUL wraps around int64.
TEST_P(ExampleApps, AnswersLikeCounterAppAndTakesItsSnapshots) {
  App app(Command(GetParam()), "app");
  App counter({kCounterBin, "--host", "127.0.0.1", "--port", "{port}"}, "counter-app");
  ASSERT_TRUE(app.up()) << "examples/" << GetParam().script << " did not come up";
  ASSERT_TRUE(counter.up());

  const std::vector<CounterOp> ops = {
      CounterOp::Set((1LL << 40) + 12345),
      CounterOp::Mul((1LL << 30) + 7),  // past 2^63: wraps
      CounterOp::Inc(-(1LL << 52)),
      CounterOp::Append(
          "quotes \" backslash \\ controls \t\n\r\b\f\x01\x1f\x7f utf8 \xc3\xa9 \xe2\x82\xac"),
      CounterOp::Mul(9007199254740991),
      CounterOp::Dec(3),
      CounterOp::Read(),
      CounterOp::Invalid(),
      CounterOp::Reset(),
      CounterOp::Dec(9007199254740991),
      CounterOp::Append(""),
      CounterOp::Mul(-9007199254740991),
  };
  int64_t index = 0;
  for (const CounterOp& op : ops) {
    index += 256;
    const HttpResult a = Send(app.port(), op, index);
    const HttpResult c = Send(counter.port(), op, index);
    EXPECT_EQ(a.status, c.status) << op.Describe() << ": " << a.Describe() << " / " << c.Describe();
    if (c.status == 200) {
      EXPECT_EQ(a.Json(), c.Json()) << op.Describe();
    }
  }
  json counter_digest = counter.Get("/journal/digest");
  counter_digest.erase("duplicates");  // counter-app's --no-stale-check diagnostic
  EXPECT_EQ(app.Get("/journal/digest"), counter_digest);
  EXPECT_EQ(app.Get("/journal"), counter.Get("/journal"));

  const HttpResult snapshot = Http(app.port(), "GET", "/snapshot", "", {}, 5s);
  const HttpResult counter_snapshot = Http(counter.port(), "GET", "/snapshot", "", {}, 5s);
  ASSERT_EQ(snapshot.status, 200u) << snapshot.Describe();
  EXPECT_EQ(snapshot.Header("Log-Index"), std::to_string(index));
  EXPECT_EQ(snapshot.Header("Log-Index"), counter_snapshot.Header("Log-Index"));
  EXPECT_EQ(snapshot.body, counter_snapshot.body);

  // Each into an empty one of the other kind; then both go on alike.
  App app2(Command(GetParam()), "app2");
  App counter2({kCounterBin, "--host", "127.0.0.1", "--port", "{port}"}, "counter-app2");
  ASSERT_TRUE(app2.up() && counter2.up());
  const Headers at{{"Log-Index", std::to_string(index)}};
  EXPECT_EQ(Http(app2.port(), "PUT", "/snapshot", counter_snapshot.body, at, 5s).Json(),
            (json{{"index", index}}));
  EXPECT_EQ(Http(counter2.port(), "PUT", "/snapshot", snapshot.body, at, 5s).Json(),
            (json{{"index", index}}));
  index += 256;
  EXPECT_EQ(Send(app2.port(), CounterOp::Inc(5), index).Json(),
            Send(counter2.port(), CounterOp::Inc(5), index).Json());
  EXPECT_EQ(Send(app2.port(), CounterOp::Inc(5), index).status, 409u);
  json digest = app2.Get("/journal/digest");
  json expected = counter2.Get("/journal/digest");
  expected.erase("duplicates");
  expected["violations"] = 1;  // the 409 above, which counter2 did not see
  EXPECT_EQ(digest, expected);
  EXPECT_EQ(app2.Get("/journal"), counter2.Get("/journal"));
}

INSTANTIATE_TEST_SUITE_P(, ExampleApps, ::testing::Values(kNode, kPython),
                         [](const ::testing::TestParamInfo<ExampleApp>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace k8shmir::testing
