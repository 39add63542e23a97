// Bad input (issue 3): malformed requests, requests beyond the limits, slowloris clients, a
// thousand idle connections, and an app that answers its last index with garbage. Nothing bad a
// client sends may be appended, and none of it may stop the proxy from serving everybody else.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "support/fault_load.h"
#include "support/http_client.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kBodyLimit = 4096;
constexpr std::size_t kHeaderLimit = 2048;

// A connected TCP socket to 127.0.0.1:port, -1 on failure.
int ConnectRaw(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A slowloris client: sends `bytes` one byte every `interval`, and watches for the server closing
// the connection. Stops when the server closed it, when every byte was sent, or after `limit`.
struct Trickle {
  std::atomic<int> sent{0};
  bool closed_by_server = false;
  std::string received;
  std::string error;

  void Run(uint16_t port, const std::string& bytes, std::chrono::milliseconds interval,
           std::chrono::milliseconds limit) {
    const int fd = ConnectRaw(port);
    if (fd < 0) {
      error = "connect failed";
      return;
    }
    const auto deadline = Clock::now() + limit;
    for (size_t i = 0; i < bytes.size() && !closed_by_server && Clock::now() < deadline; ++i) {
      if (::send(fd, bytes.data() + i, 1, MSG_NOSIGNAL) != 1) {
        closed_by_server = true;  // EPIPE / ECONNRESET: the server is gone
        break;
      }
      ++sent;
      // Wait `interval`, reading whatever the server says meanwhile.
      const auto next = Clock::now() + interval;
      while (Clock::now() < next) {
        pollfd p{fd, POLLIN | POLLRDHUP, 0};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
        if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0) continue;
        char buf[4096];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
          closed_by_server = true;
          break;
        }
        received.append(buf, static_cast<size_t>(n));
      }
    }
    ::close(fd);
  }
};

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // 1,000 idle connections need more descriptors than the usual soft limit of 1,024.
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = lim.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    ReplicatedClusterOptions o;
    o.replicas = 1;
    o.etcd_members = 1;
    o.group = "bad-input";
    o.body_limit = kBodyLimit;
    o.request_timeout = 5000ms;
    o.extra_proxy_args = {"--header-limit", std::to_string(kHeaderLimit), "--read-timeout-ms",
                          "1500",           "--heartbeat-interval-ms",    "200"};
    cluster_ = new ReplicatedCluster(o);
    cluster_->StartAll();
    ASSERT_TRUE(cluster_->WaitAllServing(60s));
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  uint16_t Port() const { return cluster_->ProxyPort(0); }

  size_t JournalSize() {
    const json j = cluster_->Journal(0);
    return j.is_array() ? j.size() : 0;
  }

  // A request that must be served: an append answered 2xx and journaled as the last entry.
  void ExpectServed(const std::string& text) {
    const HttpResult r = Http(Port(), "POST", "/journal", text, {}, 15s);
    ASSERT_EQ(r.status, 200u) << text << ": " << r.Describe();
    EXPECT_EQ(r.Header("K8shmir-Outcome"), "committed");
    const json journal = cluster_->Journal(0);
    ASSERT_TRUE(journal.is_array() && !journal.empty());
    bool found = false;
    for (const auto& e : journal) found = found || e.value("text", "") == text;
    EXPECT_TRUE(found) << text << " not in the journal";
  }

  // A refusal by the proxy itself: `status`, outcome not-committed, connection closed.
  static void ExpectRefused(const std::string& raw, unsigned status, const std::string& what) {
    EXPECT_EQ(RawStatus(raw), status) << what << ": " << raw.substr(0, 400);
    EXPECT_EQ(RawHeader(raw, "K8shmir-Outcome"), "not-committed") << what;
  }

  static ReplicatedCluster* cluster_;
};
ReplicatedCluster* BadInputTest::cluster_ = nullptr;

