// --read-routes: parsing (every malformed route named) and matching (method, glob, path only).
#include "config/read_routes.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

ReadRoutes Parsed(const std::string& spec) {
  auto routes = ReadRoutes::Parse(spec);
  EXPECT_TRUE(routes) << spec << ": " << routes.error().message;
  return routes ? *routes : ReadRoutes{};
}

TEST(ReadRoutes, ParsesRoutesWithTheirConsistency) {
  ReadRoutes r = Parsed(" GET /integer, GET /journal* ,\nHEAD *, GET /healthz local,");
  ASSERT_EQ(r.routes().size(), 4u);
  EXPECT_EQ(r.routes()[0].method, "GET");
  EXPECT_EQ(r.routes()[0].pattern, "/integer");
  EXPECT_EQ(r.routes()[0].consistency, ReadConsistency::kLinearizable);
  EXPECT_EQ(r.routes()[2].method, "HEAD");
  EXPECT_EQ(r.routes()[2].pattern, "*");
  EXPECT_EQ(r.routes()[3].consistency, ReadConsistency::kLocal);
  EXPECT_EQ(r.ToString(), "GET /integer, GET /journal*, HEAD *, GET /healthz local");
  EXPECT_TRUE(Parsed("").empty());
  EXPECT_TRUE(Parsed(" , ,\n").empty());
  EXPECT_EQ(Parsed("GET /a linearizable").routes()[0].consistency, ReadConsistency::kLinearizable);
}

TEST(ReadRoutes, MalformedRoutesAreErrorsNamingTheRoute) {
  const std::pair<const char*, const char*> cases[] = {
      {"GET", "needs a method and a path"},
      {"/integer", "needs a method and a path"},
      {"GET integer", "does not start with '/'"},
      {"GET /a?b=1", "routes match the path only"},
      {"GET /a#x", "routes match the path only"},
      {"GET /a eventual", "consistency 'eventual'"},
      {"GET /a local extra", "more than three words"},
      {"G(T /a", "not an HTTP token"},
      {"G*T /a", "not an HTTP token"},
  };
  for (const auto& [spec, why] : cases) {
    auto r = ReadRoutes::Parse(std::string("GET /ok, ") + spec);
    ASSERT_FALSE(r) << spec;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_NE(r.error().message.find(std::string("'") + spec + "'"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
  }
}

TEST(ReadRoutes, MatchesMethodAndPathNotTheQuery) {
  ReadRoutes r = Parsed("GET /integer, GET /journal*, HEAD *, * /status local");
  EXPECT_EQ(r.Match("GET", "/integer"), ReadConsistency::kLinearizable);
  EXPECT_EQ(r.Match("GET", "/integer?x=1"), ReadConsistency::kLinearizable);
  EXPECT_EQ(r.Match("POST", "/integer"), std::nullopt);
  EXPECT_EQ(r.Match("GET", "/integer/reset"), std::nullopt);
  EXPECT_EQ(r.Match("GET", "/journal"), ReadConsistency::kLinearizable);
  EXPECT_EQ(r.Match("GET", "/journal/digest"), ReadConsistency::kLinearizable);
  EXPECT_EQ(r.Match("POST", "/journal"), std::nullopt);
  EXPECT_EQ(r.Match("HEAD", "/anything/at/all"), ReadConsistency::kLinearizable);
  EXPECT_EQ(r.Match("OPTIONS", "/status"), ReadConsistency::kLocal);
  EXPECT_EQ(r.Match("get", "/integer"), std::nullopt);  // methods are case-sensitive
  // Absolute-form targets match by their path.
  EXPECT_EQ(r.Match("GET", "http://app:3000/integer?y"), ReadConsistency::kLinearizable);
  // The first match wins.
  ReadRoutes ordered = Parsed("GET /health local, GET *");
  EXPECT_EQ(ordered.Match("GET", "/health"), ReadConsistency::kLocal);
  EXPECT_EQ(ordered.Match("GET", "/x"), ReadConsistency::kLinearizable);
  EXPECT_EQ(ReadRoutes{}.Match("GET", "/x"), std::nullopt);
}

TEST(ReadRoutes, GlobMatch) {
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*", "/a/b"));
  EXPECT_TRUE(GlobMatch("/a/*/c", "/a/b/c"));
  EXPECT_TRUE(GlobMatch("/a/*/c", "/a/b/x/c"));
  EXPECT_FALSE(GlobMatch("/a/*/c", "/a/b/cd"));
  EXPECT_TRUE(GlobMatch("/a*b*c", "/aXbYbZc"));
  EXPECT_FALSE(GlobMatch("/a*b*c", "/aXbYbZ"));
  EXPECT_TRUE(GlobMatch("/exact", "/exact"));
  EXPECT_FALSE(GlobMatch("/exact", "/exact/"));
  EXPECT_FALSE(GlobMatch("/exact", "/exac"));
  // No exponential blow-up on many stars.
  EXPECT_FALSE(GlobMatch("/*a*a*a*a*a*a*a*a*a*a*b", "/" + std::string(5000, 'a')));
}

}  // namespace
}  // namespace k8shmir
