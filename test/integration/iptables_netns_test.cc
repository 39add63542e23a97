// k8shmir-init for real: in a network namespace of its own (a pod's stand-in, reached from the
// host through a veth pair), an etcd member, a counter app on 127.0.0.1:3000 and a k8shmir-proxy
// running as uid 1337, with the rules k8shmir-init installs. Checks that
//   (a) a connection from outside (the host) to the namespace's address on the app port is
//       replicated;
//   (b) a root connection inside the namespace to 127.0.0.1:app-port is replicated (the path of
//       `kubectl port-forward`);
//   (c) the proxy's own connections reach the app directly: every entry the app applied carries
//       the log index the client was told, and the log holds exactly the client requests (a
//       redirect loop would add entries or never answer);
//   (d) a second run of k8shmir-init changes no rule, and --cleanup removes them all;
//   (e) the same over IPv6 (the namespace has a ULA address on its veth, and ::1), with the app
//       listening on [::], where a connection the rules missed would reach the app directly:
//       an IPv6 client from the host and a root caller to [::1] are replicated, the proxy's uid
//       is not redirected, and --cleanup removes the ip6tables rules too;
//   (f) --ipv6 auto skips ip6tables in a namespace whose interfaces all disable IPv6, --ipv6 on
//       does not, --ipv6 off never uses it, and a missing ip6tables where IPv6 exists is an
//       error before any rule changes.
// Needs root (network namespaces, iptables, setuid): the test fails, loudly, without it.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "init/apply.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;
using init::CommandResult;
using init::FindExecutable;
using init::RunCommand;

#ifdef K8SHMIR_INIT_BIN
constexpr const char* kInitBin = K8SHMIR_INIT_BIN;
#endif

constexpr uint16_t kAppPort = 3000;
constexpr uint16_t kProxyPort = 8080;
constexpr uint16_t kAdminPort = 9901;
constexpr uint32_t kProxyUid = 1337;
constexpr const char* kGroup = "netns";
constexpr const char* kNamePrefix = "k8shmir-t";

std::string Tool(const std::string& name) {
  auto path = FindExecutable(name);
  if (!path) throw std::runtime_error(name + " not found: run scripts/install-deps.sh");
  return *path;
}

CommandResult RunCmd(const std::vector<std::string>& argv,
                     std::chrono::milliseconds timeout = 20s) {
  std::vector<std::string> args(argv.begin() + 1, argv.end());
  return RunCommand(argv.at(0), args, timeout);
}

std::string Describe(const std::vector<std::string>& argv, const CommandResult& r) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  return "`" + cmd + "`: " +
         (!r.started    ? std::string("not started: ") + std::strerror(r.exec_errno)
          : r.timed_out ? std::string("timed out")
                        : "exit " + std::to_string(r.exit_code)) +
         "\n" + r.output;
}

// Runs a command that must succeed; returns its output.
std::string MustRun(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 20s) {
  CommandResult r = RunCmd(argv, timeout);
  if (!r.started || r.timed_out || r.exit_code != 0) {
    throw std::runtime_error("command failed: " + Describe(argv, r));
  }
  return r.output;
}

// An HTTP exchange through curl (which runs where `prefix` says: on the host, in the namespace,
// as another user). `raw` is the whole response, head and body.
struct CurlResponse {
  std::string raw;
  std::string error;
  unsigned status() const { return RawStatus(raw); }
  std::string header(std::string_view name) const { return RawHeader(raw, name); }
  std::string body() const {
    const auto pos = raw.find("\r\n\r\n");
    return pos == std::string::npos ? "" : raw.substr(pos + 4);
  }
  json Json() const { return json::parse(body(), nullptr, false); }
};

CurlResponse Curl(std::vector<std::string> prefix, const std::string& method,
                  const std::string& url, const std::string& body = "",
                  const std::string& content_type = "application/json") {
  std::vector<std::string> argv = std::move(prefix);
  for (const std::string& a :
       {Tool("curl"), std::string("-sS"), std::string("-g"), std::string("--max-time"),
        std::string("15"), std::string("-D"), std::string("-"), std::string("-X"), method,
        std::string("-H"), std::string("Expect:")}) {
    argv.push_back(a);
  }
  if (method != "GET") {
    argv.insert(argv.end(), {"-H", "Content-Type: " + content_type, "--data-binary", body});
  }
  argv.push_back(url);
  CommandResult r = RunCmd(argv, 25s);
  CurlResponse out;
  if (!r.started || r.timed_out || r.exit_code != 0) {
    out.error = Describe(argv, r);
  } else {
    out.raw = r.output;
  }
  return out;
}

