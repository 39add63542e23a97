#include "codec/entry_codec.h"

#include <gtest/gtest.h>

#include <set>

#include "codec/header_filter.h"

namespace k8shmir {
namespace {

TEST(EntryCodecTest, RoundTripsEveryField) {
  Entry e;
  e.request_id = "abc";
  e.origin = "replica-1";
  e.appended_unix_ms = 1234;
  e.request.method = "PATCH";
  e.request.target = "/journal?x=1";
  e.request.version = 10;
  e.request.headers = {{"Host", "svc"}, {"X-A", "1"}, {"x-a", "2"}};
  e.request.body = std::string("bin\0ary", 7);
  auto d = DecodeEntry(EncodeEntry(e));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->request_id, "abc");
  EXPECT_EQ(d->origin, "replica-1");
  EXPECT_EQ(d->appended_unix_ms, 1234);
  EXPECT_EQ(d->request.method, "PATCH");
  EXPECT_EQ(d->request.target, "/journal?x=1");
  EXPECT_EQ(d->request.version, 10u);
  ASSERT_EQ(d->request.headers.size(), 3u);
  EXPECT_EQ(d->request.headers[2].name, "x-a");
  EXPECT_EQ(d->request.headers[2].value, "2");
  EXPECT_EQ(d->request.body, std::string("bin\0ary", 7));
}

// HTTP lets header values carry bytes that are not UTF-8 (obs-text, e.g. Latin-1): the front
// server accepts them, so the entry must decode on every replica (it did not while the fields
// were proto3 strings; found by fuzz/request_head_fuzz, seed fuzz/corpus/request_head_fuzz/
// obs_text_value).
TEST(EntryCodecTest, RoundTripsBytesThatAreNotUtf8) {
  Entry e;
  e.request_id = "0123456789abcdef0123456789abcdef";
  e.origin = "pod-0";
  e.request.method = "POST";
  e.request.target = "/caf\xe9";
  e.request.headers = {{"X-Latin1", "caf\xe9"}, {"X-Raw", std::string("\xff\xfe", 2)}};
  e.request.body = "x";
  auto decoded = DecodeEntry(EncodeEntry(e));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->request.target, "/caf\xe9");
  ASSERT_EQ(decoded->request.headers.size(), 2u);
  EXPECT_EQ(decoded->request.headers[0].value, "caf\xe9");
  EXPECT_EQ(decoded->request.headers[1].value, std::string("\xff\xfe", 2));
}

TEST(EntryCodecTest, RejectsGarbageAndIncompleteEntries) {
  auto garbage = DecodeEntry("\xff\xff\xff not a protobuf");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, ErrorCode::kProtocol);
  Entry no_method;
  no_method.request.target = "/";
  EXPECT_FALSE(DecodeEntry(EncodeEntry(no_method)));
  Entry bad_version;
  bad_version.request.method = "GET";
  bad_version.request.target = "/";
  bad_version.request.version = 20;
  EXPECT_FALSE(DecodeEntry(EncodeEntry(bad_version)));
}

TEST(EntryCodecTest, RequestIdsAreUniqueHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) {
    auto id = NewRequestId();
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 10000u);
}

TEST(HeaderFilterTest, DropsHopByHopAndProxyOwnedHeaders) {
  std::vector<HttpHeader> in = {
      {"Host", "svc:80"},
      {"Connection", "keep-alive, X-Hop"},
      {"X-Hop", "1"},
      {"Keep-Alive", "timeout=5"},
      {"Transfer-Encoding", "chunked"},
      {"Content-Length", "10"},
      {"Expect", "100-continue"},
      {"TE", "trailers"},
      {"Upgrade", "h2c"},
      {"Proxy-Authorization", "x"},
      {"log-index", "99"},
      {"K8shmir-Outcome", "forged"},
      {"Content-Type", "application/json"},
      {"X-Request-Id", "7"},
  };
  auto out = EndToEndHeaders(in, "Log-Index");
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].name, "Host");
  EXPECT_EQ(out[1].name, "Content-Type");
  EXPECT_EQ(out[2].name, "X-Request-Id");
}

// Found by request_head_fuzz: "Connection: Host" must not strip the Host of an HTTP/1.1 request.
TEST(HeaderFilterTest, ConnectionNominatingHostKeepsHost) {
  std::vector<HttpHeader> in = {
      {"Host", "me"}, {"Connection", "mose, HOST"}, {"Mose", "1"}, {"X-Kept", "2"}};
  auto out = EndToEndHeaders(in, "Log-Index");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].name, "Host");
  EXPECT_EQ(out[0].value, "me");
  EXPECT_EQ(out[1].name, "X-Kept");
}

TEST(HeaderFilterTest, CaseInsensitiveEquality) {
  EXPECT_TRUE(IEquals("Log-Index", "log-index"));
  EXPECT_FALSE(IEquals("Log-Index", "Log-Indexx"));
}

}  // namespace
}  // namespace k8shmir
