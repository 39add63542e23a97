// counter-app: a deterministic example app for k8shmir, also the replica used by the integration
// tests. It keeps an int64 counter and an append-only journal of every mutating request, and it is
// a strict detector of ordering bugs: a replicated request (one carrying a Log-Index header) whose
// index is not greater than the last applied one is refused with 409 and counted as a violation
// (README's app contract asks every app to ignore such a request: a proxy that restarts while
// entries it wrote are still unread in the app's socket cannot stop the app from reading them).
//
// Two modes imitate weaker apps, for the tests of what the proxy must cope with:
//   --no-stale-check  applies a request whatever its Log-Index (no 409) and counts, in
//                     "duplicates", each index it applied before;
//   --thesis-index    like the K8ShMiR thesis's Express example: /last-index reports the
//                     Log-Index header of the last request it received, reads included, so one
//                     request without the header makes it answer {"index": null}. Implies
//                     --no-stale-check.
//
// Endpoints:
//   GET  /last-index      {"index": N, "pipelining": true, "snapshots": true} ("pipelining" left
//                         out under --no-pipelining, "snapshots" under --no-snapshots; a body
//                         that is not JSON under --garbage-last-index, to test the proxy)
//   GET  /snapshot        the whole replicated state, {"value": v, "journal": [...]}, with
//                         header Log-Index: N (the last applied index)
//   PUT  /snapshot        replaces the whole state with such a body; Log-Index: N becomes the
//                         last applied index -> {"index": N}
//   POST /integer         {"op": "INC"|"DEC"|"MUL"|"SET", "value": n} -> {"value": v, "index": N}
//   GET  /integer         {"value": v}
//   POST /integer/reset   {"value": 0, "index": N}
//   POST /journal         body appended as one entry -> {"length": L, "index": N}
//   GET  /journal         {"entries": [...]}
//   GET  /journal/digest  {"count", "hash", "value", "last_index", "violations", "duplicates"}
//
// Single-threaded Boost.Asio: requests are applied one at a time, in the order they are read, and
// each connection's requests strictly one after the other (a pipelined request is read only once
// the previous one was answered). That is what "pipelining": true declares to the proxy.

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

constexpr std::uint64_t kBodyLimit = 8 * 1024 * 1024;
// A snapshot holds the whole journal: PUT /snapshot may be larger than any request.
constexpr std::uint64_t kSnapshotBodyLimit = 256 * 1024 * 1024;
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr std::chrono::seconds kIdleTimeout{120};
constexpr const char* kIndexHeader = "Log-Index";

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 3000;
  bool garbage_last_index = false;
  bool no_pipelining = false;
  bool no_snapshots = false;
  bool no_stale_check = false;
  bool thesis_index = false;
  std::size_t journal_keep = 0;  // 0: the whole journal
};

// FNV-1a, 64 bits.
constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t Fnv1a(std::uint64_t hash, std::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= kFnvPrime;
  }
  return hash;
}

std::string Hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Wrap-around arithmetic: defined for every input, identical on every replica.
std::int64_t WrapAdd(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}
std::int64_t WrapSub(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}
std::int64_t WrapMul(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b));
}

struct Reply {
  http::status status = http::status::ok;
  json body;
  // Sent as is instead of body.dump() (--garbage-last-index, snapshots).
  std::optional<std::string> raw = std::nullopt;
  // A Log-Index header on the response (GET /snapshot).
  std::optional<std::int64_t> log_index = std::nullopt;
};

Reply Error(http::status status, std::string message) {
  return {status, json{{"error", std::move(message)}}};
}

// The replicated state. Only ever touched from the single io thread.
class Counter {
 public:
  explicit Counter(const Options& o)
      : garbage_last_index_(o.garbage_last_index),
        pipelining_(!o.no_pipelining),
        snapshots_(!o.no_snapshots),
        stale_check_(!o.no_stale_check && !o.thesis_index),
        thesis_index_(o.thesis_index),
        journal_keep_(o.journal_keep) {}