// iptables-save's nat table without its timestamps and packet counters.
std::string NormalizedNat(const std::string& save) {
  std::string out;
  std::istringstream in(save);
  std::string line;
  const std::regex counters(R"( \[\d+:\d+\]$)");
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    out += std::regex_replace(line, counters, " [-]") + "\n";
  }
  return out;
}

int CountLines(const std::string& text, const std::string& needle) {
  int n = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

// A network namespace with a veth pair to the host: host side .1, namespace side .2 of a /30 in
// 10.251.0.0/16. Names carry this process's pid; namespaces left by killed runs are removed.
class TestNamespace {
 public:
  TestNamespace() {
    ip_ = Tool("ip");
    RemoveStale();
    const int pid = static_cast<int>(::getpid());
    std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(pid));
    name_ = kNamePrefix + std::to_string(pid);
    const std::string tag = std::to_string(pid % 100000) + static_cast<char>('a' + rng() % 26);
    host_if_ = "k8h" + tag;  // at most 15 characters
    ns_if_ = "k8n" + tag;
    // A /30 not yet routed on this host.
    const std::string routes = MustRun({ip_, "-4", "route", "show", "table", "all"});
    for (int attempt = 0; attempt < 200; ++attempt) {
      const unsigned block = rng() % (256 * 64);
      const std::string net =
          "10.251." + std::to_string(block / 64) + "." + std::to_string((block % 64) * 4);
      if (routes.find(net + "/30") != std::string::npos) continue;
      const std::string base = "10.251." + std::to_string(block / 64) + ".";
      host_addr_ = base + std::to_string((block % 64) * 4 + 1);
      ns_addr_ = base + std::to_string((block % 64) * 4 + 2);
      break;
    }
    if (ns_addr_.empty()) throw std::runtime_error("no free /30 in 10.251.0.0/16");
    // And a ULA /64 not yet routed here (the host itself may use some of fd00::/8).
    const std::string routes6 = MustRun({ip_, "-6", "route", "show", "table", "all"});
    for (int attempt = 0; attempt < 200; ++attempt) {
      char net[40];
      std::snprintf(net, sizeof net, "fd6b:8a5e:%x:%x::", static_cast<unsigned>(rng() % 0xffff),
                    static_cast<unsigned>(rng() % 0xffff));
      if (routes6.find(std::string(net) + "/64") != std::string::npos) continue;
      host_addr6_ = std::string(net) + "1";
      ns_addr6_ = std::string(net) + "2";
      break;
    }
    if (ns_addr6_.empty()) throw std::runtime_error("no free /64 in fd6b:8a5e::/32");
    try {
      MustRun({ip_, "netns", "add", name_});
      MustRun(
          {ip_, "link", "add", host_if_, "type", "veth", "peer", "name", ns_if_, "netns", name_});
      MustRun({ip_, "addr", "add", host_addr_ + "/30", "dev", host_if_});
      // nodad: usable at once, not after duplicate address detection.
      MustRun({ip_, "-6", "addr", "add", host_addr6_ + "/64", "dev", host_if_, "nodad"});
      MustRun({ip_, "link", "set", host_if_, "up"});
      MustRun(Exec({ip_, "addr", "add", ns_addr_ + "/30", "dev", ns_if_}));
      MustRun(Exec({ip_, "-6", "addr", "add", ns_addr6_ + "/64", "dev", ns_if_, "nodad"}));
      MustRun(Exec({ip_, "link", "set", ns_if_, "up"}));
      MustRun(Exec({ip_, "link", "set", "lo", "up"}));
    } catch (...) {
      Remove();  // a throwing constructor gets no destructor call
      throw;
    }
  }

  ~TestNamespace() { Remove(); }

  TestNamespace(const TestNamespace&) = delete;
  TestNamespace& operator=(const TestNamespace&) = delete;

  // `argv` run inside the namespace (ip netns exec).
  std::vector<std::string> Exec(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {ip_, "netns", "exec", name_});
    return argv;
  }
  // The prefix that runs a program inside the namespace as `uid`.
  std::vector<std::string> ExecAs(uint32_t uid) const {
    const std::string id = std::to_string(uid);
    return Exec({Tool("setpriv"), "--reuid", id, "--regid", id, "--clear-groups"});
  }

  const std::string& name() const { return name_; }
  const std::string& ns_addr() const { return ns_addr_; }
  const std::string& ns_addr6() const { return ns_addr6_; }
  const std::string& ns_if() const { return ns_if_; }

 private:
  // Deleting the namespace deletes its veth end, and with it the host end; both are tried, as
  // either may be all that a failed setup created.
  void Remove() {
    RunCmd({ip_, "netns", "delete", name_});
    RunCmd({ip_, "link", "delete", host_if_});
  }

  // Namespaces of earlier runs whose process is gone (killed by a timeout, say).
  void RemoveStale() {
    CommandResult r = RunCmd({ip_, "netns", "list"});
    std::istringstream in(r.output);
    std::string line;
    while (std::getline(in, line)) {
      const std::string name = line.substr(0, line.find(' '));
      if (name.rfind(kNamePrefix, 0) != 0) continue;
      const std::string pid = name.substr(std::strlen(kNamePrefix));
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      struct stat st {};
      if (::stat(("/proc/" + pid).c_str(), &st) == 0) continue;
      std::cerr << "removing stale network namespace " << name << "\n";
      RunCmd({ip_, "netns", "delete", name});
    }
  }

  std::string ip_;
  std::string name_;
  std::string host_if_;
  std::string ns_if_;
  std::string host_addr_;
  std::string ns_addr_;
  std::string host_addr6_;
  std::string ns_addr6_;
};

class IptablesNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_FAIL() << "this test needs root: it creates a network namespace and a veth pair, "
                      "installs iptables rules and starts the proxy as uid 1337. Run it as root "
                      "(CI does: `make test` as root).";
    }
    log_dir_ = MakeTempDir("k8shmir-netns-logs-");
    data_dir_ = MakeTempDir("k8shmir-netns-etcd-", ScratchBase());
    // The proxy runs as uid 1337, which may not traverse the build tree (a checkout under /root):
    // it runs a copy from a directory anyone can read.
    bin_dir_ = MakeTempDir("k8shmir-netns-bin-");
    std::filesystem::copy_file(kProxyBin, bin_dir_ / "k8shmir-proxy");
    std::filesystem::copy_file(kInitBin, bin_dir_ / "k8shmir-init");
    for (const auto& p : {bin_dir_, bin_dir_ / "k8shmir-proxy", bin_dir_ / "k8shmir-init"}) {
      std::filesystem::permissions(
          p, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                 std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                 std::filesystem::perms::others_exec);
    }
    ns_ = std::make_unique<TestNamespace>();
  }

  void TearDown() override {
    proxy_.Kill();
    app_.Kill();
    etcd_.Kill();
    if (log_dir_.empty()) return;  // SetUp failed before creating anything
    const bool keep = ShouldKeepLogs();
    if (keep) {
      std::cerr << "logs in " << log_dir_ << "\n";
      for (const char* f : {"proxy.log", "app.log", "etcd.log"}) {
        std::cerr << "--- " << f << " (last 40 lines)\n" << TailFile(log_dir_ / f, 40);
      }
    }
    ns_.reset();
    RemoveTree(data_dir_);
    RemoveTree(bin_dir_);
    if (!keep) RemoveTree(log_dir_);
  }

  CommandResult RunInit(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {kInitBin,
                                     "--app-port",
                                     std::to_string(kAppPort),
                                     "--proxy-port",
                                     std::to_string(kProxyPort),
                                     "--admin-port",
                                     std::to_string(kAdminPort),
                                     "--proxy-uid",
                                     std::to_string(kProxyUid)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCmd(ns_->Exec(argv), 60s);
  }

  std::string NatRules() {
    return NormalizedNat(MustRun(ns_->Exec({Tool("iptables-save"), "-t", "nat"})));
  }
  std::string NatRules6() {
    return NormalizedNat(MustRun(ns_->Exec({Tool("ip6tables-save"), "-t", "nat"})));
  }

  // An IPv6 host (it holds ':') goes in brackets.
  std::string Url(const std::string& host, uint16_t port, const std::string& path) const {
    const bool v6 = host.find(':') != std::string::npos;
    return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + path;
  }

  // etcd, the app (listening on `app_host`) and the proxy as uid 1337, with its default listen
  // addresses (as the chart runs it), in the namespace; returns when the proxy is ready.
  void StartReplica(const std::string& app_host) {
    const ProcessOptions in_ns{ns_->name(), std::nullopt, std::nullopt};
    etcd_.Start({kEtcdBin,
                 "--name",
                 "e0",
                 "--data-dir",
                 (data_dir_ / "e0").string(),
                 "--listen-client-urls",
                 "http://127.0.0.1:2379",
                 "--advertise-client-urls",
                 "http://127.0.0.1:2379",
                 "--listen-peer-urls",
                 "http://127.0.0.1:2380",
                 "--initial-advertise-peer-urls",
                 "http://127.0.0.1:2380",
                 "--initial-cluster",
                 "e0=http://127.0.0.1:2380",
                 "--initial-cluster-token",
                 ns_->name(),
                 "--experimental-watch-progress-notify-interval",
                 "1s",
                 "--log-level",
                 "warn"},
                {}, log_dir_ / "etcd.log", in_ns);
    app_.Start({kCounterBin, "--host", app_host, "--port", std::to_string(kAppPort)}, {},
               log_dir_ / "app.log", in_ns);
    ASSERT_TRUE(WaitFor(
        [&] {
          return Curl(ns_->Exec({}), "GET", Url("127.0.0.1", 2379, "/health")).status() == 200;
        },
        30s, 200ms))
        << "etcd in the namespace not healthy; " << TailFile(log_dir_ / "etcd.log", 20);

    proxy_.Start(
        {(bin_dir_ / "k8shmir-proxy").string(), "--listen-port", std::to_string(kProxyPort),
         "--admin-port", std::to_string(kAdminPort), "--app-port", std::to_string(kAppPort),
         "--etcd-endpoints", "127.0.0.1:2379", "--group", kGroup, "--replica-id", "ns0"},
        {}, log_dir_ / "proxy.log", ProcessOptions{ns_->name(), kProxyUid, kProxyUid});
    // The proxy really runs as 1337.
    {
      std::ifstream status("/proc/" + std::to_string(proxy_.pid()) + "/status");
      std::string text((std::istreambuf_iterator<char>(status)), {});
      EXPECT_NE(text.find("\nUid:\t1337\t1337\t1337\t1337\n"), std::string::npos) << text;
    }
    // Readiness through the admin port from the host: never redirected.
    ASSERT_TRUE(WaitFor(
        [&] { return Curl({}, "GET", Url(ns_->ns_addr(), kAdminPort, "/readyz")).status() == 200; },
        60s, 200ms))
        << "proxy not ready: " << Curl({}, "GET", Url(ns_->ns_addr(), kAdminPort, "/status")).raw;
  }

  // The number of entries in the group's log, read from etcd in the namespace.
  std::string LogEntryCount() {
    const std::string prefix = std::string("/k8shmir/") + kGroup + "/log/";
    std::string range_end = prefix;
    range_end.back() = static_cast<char>(range_end.back() + 1);
    CurlResponse count = Curl(ns_->Exec({}), "POST", Url("127.0.0.1", 2379, "/v3/kv/range"),
                              json{{"key", Base64Encode(prefix)},
                                   {"range_end", Base64Encode(range_end)},
                                   {"count_only", true}}
                                  .dump());
    EXPECT_EQ(count.status(), 200u) << count.error << count.raw;
    return count.Json().value("count", "0");
  }

  std::filesystem::path log_dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path bin_dir_;
  std::unique_ptr<TestNamespace> ns_;
  ChildProcess etcd_;
  ChildProcess app_;
  ChildProcess proxy_;
};

