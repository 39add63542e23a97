// The log entry format: a client request as the proxy appends it to the log (proto/k8shmir/
// entry.proto). Decoding never trusts its input: entries come from a shared store.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "k8shmir/http_message.h"
#include "k8shmir/result.h"

namespace k8shmir {

struct Entry {
  std::string request_id;
  std::string origin;
  int64_t appended_unix_ms = 0;
  HttpRequest request;
};

std::string EncodeEntry(const Entry& entry);
Result<Entry> DecodeEntry(std::string_view bytes);

// 32 hex digits from 128 random bits: unique across replicas without coordination.
std::string NewRequestId();

}  // namespace k8shmir
