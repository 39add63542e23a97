// Process-wide logging set-up: spdlog to stderr, one line per event, text or JSON; and events
// with fields (LogEvent): in JSON each field is a key of the line's object, in text a trailing
// `key=value`. A field never hides inside the message, so a log pipeline can select on it.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace k8shmir {

// One field's value: text or a number (written unquoted in JSON).
using LogValue = std::variant<std::string_view, int64_t>;
struct LogField {
  std::string_view key;
  LogValue value;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  template <class N, class = std::enable_if_t<std::is_integral_v<N>>>
  LogField(std::string_view k, N v) : key(k), value(static_cast<int64_t>(v)) {}
};

// `base` fields (e.g. replica and group) go on every JSON line of the process. `sink`: stderr
// unless given (the tests capture the lines).
void SetUpLogging(const std::string& level, const std::string& format,
                  std::vector<std::pair<std::string, std::string>> base = {},
                  spdlog::sink_ptr sink = nullptr);

// The payload spdlog carries for an event with fields: the message, a separator byte, then the
// fields as JSON members (`"k":v,...`). The formatters set up by SetUpLogging render it; any
// other formatter shows it as is. Exposed for the tests.
std::string EventPayload(std::string_view message, std::initializer_list<LogField> fields);

// Logs `message` with `fields` at `level`.
inline void LogLine(spdlog::level::level_enum level, std::string_view message,
                    std::initializer_list<LogField> fields) {
  if (!spdlog::should_log(level)) return;
  spdlog::log(level, "{}", EventPayload(message, fields));
}

}  // namespace k8shmir