// `r`, the answer to the request `what`, came through the proxy and the log: committed (without
// K8shmir headers the connection bypassed the proxy and changed this replica only), at an index
// above every earlier one (appended to `indices`), with the app's `expected` body.
void ExpectReplicated(const std::string& what, const json& expected, const CurlResponse& r,
                      std::vector<int64_t>& indices) {
  ASSERT_EQ(r.header("K8shmir-Outcome"), "committed")
      << what << ": not replicated, the app answered directly:\n"
      << r.raw;
  const std::string index_text = r.header("K8shmir-Log-Index");
  ASSERT_FALSE(index_text.empty()) << what << ": " << r.raw;
  const int64_t index = std::stoll(index_text);
  if (!indices.empty()) {
    EXPECT_GT(index, indices.back()) << what;
  }
  indices.push_back(index);
  json want = expected;
  want["index"] = index;
  EXPECT_EQ(r.Json(), want) << what << ": " << r.raw;
}

TEST_F(IptablesNetnsTest, RedirectsInboundAndLocalTrafficButNotTheProxy) {
  // --- the rules, twice: the second run changes nothing -------------------------------------
  const CommandResult first = RunInit();
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("12 changes"), std::string::npos) << first.output;
  const std::string after_first = NatRules();
  EXPECT_EQ(CountLines(after_first, "-A "), 8) << after_first;
  EXPECT_EQ(CountLines(after_first,
                       "-A PREROUTING -p tcp -m comment --comment \"k8shmir: "
                       "inbound\" -j K8SHMIR_INBOUND"),
            1)
      << after_first;
  EXPECT_EQ(CountLines(after_first,
                       "-A OUTPUT -p tcp -m comment --comment \"k8shmir: output\" "
                       "-j K8SHMIR_OUTPUT"),
            1)
      << after_first;
  EXPECT_EQ(CountLines(after_first,
                       "-A K8SHMIR_INBOUND -p tcp -m tcp --dport 3000 -m comment --comment "
                       "\"k8shmir: inbound app traffic to the proxy\" -j REDIRECT --to-ports 8080"),
            1)
      << after_first;
  EXPECT_EQ(CountLines(after_first,
                       "-A K8SHMIR_OUTPUT -d 127.0.0.0/8 -p tcp -m tcp --dport 3000 -m owner ! "
                       "--uid-owner 1337 -m comment --comment \"k8shmir: local app traffic to "
                       "the proxy, except from the proxy uid\" -j REDIRECT --to-ports 8080"),
            1)
      << after_first;
  EXPECT_EQ(CountLines(after_first, "REDIRECT"), 2) << after_first;

  // (d) a second run adds no rule and changes none.
  const CommandResult second = RunInit();
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(CountLines(second.output, "0 changes (the rules were already in place)"), 2)
      << second.output;
  EXPECT_EQ(NatRules(), after_first);

  // --- etcd, the app and the proxy (uid 1337) in the namespace -------------------------------
  StartReplica("127.0.0.1");
  if (HasFatalFailure()) return;

  // --- the requests: non-commutative, from outside and from inside ---------------------------
  struct Step {
    std::vector<std::string> where;  // curl prefix
    std::string what;                // for messages
    std::string path;
    std::string body;
    std::string content_type;
    json expected;  // the app's answer, without "index"
  };
  const std::vector<std::string> host;  // (a) from the host, to the veth address
  const std::vector<std::string> root_in_ns = ns_->Exec({});  // (b) root, inside, 127.0.0.1
  const std::string outside = ns_->ns_addr();
  const std::vector<Step> steps = {
      {host, "outside SET 7", "/integer", R"({"op":"SET","value":7})", "application/json",
       json{{"value", 7}}},
      {root_in_ns, "inside MUL 6", "/integer", R"({"op":"MUL","value":6})", "application/json",
       json{{"value", 42}}},
      {host, "outside journal", "/journal", "from outside", "text/plain", json{{"length", 3}}},
      {root_in_ns, "inside DEC 2", "/integer", R"({"op":"DEC","value":2})", "application/json",
       json{{"value", 40}}},
      {root_in_ns, "inside journal", "/journal", "from inside", "text/plain", json{{"length", 5}}},
      {host, "outside MUL -3", "/integer", R"({"op":"MUL","value":-3})", "application/json",
       json{{"value", -120}}},
  };
  std::vector<int64_t> indices;
  for (const Step& step : steps) {
    const std::string target_host = step.where.empty() ? outside : "127.0.0.1";
    CurlResponse r = Curl(step.where, "POST", Url(target_host, kAppPort, step.path), step.body,
                          step.content_type);
    ASSERT_TRUE(r.error.empty()) << step.what << ": " << r.error;
    ASSERT_EQ(r.status(), 200u) << step.what << ": " << r.raw;
    ASSERT_NO_FATAL_FAILURE(ExpectReplicated(step.what, step.expected, r, indices));
  }

  // --- (c) the proxy's own connections reached the app directly -------------------------------
  // Read the app directly, as the proxy's uid: not redirected, so no K8shmir headers, no entry.
  CurlResponse direct = Curl(ns_->ExecAs(kProxyUid), "GET", Url("127.0.0.1", kAppPort, "/journal"));
  ASSERT_EQ(direct.status(), 200u) << direct.error << direct.raw;
  EXPECT_FALSE(RawHeader(direct.raw, "K8shmir-Outcome").size()) << direct.raw;
  const json want_journal = {
      {{"index", indices[0]}, {"op", "SET"}, {"value", 7}},
      {{"index", indices[1]}, {"op", "MUL"}, {"value", 6}},
      {{"index", indices[2]}, {"op", "APPEND"}, {"text", "from outside"}},
      {{"index", indices[3]}, {"op", "DEC"}, {"value", 2}},
      {{"index", indices[4]}, {"op", "APPEND"}, {"text", "from inside"}},
      {{"index", indices[5]}, {"op", "MUL"}, {"value", -3}},
  };
  EXPECT_EQ(direct.Json(), (json{{"entries", want_journal}})) << direct.raw;
  CurlResponse digest =
      Curl(ns_->ExecAs(kProxyUid), "GET", Url("127.0.0.1", kAppPort, "/journal/digest"));
  ASSERT_EQ(digest.status(), 200u) << digest.error << digest.raw;
  EXPECT_EQ(digest.Json()["value"], -120) << digest.raw;
  EXPECT_EQ(digest.Json()["last_index"], indices.back()) << digest.raw;
  EXPECT_EQ(digest.Json()["violations"], 0) << digest.raw;
  EXPECT_EQ(digest.Json()["count"], 6) << digest.raw;

  // The log holds exactly the six client requests: a redirect loop (the proxy's forward sent
  // back to itself) would have appended more.
  EXPECT_EQ(LogEntryCount(), "6");

  // The proxy's status agrees.
  CurlResponse status = Curl({}, "GET", Url(outside, kAdminPort, "/status"));
  ASSERT_EQ(status.status(), 200u) << status.raw;
  EXPECT_EQ(status.Json()["state"], "serving") << status.raw;
  EXPECT_EQ(status.Json()["applied_index"], indices.back()) << status.raw;

  // --- cleanup: the rules go, and with them the way in from outside ----------------------------
  const CommandResult cleanup = RunInit({"--cleanup"});
  ASSERT_EQ(cleanup.exit_code, 0) << cleanup.output;
  const std::string after_cleanup = NatRules();
  EXPECT_EQ(CountLines(after_cleanup, "K8SHMIR"), 0) << after_cleanup;
  EXPECT_EQ(CountLines(after_cleanup, "-A "), 0) << after_cleanup;
  // The app listens on 127.0.0.1 only: without the redirect, the outside gets no answer on its
  // port, while the proxy port itself still answers.
  CurlResponse refused = Curl({}, "GET", Url(outside, kAppPort, "/integer"));
  EXPECT_FALSE(refused.error.empty()) << refused.raw;
  EXPECT_EQ(Curl({}, "GET", Url(outside, kAdminPort, "/healthz")).status(), 200u);
  // A root connection inside now reaches the app directly (no K8shmir headers).
  CurlResponse local = Curl(root_in_ns, "GET", Url("127.0.0.1", kAppPort, "/integer"));
  ASSERT_EQ(local.status(), 200u) << local.error << local.raw;
  EXPECT_EQ(local.header("K8shmir-Outcome"), "") << local.raw;
  EXPECT_EQ(local.Json(), (json{{"value", -120}})) << local.raw;
}

