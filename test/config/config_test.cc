#include "k8shmir/config.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

Result<ParsedConfig> Parse(std::vector<const char*> args, std::vector<const char*> env = {}) {
  args.insert(args.begin(), "k8shmir-proxy");
  env.push_back(nullptr);
  return ParseConfig(static_cast<int>(args.size()), args.data(), env.data());
}

TEST(ConfigTest, DefaultsAreTheThesisDefaults) {
  auto r = Parse({"--replica-id", "r0"});
  ASSERT_TRUE(r) << r.error().message;
  const Config& c = r->config;
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.listen_address, "::");  // both families: the redirect sends IPv6 too
  EXPECT_EQ(c.admin_address, "::");
  EXPECT_EQ(c.app_host, "127.0.0.1");
  EXPECT_EQ(c.app_port, 3000);
  EXPECT_EQ(c.admin_port, 9901);
  EXPECT_EQ(c.last_index_path, "/last-index");
  EXPECT_EQ(c.index_header, "Log-Index");
  EXPECT_EQ(c.etcd_endpoints, std::vector<std::string>{"127.0.0.1:2379"});
  EXPECT_EQ(c.LogPrefix(), "/k8shmir/default/log/");
  EXPECT_EQ(c.replica_id, "r0");
}

TEST(ConfigTest, ReplicaIdDefaultsToHostname) {
  auto r = Parse({});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->config.replica_id.empty());
}

