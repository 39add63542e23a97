// k8shmirctl against a real etcd and running proxies: the binary runs as a child process, its
// JSON is parsed and every value that the test knows is asserted exactly.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "log/etcd_errors.h"
#include "support/http_client.h"
#include "support/ports.h"
#include "support/process.h"
#include "support/replicated_cluster.h"
#include "support/test_certs.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct CtlRun {
  int exit_code = -1;  // -1: did not exit by itself in time (then killed)
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
  json Json() const { return json::parse(out, nullptr, /*allow_exceptions=*/false); }
  std::string Describe() const {
    return "exit " + std::to_string(exit_code) + " after " + std::to_string(elapsed.count()) +
           " ms\nstdout: " + out + "\nstderr: " + err;
  }
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The shell only redirects: stdout and stderr apart, which ChildProcess's one log cannot.
CtlRun RunCtl(const std::vector<std::string>& args, std::chrono::milliseconds limit = 30s) {
  // Removed at exit: what a failing run printed is in its assertion's message.
  static const struct RunDir {
    fs::path path = fs::temp_directory_path() / ("k8shmirctl-test-" + std::to_string(getpid()));
    RunDir() { fs::create_directories(path); }
    ~RunDir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } run_dir;
  static int runs = 0;
  const fs::path& dir = run_dir.path;
  const fs::path out = dir / ("run-" + std::to_string(++runs) + ".out");
  const fs::path err = dir / ("run-" + std::to_string(runs) + ".err");
  // Not the proxy's variables of whoever runs the test: every run says what it uses.
  std::string command =
      std::string("unset K8SHMIR_ETCD_ENDPOINTS K8SHMIR_GROUP; exec ") + K8SHMIR_CTL_BIN;
  for (const auto& a : args) command += " '" + a + "'";
  command += " >" + out.string() + " 2>" + err.string();
  ChildProcess child;
  const auto start = Clock::now();
  child.Start({"/bin/sh", "-c", command}, {}, dir / "shell.log");
  WaitFor([&] { return !child.Running(); }, limit, 10ms);
  CtlRun run;
  run.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (child.Running()) {
    child.Kill();
  } else if (auto status = child.last_wait_status(); status && WIFEXITED(*status)) {
    run.exit_code = WEXITSTATUS(*status);
  }
  run.out = ReadFile(out);
  run.err = ReadFile(err);
  return run;
}

// The sum of the values under `prefix`, asked of etcd directly.
int64_t LogValueBytes(const std::string& endpoint, const std::string& prefix) {
  auto stub =
      etcdserverpb::KV::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 10s);
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixRangeEnd(prefix));
  etcdserverpb::RangeResponse response;
  grpc::Status s = stub->Range(&context, request, &response);
  if (!s.ok()) return -1;
  int64_t bytes = 0;
  for (const auto& kv : response.kvs()) bytes += static_cast<int64_t>(kv.value().size());
  return bytes;
}

const json* ReplicaById(const json& status, const std::string& id) {
  for (const auto& r : status["replicas"]) {
    if (r["id"] == id) return &r;
  }
  return nullptr;
}

