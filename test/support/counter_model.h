// A reference model of examples/counter in the test: the same deterministic state machine, used
// to compute the exact journal, value and responses a correct replica must show.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace k8shmir::testing {

using json = nlohmann::json;

// One request to the counter app.
struct CounterOp {
  enum class Kind { kInc, kDec, kMul, kSet, kReset, kAppend, kRead, kInvalid };
  Kind kind = Kind::kRead;
  int64_t value = 0;  // operand of INC/DEC/MUL/SET
  std::string text;   // body of APPEND

  static CounterOp Inc(int64_t v) { return {Kind::kInc, v, ""}; }
  static CounterOp Dec(int64_t v) { return {Kind::kDec, v, ""}; }
  static CounterOp Mul(int64_t v) { return {Kind::kMul, v, ""}; }
  static CounterOp Set(int64_t v) { return {Kind::kSet, v, ""}; }
  static CounterOp Reset() { return {Kind::kReset, 0, ""}; }
  static CounterOp Append(std::string text) { return {Kind::kAppend, 0, std::move(text)}; }
  static CounterOp Read() { return {Kind::kRead, 0, ""}; }        // GET /integer
  static CounterOp Invalid() { return {Kind::kInvalid, 0, ""}; }  // POST /integer, unknown op

  std::string Method() const;
  std::string Target() const;
  std::string Body() const;
  // The journal entry the app records when it applies this op at `index` (0: not replicated);
  // null for reads and invalid ops, which are not journaled.
  json JournalEntry(int64_t index) const;
  std::string Describe() const;
};

struct ModelResponse {
  unsigned status = 200;
  json body;  // exact expected body for 2xx; {"error": ...} otherwise (only the status matters)
};

class CounterModel {
 public:
  // Applies `op` as the app does when it receives it with `Log-Index: index` (index 0: no
  // header), and returns the response the app must give.
  ModelResponse Apply(const CounterOp& op, int64_t index);

  // Applies a journal entry as the app recorded it (its "index" is used as the Log-Index).
  // False, with nothing changed, when the entry is not one the app can produce.
  bool ApplyEntry(const json& entry);

  int64_t value() const { return value_; }
  int64_t last_index() const { return last_index_; }
  const json& journal() const { return journal_; }
  // FNV-1a 64 over each journal entry's compact dump followed by "\n", as 16 hex digits.
  std::string hash() const { return Hash(journal_); }
  static std::string Hash(const json& entries);

 private:
  void Journal(json entry);

  int64_t value_ = 0;
  int64_t last_index_ = 0;
  json journal_ = json::array();
};

}  // namespace k8shmir::testing
