#include "config/read_routes.h"

#include <cctype>

namespace k8shmir {

namespace {

// RFC 9110 tchar: what an HTTP method may be made of.
bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c)) != 0) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::vector<std::string_view> Words(std::string_view s) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsSpace(s[i])) ++i;
    std::size_t start = i;
    while (i < s.size() && !IsSpace(s[i])) ++i;
    if (i > start) words.push_back(s.substr(start, i - start));
  }
  return words;
}

Error Malformed(std::string_view route, const std::string& why) {
  return Error{ErrorCode::kInvalid, "--read-routes: route '" + std::string(route) + "' " + why +
                                        " (expected \"METHOD /path [linearizable|local]\", e.g. "
                                        "\"GET /items*\")"};
}

Result<ReadRoute> ParseRoute(std::string_view text) {
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  std::vector<std::string_view> words = Words(text);
  if (words.size() < 2) return Malformed(text, "needs a method and a path");
  if (words.size() > 3) return Malformed(text, "has more than three words");
  ReadRoute route;
  route.method = std::string(words[0]);
  if (route.method != "*") {
    for (char c : route.method) {
      if (!IsTokenChar(c) || c == '*') {
        return Malformed(text, "has a method that is not an HTTP token");
      }
    }
  }
  route.pattern = std::string(words[1]);
  if (route.pattern != "*" && route.pattern.front() != '/') {
    return Malformed(text, "has a path that does not start with '/' (or is not \"*\")");
  }
  if (route.pattern.find_first_of("?#") != std::string::npos) {
    return Malformed(text, "has a '?' or '#' in its path: routes match the path only");
  }
  if (words.size() == 3) {
    if (words[2] == "linearizable") {
      route.consistency = ReadConsistency::kLinearizable;
    } else if (words[2] == "local") {
      route.consistency = ReadConsistency::kLocal;
    } else {
      return Malformed(text,
                       "has consistency '" + std::string(words[2]) + "' (linearizable or local)");
    }
  }
  return route;
}

// The path of an origin-form ("/a?b") or absolute-form ("http://h/a?b") request target.
std::string_view PathOf(std::string_view target) {
  if (!target.empty() && target.front() != '/') {
    std::size_t scheme = target.find("://");
    if (scheme != std::string_view::npos) {
      std::size_t slash = target.find('/', scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  return target.substr(0, target.find_first_of("?#"));
}

}  // namespace

const char* ReadConsistencyName(ReadConsistency consistency) {
  switch (consistency) {
    case ReadConsistency::kLinearizable:
      return "linearizable";
    case ReadConsistency::kLocal:
      return "local";
  }
  return "linearizable";
}

bool GlobMatch(std::string_view pattern, std::string_view path) {
  // Iterative wildcard match with one backtrack point: linear in practice, and never
  // exponential whatever the pattern.
  std::size_t p = 0, s = 0;
  std::size_t star = std::string_view::npos, resume = 0;
  while (s < path.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = s;
    } else if (p < pattern.size() && pattern[p] == path[s]) {
      ++p;
      ++s;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Result<ReadRoutes> ReadRoutes::Parse(std::string_view spec) {
  ReadRoutes routes;
  std::size_t start = 0;
  while (start <= spec.size()) {
    std::size_t end = spec.find_first_of(",\n", start);
    if (end == std::string_view::npos) end = spec.size();
    std::string_view text = spec.substr(start, end - start);
    if (!Words(text).empty()) {
      Result<ReadRoute> route = ParseRoute(text);
      if (!route) return route.error();
      routes.routes_.push_back(std::move(*route));
    }
    start = end + 1;
  }
  return routes;
}

std::optional<ReadConsistency> ReadRoutes::Match(std::string_view method,
                                                 std::string_view target) const {
  if (routes_.empty()) return std::nullopt;
  std::string_view path = PathOf(target);
  for (const auto& route : routes_) {
    if (route.method != "*" && route.method != method) continue;
    if (GlobMatch(route.pattern, path)) return route.consistency;
  }
  return std::nullopt;
}

std::string ReadRoutes::ToString() const {
  std::string out;
  for (const auto& route : routes_) {
    if (!out.empty()) out += ", ";
    out += route.method + " " + route.pattern;
    if (route.consistency == ReadConsistency::kLocal) out += " local";
  }
  return out;
}

}  // namespace k8shmir