TEST(K8shmirctl, StatusGroupsUnknownGroupAndADegradedReplica) {
  ReplicatedClusterOptions options;
  options.etcd_members = 1;
  options.group = "ctl";
  // A snapshot within the test's 20 writes (none trimmed: --retain-entries keeps 300,000).
  options.extra_proxy_args = {"--snapshot-every-entries", "10", "--snapshot-min-interval-ms", "1"};
  ReplicatedCluster cluster(options);
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitAllServing());
  const std::string endpoints = cluster.Etcd().Endpoints();

  constexpr int kWrites = 20;
  int64_t last = 0;
  for (int i = 0; i < kWrites; ++i) {
    HttpResult r =
        Http(cluster.ProxyPort(i % 3), "POST", "/integer", json{{"op", "INC"}, {"value", 1}}.dump(),
             {{"Content-Type", "application/json"}});
    ASSERT_EQ(r.status, 200u) << r.Describe();
    const int64_t index = std::stoll(r.Header("K8shmir-Log-Index"));
    ASSERT_GT(index, last);
    last = index;
  }
  ASSERT_TRUE(cluster.WaitAppsApplied(last));

  // Records are refreshed every 2 s: wait until each shows the last write applied.
  CtlRun run;
  json status;
  ASSERT_TRUE(WaitFor(
      [&] {
        run = RunCtl({"status", "ctl", "--etcd-endpoints", endpoints, "--output", "json"});
        status = run.Json();
        if (status.is_discarded() || status["replicas"].size() != 3 || run.exit_code != 0) {
          return false;
        }
        for (const auto& r : status["replicas"]) {
          if (r["applied_index"] != last || r["state"] != "serving") return false;
        }
        // ... and the taker's record the newest snapshot it stored.
        if (status["snapshots"].empty() || !status["snapshot_taker"].is_string()) return false;
        const json* taker = ReplicaById(status, status["snapshot_taker"]);
        return taker != nullptr &&
               (*taker)["last_snapshot_index"] == status["snapshots"][0]["index"];
      },
      20s, 200ms))
      << run.Describe();
  EXPECT_EQ(run.exit_code, 0) << run.Describe();
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(status["verdict"], "healthy");
  EXPECT_EQ(status["problems"], json::array());
  EXPECT_EQ(status["group"], "ctl");
  EXPECT_EQ(status["format"], 1);
  EXPECT_EQ(status["group_read"], true);
  EXPECT_EQ(status["serializable_read"], false);
  for (int i = 0; i < 3; ++i) {
    const json& r = status["replicas"][i];
    EXPECT_EQ(r["id"], "replica-" + std::to_string(i));
    EXPECT_EQ(r["serving"], true);
    EXPECT_EQ(r["applied_index"], last);
    EXPECT_EQ(r["behind_index"], 0);
    EXPECT_EQ(r["lag_entries"], 0);
    EXPECT_EQ(r["app_pipelining"], true);  // counter-app declares it
    EXPECT_EQ(r["app_snapshots"], true);
    EXPECT_EQ(r["last_error"], nullptr) << r.dump();
  }
  int takers = 0;
  for (const auto& r : status["replicas"]) takers += r["snapshot_taker"] == true ? 1 : 0;
  EXPECT_EQ(takers, 1);
  EXPECT_EQ(status["log"]["prefix"], "/k8shmir/ctl/log/");
  EXPECT_EQ(status["log"]["last_index"], last);
  EXPECT_EQ(status["log"]["committed_index"], last);
  EXPECT_EQ(status["log"]["trimmed_index"], 0);
  EXPECT_EQ(status["log"]["keys"], kWrites);  // one batch per request, sent one at a time
  EXPECT_EQ(status["log"]["bytes"], nullptr);
  // The newest stored snapshot, as its manifest says; every one taken by the taker.
  ASSERT_GE(status["snapshots"].size(), 1u);
  ASSERT_LE(status["snapshots"].size(), 2u);  // the newest two are kept
  for (const auto& snapshot : status["snapshots"]) {
    EXPECT_EQ(snapshot["error"], nullptr) << snapshot.dump();
    EXPECT_EQ(snapshot["taker"], status["snapshot_taker"]) << snapshot.dump();
    EXPECT_EQ(snapshot["chunks"], 1) << snapshot.dump();
    EXPECT_LE(snapshot["index"].get<int64_t>(), last) << snapshot.dump();
  }
  if (status["snapshots"].size() == 2) {
    EXPECT_GT(status["snapshots"][0]["index"], status["snapshots"][1]["index"]);
  }
  const json& etcd = status["etcd"];
  ASSERT_EQ(etcd["endpoints"].size(), 1u);
  EXPECT_EQ(etcd["endpoints"][0]["endpoint"], endpoints);
  EXPECT_EQ(etcd["endpoints"][0]["reachable"], true);
  EXPECT_EQ(etcd["endpoints"][0]["is_leader"], true);
  EXPECT_EQ(etcd["leader_id"], etcd["endpoints"][0]["member_id"]);
  ASSERT_EQ(etcd["members"].size(), 1u);
  EXPECT_EQ(etcd["members"][0]["id"], etcd["leader_id"]);
  EXPECT_EQ(etcd["alarms"], json::array());
  EXPECT_EQ(etcd["quota_bytes"], int64_t{2} << 30);

  // --log-bytes: the values of the 20 batches, as etcd holds them.
  CtlRun bytes =
      RunCtl({"status", "ctl", "--etcd-endpoints", endpoints, "--output", "json", "--log-bytes"});
  ASSERT_FALSE(bytes.Json().is_discarded()) << bytes.Describe();
  EXPECT_EQ(bytes.Json()["log"]["bytes"], LogValueBytes(endpoints, "/k8shmir/ctl/log/"))
      << bytes.Describe();

  CtlRun groups = RunCtl({"groups", "--etcd-endpoints", endpoints, "--output", "json"});
  EXPECT_EQ(groups.exit_code, 0) << groups.Describe();
  EXPECT_EQ(groups.Json()["groups"], json::parse(R"([{"name":"ctl","format":1,"replicas":3,
      "log_keys":20,"last_index":)" + std::to_string(last) +
                                                 "}]"))
      << groups.Describe();
  CtlRun groups_text = RunCtl({"groups", "--etcd-endpoints", endpoints});
  EXPECT_EQ(groups_text.exit_code, 0) << groups_text.Describe();
  EXPECT_EQ(groups_text.out,
            "GROUP                         FORMAT  REPLICAS  LOG KEYS  LAST INDEX\n"
            "ctl                           1       3         20        " +
                std::to_string(last) + "\n");

  // --watch: one JSON object per refresh, until SIGINT (Ctrl-C), then the last one's code.
  {
    const fs::path out = cluster.log_dir() / "watch.out";
    ChildProcess watch;
    watch.Start({"/bin/sh", "-c",
                 std::string("exec ") + K8SHMIR_CTL_BIN +
                     " status ctl --watch --interval 300ms --output json --etcd-endpoints " +
                     endpoints + " >" + out.string()},
                {}, cluster.log_dir() / "watch.log");
    ASSERT_TRUE(WaitFor(
        [&] {
          const std::string text = ReadFile(out);
          return std::count(text.begin(), text.end(), '\n') >= 3;
        },
        15s));
    ASSERT_EQ(::kill(watch.pid(), SIGINT), 0);
    ASSERT_TRUE(WaitFor([&] { return !watch.Running(); }, 10s));
    ASSERT_TRUE(watch.last_wait_status() && WIFEXITED(*watch.last_wait_status()))
        << watch.DescribeExit();
    EXPECT_EQ(WEXITSTATUS(*watch.last_wait_status()), 0) << watch.DescribeExit();
    std::istringstream lines(ReadFile(out));
    std::string line;
    int objects = 0;
    while (std::getline(lines, line)) {
      json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
      ASSERT_FALSE(j.is_discarded()) << line;
      EXPECT_EQ(j["exit_code"], 0) << line;
      EXPECT_EQ(j["replicas"].size(), 3u) << line;
      ++objects;
    }
    EXPECT_GE(objects, 3);
  }

  CtlRun unknown = RunCtl({"status", "nosuch", "--etcd-endpoints", endpoints});
  EXPECT_EQ(unknown.exit_code, 3) << unknown.Describe();
  EXPECT_EQ(unknown.out, "");
  EXPECT_EQ(unknown.err,
            "k8shmirctl: group 'nosuch' not found: no /k8shmir/nosuch/format marker and no "
            "replica registered\n");

  CtlRun usage = RunCtl({"status", "ctl"});
  EXPECT_EQ(usage.exit_code, 64) << usage.Describe();
  EXPECT_EQ(usage.err, "k8shmirctl: --etcd-endpoints is required (or K8SHMIR_ETCD_ENDPOINTS)\n");

  // The app of replica-1 dies: its proxy stays up and publishes that it is not serving.
  cluster.KillApp(1);
  ASSERT_TRUE(WaitFor(
      [&] {
        run = RunCtl({"status", "ctl", "--etcd-endpoints", endpoints, "--output", "json"});
        status = run.Json();
        const json* r1 = status.is_discarded() ? nullptr : ReplicaById(status, "replica-1");
        return r1 != nullptr && (*r1)["serving"] == false;
      },
      30s, 300ms))
      << run.Describe();
  EXPECT_EQ(run.exit_code, 1) << run.Describe();
  EXPECT_EQ(status["verdict"], "degraded");
  ASSERT_EQ(status["problems"].size(), 1u) << run.Describe();
  const json& r1 = *ReplicaById(status, "replica-1");
  // Why, as its proxy recorded it: the app's connection refused.
  ASSERT_TRUE(r1["last_error"].is_string()) << r1.dump();
  EXPECT_NE(r1["last_error"].get<std::string>().find("Connection refused"), std::string::npos)
      << r1.dump();
  EXPECT_TRUE(r1["last_error_age_ms"].is_number_integer()) << r1.dump();
  EXPECT_EQ(status["problems"][0], "replica replica-1 is " + r1["state"].get<std::string>() + ": " +
                                       r1["last_error"].get<std::string>());
  EXPECT_EQ((*ReplicaById(status, "replica-0"))["serving"], true);
  EXPECT_EQ((*ReplicaById(status, "replica-2"))["serving"], true);

  CtlRun text = RunCtl({"status", "ctl", "--etcd-endpoints", endpoints});
  EXPECT_EQ(text.exit_code, 1) << text.Describe();
  EXPECT_EQ(text.out.rfind("group ctl: DEGRADED (exit 1)\n  - replica replica-1 is ", 0), 0u)
      << text.Describe();
}

