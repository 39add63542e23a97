// Tests of the integration-test harness itself (test/support) and of the counter example app:
// child processes, ports, the HTTP client, a real etcd cluster, and the app's contract. They do
// not need the proxy.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <set>
#include <string>

#include "support/counter_model.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/ports.h"
#include "support/process.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("k8shmir-harness-"); }
  void TearDown() override { RemoveTree(dir_); }
  std::filesystem::path dir_;
};

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The harness asks GoogleTest about the running test through hooks (it links no GoogleTest
// itself, for the bench): every test binary installs them.
TEST(HarnessContext, KnowsTheRunningTest) {
  EXPECT_EQ(CurrentTestName(), "HarnessContext.KnowsTheRunningTest");
}

TEST(FreePort, NeverHandsOutAPortTwice) {
  std::set<uint16_t> ports;
  for (int i = 0; i < 300; ++i) {
    const uint16_t p = FreePort();
    EXPECT_GT(p, 0);
    EXPECT_TRUE(ports.insert(p).second) << p;
  }
}

using ChildProcessTest = TempDirTest;

TEST_F(ChildProcessTest, RunsWithEnvironmentAndLogsOutput) {
  ChildProcess p;
  const auto log = dir_ / "child.log";
  p.Start({"/bin/sh", "-c", "echo out-$K8SHMIR_TEST_VAR; echo err >&2; exit 3"},
          {{"K8SHMIR_TEST_VAR", "value"}}, log);
  ASSERT_TRUE(WaitFor([&] { return !p.Running(); }, 10s));
  EXPECT_EQ(p.DescribeExit(), "exited 3");
  EXPECT_EQ(p.pid(), -1);
  const std::string text = ReadFile(log);
  EXPECT_NE(text.find("=== start"), std::string::npos) << text;
  EXPECT_NE(text.find("out-value\n"), std::string::npos) << text;
  EXPECT_NE(text.find("err\n"), std::string::npos) << text;
}

TEST_F(ChildProcessTest, KillAndTerminateReapTheChild) {
  ChildProcess p;
  p.Start({"sleep", "60"}, {}, dir_ / "sleep.log");
  const pid_t pid = p.pid();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(p.Running());
  p.Kill();
  EXPECT_FALSE(p.Running());
  EXPECT_EQ(p.DescribeExit(), "killed by signal 9");
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1) << "not reaped";

  // A process that ignores SIGTERM is killed after the timeout.
  p.Start({"/bin/sh", "-c", "trap '' TERM; echo trapped; sleep 60"}, {}, dir_ / "stubborn.log");
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(dir_ / "stubborn.log").find("trapped\n") != std::string::npos; }, 10s));
  EXPECT_FALSE(p.Terminate(300ms));
  EXPECT_FALSE(p.Running());

  // One that honours it exits by itself.
  p.Start({"sleep", "60"}, {}, dir_ / "sleep2.log");
  EXPECT_TRUE(p.Terminate(5s));
  EXPECT_EQ(p.DescribeExit(), "killed by signal " + std::to_string(SIGTERM));
}

TEST_F(ChildProcessTest, KillTakesTheWholeProcessGroup) {
  ChildProcess p;
  const auto pidfile = dir_ / "grandchild.pid";
  p.Start({"/bin/sh", "-c", "sleep 60 & echo $! > " + pidfile.string() + "; wait"}, {},
          dir_ / "group.log");
  ASSERT_TRUE(WaitFor([&] { return ReadFile(pidfile).find('\n') != std::string::npos; }, 10s));
  const pid_t grandchild = std::stoi(ReadFile(pidfile));
  ASSERT_EQ(::kill(grandchild, 0), 0);
  p.Kill();
  // The grandchild is reparented and reaped by init; it must be gone soon.
  EXPECT_TRUE(WaitFor([&] { return ::kill(grandchild, 0) != 0; }, 10s));
}

TEST_F(ChildProcessTest, StartFailsForMissingProgram) {
  ChildProcess p;
  EXPECT_THROW(p.Start({"/nonexistent/program"}, {}, dir_ / "x.log"), std::runtime_error);
  EXPECT_FALSE(p.Running());
}

TEST(RawHttp, ParsesStatusAndHeaders) {
  const std::string r =
      "HTTP/1.1 413 Payload Too Large\r\nK8shmir-Outcome:  not-committed \r\n"
      "content-length: 0\r\n\r\n";
  EXPECT_EQ(RawStatus(r), 413u);
  EXPECT_EQ(RawHeader(r, "k8shmir-outcome"), "not-committed");
  EXPECT_EQ(RawHeader(r, "Content-Length"), "0");
  EXPECT_EQ(RawHeader(r, "Missing"), "");
  EXPECT_EQ(RawStatus("garbage"), 0u);
  const std::string binary("k8shmir\xff\x00!", 10);
  EXPECT_EQ(Base64Decode(Base64Encode(binary)), binary);
  EXPECT_EQ(Base64Encode("ab"), "YWI=");
}

