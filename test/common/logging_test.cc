// Log lines with fields: in JSON every field (and the process's base fields) is a key of the
// line's object, in text a trailing key=value; a message is escaped, never broken.
#include "common/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace k8shmir {
namespace {

class LoggingTest : public ::testing::Test {
 protected:
  void Use(const std::string& format) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    SetUpLogging("info", format, {{"replica", "pod-0"}, {"group", "orders"}}, sink);
  }
  ~LoggingTest() override { SetUpLogging("info", "text"); }
  std::string Line() {
    spdlog::default_logger()->flush();
    std::string line;
    std::getline(out_, line);
    return line;
  }
  std::stringstream out_;
};

TEST_F(LoggingTest, JsonLinesCarryTheFieldsAsKeys) {
  Use("json");
  LogLine(spdlog::level::warn, "state changed \"now\"",
          {{"state", "serving"}, {"index", 768}, {"error", "a\nb"}});
  auto j = nlohmann::json::parse(Line());
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["msg"], "state changed \"now\"");
  EXPECT_EQ(j["replica"], "pod-0");
  EXPECT_EQ(j["group"], "orders");
  EXPECT_EQ(j["state"], "serving");
  EXPECT_EQ(j["index"], 768);
  EXPECT_EQ(j["error"], "a\nb");
  EXPECT_TRUE(j.contains("time"));
  // A plain spdlog call still makes a valid line, with the base fields.
  spdlog::info("plain {}", 1);
  auto plain = nlohmann::json::parse(Line());
  EXPECT_EQ(plain["msg"], "plain 1");
  EXPECT_EQ(plain["replica"], "pod-0");
  EXPECT_EQ(plain.size(), 5u);  // time, level, msg, replica, group
}

TEST_F(LoggingTest, TextLinesEndInKeyValuePairs) {
  Use("text");
  LogLine(spdlog::level::info, "state changed",
          {{"state", "catching-up"}, {"index", 5}, {"error", "no leader"}});
  const std::string line = Line();
  EXPECT_NE(line.find(" info state changed state=catching-up index=5 error=\"no leader\""),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find("pod-0"), std::string::npos) << line;  // base fields: JSON only
}

TEST_F(LoggingTest, BelowTheLevelNothingIsFormatted) {
  Use("json");
  LogLine(spdlog::level::debug, "hidden", {{"k", "v"}});
  EXPECT_EQ(Line(), "");
}

}  // namespace
}  // namespace k8shmir