TEST_F(BadInputTest, MalformedRequestLinesAre400) {
  const size_t before = JournalSize();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not HTTP", "THIS IS NOT HTTP AT ALL\r\n\r\n"},
      {"no target", "POST\r\nHost: x\r\n\r\n"},
      {"space in the method", "PO ST /journal HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"bad version", "POST /journal HTTP/one\r\nHost: x\r\n\r\n"},
      {"TLS hello", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n"},
      {"bare LF garbage", "\x01\x02\x03\n\n"},
      {"bad header line", "POST /journal HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"},
  };
  for (const auto& [what, bytes] : cases) {
    ExpectRefused(RawExchange(Port(), bytes, 10s), 400, what);
  }
  EXPECT_EQ(JournalSize(), before) << "a malformed request was appended";
  ExpectServed("after-malformed");
}

// Requests whose framing is ambiguous (the classic request smuggling vectors) are refused, and
// the bytes after their head are never taken for another request.
TEST_F(BadInputTest, AmbiguousFramingIs400AndNothingIsSmuggled) {
  const size_t before = JournalSize();
  const std::string smuggled =
      "POST /journal HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nsmuggled";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Content-Length and Transfer-Encoding",
       "POST /journal HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
       "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
      {"two different Content-Length",
       "POST /journal HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nhello"},
      {"negative Content-Length",
       "POST /journal HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + smuggled},
      {"Transfer-Encoding without chunked",
       "POST /journal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled},
      {"chunked not the last coding",
       "POST /journal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" + smuggled},
      {"chunked twice",
       "POST /journal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
           smuggled},
      {"bad chunk size",
       "POST /journal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled},
      {"two Host headers",
       "POST /journal HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 5\r\n\r\nhello"},
  };
  for (const auto& [what, bytes] : cases) {
    const std::string raw = RawExchange(Port(), bytes, 10s);
    ExpectRefused(raw, 400, what);
    // One answer only, then the connection is closed: nothing after the head was parsed.
    EXPECT_EQ(raw.find("HTTP/1.1", 1), std::string::npos) << what << ": " << raw;
  }
  EXPECT_EQ(JournalSize(), before) << "an ambiguous request, or its body, was appended";
  ExpectServed("after-ambiguous");
}

TEST_F(BadInputTest, HeadersOverTheLimitAre431) {
  const size_t before = JournalSize();
  // One large header, and many small ones adding up.
  const HttpResult big = Http(Port(), "POST", "/journal", "too-big-header",
                              {{"X-Big", std::string(kHeaderLimit + 100, 'h')}}, 10s);
  EXPECT_EQ(big.status, 431u) << big.Describe();
  EXPECT_EQ(big.Header("K8shmir-Outcome"), "not-committed");
  Headers many;
  for (int i = 0; i < 200; ++i) many.emplace_back("X-H" + std::to_string(i), "0123456789");
  const HttpResult lots = Http(Port(), "POST", "/journal", "too-many-headers", many, 10s);
  EXPECT_EQ(lots.status, 431u) << lots.Describe();
  EXPECT_EQ(lots.Header("K8shmir-Outcome"), "not-committed");
  EXPECT_EQ(JournalSize(), before) << "a request over the header limit was appended";
  ExpectServed("after-431");
}

TEST_F(BadInputTest, BodiesOverTheLimitAre413) {
  const size_t before = JournalSize();
  const HttpResult by_length =
      Http(Port(), "POST", "/journal", std::string(kBodyLimit + 1, 'x'), {}, 10s);
  EXPECT_EQ(by_length.status, 413u) << by_length.Describe();
  EXPECT_EQ(by_length.Header("K8shmir-Outcome"), "not-committed");
  // Announced too large and never sent.
  ExpectRefused(
      RawExchange(Port(), "POST /journal HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
                  10s),
      413, "announced length");
  // Chunked, growing past the limit.
  std::string chunked = "POST /journal HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) chunked += "400\r\n" + std::string(1024, 'c') + "\r\n";
  chunked += "0\r\n\r\n";
  ExpectRefused(RawExchange(Port(), chunked, 10s), 413, "chunked");
  EXPECT_EQ(JournalSize(), before) << "a request over the body limit was appended";
  // Exactly the limit is fine.
  ExpectServed(std::string(kBodyLimit - 10, 'k') + "-at-limit");
}

// Slowloris: clients that trickle their request head, or their body, one byte at a time. Each is
// cut off by the read timeout (1.5 s here), while other clients of the same proxy are served.
TEST_F(BadInputTest, SlowlorisClientsAreCutOffWhileOthersAreServed) {
  const size_t before = JournalSize();
  const std::string slow_head =
      "POST /journal HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(500, 's');
  const std::string slow_body =
      "POST /journal HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nslow-body-" +
      std::string(490, 'b');
  constexpr int kSlowHeads = 8;
  constexpr int kSlowBodies = 4;
  std::vector<std::unique_ptr<Trickle>> trickles;
  std::vector<std::thread> threads;
  for (int i = 0; i < kSlowHeads + kSlowBodies; ++i) {
    trickles.push_back(std::make_unique<Trickle>());
    Trickle* t = trickles.back().get();
    const bool body = i >= kSlowHeads;
    // The body trickle sends its head at once (one "byte" per call would take too long).
    threads.emplace_back([this, t, body, &slow_head, &slow_body] {
      t->Run(Port(), body ? slow_body : slow_head, 100ms, 30s);
    });
  }
  // Once every slow client is under way, the others are served.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (auto& t : trickles) {
          if (t->sent < 3) return false;
        }
        return true;
      },
      10s));
  for (int i = 0; i < 10; ++i)
    ASSERT_NO_FATAL_FAILURE(ExpectServed("beside-slowloris-" + std::to_string(i)));
  for (auto& th : threads) th.join();

  for (size_t i = 0; i < trickles.size(); ++i) {
    const Trickle& t = *trickles[i];
    SCOPED_TRACE("slow client " + std::to_string(i));
    EXPECT_TRUE(t.error.empty()) << t.error;
    EXPECT_TRUE(t.closed_by_server) << "not cut off after " << t.sent << " bytes in 30 s";
    if (!t.received.empty()) {
      EXPECT_FALSE(RawStatus(t.received) >= 200 && RawStatus(t.received) < 300) << t.received;
    }
  }
  const json journal = cluster_->Journal(0);
  ASSERT_TRUE(journal.is_array());
  EXPECT_EQ(journal.size(), before + 10);
  for (const auto& e : journal) {
    EXPECT_EQ(e.value("text", "").rfind("slow-body", 0), std::string::npos) << e.dump();
  }
}

