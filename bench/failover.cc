#include "failover.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "support/http_client.h"

namespace k8shmir::bench {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// An etcd member's maintenance status through its JSON gateway, on a new connection (a killed
// member refuses it at once); a discarded value on any failure.
json EtcdStatus(uint16_t port, milliseconds timeout) {
  const testing::HttpResult r = testing::Http(port, "POST", "/v3/maintenance/status", "{}",
                                              {{"Content-Type", "application/json"}}, timeout);
  if (r.status != 200) return json(json::value_t::discarded);
  return json::parse(r.body, nullptr, false);
}

// One request on `conn` (the harness's keep-alive client, reopened after any error); status 0 =
// transport error. `index` receives the K8shmir-Log-Index header.
unsigned Post(testing::HttpConnection& conn, const std::string& target,
              const std::string& content_type, const std::string& body, std::string* index) {
  const testing::HttpResult r =
      conn.Request("POST", target, body, {{"Content-Type", content_type}}, milliseconds(30000));
  *index = r.Header("K8shmir-Log-Index");
  return r.status;
}

struct Completion {
  Clock::time_point at;
  int proxy = 0;
  unsigned status = 0;
};

class FailoverLoad {
 public:
  FailoverLoad(const std::vector<uint16_t>& ports, int clients) {
    for (int c = 0; c < clients; ++c) {
      const int proxy = c % static_cast<int>(ports.size());
      threads_.emplace_back(
          [this, c, proxy, port = ports[static_cast<size_t>(proxy)]] { Run(c, proxy, port); });
    }
  }
  ~FailoverLoad() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<Completion> Completions() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  int64_t max_index() const { return max_index_.load(); }

