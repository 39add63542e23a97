#include "log/batch_format.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "k8shmir/batch.pb.h"

namespace k8shmir {

std::string BatchKeySuffix(std::string_view batch_id, std::size_t count) {
  std::string suffix;
  suffix.reserve(batch_id.size() + 4);
  suffix.append(batch_id);
  suffix.push_back('.');
  suffix.append(std::to_string(count));
  return suffix;
}

std::size_t BatchCountOfKey(std::string_view suffix) {
  auto dot = suffix.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return 1;
  std::string_view digits = suffix.substr(dot + 1);
  if (digits.empty() || digits.size() > 3 || digits[0] == '0') return 1;
  std::size_t count = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
  if (ec != std::errc() || end != digits.data() + digits.size()) return 1;
  if (count < 1 || count > kMaxBatchEntries) return 1;
  return count;
}

Result<std::string> EncodeBatch(std::vector<LogEntry> entries) {
  if (entries.empty()) return Error{ErrorCode::kInvalid, "a batch needs at least one entry"};
  if (entries.size() > kMaxBatchEntries) {
    return Error{ErrorCode::kInvalid, "a batch holds at most " + std::to_string(kMaxBatchEntries) +
                                          " entries, not " + std::to_string(entries.size())};
  }
  v1::Batch batch;
  batch.mutable_entries()->Reserve(static_cast<int>(entries.size()));
  for (auto& entry : entries) {
    if (entry.id.empty()) return Error{ErrorCode::kInvalid, "an entry of the batch has no id"};
    auto* out = batch.add_entries();
    out->set_id(std::move(entry.id));
    out->set_value(std::move(entry.value));
  }
  std::string value;
  batch.SerializeToString(&value);
  return value;
}

void DecodeBatch(int64_t revision, std::string_view suffix, const std::string& value,
                 std::vector<LogRecord>& out) {
  const std::size_t count = BatchCountOfKey(suffix);
  v1::Batch batch;
  const char* problem = nullptr;
  if (!batch.ParseFromString(value)) {
    problem = "its value is not a batch";
  } else if (static_cast<std::size_t>(batch.entries_size()) != count) {
    problem = "its entry count differs from its key's";
  }
  if (problem != nullptr) {
    int64_t index = IndexOf(revision, static_cast<int64_t>(count) - 1);
    LogLine(spdlog::level::err,
            "a log key is not a batch of k8shmir entries; its last index will be skipped",
            {{"batch", suffix}, {"revision", revision}, {"reason", problem}, {"index", index}});
    out.push_back(LogRecord{index, std::string(suffix), std::string(), true});
    return;
  }
  out.reserve(out.size() + count);
  for (int i = 0; i < batch.entries_size(); ++i) {
    auto* entry = batch.mutable_entries(i);
    out.push_back(LogRecord{IndexOf(revision, i), std::move(*entry->mutable_id()),
                            std::move(*entry->mutable_value()), false});
  }
}

std::string TrimmedMarkerKey(std::string_view prefix) {
  if (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  return std::string(prefix) + ".trimmed";
}

std::string EncodeTrimmedMarker(int64_t trimmed_index) {
  return nlohmann::json{{"trimmed_index", trimmed_index}}.dump();
}

Result<int64_t> ParseTrimmedMarker(std::string_view value) {
  auto json = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (json.is_object()) {
    auto it = json.find("trimmed_index");
    if (it != json.end() && it->is_number_integer() && it->get<int64_t>() >= 0) {
      return it->get<int64_t>();
    }
  }
  return Error{ErrorCode::kProtocol, "the log's retention marker is not {\"trimmed_index\": N}: " +
                                         std::string(value.substr(0, 200))};
}

std::string CommittedHeadKey(std::string_view prefix) {
  if (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  return std::string(prefix) + ".head";
}

std::string EncodeCommittedHead(std::size_t count) { return std::to_string(count); }

Result<int64_t> ParseCommittedHead(int64_t mod_revision, std::string_view value) {
  std::size_t count = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), count);
  if (ec != std::errc() || end != value.data() + value.size() || count < 1 ||
      count > kMaxBatchEntries || mod_revision <= 0) {
    return Error{ErrorCode::kProtocol, "the log's committed head is not an entry count: '" +
                                           std::string(value.substr(0, 80)) + "'"};
  }
  return IndexOf(mod_revision, static_cast<int64_t>(count) - 1);
}

}  // namespace k8shmir