  Reply Handle(const http::request<http::string_body>& req) {
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    const http::verb verb = req.method();

    if (verb == http::verb::get && path == "/last-index") {
      if (garbage_last_index_) {
        Reply r;
        r.raw = "garbage: this is not an index";
        return r;
      }
      json answer{{"index", last_index_}};
      if (thesis_index_ && !last_header_present_) answer["index"] = nullptr;
      if (pipelining_) answer["pipelining"] = true;
      if (snapshots_) answer["snapshots"] = true;
      return {http::status::ok, answer};
    }
    if (path == "/snapshot" && snapshots_) {
      if (verb == http::verb::get) return TakeSnapshot();
      if (verb == http::verb::put) return RestoreSnapshot(req);
      return Error(http::status::method_not_allowed, "GET or PUT /snapshot");
    }

    std::int64_t index = 0;  // 0: not replicated (direct access)
    auto header = req.find(kIndexHeader);
    if (thesis_index_) last_header_present_ = header != req.end();
    if (header != req.end()) {
      const std::string_view raw(header->value().data(), header->value().size());
      std::optional<std::int64_t> parsed = ParseIndex(raw);
      if (!parsed) {
        ++violations_;
        return Error(http::status::bad_request,
                     "invalid Log-Index header: '" + std::string(raw) + "'");
      }
      if (*parsed <= last_index_) ++violations_;
      // With the check on, indices only grow: nothing can repeat, so nothing is kept.
      if (!stale_check_ && !applied_.insert(*parsed).second) ++duplicates_;
      if (*parsed <= last_index_ && stale_check_) {
        Reply r = Error(http::status::conflict, "stale Log-Index");
        r.body["index"] = *parsed;
        r.body["last_index"] = last_index_;
        return r;
      }
      index = *parsed;
      last_index_ = index;  // every replicated request advances it, reads and errors included
    }
    return Dispatch(verb, path, req.body(), index);
  }

 private:
  static std::optional<std::int64_t> ParseIndex(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    if (s.empty()) return std::nullopt;
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
  }

  Reply Dispatch(http::verb verb, std::string_view path, const std::string& body,
                 std::int64_t index) {
    if (path == "/integer") {
      if (verb == http::verb::get) return {http::status::ok, json{{"value", value_}}};
      if (verb == http::verb::post) return IntegerOp(body, index);
    } else if (path == "/integer/reset") {
      if (verb == http::verb::post) {
        value_ = 0;
        Journal(json{{"index", index}, {"op", "RESET"}});
        return {http::status::ok, json{{"value", value_}, {"index", index}}};
      }
    } else if (path == "/journal") {
      if (verb == http::verb::get) return {http::status::ok, json{{"entries", journal_}}};
      if (verb == http::verb::post) {
        Journal(json{{"index", index}, {"op", "APPEND"}, {"text", body}});
        return {http::status::ok, json{{"length", journal_.size()}, {"index", index}}};
      }
    } else if (path == "/journal/digest") {
      if (verb == http::verb::get) {
        return {http::status::ok, json{{"count", count_},
                                       {"hash", Hex16(hash_)},
                                       {"value", value_},
                                       {"last_index", last_index_},
                                       {"violations", violations_},
                                       {"duplicates", duplicates_}}};
      }
    }
    return Error(http::status::not_found, "no such endpoint");
  }

  // The replicated state only (value, journal, and the journal's running hash and length, which
  // cover entries a --journal-keep app no longer holds), not this instance's diagnostics
  // (violations, duplicates).
  Reply TakeSnapshot() const {
    Reply r;
    r.raw =
        json{{"value", value_}, {"journal", journal_}, {"hash", Hex16(hash_)}, {"count", count_}}
            .dump();
    r.log_index = last_index_;
    return r;
  }

