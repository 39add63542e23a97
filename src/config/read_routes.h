// Read routes (--read-routes): the requests an app promises never change its state, which the
// proxy serves from its local replica without a log entry (docs/design.md, "Reads that skip the
// log"). A request that matches no route is logged, as every request is without routes.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "k8shmir/result.h"

namespace k8shmir {

enum class ReadConsistency {
  // Reflects every write acknowledged before the read arrived (one etcd round trip, shared).
  kLinearizable,
  // The replica's current state, without the round trip: may be stale (health checks,
  // dashboards).
  kLocal,
};
const char* ReadConsistencyName(ReadConsistency consistency);

struct ReadRoute {
  std::string method;   // an HTTP method, or "*" for any
  std::string pattern;  // a path; '*' matches any run of characters, '/' included
  ReadConsistency consistency = ReadConsistency::kLinearizable;
};

class ReadRoutes {
 public:
  ReadRoutes() = default;

  // Routes separated by ',' or newlines, each "METHOD PATTERN [linearizable|local]":
  //   "GET /integer, GET /journal*, HEAD *, GET /healthz local"
  // METHOD is an HTTP token or "*"; PATTERN starts with '/' or is "*", has no whitespace and no
  // '?' (routes match the path only, the query string is ignored). Empty entries are allowed
  // (trailing commas); anything else malformed is kInvalid naming the route.
  static Result<ReadRoutes> Parse(std::string_view spec);

  // The consistency of the first route matching `method` and `target`'s path (the raw path, as
  // received: no decoding or dot-segment removal), nullopt when none does (the request is logged).
  std::optional<ReadConsistency> Match(std::string_view method, std::string_view target) const;

  bool empty() const { return routes_.empty(); }
  const std::vector<ReadRoute>& routes() const { return routes_; }
  // The routes in Parse's syntax, e.g. for the startup log line.
  std::string ToString() const;

 private:
  std::vector<ReadRoute> routes_;
};

// Whether `path` matches `pattern`, whose '*' matches any run of characters.
bool GlobMatch(std::string_view pattern, std::string_view path);

}  // namespace k8shmir