 private:
  void Run(int client, int proxy, uint16_t port) {
    // Its timeout (30 s, in Post) is far above the proxies' request timeout: every request gets
    // the proxy's own answer.
    testing::HttpConnection conn(port);
    std::vector<Completion> mine;
    for (uint64_t k = 0; !stop_; ++k) {
      std::string index;
      unsigned status = 0;
      // Non-commutative, so that the bench's final digest check means something.
      if (k % 2 == 0) {
        status = Post(conn, "/integer", "application/json",
                      "{\"op\":\"" + std::string(k % 4 == 0 ? "INC" : "MUL") +
                          "\",\"value\":" + std::to_string(k % 4 == 0 ? k + 1 : 3) + "}",
                      &index);
      } else {
        status = Post(conn, "/journal", "text/plain",
                      "failover c" + std::to_string(client) + " k" + std::to_string(k), &index);
      }
      mine.push_back({Clock::now(), proxy, status});
      if (!index.empty() && index.find_first_not_of("0123456789") == std::string::npos &&
          index.size() < 18) {
        int64_t i = std::stoll(index);
        int64_t seen = max_index_.load();
        while (i > seen && !max_index_.compare_exchange_weak(seen, i)) {
        }
      }
      if (status < 200 || status >= 300) std::this_thread::sleep_for(milliseconds(20));
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_.insert(done_.end(), mine.begin(), mine.end());
  }

  std::atomic<bool> stop_{false};
  std::atomic<int64_t> max_index_{0};
  std::mutex mu_;
  std::vector<Completion> done_;
  std::vector<std::thread> threads_;
};

// The index of the member that leads and every member's id; throws when none is agreed on.
int FindLeader(const std::vector<uint16_t>& ports, std::vector<std::string>* ids) {
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    ids->assign(ports.size(), "");
    std::string leader;
    bool ok = true;
    for (size_t i = 0; i < ports.size() && ok; ++i) {
      json j = EtcdStatus(ports[i], milliseconds(1000));
      if (j.is_discarded() || !j.is_object() || !j.contains("header")) {
        ok = false;
        break;
      }
      (*ids)[i] = j["header"].value("member_id", "");
      std::string l = j.value("leader", "");
      if (l.empty() || l == "0" || (!leader.empty() && l != leader)) ok = false;
      leader = l;
    }
    if (ok) {
      for (size_t i = 0; i < ids->size(); ++i) {
        if ((*ids)[i] == leader) return static_cast<int>(i);
      }
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  throw std::runtime_error("failover: no etcd leader agreed on within 30 s");
}

}  // namespace

json RunFailover(const FailoverOptions& o, const FailoverHooks& hooks, int64_t* max_index) {
  const auto& etcd = hooks.etcd_client_ports;
  const int proxies = static_cast<int>(hooks.proxy_ports.size());
  FailoverLoad load(hooks.proxy_ports, o.clients);
  struct Round {
    int member = -1;
    Clock::time_point killed, elected;
  };
  std::vector<Round> rounds;
  for (int n = 0; n < o.rounds; ++n) {
    std::vector<std::string> ids;
    Round r;
    r.member = FindLeader(etcd, &ids);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.before_s));
    r.killed = Clock::now();
    hooks.kill_member(r.member);
    bool elected = false;
    while (!elected && Clock::now() - r.killed < std::chrono::seconds(30)) {
      for (size_t i = 0; i < etcd.size() && !elected; ++i) {
        if (static_cast<int>(i) == r.member) continue;
        json j = EtcdStatus(etcd[i], milliseconds(200));
        if (j.is_discarded() || !j.is_object()) continue;
        std::string l = j.value("leader", "");
        elected = !l.empty() && l != "0" && l != ids[static_cast<size_t>(r.member)];
      }
      if (!elected) std::this_thread::sleep_for(milliseconds(5));
    }
    r.elected = Clock::now();
    if (!elected) throw std::runtime_error("failover: no new etcd leader within 30 s");
    std::this_thread::sleep_until(r.killed + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(o.after_s)));
    rounds.push_back(r);
    hooks.log("failover round " + std::to_string(n) + ": killed etcd member " +
              std::to_string(r.member) + ", new leader after " +
              std::to_string(Seconds(r.elected - r.killed)) + " s");
    hooks.restart_member(r.member);
    if (!hooks.wait_proxies_ready()) throw std::runtime_error("failover: proxies not ready");
  }
  // Let the last round's requests settle before stopping.
  std::this_thread::sleep_for(std::chrono::duration<double>(o.before_s));
  load.Stop();
  if (max_index) *max_index = load.max_index();

  std::vector<Completion> all = load.Completions();
  std::sort(all.begin(), all.end(),
            [](const Completion& a, const Completion& b) { return a.at < b.at; });
  json out_rounds = json::array();
  double worst_excess = -1e9, max_stall = 0, max_election = 0;
  bool pass = !rounds.empty();
  for (size_t n = 0; n < rounds.size(); ++n) {
    const Round& r = rounds[n];
    const auto from = r.killed - std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.before_s));
    const auto to = r.killed + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(o.after_s));
    double stall = 0;
    int stall_proxy = -1;
    json per_proxy = json::array();
    int64_t ok = 0, refused = 0, unknown_or_other = 0;
    for (int p = 0; p < proxies; ++p) {
      Clock::time_point prev{};
      bool have_prev = false;
      double longest = 0;
      for (const Completion& c : all) {
        if (c.proxy != p || c.at < from || c.at > to) continue;
        if (c.at >= r.killed) {
          if (c.status >= 200 && c.status < 300) {
            ++ok;
          } else if (c.status == 503) {
            ++refused;
          } else {
            ++unknown_or_other;
          }
        }
        if (c.status < 200 || c.status >= 300) continue;
        if (have_prev) longest = std::max(longest, Seconds(c.at - prev));
        prev = c.at;
        have_prev = true;
      }
      // No success since: the stall lasts at least until the end of the window.
      if (have_prev) longest = std::max(longest, Seconds(to - prev));
      per_proxy.push_back(longest);
      if (longest > stall) {
        stall = longest;
        stall_proxy = p;
      }
    }
    const double election = Seconds(r.elected - r.killed);
    const bool round_pass = stall <= election + o.stall_margin_s;
    pass = pass && round_pass;
    worst_excess = std::max(worst_excess, stall - election);
    max_stall = std::max(max_stall, stall);
    max_election = std::max(max_election, election);
    out_rounds.push_back(
        {{"killed_member", r.member},
         {"election_s", election},
         {"stall_s", stall},
         {"stall_proxy", stall_proxy},
         {"stall_s_per_proxy", per_proxy},
         {"answers_after_kill", {{"2xx", ok}, {"503", refused}, {"other", unknown_or_other}}},
         {"pass", round_pass}});
  }
  return {{"rounds", out_rounds},
          {"clients", o.clients},
          {"before_s", o.before_s},
          {"after_s", o.after_s},
          {"stall_margin_s", o.stall_margin_s},
          {"max_election_s", max_election},
          {"max_stall_s", max_stall},
          {"worst_stall_minus_election_s", worst_excess},
          {"pass", pass}};
}

}  // namespace k8shmir::bench
