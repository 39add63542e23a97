// TLS between k8shmir and etcd: EtcdLog and the k8shmir-proxy binary against a one-member etcd
// serving TLS on its client URL (with --client-cert-auth), with certificates made by openssl for
// each test. Every failure case asserts the exact error code a caller would act on.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "log/etcd_log.h"
#include "support/counter_model.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/replicated_cluster.h"
#include "support/test_certs.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Result<AppendResult> AppendSync(EtcdLog& log, const std::string& id, std::string value,
                                std::chrono::milliseconds timeout) {
  std::promise<Result<AppendResult>> done;
  auto future = done.get_future();
  log.Append(id, std::move(value), Clock::now() + timeout,
             [&done](Result<AppendResult> r) { done.set_value(std::move(r)); });
  return future.get();
}

// Collects a subscription's records until `count` arrived or it closed.
class Collector {
 public:
  Log::EventCallback Callback() {
    return [this](LogEvent event) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto* batch = std::get_if<LogBatch>(&event)) {
        for (auto& r : batch->records) records_.push_back(r);
      } else if (auto* closed = std::get_if<LogClosed>(&event)) {
        closed_ = closed->error.message;
      }
      cv_.notify_all();
    };
  }

  std::vector<LogRecord> WaitFor(size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return records_.size() >= count || !closed_.empty(); });
    return records_;
  }

  std::string closed() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<LogRecord> records_;
  std::string closed_;
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class EtcdTlsTest : public ::testing::Test {
 protected:
  // One member: the tests are about the client's transport, not about replication in etcd.
  void StartEtcd(const CertPair& server) {
    etcd_ = std::make_unique<EtcdCluster>(
        1, std::filesystem::path{},
        EtcdClusterTls{server.cert, server.key, certs_.ca(), /*client_cert_auth=*/true});
    etcd_->Start();
  }

  EtcdLogOptions Options(const EtcdTlsOptions& tls, bool https_urls = false) const {
    EtcdLogOptions options;
    for (int i = 0; i < etcd_->size(); ++i) {
      options.endpoints.push_back((https_urls ? "https://" : "") + etcd_->Endpoint(i));
    }
    options.prefix = "/k8shmir/tls/log/";
    options.rpc_timeout = 1000ms;
    options.progress_interval = 300ms;
    options.liveness_timeout = 1000ms;
    options.tls = tls;
    return options;
  }

  EtcdTlsOptions MutualTls() const {
    return {certs_.ca().string(), certs_.client().cert.string(), certs_.client().key.string(), ""};
  }

  TestCerts certs_;
  std::unique_ptr<EtcdCluster> etcd_;
};

TEST_F(EtcdTlsTest, MutualTlsAppendsAndSubscribes) {
  StartEtcd(certs_.server());
  // https:// endpoints, as an operator copying etcd's --advertise-client-urls would write them.
  EtcdLog log(Options(MutualTls(), /*https_urls=*/true));
  auto first = AppendSync(log, "a", "value a", 10s);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(first->created);
  auto second = AppendSync(log, "b", "value b", 5s);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_TRUE(second->created);
  // Nothing else writes to this etcd: one revision per append, 256 indices per revision.
  EXPECT_EQ(second->first_index, first->first_index + 256);

  Collector collector;
  auto subscription = log.Subscribe(first->first_index, collector.Callback());
  auto records = collector.WaitFor(2, 10s);
  ASSERT_EQ(records.size(), 2u) << "closed: " << collector.closed();
  EXPECT_EQ(records[0].id, "a");
  EXPECT_EQ(records[0].index, first->first_index);
  EXPECT_EQ(records[0].value, "value a");
  EXPECT_EQ(records[1].id, "b");
  EXPECT_EQ(records[1].index, second->first_index);
  EXPECT_EQ(records[1].value, "value b");
  subscription.reset();
}

TEST_F(EtcdTlsTest, WithoutClientCertificateTheAppendIsRefused) {
  StartEtcd(certs_.server());
  EtcdLog log(Options({certs_.ca().string(), "", "", ""}));
  auto r = AppendSync(log, "a", "value a", 3s);
  ASSERT_FALSE(r.ok());
  // etcd refuses the handshake: nothing was sent, so nothing can have committed.
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
}