TEST_F(IptablesNetnsTest, RedirectsIpv6ClientsAndLoopbackButNotTheProxy) {
  // --- the rules of both families, twice: the second run changes nothing --------------------
  const CommandResult first = RunInit();
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("IPv6: IPv6 addresses: "), std::string::npos) << first.output;
  EXPECT_EQ(CountLines(first.output, "IPv4 done: 18 iptables commands, 12 changes"), 1)
      << first.output;
  EXPECT_EQ(CountLines(first.output, "IPv6 done: 18 ip6tables commands, 12 changes"), 1)
      << first.output;
  const std::string v4 = NatRules();
  const std::string v6 = NatRules6();
  EXPECT_EQ(CountLines(v4, "-A "), 8) << v4;
  EXPECT_EQ(CountLines(v6, "-A "), 8) << v6;
  EXPECT_EQ(CountLines(v6,
                       "-A PREROUTING -p tcp -m comment --comment \"k8shmir: "
                       "inbound\" -j K8SHMIR_INBOUND"),
            1)
      << v6;
  EXPECT_EQ(CountLines(v6,
                       "-A OUTPUT -p tcp -m comment --comment \"k8shmir: output\" "
                       "-j K8SHMIR_OUTPUT"),
            1)
      << v6;
  for (const char* chain : {"K8SHMIR_INBOUND", "K8SHMIR_OUTPUT"}) {
    for (uint16_t port : {kProxyPort, kAdminPort}) {
      EXPECT_EQ(CountLines(v6, std::string("-A ") + chain + " -p tcp -m tcp --dport " +
                                   std::to_string(port) + " -m comment --comment \"k8shmir: "),
                1)
          << chain << " " << port << "\n"
          << v6;
    }
  }
  EXPECT_EQ(CountLines(v6,
                       "-A K8SHMIR_INBOUND -p tcp -m tcp --dport 3000 -m comment --comment "
                       "\"k8shmir: inbound app traffic to the proxy\" -j REDIRECT --to-ports 8080"),
            1)
      << v6;
  EXPECT_EQ(CountLines(v6,
                       "-A K8SHMIR_OUTPUT -d ::1/128 -p tcp -m tcp --dport 3000 -m owner ! "
                       "--uid-owner 1337 -m comment --comment \"k8shmir: local app traffic to "
                       "the proxy, except from the proxy uid\" -j REDIRECT --to-ports 8080"),
            1)
      << v6;

  const CommandResult second = RunInit();
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(CountLines(second.output, "0 changes (the rules were already in place)"), 2)
      << second.output;
  EXPECT_EQ(NatRules(), v4);
  EXPECT_EQ(NatRules6(), v6);

  // --- the app on [::] (both families): whatever the rules miss reaches it directly ----------
  StartReplica("::");
  if (HasFatalFailure()) return;
  // The admin port answers over IPv6 too (kubelet probes in an IPv6 cluster), never redirected.
  EXPECT_EQ(Curl({}, "GET", Url(ns_->ns_addr6(), kAdminPort, "/healthz")).status(), 200u);

  struct Step {
    std::vector<std::string> where;  // curl prefix
    std::string host;                // the address the client connects to
    std::string what;
    std::string path;
    std::string body;
    std::string content_type;
    json expected;  // the app's answer, without "index"
  };
  const std::vector<std::string> from_host;
  const std::vector<std::string> root_in_ns = ns_->Exec({});
  const std::vector<std::string> user_in_ns = ns_->ExecAs(1000);
  const std::string outside6 = ns_->ns_addr6();
  const std::vector<Step> steps = {
      {from_host, outside6, "IPv6 client SET 7", "/integer", R"({"op":"SET","value":7})",
       "application/json", json{{"value", 7}}},
      {root_in_ns, "::1", "root on [::1] MUL 6", "/integer", R"({"op":"MUL","value":6})",
       "application/json", json{{"value", 42}}},
      {from_host, ns_->ns_addr(), "IPv4 client DEC 2", "/integer", R"({"op":"DEC","value":2})",
       "application/json", json{{"value", 40}}},
      {from_host, outside6, "IPv6 client journal", "/journal", "v6 outside", "text/plain",
       json{{"length", 4}}},
      {user_in_ns, "::1", "uid 1000 on [::1] MUL -3", "/integer", R"({"op":"MUL","value":-3})",
       "application/json", json{{"value", -120}}},
      {root_in_ns, "::1", "root on [::1] journal", "/journal", "v6 inside", "text/plain",
       json{{"length", 6}}},
  };
  std::vector<int64_t> indices;
  for (const Step& step : steps) {
    CurlResponse r =
        Curl(step.where, "POST", Url(step.host, kAppPort, step.path), step.body, step.content_type);
    ASSERT_TRUE(r.error.empty()) << step.what << ": " << r.error;
    ASSERT_EQ(r.status(), 200u) << step.what << ": " << r.raw;
    ASSERT_NO_FATAL_FAILURE(ExpectReplicated(step.what, step.expected, r, indices));
  }

  // The proxy's uid reaches the app on [::1] directly (no redirect loop, no entry).
  CurlResponse direct = Curl(ns_->ExecAs(kProxyUid), "GET", Url("::1", kAppPort, "/journal"));
  ASSERT_EQ(direct.status(), 200u) << direct.error << direct.raw;
  EXPECT_EQ(direct.header("K8shmir-Outcome"), "") << direct.raw;
  const json want_journal = {
      {{"index", indices[0]}, {"op", "SET"}, {"value", 7}},
      {{"index", indices[1]}, {"op", "MUL"}, {"value", 6}},
      {{"index", indices[2]}, {"op", "DEC"}, {"value", 2}},
      {{"index", indices[3]}, {"op", "APPEND"}, {"text", "v6 outside"}},
      {{"index", indices[4]}, {"op", "MUL"}, {"value", -3}},
      {{"index", indices[5]}, {"op", "APPEND"}, {"text", "v6 inside"}},
  };
  EXPECT_EQ(direct.Json(), (json{{"entries", want_journal}})) << direct.raw;
  EXPECT_EQ(LogEntryCount(), "6");

  // --- cleanup removes both families; then IPv6 reaches the app around the proxy -------------
  const CommandResult cleanup = RunInit({"--cleanup"});
  ASSERT_EQ(cleanup.exit_code, 0) << cleanup.output;
  EXPECT_EQ(CountLines(NatRules(), "-A "), 0) << NatRules();
  const std::string after = NatRules6();
  EXPECT_EQ(CountLines(after, "K8SHMIR"), 0) << after;
  EXPECT_EQ(CountLines(after, "-A "), 0) << after;
  // What every IPv6 client got before k8shmir-init knew ip6tables.
  CurlResponse bypass = Curl({}, "GET", Url(outside6, kAppPort, "/integer"));
  ASSERT_EQ(bypass.status(), 200u) << bypass.error << bypass.raw;
  EXPECT_EQ(bypass.header("K8shmir-Outcome"), "") << bypass.raw;
  EXPECT_EQ(bypass.Json(), (json{{"value", -120}})) << bypass.raw;
}