TEST(ConfigTest, FlagsOverrideEnvironmentAndBothForms) {
  auto r = Parse({"--app-port=4000", "--group", "orders", "--etcd-endpoints",
                  "http://10.0.0.1:2379,10.0.0.2:2379"},
                 {"K8SHMIR_APP_PORT=5000", "K8SHMIR_REQUEST_TIMEOUT_MS=2500",
                  "K8SHMIR_INDEX_HEADER=X-Log-Index"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->config.app_port, 4000);
  EXPECT_EQ(r->config.request_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(r->config.index_header, "X-Log-Index");
  EXPECT_EQ(r->config.group, "orders");
  EXPECT_EQ(r->config.etcd_endpoints, (std::vector<std::string>{"10.0.0.1:2379", "10.0.0.2:2379"}));
}

TEST(ConfigTest, BadValuesNameTheFlag) {
  auto port = Parse({"--app-port", "70000"});
  ASSERT_FALSE(port);
  EXPECT_NE(port.error().message.find("--app-port"), std::string::npos);
  auto unknown = Parse({"--no-such-flag", "1"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown flag --no-such-flag"), std::string::npos);
  auto env = Parse({}, {"K8SHMIR_LISTEN_PORT=abc"});
  ASSERT_FALSE(env);
  EXPECT_NE(env.error().message.find("K8SHMIR_LISTEN_PORT"), std::string::npos);
  EXPECT_FALSE(Parse({"--group", "a/b"}));
  EXPECT_FALSE(Parse({"--index-header", "Log Index"}));
  EXPECT_FALSE(Parse({"--last-index-path", "last-index"}));
  EXPECT_FALSE(Parse({"--snapshot-path", "snapshot"}));
  EXPECT_FALSE(Parse({"--etcd-endpoints", "nohostport"}));
  EXPECT_FALSE(Parse({"--log-format", "xml"}));
  EXPECT_FALSE(Parse({"--group"}));
}

TEST(ConfigTest, ReadRoutesFromTheFlagOrTheVariableAndMalformedOnesRefused) {
  auto none = Parse({});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->config.read_routes, "");
  auto flag = Parse({"--read-routes", "GET /integer, HEAD * local"});
  ASSERT_TRUE(flag) << flag.error().message;
  EXPECT_EQ(flag->config.read_routes, "GET /integer, HEAD * local");
  auto env = Parse({}, {"K8SHMIR_READ_ROUTES=GET /journal*"});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->config.read_routes, "GET /journal*");
  auto bad = Parse({"--read-routes", "GET /ok, GET nope"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'GET nope'"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(Parse({"--max-pending-reads", "0"}));
  EXPECT_FALSE(Parse({"--max-read-connections", "0"}));
}

TEST(ConfigTest, DrainDelayDefaultsToFiveSecondsAndMayBeZero) {
  auto d = Parse({});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->config.drain_delay, std::chrono::milliseconds(5000));
  auto zero = Parse({"--drain-delay-ms", "0"});
  ASSERT_TRUE(zero) << zero.error().message;
  EXPECT_EQ(zero->config.drain_delay, std::chrono::milliseconds(0));
  EXPECT_FALSE(Parse({"--drain-delay-ms", "-1"}));
  EXPECT_FALSE(Parse({"--request-timeout-ms", "0"}));  // other durations stay at least 1 ms
}

TEST(ConfigTest, ReadRideAppendDefaultsToTenMillisecondsAndMayBeZero) {
  auto d = Parse({});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->config.read_ride_append_window, std::chrono::milliseconds(10));
  auto zero = Parse({"--read-ride-append-ms", "0"});
  ASSERT_TRUE(zero) << zero.error().message;
  EXPECT_EQ(zero->config.read_ride_append_window, std::chrono::milliseconds(0));
  EXPECT_FALSE(Parse({"--read-ride-append-ms", "ten"}));
}

TEST(ConfigTest, BodyLimitMustFitInOneEtcdRequest) {
  EXPECT_FALSE(Parse({"--body-limit", std::to_string(2 * 1024 * 1024).c_str()}));
  auto r = Parse({"--body-limit", "1400000", "--header-limit", "200000"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("etcd"), std::string::npos);
}

TEST(ConfigTest, HelpListsEveryFlagWithItsVariable) {
  auto r = Parse({"--help"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->show_help);
  std::string usage = ConfigUsage();
  for (const char* s :
       {"--listen-port", "K8SHMIR_LISTEN_PORT", "--etcd-endpoints", "K8SHMIR_ETCD_ENDPOINTS",
        "--body-limit", "--replica-id", "--etcd-ca-file", "K8SHMIR_ETCD_CA_FILE",
        "--etcd-cert-file", "K8SHMIR_ETCD_CERT_FILE", "--etcd-key-file", "K8SHMIR_ETCD_KEY_FILE",
        "--etcd-server-name", "K8SHMIR_ETCD_SERVER_NAME"}) {
    EXPECT_NE(usage.find(s), std::string::npos) << s;
  }
}

TEST(ConfigTest, EtcdEndpointOrderIsSpreadByDefault) {
  auto r = Parse({});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->config.etcd_endpoint_order, "spread");
  auto env = Parse({}, {"K8SHMIR_ETCD_ENDPOINT_ORDER=as-listed"});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->config.etcd_endpoint_order, "as-listed");
  auto bad = Parse({"--etcd-endpoint-order", "random"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("must be spread or as-listed"), std::string::npos)
      << bad.error().message;
}

TEST(ConfigTest, EtcdTlsIsOffByDefault) {
  auto r = Parse({});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->config.etcd_ca_file, "");
  EXPECT_EQ(r->config.etcd_cert_file, "");
  EXPECT_EQ(r->config.etcd_key_file, "");
  EXPECT_EQ(r->config.etcd_server_name, "");
}

TEST(ConfigTest, EtcdTlsFromFlagsAndFromTheChartsVariables) {
  // The variables the Helm chart sets (charts/k8shmir/templates/_helpers.tpl).
  auto env = Parse({}, {"K8SHMIR_ETCD_CA_FILE=/etc/k8shmir/etcd-tls/ca.crt",
                        "K8SHMIR_ETCD_CERT_FILE=/etc/k8shmir/etcd-tls/tls.crt",
                        "K8SHMIR_ETCD_KEY_FILE=/etc/k8shmir/etcd-tls/tls.key",
                        "K8SHMIR_ETCD_SERVER_NAME=etcd.example"});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->config.etcd_ca_file, "/etc/k8shmir/etcd-tls/ca.crt");
  EXPECT_EQ(env->config.etcd_cert_file, "/etc/k8shmir/etcd-tls/tls.crt");
  EXPECT_EQ(env->config.etcd_key_file, "/etc/k8shmir/etcd-tls/tls.key");
  EXPECT_EQ(env->config.etcd_server_name, "etcd.example");

  auto flags = Parse({"--etcd-ca-file=/ca.pem", "--etcd-server-name", "etcd.test"},
                     {"K8SHMIR_ETCD_CA_FILE=/from-env.pem"});
  ASSERT_TRUE(flags) << flags.error().message;
  EXPECT_EQ(flags->config.etcd_ca_file, "/ca.pem");
  EXPECT_EQ(flags->config.etcd_server_name, "etcd.test");

  // A client certificate alone turns TLS on too; the system's roots then verify the server.
  auto no_ca = Parse({"--etcd-cert-file", "/c.pem", "--etcd-key-file", "/k.pem"});
  ASSERT_TRUE(no_ca) << no_ca.error().message;
  EXPECT_EQ(no_ca->config.etcd_ca_file, "");
  EXPECT_EQ(no_ca->config.etcd_cert_file, "/c.pem");
}

TEST(ConfigTest, EtcdCertificateAndKeyGoTogether) {
  auto cert_only = Parse({"--etcd-ca-file", "/ca.pem", "--etcd-cert-file", "/c.pem"});
  ASSERT_FALSE(cert_only);
  EXPECT_EQ(cert_only.error().message,
            "--etcd-cert-file and --etcd-key-file must be given together (--etcd-cert-file alone)");
  auto key_only = Parse({}, {"K8SHMIR_ETCD_KEY_FILE=/k.pem"});
  ASSERT_FALSE(key_only);
  EXPECT_EQ(key_only.error().message,
            "--etcd-cert-file and --etcd-key-file must be given together (--etcd-key-file alone)");
}

TEST(ConfigTest, EtcdServerNameNeedsTls) {
  auto r = Parse({"--etcd-server-name", "etcd.test"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("--etcd-server-name needs TLS"), std::string::npos)
      << r.error().message;
}

TEST(ConfigTest, HttpsEndpointsKeepTheirScheme) {
  // http:// is dropped as before; https:// stays so that the etcd log can insist on TLS for it.
  auto r = Parse({"--etcd-endpoints", "https://10.0.0.1:2379,http://10.0.0.2:2379,10.0.0.3:2379",
                  "--etcd-ca-file", "/ca.pem"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->config.etcd_endpoints,
            (std::vector<std::string>{"https://10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"}));
  EXPECT_FALSE(Parse({"--etcd-endpoints", "https://10.0.0.1"}));
  EXPECT_FALSE(Parse({"--etcd-endpoints", "https://:2379"}));
}

}  // namespace
}  // namespace k8shmir
