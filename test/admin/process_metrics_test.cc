// process_* metrics from /proc: the parsing of a known stat line, and this process's own sample.
#include "admin/process_metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace k8shmir {
namespace {

TEST(ProcessMetricsTest, ParsesAStatLineWhoseCommandHoldsSpacesAndParentheses) {
  // Fields 14/15 (utime, stime) 250 + 50 ticks, 22 (starttime) 1000 ticks, 23 vsize, 24 rss.
  const std::string stat =
      "4242 (k8s (proxy) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 "
      "123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
  auto s = ParseProcStat(stat, 100, 4096, 1700000000);
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->cpu_seconds, 3.0);
  EXPECT_DOUBLE_EQ(s->start_time_seconds, 1700000010.0);
  EXPECT_DOUBLE_EQ(s->virtual_bytes, 123456789.0);
  EXPECT_DOUBLE_EQ(s->resident_bytes, 2048.0 * 4096);
  EXPECT_FALSE(ParseProcStat("4242 (short) S 1 2 3", 100, 4096, 0));
  EXPECT_FALSE(ParseProcStat("no parenthesis", 100, 4096, 0));
}

TEST(ProcessMetricsTest, ThisProcessIsSampledAndRendered) {
  auto s = SampleThisProcess();
  ASSERT_TRUE(s);
  EXPECT_GT(s->resident_bytes, 0);
  EXPECT_GT(s->open_fds, 2);  // at least stdin, stdout, stderr
  const double now = static_cast<double>(::time(nullptr));
  EXPECT_LE(s->start_time_seconds, now + 1);
  EXPECT_GT(s->start_time_seconds, now - 3600);
  const std::string text = RenderProcessMetrics(s);
  EXPECT_NE(text.find("\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nprocess_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(text.find("\nprocess_open_fds "), std::string::npos);
  EXPECT_EQ(text.rfind("# HELP k8shmir_build_info ", 0), 0u) << text;
  EXPECT_NE(text.find("\nk8shmir_build_info{version=\""), std::string::npos);
  // Without /proc only the build info is left: nothing is made up.
  EXPECT_EQ(RenderProcessMetrics(std::nullopt).find("process_"), std::string::npos);
}

}  // namespace
}  // namespace k8shmir