TEST(K8shmirctl, ClosedPortIsUnreachableAtOnceNamingTheEndpoint) {
  const std::string endpoint = "127.0.0.1:" + std::to_string(FreePort());
  CtlRun run = RunCtl({"status", "g", "--etcd-endpoints", endpoint, "--timeout", "3s"});
  EXPECT_EQ(run.exit_code, 2) << run.Describe();
  EXPECT_LT(run.elapsed, 3000ms) << run.Describe();
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err.rfind("k8shmirctl: etcd endpoint " + endpoint + ": UNAVAILABLE", 0), 0u)
      << run.Describe();
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.Describe();

  CtlRun json_run = RunCtl({"status", "g", "--etcd-endpoints", endpoint, "--output", "json"});
  EXPECT_EQ(json_run.exit_code, 2) << json_run.Describe();
  json j = json_run.Json();
  ASSERT_FALSE(j.is_discarded()) << json_run.Describe();
  EXPECT_EQ(j["verdict"], "unreachable");
  EXPECT_EQ(j["etcd"]["endpoints"][0]["reachable"], false);
  EXPECT_EQ(j["group_read"], false);

  CtlRun groups = RunCtl({"groups", "--etcd-endpoints", endpoint});
  EXPECT_EQ(groups.exit_code, 2) << groups.Describe();
}

