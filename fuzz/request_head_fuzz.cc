// libFuzzer target for the client request path of the front server: bytes through Beast's request
// parser with the server's limits, then the head, body and header checks, exactly as a session
// runs them (CheckCompleteRequest). Nothing may crash or hit undefined behaviour, a refusal is
// one of the proxy's statuses, and an accepted request never carries a header the proxy owns or
// one that describes the client's connection (what would be replayed to every replica), and it
// survives the log: encoded as an entry, every replica decodes the same request.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "codec/entry_codec.h"
#include "codec/header_filter.h"
#include "http/request_head.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

bool StartsWithI(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && k8shmir::IEquals(s.substr(0, prefix.size()), prefix);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Small limits, so that the fuzzer reaches them.
  constexpr std::size_t kHeaderLimit = 2048;
  constexpr std::size_t kBodyLimit = 1024;
  const auto verdict = k8shmir::CheckCompleteRequest(bytes, kHeaderLimit, kBodyLimit, "Log-Index");
  using Action = k8shmir::HeadCheck::Action;
  switch (verdict.check.action()) {
    case Action::kClose:
      Check(!verdict.request.has_value());
      break;
    case Action::kReject: {
      const unsigned s = verdict.check.status();
      Check(s == 400 || s == 413 || s == 417 || s == 431 || s == 505);
      Check(verdict.check.version() == 10 || verdict.check.version() == 11);
      Check(!verdict.check.reason().empty());
      Check(!verdict.request.has_value());
      break;
    }
    case Action::kAccept: {
      Check(verdict.request.has_value());
      const auto& r = *verdict.request;
      Check(r.version == 10 || r.version == 11);
      Check(!r.method.empty() && !r.target.empty());
      Check(r.body.size() <= kBodyLimit);
      int hosts = 0;
      for (const auto& h : r.headers) {
        for (std::string_view banned : {"log-index", "transfer-encoding", "content-length",
                                        "connection", "expect", "te", "upgrade", "keep-alive"}) {
          Check(!k8shmir::IEquals(h.name, banned));
        }
        Check(!StartsWithI(h.name, "k8shmir-"));
        if (k8shmir::IEquals(h.name, "host")) ++hosts;
      }
      Check(hosts <= 1);
      Check(r.version == 10 || hosts == 1);
      k8shmir::Entry entry;
      entry.request_id = "0123456789abcdef0123456789abcdef";
      entry.origin = "fuzz";
      entry.request = r;
      auto decoded = k8shmir::DecodeEntry(k8shmir::EncodeEntry(entry));
      Check(decoded.ok());
      Check(decoded->request.method == r.method && decoded->request.target == r.target &&
            decoded->request.body == r.body && decoded->request.headers.size() == r.headers.size());
      for (std::size_t i = 0; i < r.headers.size(); ++i) {
        Check(decoded->request.headers[i].name == r.headers[i].name &&
              decoded->request.headers[i].value == r.headers[i].value);
      }
      break;
    }
  }
  return 0;
}
