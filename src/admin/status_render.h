// Renders a ReplicaStatus for operators: JSON for /status, Prometheus text for /metrics.
#pragma once

#include <string>
#include <string_view>

#include "replica/replica_status.h"

namespace k8shmir {

std::string RenderStatusJson(const ReplicaStatus& status);
// Prometheus text format 0.0.4: label values escaped, sums at full precision.
std::string RenderPrometheus(const ReplicaStatus& status);

// A label value with backslash, double quote and newline escaped (the text format's rules).
std::string PrometheusLabelValue(std::string_view value);
// A sample value that reads back as `value` exactly (NaN, +Inf and -Inf spelt as Prometheus does).
std::string PrometheusFloat(double value);

}  // namespace k8shmir
