// What the client and admin servers need of a replica: replicate a request, report its status,
// report its liveness. Replica (src/replica) implements it; the servers' tests use a fake
// (test/fakes/fake_replica.h), so that they run in process without a log or an app.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "config/read_routes.h"
#include "k8shmir/http_message.h"
#include "replica/replica_status.h"

namespace k8shmir {

// What the client is told. `outcome` is the K8shmir-Outcome header (kNone: a read served without
// the log, which has none); `index` (0 = unknown) is K8shmir-Log-Index.
enum class Outcome { kCommitted, kNotCommitted, kUnknown, kNone };
const char* OutcomeName(Outcome outcome);

struct ClientReply {
  HttpResponse response;
  Outcome outcome = Outcome::kNotCommitted;
  int64_t index = 0;
  // Seconds for Retry-After, 0 for none.
  int retry_after = 0;
  // Set for a request on a read route (K8shmir-Read), served or refused.
  std::optional<ReadConsistency> read;
};

class ReplicaService {
 public:
  using ReplyCallback = std::function<void(ClientReply)>;

  virtual ~ReplicaService() = default;

  // Replicates `request`. `done` runs exactly once, never inside this call, on any thread.
  virtual void Submit(HttpRequest request, ReplyCallback done) = 0;

  // The front server answered a request itself with `status` (it never reached Submit): counted
  // with the replica's answers and rejections. Any thread; returns at once.
  virtual void NoteRejected(Rejection reason, unsigned status) = 0;

  // A consistent snapshot. `done` runs exactly once, never inside this call, on any thread.
  virtual void GetStatus(std::function<void(ReplicaStatus)> done) = 0;

  // How long ago the replica's loop last made progress. Any thread, without waiting on the loop:
  // /healthz must answer even when the loop is wedged.
  virtual std::chrono::steady_clock::duration SinceLastTick() const = 0;
};

}  // namespace k8shmir
