#include "ctl/options.h"

#include <gtest/gtest.h>

namespace k8shmir::ctl {
namespace {

using namespace std::chrono_literals;

Result<CtlOptions> Parse(std::vector<std::string> args, std::vector<const char*> env = {}) {
  env.push_back(nullptr);
  return ParseCtlArgs(args, env.data());
}

std::string ErrorOf(std::vector<std::string> args, std::vector<const char*> env = {}) {
  auto r = Parse(std::move(args), std::move(env));
  return r ? std::string("(parsed)") : r.error().message;
}

TEST(CtlOptions, StatusWithEveryFlag) {
  auto o = Parse({"status",
                  "demo",
                  "--etcd-endpoints",
                  "a:1,https://b:2",
                  "--etcd-ca-file=ca",
                  "--etcd-cert-file",
                  "c",
                  "--etcd-key-file",
                  "k",
                  "--etcd-server-name",
                  "etcd",
                  "--timeout",
                  "1500ms",
                  "--output",
                  "json",
                  "--watch",
                  "--interval",
                  "3s",
                  "--quota-backend-bytes",
                  "8589934592",
                  "--max-lag-entries",
                  "10",
                  "--stale-after",
                  "1m",
                  "--log-bytes"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->command, Command::kStatus);
  EXPECT_EQ(o->group, "demo");
  EXPECT_EQ(o->endpoints, (std::vector<std::string>{"a:1", "https://b:2"}));
  EXPECT_EQ(o->tls.ca_file, "ca");
  EXPECT_EQ(o->tls.cert_file, "c");
  EXPECT_EQ(o->tls.key_file, "k");
  EXPECT_EQ(o->tls.server_name, "etcd");
  EXPECT_EQ(o->timeout, 1500ms);
  EXPECT_EQ(o->output, Output::kJson);
  EXPECT_TRUE(o->watch);
  EXPECT_EQ(o->interval, 3s);
  EXPECT_EQ(o->quota_backend_bytes, 8589934592);
  EXPECT_EQ(o->max_lag_entries, 10u);
  EXPECT_EQ(o->stale_after, 60s);
  EXPECT_TRUE(o->log_bytes);
}

TEST(CtlOptions, Defaults) {
  auto o = Parse({"groups", "--etcd-endpoints", "127.0.0.1:2379"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->command, Command::kGroups);
  EXPECT_EQ(o->timeout, 5s);
  EXPECT_EQ(o->interval, 2s);
  EXPECT_EQ(o->output, Output::kText);
  EXPECT_EQ(o->quota_backend_bytes, int64_t{2} << 30);
  EXPECT_EQ(o->max_lag_entries, 1000u);
  EXPECT_EQ(o->stale_after, 6s);
  EXPECT_FALSE(o->watch);
  EXPECT_FALSE(o->log_bytes);
}

// What `kubectl exec` into the proxy's container inherits.
TEST(CtlOptions, TheProxysEnvironmentFillsWhatFlagsLeaveOut) {
  std::vector<const char*> env = {
      "K8SHMIR_ETCD_ENDPOINTS=e1:2379,e2:2379", "K8SHMIR_GROUP=shop",
      "K8SHMIR_ETCD_CA_FILE=/tls/ca.crt",       "K8SHMIR_ETCD_CERT_FILE=/tls/tls.crt",
      "K8SHMIR_ETCD_KEY_FILE=/tls/tls.key",     "K8SHMIR_ETCD_SERVER_NAME=etcd.svc"};
  auto o = Parse({"status"}, env);
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->group, "shop");
  EXPECT_EQ(o->endpoints, (std::vector<std::string>{"e1:2379", "e2:2379"}));
  EXPECT_EQ(o->tls.ca_file, "/tls/ca.crt");
  EXPECT_EQ(o->tls.cert_file, "/tls/tls.crt");
  EXPECT_EQ(o->tls.key_file, "/tls/tls.key");
  EXPECT_EQ(o->tls.server_name, "etcd.svc");
  auto flags = Parse({"status", "other", "--etcd-endpoints", "x:1"}, env);
  ASSERT_TRUE(flags) << flags.error().message;
  EXPECT_EQ(flags->group, "other");
  EXPECT_EQ(flags->endpoints, (std::vector<std::string>{"x:1"}));
}

// The chart sets K8SHMIR_QUOTA_BACKEND_BYTES on the proxy container from its etcd's quota.
TEST(CtlOptions, TheQuotaComesFromTheEnvironmentUnlessAFlagSaysIt) {
  std::vector<const char*> env = {"K8SHMIR_ETCD_ENDPOINTS=e1:2379",
                                  "K8SHMIR_QUOTA_BACKEND_BYTES=8589934592"};
  auto o = Parse({"status", "g"}, env);
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->quota_backend_bytes, 8589934592);
  auto flag = Parse({"status", "g", "--quota-backend-bytes=0"}, env);
  ASSERT_TRUE(flag) << flag.error().message;
  EXPECT_EQ(flag->quota_backend_bytes, 0);
  EXPECT_EQ(ErrorOf({"status", "g"},
                    {"K8SHMIR_ETCD_ENDPOINTS=e1:2379", "K8SHMIR_QUOTA_BACKEND_BYTES=4Gi"}),
            "--quota-backend-bytes=4Gi: expected an integer >= 0");
}

TEST(CtlOptions, HelpAndVersionNeedNothingElse) {
  EXPECT_EQ(Parse({"--help"})->command, Command::kHelp);
  EXPECT_EQ(Parse({"status", "-h"})->command, Command::kHelp);
  EXPECT_EQ(Parse({"--version"})->command, Command::kVersion);
  // The revision is the build's (git rev-parse at configure time).
  const std::string version = CtlVersion();
  const std::string head = std::string("k8shmirctl ") + CtlVersionNumber() + " (";
  EXPECT_EQ(version.rfind(head, 0), 0u) << version;
  EXPECT_EQ(version.substr(version.size() - 2), ")\n") << version;
  EXPECT_GT(version.size(), head.size() + 2) << version;
}

TEST(CtlOptions, UsageErrorsSayWhatIsWrong) {
  EXPECT_EQ(ErrorOf({}), "no command given: status GROUP, or groups (see --help)");
  EXPECT_EQ(ErrorOf({"stats", "g", "--etcd-endpoints", "a:1"}),
            "unknown command 'stats' (status, groups; see --help)");
  EXPECT_EQ(ErrorOf({"status", "--etcd-endpoints", "a:1"}),
            "status needs a GROUP (or K8SHMIR_GROUP)");
  EXPECT_EQ(ErrorOf({"status", "g"}), "--etcd-endpoints is required (or K8SHMIR_ETCD_ENDPOINTS)");
  EXPECT_EQ(ErrorOf({"status", "g", "h", "--etcd-endpoints", "a:1"}),
            "status takes one group, not 'h'");
  EXPECT_EQ(ErrorOf({"status", "g/x", "--etcd-endpoints", "a:1"}),
            "group 'g/x': use 1-128 characters of [A-Za-z0-9._-]");
  EXPECT_EQ(ErrorOf({"status", "g", "--etcd-endpoints", "nohost"}),
            "etcd endpoint 'nohost': expected host:port");
  EXPECT_EQ(ErrorOf({"status", "g", "--etcd-endpoints", "a:1", "--bogus", "1"}),
            "unknown flag --bogus (see --help)");
  EXPECT_EQ(ErrorOf({"status", "g", "--etcd-endpoints"}), "--etcd-endpoints needs a value");
  EXPECT_EQ(ErrorOf({"status", "g", "--etcd-endpoints", "a:1", "--output", "yaml"}),
            "--output=yaml: must be text or json");
  EXPECT_EQ(ErrorOf({"status", "g", "--etcd-endpoints", "a:1", "--timeout", "5x"}),
            "--timeout: '5x' is not a duration (e.g. 500ms, 2s, 1m)");
  EXPECT_EQ(ErrorOf({"status", "g", "--etcd-endpoints", "a:1", "--max-lag-entries", "-1"}),
            "--max-lag-entries=-1: expected an integer >= 0");
  EXPECT_EQ(ErrorOf({"groups", "--etcd-endpoints", "a:1", "--watch"}),
            "--watch is for status only");
}

TEST(CtlOptions, Durations) {
  EXPECT_EQ(*ParseDuration("250"), 250ms);
  EXPECT_EQ(*ParseDuration("250ms"), 250ms);
  EXPECT_EQ(*ParseDuration("2s"), 2s);
  EXPECT_EQ(*ParseDuration("1m"), 60s);
  EXPECT_FALSE(ParseDuration("0s"));
  EXPECT_FALSE(ParseDuration("s"));
  EXPECT_FALSE(ParseDuration("1h"));
  EXPECT_FALSE(ParseDuration("-1s"));
}

}  // namespace
}  // namespace k8shmir::ctl
