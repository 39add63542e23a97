// k8shmir-bench: the request mix and the closed-loop load (see load.h).
#include "load.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "codec/entry_codec.h"
#include "codec/header_filter.h"
#include "failover.h"
#include "log/etcd_log.h"
#include "support/etcd_cluster.h"
#include "support/http_client.h"
#include "support/ports.h"
#include "support/process.h"
#include "support/util.h"

namespace k8shmir::bench {

// ---- The request mix ---------------------------------------------------------------------------

// Non-commutative counter operations and journal appends, the same sequence in every mode.

MixRequest MixAt(int client, uint64_t k) {
  char buf[96];
  switch (k % 5) {
    case 0:
      std::snprintf(buf, sizeof buf, R"({"op":"INC","value":%d})", static_cast<int>(k % 9) + 1);
      return {"/integer", "application/json", buf};
    case 1:
      return {"/integer", "application/json", R"({"op":"MUL","value":3})"};
    case 2:
      std::snprintf(buf, sizeof buf, "bench client %03d request %010llu", client,
                    static_cast<unsigned long long>(k));
      return {"/journal", "text/plain", buf};
    case 3:
      return {"/integer", "application/json", R"({"op":"DEC","value":2})"};
    default:
      std::snprintf(buf, sizeof buf, R"({"op":"SET","value":%d})", static_cast<int>(k % 1000));
      return {"/integer", "application/json", buf};
  }
}

std::vector<HttpHeader> MixHeaders(uint16_t port, const MixRequest& m) {
  return {{"Host", "127.0.0.1:" + std::to_string(port)},
          {"User-Agent", "k8shmir-bench"},
          {"Content-Type", m.content_type}};
}

Entry EntryFor(int origin, uint16_t port, const MixRequest& m) {
  Entry e;
  e.request_id = NewRequestId();
  e.origin = "replica-" + std::to_string(origin);
  e.appended_unix_ms = UnixMillis();
  e.request.method = "POST";
  e.request.target = m.target;
  e.request.version = 11;
  auto headers = MixHeaders(port, m);
  headers.push_back({"Content-Length", std::to_string(m.body.size())});
  e.request.headers = EndToEndHeaders(headers, "Log-Index");
  e.request.body = m.body;
  return e;
}

// ---- Closed-loop load --------------------------------------------------------------------------

Mode ParseMode(const std::string& m) {
  if (m == "direct") return Mode::kDirect;
  if (m == "raw-log") return Mode::kRaw;
  if (m == "barrier") return Mode::kBarrier;
  return Mode::kReplicated;
}
const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kDirect:
      return "direct";
    case Mode::kRaw:
      return "raw-log";
    case Mode::kReplicated:
      return "replicated";
    case Mode::kBarrier:
      return "barrier";
  }
  return "?";
}

namespace {

class LoadRun;

class HttpConn : public std::enable_shared_from_this<HttpConn> {
 public:
  HttpConn(LoadRun& run, int client, uint16_t port);
  void Start();
  void Close() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

 private:
  void Connect();
  void Next();
  void OnResponse(beast::error_code ec);
  void Fail(const std::string& what, beast::error_code ec);

  LoadRun& run_;
  int client_;
  uint16_t port_;
  uint64_t k_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  Clock::time_point start_;
  std::string kind_;
};

// Deadline of one raw-log append (normally answered within milliseconds). It also bounds how
// long an interrupted run waits for the appends in flight before it can clean up.
constexpr std::chrono::seconds kAppendDeadline{4};

class RawClient {
 public:
  RawClient(LoadRun& run, int client, uint16_t port)
      : run_(run), client_(client), port_(port), k_(static_cast<uint64_t>(client)) {}
  void Next();

 private:
  LoadRun& run_;
  int client_;
  uint16_t port_;
  uint64_t k_;
};

class LoadRun {
 public:
  LoadRun(asio::io_context& ioc, Cluster& cluster, RunSpec spec)
      : ioc_(ioc), cluster_(cluster), spec_(std::move(spec)) {}

