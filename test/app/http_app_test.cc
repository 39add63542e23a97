#include "app/http_app.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

TEST(ParseLastIndexTest, AcceptsTheContract) {
  bool lenient = true;
  auto r = ParseLastIndex(200, R"({"index": 42})", &lenient);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_FALSE(lenient);
}

TEST(ParseLastIndexTest, NullOrMissingIsZeroButFlagged) {
  bool lenient = false;
  auto null_index = ParseLastIndex(200, R"({"index": null})", &lenient);
  ASSERT_TRUE(null_index);
  EXPECT_EQ(*null_index, 0);
  EXPECT_TRUE(lenient);
  lenient = false;
  auto missing = ParseLastIndex(200, R"({})", &lenient);
  ASSERT_TRUE(missing);
  EXPECT_EQ(*missing, 0);
  EXPECT_TRUE(lenient);
}

TEST(ParseLastIndexTest, RejectsGarbage) {
  bool lenient = false;
  for (const char* body :
       {"garbage", "[1]", R"({"index": -1})", R"({"index": "7"})", R"({"index": 1.5})", ""}) {
    auto r = ParseLastIndex(200, body, &lenient);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << body;
  }
  EXPECT_FALSE(ParseLastIndex(500, R"({"index": 1})", &lenient));
}

}  // namespace
}  // namespace k8shmir