TEST_F(IptablesNetnsTest, Ipv6ModesDryRunAndMissingIp6tables) {
  // --dry-run prints both families; --ipv6 off only IPv4.
  CommandResult r = RunCmd({kInitBin, "--dry-run", "--ipv6", "on"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\n# IPv6 (--ipv6 on)\n"), std::string::npos) << r.output;
  EXPECT_EQ(CountLines(r.output, "iptables -t nat -A K8SHMIR_OUTPUT -d 127.0.0.0/8 "), 1)
      << r.output;
  EXPECT_EQ(CountLines(r.output, "ip6tables -t nat -A K8SHMIR_OUTPUT -d ::1/128 "), 1) << r.output;
  EXPECT_EQ(CountLines(r.output, "ip6tables -t nat -A PREROUTING "), 1) << r.output;
  r = RunCmd({kInitBin, "--dry-run", "--ipv6=off"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("ip6tables"), std::string::npos) << r.output;
  r = RunCmd({kInitBin, "--ipv6", "maybe"});
  EXPECT_EQ(r.exit_code, 2) << r.output;

  // The namespace has IPv6 and ip6tables is missing: an error before any rule changes, not
  // a silent bypass.
  r = RunInit({"--ip6tables", "/nonexistent/ip6tables"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("ip6tables binary '/nonexistent/ip6tables' was not found"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(CountLines(NatRules(), "K8SHMIR"), 0);
  EXPECT_EQ(CountLines(NatRules6(), "K8SHMIR"), 0);

  // --ipv6 off: IPv4 only, and it says what that leaves open.
  r = RunInit({"--ipv6", "off"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--ipv6 off: no ip6tables rules"), std::string::npos) << r.output;
  EXPECT_EQ(CountLines(NatRules(), "-A "), 8);
  EXPECT_EQ(CountLines(NatRules6(), "K8SHMIR"), 0);
  r = RunInit({"--cleanup"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(CountLines(NatRules(), "K8SHMIR"), 0);

  // Every interface disables IPv6 (no address, ::1 gone): auto skips ip6tables with a log line,
  // --ipv6 on installs its rules anyway, and --cleanup removes them.
  for (const std::string& dev :
       {std::string("all"), std::string("default"), std::string("lo"), ns_->ns_if()}) {
    MustRun(ns_->Exec({Tool("sysctl"), "-q", "-w", "net.ipv6.conf." + dev + ".disable_ipv6=1"}));
  }
  EXPECT_EQ(MustRun(ns_->Exec({Tool("cat"), "/proc/net/if_inet6"})), "");
  r = RunInit();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("IPv6 is disabled on every interface"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no ip6tables rules (--ipv6 on installs them anyway)"), std::string::npos)
      << r.output;
  EXPECT_EQ(CountLines(NatRules(), "-A "), 8);
  EXPECT_EQ(CountLines(NatRules6(), "K8SHMIR"), 0);
  r = RunInit({"--ipv6", "on"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(CountLines(NatRules6(), "-A "), 8);
  r = RunInit({"--cleanup"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(CountLines(NatRules(), "K8SHMIR"), 0);
  EXPECT_EQ(CountLines(NatRules6(), "K8SHMIR"), 0);
}

TEST_F(IptablesNetnsTest, ClearErrorsWithoutPrivilegesOrIptables) {
  // No NET_ADMIN: an unprivileged user in the namespace (running a copy it can reach).
  CommandResult r =
      RunCmd(ns_->Exec({Tool("setpriv"), "--reuid", "1337", "--regid", "1337", "--clear-groups",
                        "--inh-caps=-all", (bin_dir_ / "k8shmir-init").string()}));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("lacks the capability NET_ADMIN"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NET_RAW"), std::string::npos) << r.output;

  // No iptables binary.
  r = RunCmd(ns_->Exec({kInitBin, "--iptables", "/nonexistent/iptables"}));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("apt-get install iptables"), std::string::npos) << r.output;

  // Invalid flags.
  r = RunCmd({kInitBin, "--app-port", "8080"});
  EXPECT_EQ(r.exit_code, 2) << r.output;

  // Nothing was installed by the failed runs.
  EXPECT_EQ(CountLines(NatRules(), "K8SHMIR"), 0);
}

}  // namespace
}  // namespace k8shmir::testing
