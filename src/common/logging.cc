#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <memory>
#include <nlohmann/json.hpp>

namespace k8shmir {
namespace {

// Between an event's message and its fields (EventPayload): a byte no message contains.
constexpr char kFieldsSeparator = '\x1f';

std::string_view Payload(const spdlog::details::log_msg& msg) {
  return {msg.payload.data(), msg.payload.size()};
}

void AppendJsonEscaped(std::string_view text, spdlog::memory_buf_t& dest) {
  static const char* kHex = "0123456789abcdef";
  for (char c : text) {
    switch (c) {
      case '"':
        dest.append(std::string_view("\\\""));
        break;
      case '\\':
        dest.append(std::string_view("\\\\"));
        break;
      case '\n':
        dest.append(std::string_view("\\n"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xf], kHex[c & 0xf]};
          dest.append(std::string_view(esc, sizeof(esc)));
        } else {
          dest.push_back(c);
        }
    }
  }
}

// `"msg":"<message>"` then the base and the event's fields as members of the line's object.
class JsonMessageAndFields : public spdlog::custom_flag_formatter {
 public:
  explicit JsonMessageAndFields(std::string base_members) : base_(std::move(base_members)) {}
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view payload = Payload(msg);
    const auto sep = payload.find(kFieldsSeparator);
    dest.append(std::string_view("\"msg\":\""));
    AppendJsonEscaped(payload.substr(0, sep), dest);
    dest.push_back('"');
    dest.append(std::string_view(base_));
    if (sep != std::string_view::npos && sep + 1 < payload.size()) {
      dest.push_back(',');
      dest.append(payload.substr(sep + 1));  // already JSON (EventPayload)
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageAndFields>(base_);
  }

 private:
  std::string base_;  // ",\"replica\":\"r\",..." or empty
};

// The message, then ` key=value` for each field (values as JSON: strings quoted only when they
// hold a space, a quote or a control byte).
class TextMessageAndFields : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view payload = Payload(msg);
    const auto sep = payload.find(kFieldsSeparator);
    dest.append(payload.substr(0, sep));
    if (sep == std::string_view::npos || sep + 1 >= payload.size()) return;
    // The fields' JSON members, parsed back: rare (events with fields), and never on a hot path.
    // ordered_json: the fields in the order the event gave them.
    auto fields =
        nlohmann::ordered_json::parse("{" + std::string(payload.substr(sep + 1)) + "}", nullptr,
                                      /*allow_exceptions=*/false);
    if (!fields.is_object()) return;
    for (const auto& [key, value] : fields.items()) {
      dest.push_back(' ');
      dest.append(std::string_view(key));
      dest.push_back('=');
      std::string text;
      if (value.is_string()) {
        text = value.get<std::string>();
        const bool plain = !text.empty() && text.find_first_of(" \"=\t\n\r") == std::string::npos;
        if (!plain) text = value.dump();
      } else {
        text = value.dump();
      }
      dest.append(std::string_view(text));
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TextMessageAndFields>();
  }
};

}  // namespace

std::string EventPayload(std::string_view message, std::initializer_list<LogField> fields) {
  std::string out(message);
  out.push_back(kFieldsSeparator);
  bool first = true;
  for (const auto& f : fields) {
    if (!first) out.push_back(',');
    first = false;
    out += nlohmann::json(std::string(f.key)).dump();
    out.push_back(':');
    if (const auto* text = std::get_if<std::string_view>(&f.value)) {
      out += nlohmann::json(std::string(*text))
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } else {
      out += std::to_string(std::get<int64_t>(f.value));
    }
  }
  return out;
}

void SetUpLogging(const std::string& level, const std::string& format,
                  std::vector<std::pair<std::string, std::string>> base, spdlog::sink_ptr sink) {
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("k8shmir", std::move(sink));
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (format == "json") {
    std::string base_members;
    for (const auto& [key, value] : base) {
      base_members +=
          "," + nlohmann::json(key).dump() + ":" +
          nlohmann::json(value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    formatter->add_flag<JsonMessageAndFields>('*', std::move(base_members))
        .set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l",%*})");
  } else {
    // Text lines stay short: the base fields (the process's own replica and group) are left out.
    formatter->add_flag<TextMessageAndFields>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %*");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace k8shmir