// A port that accepts connections (the kernel's backlog) but never speaks: only the deadline
// ends the calls.
TEST(K8shmirctl, SilentEndpointIsUnreachableAtTheDeadline) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(FreePort());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  const std::string endpoint = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  CtlRun run = RunCtl({"status", "g", "--etcd-endpoints", endpoint, "--timeout", "1s"});
  ::close(fd);
  EXPECT_EQ(run.exit_code, 2) << run.Describe();
  EXPECT_GE(run.elapsed, 1000ms) << run.Describe();
  EXPECT_LT(run.elapsed, 4000ms) << run.Describe();
  EXPECT_EQ(
      run.err.rfind("k8shmirctl: etcd endpoint " + endpoint + ": no answer within 1000 ms", 0), 0u)
      << run.Describe();
}

// The proxy's TLS flags, against a member with client certificate authentication.
TEST(K8shmirctl, TlsFlagsAndTlsFailures) {
  TestCerts certs;
  EtcdCluster etcd(1, fs::path{},
                   EtcdClusterTls{certs.server().cert, certs.server().key, certs.ca(),
                                  /*client_cert_auth=*/true});
  etcd.Start();
  const std::string endpoint = etcd.Endpoint(0);
  const std::vector<std::string> mutual = {"--etcd-ca-file",   certs.ca().string(),
                                           "--etcd-cert-file", certs.client().cert.string(),
                                           "--etcd-key-file",  certs.client().key.string()};
  auto with = [&](std::vector<std::string> args, const std::vector<std::string>& tls) {
    args.insert(args.end(), tls.begin(), tls.end());
    return args;
  };

  // Reached over TLS: the group does not exist, which only a read of etcd can say.
  CtlRun ok = RunCtl(with({"status", "none", "--etcd-endpoints", "https://" + endpoint}, mutual));
  EXPECT_EQ(ok.exit_code, 3) << ok.Describe();
  CtlRun groups =
      RunCtl(with({"groups", "--etcd-endpoints", endpoint, "--output", "json"}, mutual));
  EXPECT_EQ(groups.exit_code, 0) << groups.Describe();
  EXPECT_EQ(groups.Json()["groups"], json::array()) << groups.Describe();
  EXPECT_EQ(groups.Json()["etcd"]["endpoints"][0]["reachable"], true) << groups.Describe();

  // A CA that signed nothing here: the handshake fails, said as such, naming the endpoint.
  CtlRun wrong_ca =
      RunCtl({"status", "none", "--etcd-endpoints", endpoint, "--etcd-ca-file",
              certs.other_ca().string(), "--etcd-cert-file", certs.client().cert.string(),
              "--etcd-key-file", certs.client().key.string(), "--timeout", "3s"});
  EXPECT_EQ(wrong_ca.exit_code, 2) << wrong_ca.Describe();
  EXPECT_EQ(wrong_ca.err.rfind("k8shmirctl: etcd endpoint " + endpoint + ": ", 0), 0u)
      << wrong_ca.Describe();
  EXPECT_NE(wrong_ca.err.find("(TLS failure: check --etcd-ca-file"), std::string::npos)
      << wrong_ca.Describe();
  EXPECT_EQ(std::count(wrong_ca.err.begin(), wrong_ca.err.end(), '\n'), 1) << wrong_ca.Describe();

  // Plaintext to a TLS member.
  CtlRun plain = RunCtl({"status", "none", "--etcd-endpoints", endpoint, "--timeout", "3s"});
  EXPECT_EQ(plain.exit_code, 2) << plain.Describe();
  EXPECT_EQ(plain.err.rfind("k8shmirctl: etcd endpoint " + endpoint + ": ", 0), 0u)
      << plain.Describe();

  // A TLS file that cannot be read: before any call, named by its flag.
  CtlRun missing = RunCtl(
      {"status", "none", "--etcd-endpoints", endpoint, "--etcd-ca-file", "/nonexistent/ca.pem"});
  EXPECT_EQ(missing.exit_code, 2) << missing.Describe();
  EXPECT_EQ(missing.err,
            "k8shmirctl: etcd TLS: CA file (--etcd-ca-file) '/nonexistent/ca.pem': No such file "
            "or directory\n");
}

}  // namespace
}  // namespace k8shmir::testing
