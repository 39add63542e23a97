// k8shmir-init: installs k8shmir's iptables nat rules in the pod's network namespace (run by the
// init container), or prints them (--dry-run), or removes them (--cleanup). See init/rules.h.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
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

// /proc/net/if_inet6 (nullopt when missing: no IPv6 in the kernel) and every interface's
// disable_ipv6, both as this network namespace sees them.
Ipv6State DetectIpv6() {
  std::optional<std::string> if_inet6;
  if (std::ifstream in("/proc/net/if_inet6"); in) {
    std::ostringstream text;
    text << in.rdbuf();
    if_inet6 = text.str();
  }
  std::map<std::string, std::string> disable;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/sys/net/ipv6/conf", ec)) {
    disable[entry.path().filename().string()] =
        ReadFile((entry.path() / "disable_ipv6").string().c_str());
  }
  return ClassifyIpv6(if_inet6, disable);
}

// One address family's part of the run.
struct FamilyRun {
  Family family;
  std::string label;  // "IPv4" / "IPv6"
  std::string name;   // the binary as the user named it (messages, --dry-run)
  std::string path;   // found in PATH
  std::vector<Step> plan;
};

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
  auto plan_for = [&](Family family) {
    return options.cleanup ? CleanupPlan() : InstallPlan(options, family);
  };
  const std::string summary =
      options.cleanup ? std::string("remove chains ") + kInboundChain + " and " + kOutputChain
                      : "redirect TCP app port " + std::to_string(options.app_port) +
                            " to proxy port " + std::to_string(options.proxy_port) +
                            " (inbound, and on loopback from every uid but " +
                            std::to_string(options.proxy_uid) + ")";
  const Ipv6State ipv6 = DetectIpv6();

  if (options.dry_run) {
    const std::string name = options.iptables == "auto" ? "iptables" : options.iptables;
    std::cout << "# k8shmir-init --dry-run: " << summary << "\n# IPv4\n"
              << RenderPlan(name, plan_for(Family::kIpv4));
    if (options.ipv6 != Ipv6Mode::kOff) {
      const std::string name6 = !options.ip6tables.empty()
                                    ? options.ip6tables
                                    : Ip6tablesTwin(name).value_or("ip6tables");
      std::cout << "# IPv6"
                << (options.ipv6 == Ipv6Mode::kAuto
                        ? std::string(" (--ipv6 auto: run when the namespace has IPv6; here: ") +
                              (WantIpv6(options, ipv6) ? "yes, " : "no, ") + ipv6.detail + ")"
                        : std::string(" (--ipv6 on)"))
                << "\n"
                << RenderPlan(name6, plan_for(Family::kIpv6));
    }
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
  std::vector<FamilyRun> runs;
  runs.push_back({Family::kIpv4, "IPv4", name, *binary, plan_for(Family::kIpv4)});

  if (WantIpv6(options, ipv6)) {
    std::cerr << "k8shmir-init: IPv6: " << ipv6.detail
              << (options.ipv6 == Ipv6Mode::kOn ? " (--ipv6 on)" : "")
              << ": the ip6tables rules too\n";
    // A missing ip6tables is an error, not a skip: the app would be reachable over IPv6 (::1
    // included) around the proxy, and that replica would diverge.
    const std::optional<std::string> name6 =
        !options.ip6tables.empty() ? std::optional(options.ip6tables) : Ip6tablesTwin(name);
    if (!name6) {
      std::cerr << "k8shmir-init: this namespace has IPv6, and no ip6tables binary goes with "
                   "--iptables "
                << name
                << ": name it with --ip6tables (or --ipv6 off if the app cannot be reached "
                   "over IPv6).\n";
      return kExitNoIptables;
    }
    const auto binary6 = FindExecutable(*name6);
    if (!binary6) {
      std::cerr << "k8shmir-init: this namespace has IPv6 (" << ipv6.detail
                << "), but the ip6tables binary '" << *name6
                << "' was not found (searched PATH, /usr/local/sbin, /usr/sbin, /sbin): without "
                   "its rules IPv6 clients reach an app listening on [::] around the proxy. "
                   "Install it (Debian: apt-get install iptables), pass its path with "
                   "--ip6tables, or --ipv6 off if the app cannot be reached over IPv6.\n";
      return kExitNoIptables;
    }
    runs.push_back({Family::kIpv6, "IPv6", *name6, *binary6, plan_for(Family::kIpv6)});
  } else if (options.ipv6 == Ipv6Mode::kOff) {
    std::cerr << "k8shmir-init: --ipv6 off: no ip6tables rules; an app listening on [::] is "
                 "reachable over IPv6 around the proxy\n";
  } else {
    std::cerr << "k8shmir-init: IPv6: " << ipv6.detail
              << ": no ip6tables rules (--ipv6 on installs them anyway)\n";
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
  for (const FamilyRun& r : runs) {
    IptablesRunner run = [&](const IptablesArgs& args) {
      IptablesArgs full = {"-w", std::to_string(wait_s)};
      full.insert(full.end(), args.begin(), args.end());
      return RunCommand(r.path, full, options.timeout);
    };
    std::cerr << "k8shmir-init: " << r.label << ": " << summary << " with " << r.path << "\n";
    auto outcome = ExecutePlan(r.plan, run, r.name);
    if (!outcome) {
      std::cerr << "k8shmir-init: " << r.label << ": " << outcome.error().message << "\n";
      if (outcome.error().code == ErrorCode::kUnavailable) return kExitNotPermitted;
      if (outcome.error().code == ErrorCode::kInvalid) return kExitNoIptables;
      return kExitFailed;
    }
    std::cerr << "k8shmir-init: " << r.label << " done: " << outcome->commands_run << " "
              << (r.family == Family::kIpv4 ? "iptables" : "ip6tables") << " commands, "
              << outcome->changes << " changes"
              << (outcome->changes != 0 ? ""
                  : options.cleanup     ? " (nothing to remove)"
                                        : " (the rules were already in place)")
              << "\n";
  }
  if (!options.cleanup) {
    // The resulting rules, for the init container's log.
    for (const FamilyRun& r : runs) {
      std::cout << "# " << r.label << "\n";
      for (const char* chain : {"PREROUTING", "OUTPUT", kInboundChain, kOutputChain}) {
        CommandResult out = RunCommand(
            r.path, {"-w", std::to_string(wait_s), "-t", kTable, "-S", chain}, options.timeout);
        std::cout << out.output;
      }
    }
  }
  return 0;
}
