// The local app replica, as seen by its proxy: a deterministic HTTP service that applies
// replicated requests and reports the index of the last one it applied (README, "The app contract";
// docs/design.md).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>

#include "k8shmir/http_message.h"
#include "k8shmir/result.h"

namespace k8shmir {

// The app's index differs from the one the caller believes it has applied: it restarted, or
// something else reached it. Nothing was sent.
struct AppIndexMismatch {
  int64_t app_index = 0;
};

// What the app reports on its last-index endpoint (README, "The app contract").
struct AppIndex {
  int64_t index = 0;
  // The app declared "pipelining": true: it handles the requests of one connection strictly one
  // after the other, so several may be written before the first is answered.
  bool pipelining = false;
  // The app declared "snapshots": true: it serves GET and PUT on its snapshot path (README,
  // "The app contract"), so its state can be stored and restored, and the log trimmed.
  bool snapshots = false;
};

// The app's whole state, as its snapshot endpoint gave it (opaque bytes), and the index of the
// last entry it reflects (the response's index header).
struct AppSnapshot {
  int64_t index = 0;
  std::string data;
};

// Outcome of forwarding one entry. An Error always means "unknown": the entry may or may not have
// been applied, and the caller must re-validate the app with LastIndex before anything else.
using ForwardResult = std::variant<HttpResponse, AppIndexMismatch, Error>;

// The app's answer to a read (App::Read), and the index it reported when the connection the read
// went on was opened.
struct AppReadAnswer {
  HttpResponse response;
  int64_t validated_index = 0;
};
// AppIndexMismatch: a new connection's app reported less than the read's minimum (it restarted,
// or lost its state); nothing was sent. Error: no answer (kUnknown: none within the timeout).
using ReadResult = std::variant<AppReadAnswer, AppIndexMismatch, Error>;

class App {
 public:
  using IndexCallback = std::function<void(Result<AppIndex>)>;
  using ForwardCallback = std::function<void(ForwardResult)>;
  using SnapshotCallback = std::function<void(Result<AppSnapshot>)>;
  using StatusCallback = std::function<void(Status)>;
  using ReadCallback = std::function<void(ReadResult)>;

  virtual ~App() = default;

  // Reads the app's last applied index and what it declares (GET <last-index path>) on its own
  // short-lived connection.
  // kProtocol when the answer is not a valid index document. Callback runs exactly once, never
  // inside this call.
  virtual void LastIndex(IndexCallback done) = 0;

  // Sends `request` with the index header set to `index`. It is sent only on a connection whose
  // app answered LastIndex == expected_applied when the connection was opened (otherwise the
  // result is AppIndexMismatch and nothing is sent), or on which the entry written last had index
  // expected_applied. Several Forwards may be in flight (HTTP/1.1 pipelining on that one
  // connection): they are written in call order and complete in call order, and once one fails
  // every later one in flight fails too, so the caller re-validates before sending again.
  // Callback runs exactly once, never inside this call.
  virtual void Forward(const HttpRequest& request, int64_t index, int64_t expected_applied,
                       ForwardCallback done) = 0;

  // A read that skips the log (docs/design.md, "Reads that skip the log"): sends `request`
  // without the index header, on a connection kept for reads (never the forwarding one, and
  // concurrently with forwards), and returns the app's answer. A new connection is first
  // validated: the app must report a last index >= min_index, else AppIndexMismatch and nothing
  // is sent. A connection kept alive leads to the same app process it was validated on, so the
  // caller, which asks only once it has applied min_index on the app it forwards to, gets a state
  // at least that new either way. A read on a kept-alive connection that fails before any answer
  // is sent again once on a new connection (a read route changes nothing). Callback runs exactly
  // once, never inside this call.
  virtual void Read(const HttpRequest& request, int64_t min_index, ReadCallback done) = 0;

  // Closes the forwarding connection, so the next Forward validates a fresh one.
  virtual void Reset() = 0;

  // GET <snapshot path> on a connection of its own: the app's whole state. The caller asks only
  // between two entries (nothing in flight), and checks the returned index. kInvalid when the
  // state is larger than `max_bytes`; kProtocol when the answer is not 200 with an integer index
  // header; kUnavailable when the app cannot be reached. Callback runs exactly once, never
  // inside this call.
  virtual void GetSnapshot(std::size_t max_bytes, SnapshotCallback done) = 0;

  // PUT <snapshot path> with the index header set to snapshot.index and snapshot.data as body:
  // the app replaces its whole state (afterwards its last index is snapshot.index, which the
  // caller checks with LastIndex). Errors as GetSnapshot's. Callback runs exactly once, never
  // inside this call.
  virtual void PutSnapshot(const AppSnapshot& snapshot, StatusCallback done) = 0;
};

}  // namespace k8shmir
