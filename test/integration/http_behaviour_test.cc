// The proxy as an HTTP/1.1 citizen: keep-alive, pipelining answered in order, Expect:
// 100-continue, chunked request bodies, HTTP/1.0 clients, limits with clear errors. One replica
// on a one-member etcd is enough: replication itself is covered by replication_test.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "support/http_client.h"
#include "support/replicated_cluster.h"

namespace k8shmir::testing {
namespace {

class HttpBehaviourTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ReplicatedClusterOptions o;
    o.replicas = 1;
    o.etcd_members = 1;
    o.group = "http";
    o.body_limit = 4096;
    o.extra_proxy_args = {"--header-limit", "2048", "--read-timeout-ms", "1500"};
    cluster_ = new ReplicatedCluster(o);
    cluster_->StartAll();
    ASSERT_TRUE(cluster_->WaitAllServing());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  uint16_t Port() const { return cluster_->ProxyPort(0); }
  std::vector<std::string> JournalTexts() {
    std::vector<std::string> out;
    for (const auto& e : cluster_->Journal(0)) {
      if (e.value("op", "") == "APPEND") out.push_back(e.value("text", ""));
    }
    return out;
  }

  static ReplicatedCluster* cluster_;
};
ReplicatedCluster* HttpBehaviourTest::cluster_ = nullptr;

// Splits a raw byte stream into the status lines of the responses it holds.
std::vector<unsigned> StatusesIn(const std::string& raw) {
  std::vector<unsigned> out;
  std::size_t pos = 0;
  while ((pos = raw.find("HTTP/1.", pos)) != std::string::npos) {
    if (pos == 0 || raw.compare(pos - 2, 2, "\r\n") == 0 || raw[pos - 1] == '}' ||
        raw[pos - 1] == '\n') {
      out.push_back(RawStatus(std::string_view(raw).substr(pos)));
    }
    pos += 7;
  }
  return out;
}

TEST_F(HttpBehaviourTest, KeepAliveReusesOneConnection) {
  HttpConnection conn(Port());
  for (int i = 0; i < 5; ++i) {
    auto r = conn.Request("POST", "/journal", "ka-" + std::to_string(i));
    ASSERT_EQ(r.status, 200u) << r.Describe();
    EXPECT_EQ(r.Header("K8shmir-Outcome"), "committed");
    EXPECT_FALSE(r.Header("K8shmir-Log-Index").empty());
  }
  EXPECT_EQ(conn.connections_opened(), 1);
}

TEST_F(HttpBehaviourTest, PipelinedRequestsAreAnsweredInOrder) {
  auto before = JournalTexts().size();
  std::string bytes;
  for (int i = 0; i < 3; ++i) {
    std::string body = "pipe-" + std::to_string(i);
    bytes +=
        "POST /journal HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
  }
  bytes += "GET /journal HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
  std::string raw = RawExchange(Port(), bytes, std::chrono::seconds(15));
  EXPECT_EQ(StatusesIn(raw), (std::vector<unsigned>{200, 200, 200, 200}));
  // Each answer carries the journal length after its own append: 1, 2, 3 more, in order.
  for (int i = 0; i < 3; ++i) {
    std::string expect = "\"length\":" + std::to_string(before + i + 1);
    auto at = raw.find(expect);
    ASSERT_NE(at, std::string::npos) << expect << " in " << raw;
    if (i > 0) {
      EXPECT_LT(raw.find("\"length\":" + std::to_string(before + i)), at);
    }
  }
  auto texts = JournalTexts();
  ASSERT_EQ(texts.size(), before + 3);
  EXPECT_EQ(texts[before], "pipe-0");
  EXPECT_EQ(texts[before + 1], "pipe-1");
  EXPECT_EQ(texts[before + 2], "pipe-2");
}

TEST_F(HttpBehaviourTest, ChunkedBodyIsReassembled) {
  std::string bytes =
      "POST /journal HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n"
      "5\r\nchunk\r\n6\r\ned-bod\r\n1\r\ny\r\n0\r\n\r\n";
  std::string raw = RawExchange(Port(), bytes, std::chrono::seconds(15));
  EXPECT_EQ(RawStatus(raw), 200u) << raw;
  EXPECT_EQ(RawHeader(raw, "K8shmir-Outcome"), "committed");
  auto texts = JournalTexts();
  ASSERT_FALSE(texts.empty());
  EXPECT_EQ(texts.back(), "chunked-body");
}

TEST_F(HttpBehaviourTest, Http10ClientGetsAnHttp10AnswerAndAClose) {
  std::string bytes = "POST /journal HTTP/1.0\r\nContent-Length: 4\r\n\r\nold1";
  std::string raw = RawExchange(Port(), bytes, std::chrono::seconds(15));
  ASSERT_EQ(raw.rfind("HTTP/1.0 200", 0), 0u) << raw;
  EXPECT_EQ(JournalTexts().back(), "old1");
}

TEST_F(HttpBehaviourTest, ExpectContinueIsAnsweredBeforeTheBody) {
  namespace asio = boost::asio;
  asio::io_context ioc;
  asio::ip::tcp::socket sock(ioc);
  sock.connect({asio::ip::make_address("127.0.0.1"), Port()});
  timeval tv{10, 0};
  setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string body = "continued";
  asio::write(sock, asio::buffer("POST /journal HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
                                 "Content-Length: " +
                                 std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n"));
  asio::streambuf buf;
  asio::read_until(sock, buf, "\r\n\r\n");
  std::string interim(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
  ASSERT_EQ(interim.rfind("HTTP/1.1 100 Continue", 0), 0u) << interim;
  buf.consume(buf.size());
  asio::write(sock, asio::buffer(body));
  boost::system::error_code ec;
  std::string rest;
  char chunk[4096];
  for (;;) {
    std::size_t n = sock.read_some(asio::buffer(chunk), ec);
    if (ec) break;
    rest.append(chunk, n);
  }
  EXPECT_EQ(RawStatus(rest), 200u) << rest;
  EXPECT_EQ(JournalTexts().back(), "continued");
}

TEST_F(HttpBehaviourTest, ExpectContinueWithTooLargeBodyIs413WithoutReadingIt) {
  auto before = JournalTexts().size();
  std::string bytes =
      "POST /journal HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
      "Content-Length: 100000\r\n\r\n";
  std::string raw = RawExchange(Port(), bytes, std::chrono::seconds(10));
  EXPECT_EQ(RawStatus(raw), 413u) << raw;
  EXPECT_EQ(RawHeader(raw, "K8shmir-Outcome"), "not-committed");
  EXPECT_EQ(JournalTexts().size(), before);
}

TEST_F(HttpBehaviourTest, LimitsGiveClearErrors) {
  auto before = JournalTexts().size();
  auto too_big = Http(Port(), "POST", "/journal", std::string(4097, 'x'));
  EXPECT_EQ(too_big.status, 413u) << too_big.Describe();
  EXPECT_EQ(too_big.Header("K8shmir-Outcome"), "not-committed");
  EXPECT_NE(too_big.body.find("limit"), std::string::npos);
  auto big_headers = Http(Port(), "GET", "/integer", "", {{"X-Big", std::string(4000, 'h')}});
  EXPECT_EQ(big_headers.status, 431u) << big_headers.Describe();
  std::string raw = RawExchange(Port(), "THIS IS NOT HTTP\r\n\r\n", std::chrono::seconds(10));
  EXPECT_EQ(RawStatus(raw), 400u) << raw;
  std::string no_host =
      RawExchange(Port(), "GET /integer HTTP/1.1\r\n\r\n", std::chrono::seconds(10));
  EXPECT_EQ(RawStatus(no_host), 400u) << no_host;
  EXPECT_EQ(JournalTexts().size(), before);
}

TEST_F(HttpBehaviourTest, ClientCannotForgeTheLogIndex) {
  auto r = Http(Port(), "POST", "/journal", "forged", {{"Log-Index", "999999"}});
  ASSERT_EQ(r.status, 200u) << r.Describe();
  auto journal = cluster_->Journal(0);
  ASSERT_FALSE(journal.empty());
  EXPECT_EQ(journal.back().value("text", ""), "forged");
  EXPECT_EQ(std::to_string(journal.back().value("index", int64_t{0})),
            r.Header("K8shmir-Log-Index"));
}

}  // namespace
}  // namespace k8shmir::testing