// A thousand connections that send nothing do not stop the proxy from serving anybody, and
// remain usable themselves.
TEST_F(BadInputTest, AThousandIdleConnectionsDoNotStopService) {
  constexpr int kIdle = 1000;
  std::vector<int> fds;
  struct Closer {
    std::vector<int>& fds;
    ~Closer() {
      for (int fd : fds) ::close(fd);
    }
  } closer{fds};
  for (int i = 0; i < kIdle; ++i) {
    const int fd = ConnectRaw(Port());
    ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
    fds.push_back(fd);
  }
  for (int i = 0; i < 5; ++i)
    ASSERT_NO_FATAL_FAILURE(ExpectServed("beside-idle-" + std::to_string(i)));
  EXPECT_EQ(Http(cluster_->AdminPort(0), "GET", "/readyz", "", {}, 10s).status, 200u);

  // The first and the last idle connection were accepted and still work.
  for (int which : {0, kIdle - 1}) {
    SCOPED_TRACE("idle connection " + std::to_string(which));
    const int fd = fds[static_cast<size_t>(which)];
    const std::string text = "on-idle-" + std::to_string(which);
    const std::string req =
        "POST /journal HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Length: " +
        std::to_string(text.size()) + "\r\n\r\n" + text;
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    std::string raw;
    const auto deadline = Clock::now() + 15s;
    while (Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      raw.append(buf, static_cast<size_t>(n));
    }
    EXPECT_EQ(RawStatus(raw), 200u) << raw;
    EXPECT_EQ(RawHeader(raw, "K8shmir-Outcome"), "committed") << raw;
  }
}