  Reply RestoreSnapshot(const http::request<http::string_body>& req) {
    auto header = req.find(kIndexHeader);
    std::optional<std::int64_t> index;
    if (header != req.end()) {
      index = ParseIndex(std::string_view(header->value().data(), header->value().size()));
    }
    if (!index || *index < 0) {
      return Error(http::status::bad_request, "PUT /snapshot needs a Log-Index header");
    }
    json doc = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object() || !doc.contains("value") || !doc["value"].is_number_integer() ||
        !doc.contains("journal") || !doc["journal"].is_array()) {
      return Error(http::status::bad_request, "not a counter snapshot");
    }
    value_ = doc["value"].get<std::int64_t>();
    journal_ = std::move(doc["journal"]);
    hash_ = kFnvOffset;
    for (const auto& entry : journal_) {
      hash_ = Fnv1a(hash_, entry.dump());
      hash_ = Fnv1a(hash_, "\n");
    }
    count_ = journal_.size();
    // A snapshot of a --journal-keep app carries what its kept entries cannot give.
    if (doc.contains("hash") && doc["hash"].is_string() && doc.contains("count") &&
        doc["count"].is_number_unsigned()) {
      hash_ = std::stoull(doc["hash"].get<std::string>(), nullptr, 16);
      count_ = doc["count"].get<std::uint64_t>();
    }
    last_index_ = *index;
    applied_.clear();
    last_header_present_ = true;
    return {http::status::ok, json{{"index", last_index_}}};
  }

  Reply IntegerOp(const std::string& body, std::int64_t index) {
    json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      return Error(http::status::bad_request, "body is not a JSON object");
    }
    auto op_it = doc.find("op");
    if (op_it == doc.end() || !op_it->is_string()) {
      return Error(http::status::bad_request, "missing string field 'op'");
    }
    const std::string op = op_it->get<std::string>();
    if (op != "INC" && op != "DEC" && op != "MUL" && op != "SET") {
      return Error(http::status::bad_request, "unknown op '" + op + "'");
    }
    std::int64_t operand = 1;  // INC and DEC default to 1; MUL and SET need a value
    auto value_it = doc.find("value");
    if (value_it == doc.end()) {
      if (op == "MUL" || op == "SET") {
        return Error(http::status::bad_request, "missing integer field 'value'");
      }
    } else if (value_it->is_number_integer() &&
               (value_it->is_number_unsigned()
                    ? value_it->get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)
                    : true)) {
      operand = value_it->get<std::int64_t>();
    } else {
      return Error(http::status::bad_request, "'value' must be a 64-bit signed integer");
    }

    if (op == "INC") {
      value_ = WrapAdd(value_, operand);
    } else if (op == "DEC") {
      value_ = WrapSub(value_, operand);
    } else if (op == "MUL") {
      value_ = WrapMul(value_, operand);
    } else {
      value_ = operand;
    }
    Journal(json{{"index", index}, {"op", op}, {"value", operand}});
    return {http::status::ok, json{{"value", value_}, {"index", index}}};
  }

  void Journal(json entry) {
    hash_ = Fnv1a(hash_, entry.dump());
    hash_ = Fnv1a(hash_, "\n");
    journal_.push_back(std::move(entry));
    ++count_;
    if (journal_keep_ > 0 && journal_.size() > journal_keep_) journal_.erase(journal_.begin());
  }

  const bool garbage_last_index_;
  const bool pipelining_;
  const bool snapshots_;
  const bool stale_check_;
  const bool thesis_index_;
  const std::size_t journal_keep_;
  std::int64_t value_ = 0;
  std::uint64_t count_ = 0;  // entries ever journaled (the journal keeps the last journal_keep_)
  std::int64_t last_index_ = 0;
  bool last_header_present_ = true;  // --thesis-index: the last request carried the header
  std::uint64_t violations_ = 0;
  // Every index applied, to count the ones applied twice (a test app: memory grows with the log).
  std::unordered_set<std::int64_t> applied_;
  std::uint64_t duplicates_ = 0;
  json journal_ = json::array();
  std::uint64_t hash_ = kFnvOffset;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Counter& counter) : stream_(std::move(socket)), counter_(counter) {}

  void Start() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::ReadHeader, shared_from_this()));
  }

 private:
  void ReadHeader() {
    parser_.emplace();
    // Beast checks a Content-Length against the limit while it parses the head: the head is read
    // with the largest limit, and OnHeader sets the one of the request's kind.
    parser_->body_limit(kSnapshotBodyLimit);
    parser_->header_limit(kHeaderLimit);
    stream_.expires_after(kIdleTimeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, std::size_t) {
    if (ec) return OnReadError(ec);
    auto& req = parser_->get();
    const bool snapshot = req.method() == http::verb::put && req.target() == "/snapshot";
    const std::uint64_t limit = snapshot ? kSnapshotBodyLimit : kBodyLimit;
    parser_->body_limit(limit);
    if (auto cl = parser_->content_length(); cl && *cl > limit) {
      return OnReadError(http::error::body_limit);
    }
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code wec, std::size_t) {
                          if (wec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRequest, shared_from_this()));
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      return Close();
    }
    if (ec == http::error::body_limit) {
      return SendError(http::status::payload_too_large, "body exceeds 8 MiB");
    }
    if (ec == http::error::header_limit) {
      return SendError(http::status::request_header_fields_too_large, "headers too large");
    }
    SendError(http::status::bad_request, "malformed request: " + ec.message());
  }

  void OnRequest(beast::error_code ec, std::size_t) {
    if (ec) return OnReadError(ec);
    const auto& req = parser_->get();
    Reply reply = counter_.Handle(req);
    Send(reply, req.version(), req.keep_alive());
  }

  void SendError(http::status status, std::string message) {
    Send(Error(status, std::move(message)), 11, /*keep_alive=*/false);
  }

  void Send(const Reply& reply, unsigned version, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(reply.status, version);
    res->set(http::field::server, "k8shmir-counter");
    res->set(http::field::content_type, "application/json");
    res->body() = reply.raw ? *reply.raw : reply.body.dump();
    if (reply.log_index) res->set(kIndexHeader, std::to_string(*reply.log_index));
    res->keep_alive(keep_alive);
    res->prepare_payload();
    stream_.expires_after(kIdleTimeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code wec, std::size_t) {
                        if (wec || !res->keep_alive()) return self->Close();
                        self->ReadHeader();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Counter& counter_;
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& ioc, const tcp::endpoint& endpoint, Counter& counter)
      : ioc_(ioc), acceptor_(ioc, endpoint, /*reuse_addr=*/true), counter_(counter) {}

  void Accept() {
    acceptor_.async_accept(ioc_, [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (!ec) {
        std::make_shared<Session>(std::move(s), self->counter_)->Start();
      } else if (ec == asio::error::operation_aborted) {
        return;
      }
      self->Accept();
    });
  }

  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  Counter& counter_;
};