// The counter app, reached directly: the contract the proxy relies on, and a strict detector of
// ordering bugs.
class CounterAppTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    port_ = FreePort();
  }
  void StartApp(const std::vector<std::string>& flags = {}) {
    std::vector<std::string> args = {kCounterBin, "--port", std::to_string(port_)};
    args.insert(args.end(), flags.begin(), flags.end());
    app_.Start(args, {}, dir_ / "app.log");
    ASSERT_TRUE(WaitFor([&] { return Http(port_, "GET", "/last-index").status == 200; }, 10s));
  }
  HttpResult Replicated(const CounterOp& op, int64_t index) {
    return Http(port_, op.Method(), op.Target(), op.Body(), {{"Log-Index", std::to_string(index)}});
  }
  uint16_t port_ = 0;
  ChildProcess app_;
};

TEST_F(CounterAppTest, AppliesInIndexOrderAndRefusesStaleIndices) {
  ASSERT_NO_FATAL_FAILURE(StartApp());
  // It handles each connection's requests one after the other, and says so.
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", 0}, {"pipelining", true}, {"snapshots", true}}));

  CounterModel model;
  const std::vector<std::pair<CounterOp, int64_t>> ops = {
      {CounterOp::Set(5), 3},          {CounterOp::Mul(3), 7},   {CounterOp::Append("a\"b"), 8},
      {CounterOp::Invalid(), 9},       {CounterOp::Read(), 10},  {CounterOp::Dec(20), 12},
      {CounterOp::Mul(INT64_MAX), 13}, {CounterOp::Reset(), 20}, {CounterOp::Inc(-4), 21},
  };
  for (const auto& [op, index] : ops) {
    const HttpResult r = Replicated(op, index);
    const ModelResponse expected = model.Apply(op, index);
    EXPECT_EQ(r.status, expected.status) << op.Describe() << ": " << r.Describe();
    if (expected.status == 200) {
      EXPECT_EQ(r.Json(), expected.body) << op.Describe();
    }
  }
  // Direct access (no header) is applied, journaled with index 0, and leaves the index alone.
  EXPECT_EQ(Http(port_, "POST", "/integer", R"({"op":"INC"})").Json(),
            model.Apply(CounterOp::Inc(1), 0).body);

  // Stale or repeated indices are refused and counted; nothing changes.
  for (int64_t stale : {21, 20, 1, 0, -5}) {
    const HttpResult r = Replicated(CounterOp::Set(999), stale);
    EXPECT_EQ(r.status, 409u) << stale << ": " << r.Describe();
  }
  EXPECT_EQ(Http(port_, "GET", "/integer", "", {{"log-index", "abc"}}).status, 400u);

  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", 21}, {"pipelining", true}, {"snapshots", true}}));
  EXPECT_EQ(Http(port_, "GET", "/journal").Json(), json({{"entries", model.journal()}}));
  const json digest = Http(port_, "GET", "/journal/digest").Json();
  EXPECT_EQ(digest, json({{"count", model.journal().size()},
                          {"hash", model.hash()},
                          {"value", model.value()},
                          {"last_index", 21},
                          {"violations", 6},
                          {"duplicates", 0}}));
  EXPECT_EQ(Http(port_, "GET", "/integer").Json(), json({{"value", model.value()}}));
  EXPECT_EQ(Http(port_, "GET", "/nope").status, 404u);
  EXPECT_EQ(Http(port_, "DELETE", "/journal").status, 404u);
}

// Like the K8ShMiR thesis's Express example: the index of the last request received, reads
// included, and null after one without the header; every request is applied, repeats counted.
TEST_F(CounterAppTest, ThesisIndexReportsTheLastHeaderSeenAndAppliesRepeats) {
  ASSERT_NO_FATAL_FAILURE(StartApp({"--thesis-index"}));
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", 0}, {"pipelining", true}, {"snapshots", true}}));
  EXPECT_EQ(Replicated(CounterOp::Set(3), 4).status, 200u);
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", 4}, {"pipelining", true}, {"snapshots", true}}));
  EXPECT_EQ(Http(port_, "GET", "/integer").Json(), json({{"value", 3}}));  // no header
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", nullptr}, {"pipelining", true}, {"snapshots", true}}));
  // A repeat is applied (no 409) and counted.
  EXPECT_EQ(Replicated(CounterOp::Mul(5), 4).status, 200u);
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", 4}, {"pipelining", true}, {"snapshots", true}}));
  const json digest = Http(port_, "GET", "/journal/digest").Json();
  EXPECT_EQ(digest.value("value", 0), 15);
  EXPECT_EQ(digest.value("duplicates", -1), 1);
  EXPECT_EQ(digest.value("violations", -1), 1);
}