  RunResult Run() {
    ioc_.restart();
    auto guard = asio::make_work_guard(ioc_);
    begin_ = Clock::now();
    if (spec_.total > 0) {
      t0_ = begin_;
      t1_ = Clock::time_point::max();
    } else {
      t0_ = begin_ + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(spec_.warmup_s));
      t1_ = t0_ + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(spec_.measure_s));
    }
    deadline_ = begin_ + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(spec_.max_seconds));
    pids_ = cluster_.Pids();
    cpu_at_t0_.clear();
    cpu_at_t1_.clear();
    asio::steady_timer t0_timer(ioc_);
    asio::steady_timer t1_timer(ioc_);
    if (spec_.total == 0) {
      t0_timer.expires_at(t0_);
      t0_timer.async_wait([this](beast::error_code ec) {
        if (!ec) cpu_at_t0_ = SampleCpu();
      });
      t1_timer.expires_at(t1_);
      t1_timer.async_wait([this](beast::error_code ec) {
        if (!ec) cpu_at_t1_ = SampleCpu();
      });
    } else {
      cpu_at_t0_ = SampleCpu();
    }
    asio::steady_timer ticker(ioc_);
    std::function<void()> arm_tick = [&] {
      ticker.expires_after(std::chrono::seconds(1));
      ticker.async_wait([&](beast::error_code ec) {
        if (ec) return;
        if (spec_.tick) spec_.tick();
        arm_tick();
      });
    };
    if (spec_.total > 0) arm_tick();

    active_ = spec_.concurrency;
    for (int i = 0; i < spec_.concurrency; ++i) {
      if (spec_.mode == Mode::kRaw || spec_.mode == Mode::kBarrier) {
        raw_.push_back(std::make_unique<RawClient>(*this, i, cluster_.ProxyPort(i % kReplicas)));
      } else {
        uint16_t port = spec_.mode == Mode::kDirect ? cluster_.DirectPort()
                                                    : cluster_.ProxyPort(i % spec_.spread);
        conns_.push_back(std::make_shared<HttpConn>(*this, i, port));
      }
    }
    for (auto& c : conns_) c->Start();
    for (auto& r : raw_) asio::post(ioc_, [r = r.get()] { r->Next(); });

    const auto hard_deadline = (spec_.total > 0 ? deadline_ : t1_) + std::chrono::seconds(30);
    while (active_ > 0) {
      ioc_.run_for(milliseconds(100));
      if (g_interrupted) {
        stopping_ = true;
        for (auto& c : conns_) c->Close();
      }
      if (Clock::now() > hard_deadline && !aborted_) {
        aborted_ = true;
        stopping_ = true;
        AddError("run did not finish 30 s after its end; connections closed");
        for (auto& c : conns_) c->Close();
      }
      if (ioc_.stopped()) ioc_.restart();
      // Raw clients wait for their Append callbacks (bounded by the append deadline).
    }
    // The clients stop at t1 and may all be done before the t1 timer's handler ran: sample now
    // (the same moment, give or take one handler), never a previous run's figures.
    if (spec_.total == 0 && cpu_at_t1_.empty() && !cpu_at_t0_.empty()) cpu_at_t1_ = SampleCpu();
    ticker.cancel();
    t0_timer.cancel();
    t1_timer.cancel();
    guard.reset();
    ioc_.restart();
    ioc_.run_for(milliseconds(2000));  // the cancelled handlers run now, not in the next run
    conns_.clear();
    CheckInterrupted();

    RunResult r = std::move(result_);
    if (spec_.total > 0) {
      auto end = Clock::now();
      r.seconds = std::chrono::duration<double>(end - begin_).count();
      cpu_at_t1_ = SampleCpu();
    } else {
      r.seconds = spec_.measure_s;
    }
    const double tick_ms = 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
    for (auto& [name, ticks] : cpu_at_t1_) {
      const CpuTicks& before = cpu_at_t0_[name];
      r.cpu_ms[name] =
          tick_ms * static_cast<double>(ticks.user + ticks.sys - before.user - before.sys);
      r.cpu_sys_ms[name] = tick_ms * static_cast<double>(ticks.sys - before.sys);
    }
    r.completed = completed_;
    return r;
  }

  // The next request for `client`, or false when the run stops issuing.
  bool MayIssue() {
    if (stopping_) return false;
    auto now = Clock::now();
    if (spec_.total > 0) {
      if (issued_ >= spec_.total) return false;
      if (now >= deadline_) {
        result_.truncated = true;
        return false;
      }
      ++issued_;
      return true;
    }
    return now < t1_;
  }

  void Record(Clock::time_point start, Clock::time_point end, bool ok, const std::string& error,
              int64_t index, const std::string& kind = "write") {
    ++completed_;
    if (index > result_.max_index) result_.max_index = index;
    if (start < t0_ || end > t1_) return;
    if (!ok) {
      ++result_.errors;
      if (result_.first_error.empty()) result_.first_error = error;
      return;
    }
    const double us = std::chrono::duration<double, std::micro>(end - start).count();
    result_.latency_us.push_back(us);
    result_.latency_us_by_kind[kind].push_back(us);
  }

  MixRequest NextRequest(int client, uint64_t k) const {
    return spec_.mix ? spec_.mix(client, k) : MixAt(client, k);
  }

  void AddError(const std::string& e) {
    ++result_.errors;
    if (result_.first_error.empty()) result_.first_error = e;
  }

  void ClientDone() {
    if (--active_ == 0) ioc_.stop();
  }

  asio::io_context& ioc() { return ioc_; }
  Mode mode() const { return spec_.mode; }
  EtcdLog* log() const { return spec_.log; }
  bool stopping() const { return stopping_; }

 private:
  std::map<std::string, CpuTicks> SampleCpu() {
    std::map<std::string, CpuTicks> out;
    for (auto& [name, pids] : pids_) {
      for (pid_t p : pids) {
        CpuTicks t = ReadCpuTicks(p);
        out[name].user += t.user;
        out[name].sys += t.sys;
      }
    }
    if (spec_.on_sample) spec_.on_sample();
    return out;
  }

  asio::io_context& ioc_;
  Cluster& cluster_;
  RunSpec spec_;
  Clock::time_point begin_, t0_, t1_, deadline_;
  std::vector<std::shared_ptr<HttpConn>> conns_;
  std::vector<std::unique_ptr<RawClient>> raw_;
  int active_ = 0;
  int64_t issued_ = 0;
  int64_t completed_ = 0;
  bool stopping_ = false;
  bool aborted_ = false;
  RunResult result_;
  std::map<std::string, std::vector<pid_t>> pids_;
  std::map<std::string, CpuTicks> cpu_at_t0_, cpu_at_t1_;
};

