// libFuzzer target for the decoders of what comes out of the shared log (etcd): an entry
// (DecodeEntry) and a batch (DecodeBatch with its key's suffix). Neither may crash, leak or hit
// undefined behaviour on any input, and a decoded entry must survive re-encoding unchanged.
//
// Input layout: byte 0 picks the entry count the key announces (0..255, then taken as 1..256 or
// a suffix that is not a count), the rest is the value, decoded both as an entry and as a batch.
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "codec/entry_codec.h"
#include "log/batch_format.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

bool SameRequest(const k8shmir::HttpRequest& a, const k8shmir::HttpRequest& b) {
  if (a.method != b.method || a.target != b.target || a.version != b.version || a.body != b.body ||
      a.headers.size() != b.headers.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // DecodeBatch logs every malformed batch
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string value(reinterpret_cast<const char*>(data) + 1, size - 1);

  auto entry = k8shmir::DecodeEntry(value);
  if (entry.ok()) {
    Check(!entry->request.method.empty() && !entry->request.target.empty());
    Check(entry->request.version == 10 || entry->request.version == 11);
    auto again = k8shmir::DecodeEntry(k8shmir::EncodeEntry(*entry));
    Check(again.ok());
    Check(again->request_id == entry->request_id && again->origin == entry->origin &&
          again->appended_unix_ms == entry->appended_unix_ms);
    Check(SameRequest(again->request, entry->request));
  }

  // A key suffix "<id>.<n>" for n in 0..255 (0 is not a valid count), or one without a count.
  const unsigned n = data[0];
  const std::string suffix = n == 255 ? std::string("not-a-batch") : "b." + std::to_string(n);
  const std::size_t count = k8shmir::BatchCountOfKey(suffix);
  Check(count >= 1 && count <= k8shmir::kMaxBatchEntries);
  // Revisions as etcd gives them, within the range whose indices stay below 2^53.
  const int64_t revision = 1 + static_cast<int64_t>(size) % (k8shmir::kMaxBatchRevision - 1);
  std::vector<k8shmir::LogRecord> records;
  k8shmir::DecodeBatch(revision, suffix, value, records);
  Check(!records.empty() && records.size() <= k8shmir::kMaxBatchEntries);
  for (std::size_t i = 0; i < records.size(); ++i) {
    Check(k8shmir::RevisionOfIndex(records[i].index) == revision);
    if (i > 0) Check(records[i].index > records[i - 1].index);
    if (records[i].malformed) Check(records.size() == 1 && records[i].value.empty());
    // Whatever a batch holds, its entries go through the entry decoder on every replica.
    if (!records[i].malformed) (void)k8shmir::DecodeEntry(records[i].value);
  }
  Check(records.back().index <= k8shmir::LastIndexOfBatch(revision, suffix));
  return 0;
}