TEST_F(CounterAppTest, NoStaleCheckAppliesRepeatsAndCountsThem) {
  ASSERT_NO_FATAL_FAILURE(StartApp({"--no-stale-check"}));
  EXPECT_EQ(Replicated(CounterOp::Set(2), 7).status, 200u);
  EXPECT_EQ(Replicated(CounterOp::Mul(3), 7).status, 200u);
  EXPECT_EQ(Replicated(CounterOp::Inc(1), 5).status, 200u);
  EXPECT_EQ(Http(port_, "GET", "/integer").Json(), json({{"value", 7}}));
  // Direct reads leave the index alone (unlike --thesis-index).
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(),
            json({{"index", 5}, {"pipelining", true}, {"snapshots", true}}));
  const json digest = Http(port_, "GET", "/journal/digest").Json();
  EXPECT_EQ(digest.value("duplicates", -1), 1);
  EXPECT_EQ(digest.value("violations", -1), 2);
}

TEST_F(CounterAppTest, NoPipeliningLeavesTheDeclarationOut) {
  ASSERT_NO_FATAL_FAILURE(StartApp({"--no-pipelining"}));
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(), json({{"index", 0}, {"snapshots", true}}));
  EXPECT_EQ(Replicated(CounterOp::Set(7), 9).status, 200u);
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(), json({{"index", 9}, {"snapshots", true}}));
}

TEST_F(CounterAppTest, NoSnapshotsLeavesTheDeclarationAndTheEndpointOut) {
  ASSERT_NO_FATAL_FAILURE(StartApp({"--no-snapshots"}));
  EXPECT_EQ(Http(port_, "GET", "/last-index").Json(), json({{"index", 0}, {"pipelining", true}}));
  EXPECT_EQ(Http(port_, "GET", "/snapshot").status, 404u);
}

TEST_F(CounterAppTest, KeepAliveLimitsAndMalformedRequests) {
  ASSERT_NO_FATAL_FAILURE(StartApp());
  HttpConnection conn(port_);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(conn.Request("POST", "/journal", "k" + std::to_string(i)).status, 200u);
  }
  EXPECT_EQ(conn.connections_opened(), 1);

  const HttpResult big = Http(port_, "POST", "/journal", std::string(8 * 1024 * 1024 + 1, 'z'));
  EXPECT_EQ(big.status, 413u) << big.Describe();
  const std::string bad = RawExchange(port_, "NOT HTTP\r\n\r\n", 5s);
  EXPECT_EQ(RawStatus(bad), 400u) << bad;
  EXPECT_EQ(Http(port_, "GET", "/journal/digest").Json().value("count", 0), 20);
}

// A real etcd cluster: health, leader, writes, member failure, full restart, compaction.
TEST(EtcdClusterTest, StartsSurvivesAMemberAndRestarts) {
  EtcdCluster etcd(3);
  etcd.Start();
  EXPECT_EQ(etcd.Endpoints(), etcd.Endpoint(0) + "," + etcd.Endpoint(1) + "," + etcd.Endpoint(2));
  const int leader = etcd.LeaderIndex();
  ASSERT_GE(leader, 0);

  const int64_t r1 = etcd.Put("/k8shmir-test/a", "1");
  const int64_t r2 = etcd.Put("/k8shmir-test/b", "2");
  EXPECT_GT(r2, r1);
  EXPECT_EQ(etcd.Revision(), r2);
  EXPECT_EQ(etcd.CountPrefix("/k8shmir-test/"), 2);

  etcd.KillMember(leader);
  EXPECT_FALSE(etcd.MemberRunning(leader));
  const int new_leader = etcd.LeaderIndex(20s);
  ASSERT_GE(new_leader, 0);
  EXPECT_NE(new_leader, leader);
  const int64_t r3 = etcd.Put("/k8shmir-test/c", "3");
  EXPECT_GT(r3, r2);
  etcd.RestartMember(leader);
  EXPECT_TRUE(etcd.MemberHealthy(leader));

  etcd.KillAll();
  EXPECT_THROW(etcd.Revision(), std::runtime_error);
  etcd.RestartAll();
  EXPECT_EQ(etcd.Revision(), r3);
  EXPECT_EQ(etcd.CountPrefix("/k8shmir-test/"), 3);
  etcd.Compact(r3);
  EXPECT_GE(etcd.LeaderIndex(), 0);
}

}  // namespace
}  // namespace k8shmir::testing
