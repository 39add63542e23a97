// Renders a ReplicaStatus for operators: JSON for /status, Prometheus text for /metrics.
#pragma once

#include <string>

#include "replica/replica_status.h"

namespace k8shmir {

std::string RenderStatusJson(const ReplicaStatus& status);
std::string RenderPrometheus(const ReplicaStatus& status);

}  // namespace k8shmir