TEST_F(EtcdTlsTest, UntrustedServerCertificateIsRefused) {
  StartEtcd(certs_.server());
  EtcdTlsOptions tls = MutualTls();
  tls.ca_file = certs_.other_ca().string();
  EtcdLog log(Options(tls));
  auto r = AppendSync(log, "a", "value a", 3s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
  // The operator must be able to tell a certificate problem from a member that is down.
  const std::string message = Lower(r.error().message);
  EXPECT_TRUE(message.find("ssl") != std::string::npos ||
              message.find("handshake") != std::string::npos ||
              message.find("certificate") != std::string::npos)
      << r.error().message;
}

TEST_F(EtcdTlsTest, ServerNameOverrideVerifiesACertificateWithoutTheAddress) {
  // The server certificate names only etcd.test; the endpoint is 127.0.0.1.
  StartEtcd(certs_.named_server());
  {
    EtcdLog log(Options(MutualTls()));
    auto r = AppendSync(log, "a", "value a", 3s);
    ASSERT_FALSE(r.ok()) << "127.0.0.1 must not match a certificate for etcd.test";
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
    // gRPC: "Peer name 127.0.0.1 is not in peer certificate".
    EXPECT_NE(Lower(r.error().message).find("peer certificate"), std::string::npos)
        << r.error().message;
  }
  EtcdTlsOptions tls = MutualTls();
  tls.server_name = "etcd.test";
  EtcdLog log(Options(tls));
  auto r = AppendSync(log, "a", "value a", 10s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->created);
}

// Sends `op` through a proxy and checks the answer against the model (which it advances): the
// exact body and a log index after every earlier one.
void SendAndCheck(uint16_t port, const CounterOp& op, CounterModel& model, int64_t expected_value) {
  Headers headers;
  if (op.Method() == "POST") headers.emplace_back("Content-Type", "application/json");
  const HttpResult res = Http(port, op.Method(), op.Target(), op.Body(), headers, 15s);
  ASSERT_EQ(res.status, 200u) << op.Describe() << ": " << res.Describe();
  const std::string index_text = res.Header("K8shmir-Log-Index");
  ASSERT_FALSE(index_text.empty()) << op.Describe() << ": " << res.Describe();
  const int64_t index = std::stoll(index_text);
  ASSERT_GT(index, model.last_index()) << op.Describe();
  const ModelResponse expected = model.Apply(op, index);
  EXPECT_EQ(res.Json(), expected.body) << op.Describe() << ": " << res.Describe();
  EXPECT_EQ(res.Json().value("value", int64_t{-1}), expected_value) << res.Describe();
}

TEST_F(EtcdTlsTest, ProxiesReplicateOverTls) {
  StartEtcd(certs_.server());
  ReplicatedClusterOptions options;
  options.replicas = 2;
  options.group = "tls";
  options.extra_proxy_args = {"--etcd-ca-file",   certs_.ca().string(),
                              "--etcd-cert-file", certs_.client().cert.string(),
                              "--etcd-key-file",  certs_.client().key.string()};
  ReplicatedCluster cluster(options, etcd_.get());
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitAllServing(30s)) << "logs in " << cluster.log_dir();

  // SET, MUL, INC and MUL again do not commute: only the log's order gives these values.
  CounterModel model;
  SendAndCheck(cluster.ProxyPort(0), CounterOp::Set(7), model, 7);
  SendAndCheck(cluster.ProxyPort(1), CounterOp::Mul(3), model, 21);
  SendAndCheck(cluster.ProxyPort(0), CounterOp::Inc(4), model, 25);
  SendAndCheck(cluster.ProxyPort(1), CounterOp::Mul(2), model, 50);
  ASSERT_TRUE(cluster.WaitAppsApplied(model.last_index(), 10s));
  for (int i = 0; i < cluster.size(); ++i) {
    const json digest = cluster.Digest(i);
    ASSERT_TRUE(digest.is_object()) << "app " << i;
    EXPECT_EQ(digest.value("value", int64_t{-1}), 50) << "app " << i;
    EXPECT_EQ(digest.value("hash", ""), model.hash()) << "app " << i;
  }
}

// Runs k8shmir-proxy with `args` (which must make it exit at startup); returns its exit
// description and its output.
std::pair<std::string, std::string> RunProxyToExit(const std::vector<std::string>& args) {
  const std::filesystem::path dir = MakeTempDir("k8shmir-tls-proxy-");
  const std::filesystem::path log = dir / "proxy.log";
  std::vector<std::string> argv = {kProxyBin, "--etcd-endpoints", "127.0.0.1:1"};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess proxy;
  proxy.Start(argv, {}, log);
  const bool exited = WaitFor([&] { return !proxy.Running(); }, 10s, 10ms);
  std::pair<std::string, std::string> out{exited ? proxy.DescribeExit() : "still running",
                                          TailFile(log, 20)};
  proxy.Kill();
  RemoveTree(dir);
  return out;
}

TEST_F(EtcdTlsTest, ProxyExitsWithAClearMessageOnBadTlsFlags) {
  {
    auto [exit, output] = RunProxyToExit({"--etcd-cert-file", certs_.client().cert.string()});
    EXPECT_EQ(exit, "exited 2") << output;
    EXPECT_NE(output.find("--etcd-cert-file and --etcd-key-file must be given together"),
              std::string::npos)
        << output;
  }
  {
    const std::string missing = (certs_.dir() / "no-such-ca.crt").string();
    auto [exit, output] = RunProxyToExit({"--etcd-ca-file", missing});
    EXPECT_EQ(exit, "exited 2") << output;
    EXPECT_NE(output.find("'" + missing + "': No such file or directory"), std::string::npos)
        << output;
    EXPECT_NE(output.find("--etcd-ca-file"), std::string::npos) << output;
  }
  {
    auto [exit, output] = RunProxyToExit({"--etcd-endpoints", "https://127.0.0.1:1"});
    EXPECT_EQ(exit, "exited 2") << output;
    EXPECT_NE(output.find("https endpoint needs --etcd-ca-file"), std::string::npos) << output;
  }
}

}  // namespace
}  // namespace k8shmir::testing
