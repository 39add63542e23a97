#include "support/counter_model.h"

#include <cstdio>

namespace k8shmir::testing {
namespace {

int64_t Wrap(uint64_t v) { return static_cast<int64_t>(v); }

const char* OpName(CounterOp::Kind kind) {
  switch (kind) {
    case CounterOp::Kind::kInc:
      return "INC";
    case CounterOp::Kind::kDec:
      return "DEC";
    case CounterOp::Kind::kMul:
      return "MUL";
    case CounterOp::Kind::kSet:
      return "SET";
    case CounterOp::Kind::kReset:
      return "RESET";
    case CounterOp::Kind::kAppend:
      return "APPEND";
    case CounterOp::Kind::kRead:
      return "READ";
    case CounterOp::Kind::kInvalid:
      return "BOGUS";
  }
  return "?";
}

}  // namespace

std::string CounterOp::Method() const { return kind == Kind::kRead ? "GET" : "POST"; }

std::string CounterOp::Target() const {
  switch (kind) {
    case Kind::kReset:
      return "/integer/reset";
    case Kind::kAppend:
      return "/journal";
    default:
      return "/integer";
  }
}

std::string CounterOp::Body() const {
  switch (kind) {
    case Kind::kInc:
    case Kind::kDec:
    case Kind::kMul:
    case Kind::kSet:
    case Kind::kInvalid:
      return json{{"op", OpName(kind)}, {"value", value}}.dump();
    case Kind::kAppend:
      return text;
    default:
      return "";
  }
}

json CounterOp::JournalEntry(int64_t index) const {
  switch (kind) {
    case Kind::kInc:
    case Kind::kDec:
    case Kind::kMul:
    case Kind::kSet:
      return {{"index", index}, {"op", OpName(kind)}, {"value", value}};
    case Kind::kReset:
      return {{"index", index}, {"op", "RESET"}};
    case Kind::kAppend:
      return {{"index", index}, {"op", "APPEND"}, {"text", text}};
    default:
      return nullptr;
  }
}

std::string CounterOp::Describe() const {
  std::string s = OpName(kind);
  if (kind == Kind::kAppend) return s + " \"" + text + "\"";
  if (kind == Kind::kReset || kind == Kind::kRead) return s;
  return s + " " + std::to_string(value);
}

ModelResponse CounterModel::Apply(const CounterOp& op, int64_t index) {
  if (index != 0) {
    if (index <= last_index_) return {409, {{"error", "stale Log-Index"}}};
    last_index_ = index;
  }
  const uint64_t v = static_cast<uint64_t>(value_);
  const uint64_t operand = static_cast<uint64_t>(op.value);
  switch (op.kind) {
    case CounterOp::Kind::kInc:
      value_ = Wrap(v + operand);
      break;
    case CounterOp::Kind::kDec:
      value_ = Wrap(v - operand);
      break;
    case CounterOp::Kind::kMul:
      value_ = Wrap(v * operand);
      break;
    case CounterOp::Kind::kSet:
      value_ = op.value;
      break;
    case CounterOp::Kind::kReset:
      value_ = 0;
      break;
    case CounterOp::Kind::kAppend:
      Journal(op.JournalEntry(index));
      return {200, {{"length", journal_.size()}, {"index", index}}};
    case CounterOp::Kind::kRead:
      return {200, {{"value", value_}}};
    case CounterOp::Kind::kInvalid:
      return {400, {{"error", "unknown op"}}};
  }
  Journal(op.JournalEntry(index));
  return {200, {{"value", value_}, {"index", index}}};
}

bool CounterModel::ApplyEntry(const json& entry) {
  if (!entry.is_object() || !entry.contains("index") || !entry["index"].is_number_integer() ||
      !entry.contains("op") || !entry["op"].is_string()) {
    return false;
  }
  const int64_t index = entry["index"].get<int64_t>();
  const std::string name = entry["op"].get<std::string>();
  CounterOp op;
  if (name == "RESET") {
    op = CounterOp::Reset();
  } else if (name == "APPEND") {
    if (!entry.contains("text") || !entry["text"].is_string()) return false;
    op = CounterOp::Append(entry["text"].get<std::string>());
  } else {
    if (!entry.contains("value") || !entry["value"].is_number_integer()) return false;
    const int64_t v = entry["value"].get<int64_t>();
    if (name == "INC") {
      op = CounterOp::Inc(v);
    } else if (name == "DEC") {
      op = CounterOp::Dec(v);
    } else if (name == "MUL") {
      op = CounterOp::Mul(v);
    } else if (name == "SET") {
      op = CounterOp::Set(v);
    } else {
      return false;
    }
  }
  if (index != 0 && index <= last_index_) return false;
  return Apply(op, index).status == 200;
}

void CounterModel::Journal(json entry) { journal_.push_back(std::move(entry)); }

std::string CounterModel::Hash(const json& entries) {
  uint64_t h = 14695981039346656037ull;
  auto feed = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  for (const auto& e : entries) {
    feed(e.dump());
    feed("\n");
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace k8shmir::testing
