#include "codec/header_filter.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace k8shmir {
namespace {

constexpr std::array<std::string_view, 11> kDropped = {"connection",
                                                       "keep-alive",
                                                       "proxy-connection",
                                                       "te",
                                                       "trailer",
                                                       "transfer-encoding",
                                                       "upgrade",
                                                       "proxy-authorization",
                                                       "proxy-authenticate",
                                                       "expect",
                                                       "content-length"};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool StartsWithI(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && IEquals(s.substr(0, prefix.size()), prefix);
}

}  // namespace

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::vector<HttpHeader> EndToEndHeaders(const std::vector<HttpHeader>& headers,
                                        std::string_view index_header) {
  // Headers listed in Connection are hop-by-hop too (RFC 9110 7.6.1), except Host: it is for
  // every recipient (a sender must not nominate it), and dropping it would replay an HTTP/1.1
  // request without the Host the front server already checked, so a nomination of it is ignored.
  std::vector<std::string> nominated;
  for (const auto& h : headers) {
    if (!IEquals(h.name, "connection")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string_view token = Trim(rest.substr(0, comma));
      if (!token.empty() && !IEquals(token, "host")) nominated.emplace_back(token);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  std::vector<HttpHeader> out;
  out.reserve(headers.size());
  for (const auto& h : headers) {
    auto same = [&](std::string_view n) { return IEquals(h.name, n); };
    if (std::any_of(kDropped.begin(), kDropped.end(), same)) continue;
    if (std::any_of(nominated.begin(), nominated.end(), same)) continue;
    if (same(index_header) || StartsWithI(h.name, "k8shmir-")) continue;
    out.push_back(h);
  }
  return out;
}

}  // namespace k8shmir