// An app whose /last-index answer is garbage is never served: the replica stays not ready
// (app-contract-violation), says why in /status and in one clear log line, and refuses clients; a
// sane app makes it ready. The same when an app goes bad while its replica was serving.
TEST(BadApp, GarbageLastIndexKeepsTheReplicaNotReady) {
  ReplicatedClusterOptions o;
  o.replicas = 1;
  o.etcd_members = 1;
  o.group = "garbage";
  o.request_timeout = 5000ms;
  o.extra_proxy_args = {"--heartbeat-interval-ms", "200"};
  ReplicatedCluster cluster(o);
  cluster.Etcd().Start();
  cluster.StartAppWithArgs(0, {"--garbage-last-index"});
  cluster.StartProxy(0);

  // A contract violation, whether found at start or by a heartbeat while serving.
  auto expect_not_ready_because_of_garbage = [&] {
    json status;
    ASSERT_TRUE(WaitFor(
        [&] {
          status = cluster.Status(0);
          return status.is_object() &&
                 status.value("state_reason", "").find("last-index") != std::string::npos;
        },
        30s))
        << "no reason given: " << status.dump();
    EXPECT_EQ(status.value("state", ""), "app-contract-violation") << status.dump();
    EXPECT_GE(status.value("app_contract_violations", int64_t{0}), 1) << status.dump();
    EXPECT_FALSE(status.value("ready", true)) << status.dump();
    EXPECT_NE(status.value("state_reason", "").find("not a JSON object"), std::string::npos)
        << status.dump();
    EXPECT_NE(status.value("last_error", "").find("last-index"), std::string::npos)
        << status.dump();
    const HttpResult ready = Http(cluster.AdminPort(0), "GET", "/readyz", "", {}, 5s);
    EXPECT_EQ(ready.status, 503u) << ready.Describe();
    const HttpResult r = Http(cluster.ProxyPort(0), "POST", "/journal", "refused", {}, 10s);
    EXPECT_EQ(r.status, 503u) << r.Describe();
    EXPECT_EQ(r.Header("K8shmir-Outcome"), "not-committed") << r.Describe();
    // One clear line in the proxy's log names the problem.
    std::ifstream log(cluster.ProxyLog(0));
    std::stringstream text;
    text << log.rdbuf();
    EXPECT_NE(text.str().find("last-index answer is not a JSON object: 'garbage"),
              std::string::npos)
        << TailFile(cluster.ProxyLog(0), 20);
  };

  ASSERT_NO_FATAL_FAILURE(expect_not_ready_because_of_garbage());

  // A sane app: the replica becomes ready and serves.
  cluster.KillApp(0);
  cluster.StartApp(0);
  ASSERT_TRUE(cluster.WaitServing(0, 30s)) << cluster.Status(0).dump();
  const HttpResult ok = Http(cluster.ProxyPort(0), "POST", "/journal", "served", {}, 15s);
  ASSERT_EQ(ok.status, 200u) << ok.Describe();

  // The app goes bad while serving: the heartbeat notices, the replica leaves serving.
  cluster.KillApp(0);
  cluster.StartAppWithArgs(0, {"--garbage-last-index"});
  ASSERT_NO_FATAL_FAILURE(expect_not_ready_because_of_garbage());
  const json journal = cluster.Journal(0);
  EXPECT_TRUE(journal.is_array() && journal.empty()) << "the bad app got entries: " << journal;
}

}  // namespace
}  // namespace k8shmir::testing
