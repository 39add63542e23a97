// The Prometheus text rendering: the format (HELP, TYPE, samples, cumulative buckets), label
// values escaped, and sums at full precision.
#include "admin/status_render.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace k8shmir {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool HasLine(const std::string& text, const std::string& line) {
  for (const auto& l : Lines(text)) {
    if (l == line) return true;
  }
  return false;
}

TEST(StatusRenderTest, PrometheusLabelValuesAreEscaped) {
  EXPECT_EQ(PrometheusLabelValue("plain-1"), "plain-1");
  EXPECT_EQ(PrometheusLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(PrometheusLabelValue("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(PrometheusLabelValue("two\nlines"), "two\\nlines");
  EXPECT_EQ(PrometheusLabelValue(""), "");
}

TEST(StatusRenderTest, PrometheusFloatsReadBackExactly) {
  for (double v : {0.0, 1.0, 0.1, 1234567.891, 1e-9, 123456789012.25, 2.5e300}) {
    const std::string text = PrometheusFloat(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
  EXPECT_EQ(PrometheusFloat(1234567.891), "1234567.891");
  EXPECT_EQ(PrometheusFloat(3), "3");
  EXPECT_EQ(PrometheusFloat(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(PrometheusFloat(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(PrometheusFloat(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(StatusRenderTest, MetricsFollowTheTextFormat) {
  ReplicaStatus s;
  s.replica_id = "pod-0";
  s.group = "demo";
  s.state = ReplicaState::kServing;
  s.applied_index = 768;
  s.requests_committed = 7;
  s.append_latency.Observe(0.002);
  s.append_latency.Observe(0.3);
  const std::string text = RenderPrometheus(s);
  const std::string labels = "group=\"demo\",replica=\"pod-0\"";
  EXPECT_TRUE(HasLine(text,
                      "# HELP k8shmir_applied_index Log index of the last entry the app "
                      "applied."));
  EXPECT_TRUE(HasLine(text, "# TYPE k8shmir_applied_index gauge"));
  EXPECT_TRUE(HasLine(text, "k8shmir_applied_index{" + labels + "} 768"));
  EXPECT_TRUE(HasLine(text, "# TYPE k8shmir_requests_total counter"));
  EXPECT_TRUE(HasLine(text, "k8shmir_requests_total{" + labels + ",outcome=\"committed\"} 7"));
  EXPECT_TRUE(HasLine(text, "k8shmir_state{" + labels + ",state=\"serving\"} 1"));
  EXPECT_TRUE(HasLine(text, "# TYPE k8shmir_append_latency_seconds histogram"));
  // Buckets are cumulative and end in +Inf = count.
  EXPECT_TRUE(
      HasLine(text, "k8shmir_append_latency_seconds_bucket{" + labels + ",le=\"0.001\"} 0"));
  EXPECT_TRUE(
      HasLine(text, "k8shmir_append_latency_seconds_bucket{" + labels + ",le=\"0.0025\"} 1"));
  EXPECT_TRUE(HasLine(text, "k8shmir_append_latency_seconds_bucket{" + labels + ",le=\"0.5\"} 2"));
  EXPECT_TRUE(HasLine(text, "k8shmir_append_latency_seconds_bucket{" + labels + ",le=\"+Inf\"} 2"));
  EXPECT_TRUE(HasLine(text, "k8shmir_append_latency_seconds_count{" + labels + "} 2"));
  // Every line is a comment or `name{labels} value`, and the text ends in a newline.
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  for (const auto& line : Lines(text)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    const auto open = line.find('{');
    const auto close = line.rfind("} ");
    ASSERT_NE(open, std::string::npos) << line;
    ASSERT_NE(close, std::string::npos) << line;
    EXPECT_NE(line.substr(open, close - open).find("replica=\"pod-0\""), std::string::npos) << line;
  }
}

TEST(StatusRenderTest, AnswersRejectionsLagAndAppErrorsAreExported) {
  ReplicaStatus s;
  s.replica_id = "r";
  s.group = "g";
  s.lag_entries = 12;
  s.oldest_unapplied_age_seconds = 1.5;
  s.request_latency[0].Observe(0.002);   // committed
  s.request_latency[3].Observe(0.0004);  // read
  s.responses_by_class = {0, 3, 0, 1, 2};
  s.Count(Rejection::kNotServing);
  s.Count(Rejection::kNotServing);
  s.Count(Rejection::kTooLarge);
  s.app_call_errors = 4;
  s.app_call_timeouts = 1;
  s.app_stalls = 2;
  s.etcd_endpoint = "127.0.0.1:2379";
  s.etcd_failovers = 3;
  s.etcd_errors = {5, 1, 0, 2};
  const std::string text = RenderPrometheus(s);
  const std::string l = "group=\"g\",replica=\"r\"";
  EXPECT_TRUE(HasLine(text, "k8shmir_lag_entries{" + l + "} 12")) << text;
  EXPECT_TRUE(HasLine(text, "k8shmir_oldest_unapplied_age_seconds{" + l + "} 1.5"));
  EXPECT_TRUE(HasLine(text, "# TYPE k8shmir_request_latency_seconds histogram"));
  EXPECT_TRUE(HasLine(text, "k8shmir_request_latency_seconds_bucket{" + l +
                                ",outcome=\"committed\",le=\"0.0025\"} 1"));
  EXPECT_TRUE(HasLine(
      text, "k8shmir_request_latency_seconds_count{" + l + ",outcome=\"not-committed\"} 0"));
  EXPECT_TRUE(HasLine(
      text, "k8shmir_request_latency_seconds_bucket{" + l + ",outcome=\"read\",le=\"0.0005\"} 1"));
  EXPECT_TRUE(HasLine(text, "k8shmir_responses_total{" + l + ",class=\"2xx\"} 3"));
  EXPECT_TRUE(HasLine(text, "k8shmir_responses_total{" + l + ",class=\"5xx\"} 2"));
  EXPECT_TRUE(HasLine(text, "k8shmir_rejections_total{" + l + ",reason=\"not-serving\"} 2"));
  EXPECT_TRUE(HasLine(text, "k8shmir_rejections_total{" + l + ",reason=\"too-large\"} 1"));
  EXPECT_TRUE(HasLine(text, "k8shmir_rejections_total{" + l + ",reason=\"log-full\"} 0"));
  EXPECT_TRUE(HasLine(text, "k8shmir_app_call_errors_total{" + l + ",kind=\"failed\"} 4"));
  EXPECT_TRUE(HasLine(text, "k8shmir_app_call_errors_total{" + l + ",kind=\"timeout\"} 3"));
  EXPECT_TRUE(HasLine(text, "k8shmir_etcd_endpoint{" + l + ",endpoint=\"127.0.0.1:2379\"} 1"));
  EXPECT_TRUE(HasLine(text, "k8shmir_etcd_failovers_total{" + l + "} 3"));
  EXPECT_TRUE(HasLine(text, "k8shmir_etcd_errors_total{" + l + ",kind=\"unavailable\"} 5"));
  EXPECT_TRUE(HasLine(text, "k8shmir_etcd_errors_total{" + l + ",kind=\"no-leader\"} 2"));
  const auto status = nlohmann::json::parse(RenderStatusJson(s));
  EXPECT_EQ(status["lag_entries"], 12);
  EXPECT_EQ(status["rejections"]["not-serving"], 2);
  EXPECT_EQ(status["app_call_errors"], 4);
}

TEST(StatusRenderTest, EtcdAlarmsAreExportedOnceKnown) {
  ReplicaStatus s;
  s.replica_id = "r";
  s.group = "g";
  // Before etcd answered a poll: no sample (0 would claim there is no alarm), null in /status.
  EXPECT_EQ(RenderPrometheus(s).find("k8shmir_etcd_alarm"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::parse(RenderStatusJson(s))["etcd"]["alarms"].is_null());
  s.etcd_alarms_known = true;
  s.etcd_nospace_alarm = true;
  const std::string text = RenderPrometheus(s);
  const std::string l = "group=\"g\",replica=\"r\"";
  EXPECT_TRUE(HasLine(text, "# TYPE k8shmir_etcd_alarm gauge")) << text;
  EXPECT_TRUE(HasLine(text, "k8shmir_etcd_alarm{" + l + ",alarm=\"NOSPACE\"} 1"));
  EXPECT_TRUE(HasLine(text, "k8shmir_etcd_alarm{" + l + ",alarm=\"CORRUPT\"} 0"));
  EXPECT_EQ(nlohmann::json::parse(RenderStatusJson(s))["etcd"]["alarms"],
            nlohmann::json::array({"NOSPACE"}));
  EXPECT_EQ(text.find("k8shmir_etcd_db_size_bytes"), std::string::npos);
  s.etcd_db_size_bytes = 2147483648;
  EXPECT_TRUE(HasLine(RenderPrometheus(s), "k8shmir_etcd_db_size_bytes{" + l + "} 2147483648"));
  EXPECT_EQ(nlohmann::json::parse(RenderStatusJson(s))["etcd"]["db_size_bytes"], 2147483648);
}

TEST(StatusRenderTest, LabelValuesWithQuotesBackslashesAndNewlinesStayOneLabel) {
  ReplicaStatus s;
  s.replica_id = "a\"b\\c\nd";
  s.group = "g\"";
  const std::string text = RenderPrometheus(s);
  EXPECT_TRUE(HasLine(text, "k8shmir_applied_index{group=\"g\\\"\",replica=\"a\\\"b\\\\c\\nd\"} 0"))
      << text;
  // No raw newline from a label value: every line still starts a comment or a known metric.
  for (const auto& line : Lines(text)) EXPECT_EQ(line.rfind("d\"", 0), std::string::npos) << line;
}

TEST(StatusRenderTest, HistogramSumsKeepFullPrecision) {
  ReplicaStatus s;
  s.replica_id = "r";
  s.group = "g";
  s.apply_latency.sum = 1234567.891;  // a long-running proxy's sum of seconds
  s.apply_latency.count = 1;
  const std::string text = RenderPrometheus(s);
  // The default ostream precision printed 1.23457e+06.
  EXPECT_TRUE(
      HasLine(text, "k8shmir_apply_latency_seconds_sum{group=\"g\",replica=\"r\"} 1234567.891"))
      << text;
}

}  // namespace
}  // namespace k8shmir
