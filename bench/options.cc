// k8shmir-bench options.
#include "options.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace k8shmir::bench {

[[noreturn]] void Usage(int code) {
  std::ostream& out = code == 0 ? std::cout : std::cerr;
  out << "usage: k8shmir-bench [options]\n"
         "  --results-dir DIR        where latest.json and latest.png go (bench/results)\n"
         "  --concurrency LIST       closed-loop clients per point (1,16,64)\n"
         "  --modes LIST             direct,raw-log,replicated\n"
         "  --warmup S               warm-up per point, excluded (1)\n"
         "  --duration S             measured time per point (4)\n"
         "  --rounds N               rounds per concurrency, modes alternating (3)\n"
         "  --rss-requests N         replicated requests between the two RSS readings (200000;\n"
         "                           0 skips the phase)\n"
         "  --rss-concurrency N      clients during the RSS phase (64)\n"
         "  --replay-entries N       entries a stopped replica replays (50000; 0 skips)\n"
         "  --etcd-timing T          fast (heartbeat 50 ms, election 500 ms) or default "
         "(100/1000)\n"
         "  --budget S               whole-run time budget in seconds (570)\n"
         "  --proxy-arg ARG          extra flag for every proxy (repeatable)\n"
         "  --proxy0-wrapper CMD     run proxy 0 under CMD (space-separated), e.g. valgrind\n"
         "  --tag TEXT               label stored in the JSON\n"
         "  --active-replicas N      experiment: start only N app+proxy pairs (3); below 3 the\n"
         "                           replay phase is skipped; shows the cost of the fan-out\n"
         "  --replicated-proxies N   spread replicated clients over proxies 0..N-1 only (3;\n"
         "                           1 with --proxy0-wrapper profiles the client path too)\n"
         "  --failover-rounds N      etcd leader SIGKILLs in the failover section (3; 0 skips)\n"
         "  --only-failover          run only the failover section (and the final check)\n"
         "  --only-soak              run only the retention soak (bench/README.md, \"soak\")\n"
         "  --only-reads             run only the reads that skip the log (bench/README.md, "
         "\"reads\")\n"
         "  --soak-requests N        requests to the retention-on group in the soak (500000)\n"
         "  --soak-clients N         closed-loop clients of the soak (32)\n"
         "  --no-plot                do not run gnuplot\n"
         "  --keep                   keep the temporary directory (process logs)\n"
         "  --proxy-bin / --counter-bin / --etcd-bin PATH\n";
  std::exit(code);
}

namespace {
std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}
}  // namespace

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;  // --option=value
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg.resize(eq);
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) {
        std::cerr << "k8shmir-bench: " << arg << " needs a value\n";
        Usage(2);
      }
      return argv[++i];
    };
    try {
      if (arg == "--help" || arg == "-h") {
        Usage(0);
      } else if (arg == "--results-dir") {
        o.results_dir = value();
      } else if (arg == "--concurrency") {
        o.concurrency.clear();
        for (const auto& c : Split(value(), ',')) o.concurrency.push_back(std::stoi(c));
      } else if (arg == "--modes") {
        o.modes = Split(value(), ',');
        for (const auto& m : o.modes) {
          if (m != "direct" && m != "raw-log" && m != "replicated") Usage(2);
        }
      } else if (arg == "--warmup") {
        o.warmup_s = std::stod(value());
      } else if (arg == "--duration") {
        o.measure_s = std::stod(value());
      } else if (arg == "--rounds") {
        o.rounds = std::stoi(value());
      } else if (arg == "--rss-requests") {
        o.rss_requests = std::stoll(value());
      } else if (arg == "--rss-concurrency") {
        o.rss_concurrency = std::stoi(value());
      } else if (arg == "--replay-entries") {
        o.replay_entries = std::stoll(value());
      } else if (arg == "--etcd-timing") {
        o.etcd_timing = value();
        if (o.etcd_timing != "fast" && o.etcd_timing != "default") Usage(2);
      } else if (arg == "--budget") {
        o.budget_s = std::stod(value());
      } else if (arg == "--proxy-arg") {
        o.proxy_args.push_back(value());
      } else if (arg == "--proxy0-wrapper") {
        o.proxy0_wrapper = Split(value(), ' ');
      } else if (arg == "--active-replicas") {
        o.active_replicas = std::clamp(std::stoi(value()), 1, 3);
      } else if (arg == "--replicated-proxies") {
        o.replicated_proxies = std::clamp(std::stoi(value()), 1, 3);
      } else if (arg == "--tag") {
        o.tag = value();
      } else if (arg == "--failover-rounds") {
        o.failover_rounds = std::max(0, std::stoi(value()));
      } else if (arg == "--only-failover") {
        o.only_failover = true;
      } else if (arg == "--only-soak") {
        o.only_soak = true;
      } else if (arg == "--only-reads") {
        o.only_reads = true;
      } else if (arg == "--soak-requests") {
        o.soak_requests = std::max<int64_t>(10, std::stoll(value()));
      } else if (arg == "--soak-clients") {
        o.soak_clients = std::clamp(std::stoi(value()), 1, 256);
      } else if (arg == "--no-plot") {
        o.plot = false;
      } else if (arg == "--keep") {
        o.keep = true;
      } else if (arg == "--proxy-bin") {
        o.proxy_bin = value();
      } else if (arg == "--counter-bin") {
        o.counter_bin = value();
      } else if (arg == "--etcd-bin") {
        o.etcd_bin = value();
      } else {
        std::cerr << "k8shmir-bench: unknown option " << arg << "\n";
        Usage(2);
      }
    } catch (const std::logic_error&) {
      std::cerr << "k8shmir-bench: bad value for " << arg << "\n";
      Usage(2);
    }
  }
  std::sort(o.concurrency.begin(), o.concurrency.end());
  o.replicated_proxies = std::min(o.replicated_proxies, o.active_replicas);
  if (o.active_replicas < 3) o.replay_entries = 0;
  if (o.active_replicas < 3) o.failover_rounds = 0;  // it sends to every proxy
  if (o.concurrency.empty() || o.rounds < 1 || o.measure_s <= 0 || o.warmup_s < 0) Usage(2);
  return o;
}

}  // namespace k8shmir::bench
