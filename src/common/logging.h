// Process-wide logging set-up: spdlog to stderr, one line per event, text or JSON.
#pragma once

#include <string>

namespace k8shmir {

void SetUpLogging(const std::string& level, const std::string& format);

}  // namespace k8shmir