HttpConn::HttpConn(LoadRun& run, int client, uint16_t port)
    : run_(run),
      client_(client),
      port_(port),
      k_(static_cast<uint64_t>(client)),
      stream_(run.ioc()) {}

void HttpConn::Start() { Connect(); }

void HttpConn::Connect() {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port_);
  stream_.expires_after(std::chrono::seconds(10));
  stream_.async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
    if (ec) return self->Fail("connect", ec);
    beast::error_code ignored;
    self->stream_.socket().set_option(tcp::no_delay(true), ignored);
    self->Next();
  });
}

void HttpConn::Next() {
  if (!run_.MayIssue()) {
    Close();
    run_.ClientDone();
    return;
  }
  MixRequest m = run_.NextRequest(client_, k_);
  k_ += 1;
  kind_ = m.kind;
  req_ = {};
  req_.method(http::string_to_verb(m.method));
  req_.target(m.target);
  req_.version(11);
  for (const auto& h : MixHeaders(port_, m)) {
    if (m.method == "GET" && h.name == "Content-Type") continue;
    req_.insert(h.name, h.value);
  }
  req_.body() = std::move(m.body);
  req_.prepare_payload();
  res_ = {};
  start_ = Clock::now();
  stream_.expires_after(std::chrono::seconds(30));
  http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) return self->Fail("write", ec);
    http::async_read(self->stream_, self->buffer_, self->res_,
                     [self](beast::error_code rec, std::size_t) { self->OnResponse(rec); });
  });
}

void HttpConn::OnResponse(beast::error_code ec) {
  if (ec) return Fail("read", ec);
  auto end = Clock::now();
  int64_t index = 0;
  auto it = res_.find("K8shmir-Log-Index");
  if (it != res_.end()) index = std::strtoll(std::string(it->value()).c_str(), nullptr, 10);
  const bool ok = res_.result_int() == 200;
  std::string error;
  if (!ok) {
    error = "HTTP " + std::to_string(res_.result_int()) + ": " + res_.body().substr(0, 200);
  }
  run_.Record(start_, end, ok, error, index, kind_);
  if (!res_.keep_alive()) {
    // The server closes: a new connection (the mix continues where it was).
    Close();
    buffer_.clear();
    return Connect();
  }
  Next();
}

void HttpConn::Fail(const std::string& what, beast::error_code ec) {
  if (!run_.stopping()) run_.AddError(what + ": " + ec.message());
  Close();
  run_.ClientDone();
}

void RawClient::Next() {
  if (!run_.MayIssue()) {
    run_.ClientDone();
    return;
  }
  if (run_.mode() == Mode::kBarrier) {
    auto start = Clock::now();
    run_.log()->ReadCommittedIndex(start + kAppendDeadline, [this, start](Result<int64_t> r) {
      auto end = Clock::now();
      asio::post(run_.ioc(), [this, start, end, r = std::move(r)] {
        run_.Record(start, end, r.ok(), r.ok() ? "" : r.error().message, 0, "barrier");
        Next();
      });
    });
    return;
  }
  const int origin = client_ % kReplicas;
  MixRequest m = MixAt(client_, k_);
  k_ += 1;
  auto start = Clock::now();
  Entry e = EntryFor(origin, port_, m);
  std::string value = EncodeEntry(e);
  run_.log()->Append(e.request_id, std::move(value), start + kAppendDeadline,
                     [this, start](Result<AppendResult> r) {
                       auto end = Clock::now();
                       asio::post(run_.ioc(), [this, start, end, r = std::move(r)] {
                         run_.Record(start, end, r.ok(), r.ok() ? "" : r.error().message,
                                     r.ok() ? r->first_index : 0);
                         Next();
                       });
                     });
}

}  // namespace

RunResult RunLoad(asio::io_context& ioc, Cluster& cluster, RunSpec spec) {
  LoadRun run(ioc, cluster, std::move(spec));
  return run.Run();
}

}  // namespace k8shmir::bench