void Usage(std::ostream& out) {
  out << "usage: counter-app [--host ADDR] [--port PORT] [--garbage-last-index]\n"
         "                   [--no-pipelining] [--no-snapshots] [--no-stale-check]\n"
         "                   [--thesis-index]\n"
         "  --host ADDR             listen address (default 127.0.0.1)\n"
         "  --port PORT             listen port (default 3000)\n"
         "  --garbage-last-index    answer /last-index with a body that is not JSON (a broken\n"
         "                          app, for tests of the proxy); all else works as usual\n"
         "  --no-pipelining         leave \"pipelining\": true out of /last-index, so the proxy\n"
         "                          forwards one entry at a time\n"
         "  --no-snapshots          leave \"snapshots\": true out of /last-index and serve no\n"
         "                          /snapshot (an app without state transfer)\n"
         "  --journal-keep N        keep only the newest N journal entries (the digest's count\n"
         "                          and hash still cover all; for long benchmarks)\n"
         "  --no-stale-check        apply a request whose Log-Index is not above the last one\n"
         "                          instead of refusing it (409); count repeats in \"duplicates\"\n"
         "  --thesis-index          report the Log-Index of the last request received, null if\n"
         "                          it had none (the K8ShMiR thesis's example); implies\n"
         "                          --no-stale-check\n";
}

bool ParseArgs(int argc, char** argv, Options& opts) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos && arg.starts_with("--")) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto need_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      Usage(std::cout);
      std::exit(0);
    } else if (arg == "--no-stale-check") {
      if (has_value) return false;
      opts.no_stale_check = true;
    } else if (arg == "--thesis-index") {
      if (has_value) return false;
      opts.thesis_index = true;
    } else if (arg == "--garbage-last-index") {
      if (has_value) return false;
      opts.garbage_last_index = true;
    } else if (arg == "--no-snapshots") {
      if (has_value) return false;
      opts.no_snapshots = true;
    } else if (arg == "--no-pipelining") {
      if (has_value) return false;
      opts.no_pipelining = true;
    } else if (arg == "--journal-keep") {
      if (!need_value()) return false;
      auto [end, ec] =
          std::from_chars(value.data(), value.data() + value.size(), opts.journal_keep);
      if (ec != std::errc() || end != value.data() + value.size()) return false;
    } else if (arg == "--host") {
      if (!need_value()) return false;
      opts.host = std::string(value);
    } else if (arg == "--port") {
      if (!need_value()) return false;
      unsigned port = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
      if (ec != std::errc() || end != value.data() + value.size() || port > 65535) return false;
      opts.port = static_cast<std::uint16_t>(port);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  if (!ParseArgs(argc, argv, opts)) {
    Usage(std::cerr);
    return 2;
  }
  try {
    asio::io_context ioc{1};
    Counter counter(opts);
    const tcp::endpoint endpoint(asio::ip::make_address(opts.host), opts.port);
    auto listener = std::make_shared<Listener>(ioc, endpoint, counter);
    listener->Accept();

    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });

    const auto local = listener->local_endpoint();
    std::cerr << "counter-app listening on " << local.address().to_string() << ":" << local.port()
              << (opts.thesis_index ? " (thesis-index)" : "")
              << (opts.no_stale_check ? " (no-stale-check)" : "")
              << (opts.garbage_last_index ? " (garbage-last-index)" : "")
              << (opts.no_pipelining ? " (no-pipelining)" : "")
              << (opts.no_snapshots ? " (no-snapshots)" : "") << std::endl;
    ioc.run();
  } catch (const std::exception& e) {
    std::cerr << "counter-app: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
