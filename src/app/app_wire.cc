// The proxy's side of the app contract on the wire: the last-index answer, and the exact bytes of
// a forwarded entry (http_app.h declares both).
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <sstream>

#include "app/http_app.h"
#include "codec/header_filter.h"

namespace k8shmir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

Result<AppIndex> ParseLastIndex(unsigned status, const std::string& body) {
  if (status != 200) {
    return Error{ErrorCode::kProtocol, "last-index answered HTTP " + std::to_string(status)};
  }
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error{ErrorCode::kProtocol,
                 "last-index answer is not a JSON object: '" + body.substr(0, 80) + "'"};
  }
  AppIndex answer;
  if (auto p = doc.find("pipelining"); p != doc.end()) {
    // Strict: a typo here must not silently turn pipelining on (or off) behind the operator.
    if (!p->is_boolean()) {
      return Error{ErrorCode::kProtocol,
                   "last-index \"pipelining\" must be true or false, not " + p->dump()};
    }
    answer.pipelining = p->get<bool>();
  }
  if (auto p = doc.find("snapshots"); p != doc.end()) {
    if (!p->is_boolean()) {
      return Error{ErrorCode::kProtocol,
                   "last-index \"snapshots\" must be true or false, not " + p->dump()};
    }
    answer.snapshots = p->get<bool>();
  }
  auto it = doc.find("index");
  if (it == doc.end()) {
    return Error{ErrorCode::kProtocol,
                 "last-index answer has no \"index\": '" + body.substr(0, 80) + "'"};
  }
  if (it->is_null()) {
    return Error{ErrorCode::kProtocol,
                 "last-index answered {\"index\": null} (an app that records the index header "
                 "of every request it gets reports null after one that came without it)"};
  }
  if (it->is_number_unsigned()) {
    auto v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) {
      return Error{ErrorCode::kProtocol, "last-index out of range"};
    }
    answer.index = static_cast<int64_t>(v);
    return answer;
  }
  if (it->is_number_integer()) {
    return Error{ErrorCode::kProtocol, "last-index is negative: " + it->dump()};
  }
  return Error{ErrorCode::kProtocol, "last-index is not an integer: " + it->dump()};
}

namespace {

using RequestMessage = http::request<http::string_body>;

// The forwarded request as a Beast message (the general path of SerializeForwardRequest).
// `index` < 0: no index header (a read).
RequestMessage BuildForwardMessage(const HttpRequest& request, int64_t index,
                                   std::string_view index_header) {
  RequestMessage req;
  http::verb verb = http::string_to_verb(request.method);
  if (verb == http::verb::unknown) {
    req.method_string(request.method);
  } else {
    req.method(verb);
  }
  req.target(request.target);
  req.version(request.version);
  for (const auto& h : request.headers) req.insert(h.name, h.value);
  const beast::string_view header_name(index_header.data(), index_header.size());
  if (index >= 0) {
    req.set(header_name, std::to_string(index));
  } else {
    req.erase(header_name);
  }
  req.keep_alive(true);
  req.body() = request.body;
  // Content-Length: 0 only where a body is meaningful, as a client would send it.
  if (!request.body.empty() || verb == http::verb::post || verb == http::verb::put ||
      verb == http::verb::patch) {
    if (verb == http::verb::trace) {
      // Beast refuses to frame a TRACE with a body (it throws). The entry is in the log and
      // every replica must forward the same bytes, so send it with its length; the app decides.
      req.content_length(request.body.size());
    } else {
      req.prepare_payload();
    }
  }
  return req;
}

}  // namespace

std::string SerializeForwardRequest(const HttpRequest& request, int64_t index,
                                    std::string_view index_header) {
  // Framing headers and Connection interact with what Beast adds (keep-alive, Content-Length),
  // and Beast groups repeated header names at the first one's place: entries written by a proxy
  // carry neither (hop-by-hop headers are dropped, clients rarely repeat a header), but the log
  // is shared, so an entry that does goes through Beast itself.
  bool simple = (request.version == 10 || request.version == 11) && request.headers.size() <= 32;
  for (std::size_t i = 0; simple && i < request.headers.size(); ++i) {
    const std::string& name = request.headers[i].name;
    if (IEquals(name, "content-length") || IEquals(name, "transfer-encoding") ||
        IEquals(name, "connection")) {
      simple = false;
    }
    if (IEquals(name, index_header)) continue;  // erased, wherever it is
    for (std::size_t j = i + 1; simple && j < request.headers.size(); ++j) {
      if (IEquals(name, request.headers[j].name)) simple = false;
    }
  }
  if (!simple) {
    std::ostringstream out;
    out << BuildForwardMessage(request, index, index_header);
    return std::move(out).str();
  }
  // The bytes Beast writes for BuildForwardMessage, without building the message: request line,
  // the headers in order (minus any index header), the index header, then what keep_alive(true)
  // and prepare_payload() add.
  const std::string& m = request.method;
  const bool body_expected = m == "POST" || m == "PUT" || m == "PATCH";
  const bool length = (!request.body.empty() || body_expected) &&
                      (!request.body.empty() || m == "POST" || m == "PUT" || m == "OPTIONS");
  const std::string index_text = std::to_string(index);
  const std::string length_text = std::to_string(request.body.size());
  std::size_t size = m.size() + request.target.size() + 13 + index_header.size() +
                     index_text.size() + 4 + 26 + 18 + length_text.size() + request.body.size();
  for (const auto& h : request.headers) size += h.name.size() + h.value.size() + 4;
  std::string out;
  out.reserve(size);
  out.append(m).append(" ").append(request.target);
  out.append(request.version == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  for (const auto& h : request.headers) {
    if (IEquals(h.name, index_header)) continue;
    out.append(h.name).append(": ").append(h.value).append("\r\n");
  }
  out.append(index_header).append(": ").append(index_text).append("\r\n");
  if (request.version == 10) out.append("Connection: keep-alive\r\n");
  if (length) out.append("Content-Length: ").append(length_text).append("\r\n");
  out.append("\r\n").append(request.body);
  return out;
}

std::string SerializeReadRequest(const HttpRequest& request, std::string_view index_header) {
  std::ostringstream out;
  out << BuildForwardMessage(request, /*index=*/-1, index_header);
  return std::move(out).str();
}

}  // namespace k8shmir
