// k8shmir-init: installs k8shmir's iptables nat rules in the pod's network namespace (run by the
// init container), or prints them (--dry-run), or removes them (--cleanup). See init/rules.h.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "init/apply.h"
#include "init/rules.h"

extern char** environ;

namespace {

using namespace k8shmir;
using namespace k8shmir::init;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoIptables = 3;
constexpr int kExitNotPermitted = 4;
constexpr int kCapNetAdmin = 12;

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// "auto": the backend that already holds rules in this namespace; nf_tables when neither (or
// both) do, as Debian's default `iptables` is.
std::string DetectBackend(std::chrono::milliseconds timeout) {
  auto count = [&](const char* save) -> int {
    auto path = FindExecutable(save);
    if (!path) return -1;
    CommandResult r = RunCommand(*path, {}, timeout);
    if (!r.started || r.timed_out || r.exit_code != 0) return -1;
    return CountSavedRules(r.output);
  };
  const int legacy = count("iptables-legacy-save");
  const int nft = count("iptables-nft-save");
  std::cerr << "k8shmir-init: --iptables auto: rules in legacy backend " << legacy
            << ", in nf_tables backend " << nft << " (-1: not available)\n";
  if (legacy > 0 && legacy > nft) return "iptables-legacy";
  if (FindExecutable("iptables-nft")) return "iptables-nft";
  if (FindExecutable("iptables-legacy") && nft < 0) return "iptables-legacy";
  return "iptables";
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = ParseInitArgs(argc, argv, environ);
  if (!parsed) {
    std::cerr << "k8shmir-init: " << parsed.error().message << "\n";
    return kExitUsage;
  }
  if (parsed->show_help) {
    std::cout << InitUsage();
    return 0;
  }
  const InitOptions& options = parsed->options;
  const std::vector<Step> plan = options.cleanup ? CleanupPlan() : InstallPlan(options);
  const std::string summary =
      options.cleanup ? std::string("remove chains ") + kInboundChain + " and " + kOutputChain
                      : "redirect TCP app port " + std::to_string(options.app_port) +
                            " to proxy port " + std::to_string(options.proxy_port) +
                            " (inbound, and on loopback from every uid but " +
                            std::to_string(options.proxy_uid) + ")";

  if (options.dry_run) {
    const std::string name = options.iptables == "auto" ? "iptables" : options.iptables;
    std::cout << "# k8shmir-init --dry-run: " << summary << "\n" << RenderPlan(name, plan);
    return 0;
  }

  std::string name = options.iptables;
  if (name == "auto") name = DetectBackend(options.timeout);
  const auto binary = FindExecutable(name);
  if (!binary) {
    std::cerr << "k8shmir-init: iptables binary '" << name
              << "' not found (searched PATH, /usr/local/sbin, /usr/sbin, /sbin). Install it "
                 "(Debian: apt-get install iptables) or pass its path with --iptables.\n";
    return kExitNoIptables;
  }
  if (!HasEffectiveCapability(ReadFile("/proc/self/status"), kCapNetAdmin)) {
    std::cerr << "k8shmir-init: this process lacks the capability NET_ADMIN, which changing "
                 "iptables rules needs. Run it as root with NET_ADMIN and NET_RAW (Kubernetes: "
                 "the init container's securityContext: runAsUser: 0, capabilities.add: "
                 "[NET_ADMIN, NET_RAW]; docker: --cap-add NET_ADMIN --cap-add NET_RAW). Use "
                 "--dry-run to only print the rules.\n";
    return kExitNotPermitted;
  }

  // -w: wait for the xtables lock (legacy backend) rather than fail when another tool holds it.
  const auto wait_s = std::max<int64_t>(1, options.timeout.count() / 1000 - 1);
  IptablesRunner run = [&](const IptablesArgs& args) {
    IptablesArgs full = {"-w", std::to_string(wait_s)};
    full.insert(full.end(), args.begin(), args.end());
    return RunCommand(*binary, full, options.timeout);
  };
  std::cerr << "k8shmir-init: " << summary << " with " << *binary << "\n";
  auto outcome = ExecutePlan(plan, run, name);
  if (!outcome) {
    std::cerr << "k8shmir-init: " << outcome.error().message << "\n";
    if (outcome.error().code == ErrorCode::kUnavailable) return kExitNotPermitted;
    if (outcome.error().code == ErrorCode::kInvalid) return kExitNoIptables;
    return kExitFailed;
  }
  std::cerr << "k8shmir-init: done: " << outcome->commands_run << " iptables commands, "
            << outcome->changes << " changes"
            << (outcome->changes == 0 ? " (the rules were already in place)" : "") << "\n";
  if (!options.cleanup) {
    // The resulting rules, for the init container's log.
    for (const char* chain : {"PREROUTING", "OUTPUT", kInboundChain, kOutputChain}) {
      CommandResult r = RunCommand(
          *binary, {"-w", std::to_string(wait_s), "-t", kTable, "-S", chain}, options.timeout);
      std::cout << r.output;
    }
  }
  return 0;
}
