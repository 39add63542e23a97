#include "support/register_load.h"

#include <algorithm>
#include <iostream>

namespace k8shmir::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int64_t SteadyNs(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

RegisterLoad::RegisterLoad(ReplicatedCluster& cluster, History& history, std::vector<int> targets,
                           Options options)
    : cluster_(cluster), history_(history), options_(options) {
  for (int target : targets) {
    for (int k = 0; k < options_.clients_per_target; ++k) {
      auto c = std::make_unique<Client>();
      c->id = history_.NewClient();
      c->target = target;
      clients_.push_back(std::move(c));
    }
  }
  for (auto& c : clients_) {
    Client* client = c.get();
    client->thread = std::thread([this, client] { Run(*client); });
  }
}

RegisterLoad::~RegisterLoad() { Stop(); }

void RegisterLoad::Stop() {
  stop_ = true;
  for (auto& c : clients_) {
    if (c->thread.joinable()) c->thread.join();
  }
}

void RegisterLoad::Record(RegisterOp op) {
  std::lock_guard<std::mutex> lock(mu_);
  ops_.push_back(std::move(op));
}

std::vector<RegisterOp> RegisterLoad::Ops() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

void RegisterLoad::Run(Client& c) {
  HttpConnection conn(cluster_.ProxyPort(c.target));
  std::mt19937 rng(static_cast<unsigned>(c.id * 7919 + 17));
  std::uniform_int_distribution<int> percent(0, 99);
  for (int k = 0; k < options_.max_ops_per_client && !stop_; ++k) {
    const bool write = percent(rng) < options_.write_percent;
    const std::string who = "client " + std::to_string(c.id) + " -> proxy " +
                            std::to_string(c.target) + " #" + std::to_string(k);
    bool ok = false;
    if (write) {
      OpRecord r;
      r.client = c.id;
      r.target = c.target;
      r.seq = k;
      // Unique per (client, k), and never the initial value.
      r.op = CounterOp::Set(int64_t{1000000} * (c.id + 1) + k);
      r.sent = Clock::now();
      r.res = SendOp(conn, r.op, options_.client_timeout);
      r.answered = Clock::now();
      const std::string outcome = r.res.Header("K8shmir-Outcome");
      ok = r.res.Ok();
      RegisterOp op{true, r.op.value, SteadyNs(r.sent), SteadyNs(r.answered), ok, who};
      if (outcome != "not-committed") Record(op);
      history_.Add(std::move(r));
    } else {
      const auto sent = Clock::now();
      HttpResult res = conn.Request("GET", "/integer", "", {}, options_.client_timeout);
      const auto answered = Clock::now();
      ok = res.Ok();
      if (ok) {
        const json body = res.Json();
        if (res.Header("K8shmir-Read") != "linearizable") ++unrouted_reads_;
        if (body.is_object() && body.contains("value") && body["value"].is_number_integer()) {
          ++c.served_reads;
          Record(RegisterOp{false, body["value"].get<int64_t>(), SteadyNs(sent), SteadyNs(answered),
                            true, who + " " + res.Header("K8shmir-Log-Index")});
        } else {
          std::cerr << "RegisterLoad: a read answered 200 without a value: " << res.Describe()
                    << "\n";
          ++unrouted_reads_;
        }
      } else if (res.status >= 500 && res.Header("K8shmir-Outcome") == "not-committed") {
        ++c.refused_reads;
        const int64_t ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(answered - sent).count();
        if (ms > c.slowest_refusal_ms.load()) c.slowest_refusal_ms = ms;
      }
    }
    if (ok) ++c.ok;
    std::this_thread::sleep_for(ok ? options_.pause : options_.pause_after_error);
  }
}

int64_t RegisterLoad::ServedReads(int target) const {
  int64_t n = 0;
  for (const auto& c : clients_) {
    if (target < 0 || c->target == target) n += c->served_reads.load();
  }
  return n;
}

int64_t RegisterLoad::RefusedReads(int target) const {
  int64_t n = 0;
  for (const auto& c : clients_) {
    if (target < 0 || c->target == target) n += c->refused_reads.load();
  }
  return n;
}

int64_t RegisterLoad::SlowestRefusalMs(int target) const {
  int64_t slowest = 0;
  for (const auto& c : clients_) {
    if (c->target == target) slowest = std::max(slowest, c->slowest_refusal_ms.load());
  }
  return slowest;
}

bool RegisterLoad::WaitProgress(int n, std::chrono::milliseconds timeout) {
  std::vector<ClientProgress> watched;
  for (auto& c : clients_) watched.push_back({c->id, c->target, &c->ok});
  return WaitClientsProgress(watched, n, timeout, "RegisterLoad::WaitProgress");
}

}  // namespace k8shmir::testing
