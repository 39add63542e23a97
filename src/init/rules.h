// k8shmir-init's pure part: its options, the nat rules it owns, and the plan of iptables
// invocations that installs or removes them. Nothing here runs a process or reads the system.
//
// The rules (table nat, chains owned by k8shmir), the same for IPv4 (iptables) and IPv6
// (ip6tables) but for the loopback destination:
//   PREROUTING -p tcp -j K8SHMIR_INBOUND
//     K8SHMIR_INBOUND: proxy port, admin port, ignored ports -> RETURN;
//                      TCP to the app port -> REDIRECT to the proxy port
//   OUTPUT -p tcp -j K8SHMIR_OUTPUT
//     K8SHMIR_OUTPUT:  proxy port, admin port, ignored ports -> RETURN;
//                      TCP to 127.0.0.0/8 (IPv6: ::1/128), app port, from any uid but the
//                      proxy's -> REDIRECT to the proxy port
// Installing is idempotent: each own chain is created when absent, then flushed and refilled; a
// jump rule is appended only when `iptables -C` says it is absent.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "k8shmir/result.h"

namespace k8shmir::init {

inline constexpr const char* kInboundChain = "K8SHMIR_INBOUND";
inline constexpr const char* kOutputChain = "K8SHMIR_OUTPUT";
inline constexpr const char* kTable = "nat";

enum class Family { kIpv4, kIpv6 };

// --ipv6: whether the ip6tables rules are installed (and removed by --cleanup).
//   auto: when the namespace can carry IPv6 at all (see ClassifyIpv6), which includes a pod with
//         nothing but ::1: a local caller over ::1 would otherwise reach an app on [::] directly;
//   on:   always (an error when ip6tables fails); off: never.
enum class Ipv6Mode { kAuto, kOn, kOff };

struct InitOptions {
  uint16_t app_port = 3000;
  uint16_t proxy_port = 8080;
  uint16_t admin_port = 9901;
  uint32_t proxy_uid = 1337;
  std::vector<uint16_t> ignore_ports;  // never redirected, besides the proxy and admin ports
  // The iptables binary: a name looked up in PATH (and /usr/sbin, /sbin), a path, or "auto"
  // (iptables-legacy when only the legacy backend holds rules, else iptables-nft / iptables).
  std::string iptables = "iptables";
  // The ip6tables binary; empty: the IPv6 twin of the (resolved) iptables one (Ip6tablesTwin).
  std::string ip6tables;
  Ipv6Mode ipv6 = Ipv6Mode::kAuto;
  bool dry_run = false;
  bool cleanup = false;
  std::chrono::milliseconds timeout{10000};  // per iptables invocation
};

struct ParsedInitArgs {
  InitOptions options;
  bool show_help = false;
};

// Flags (--name value or --name=value) override the environment (K8SHMIR_<NAME>, dashes as
// underscores: K8SHMIR_APP_PORT, K8SHMIR_PROXY_UID, K8SHMIR_IGNORE_PORTS, ...). Boolean flags take
// no value on the command line; their variables accept 1/0/true/false. Validates the result.
Result<ParsedInitArgs> ParseInitArgs(int argc, const char* const* argv, const char* const* envp);
std::string InitUsage();

// The app port must differ from the proxy and admin ports and must not be ignored.
Status ValidateInitOptions(const InitOptions& options);

// iptables arguments after the binary, e.g. {"-t", "nat", "-A", "K8SHMIR_INBOUND", ...}.
using IptablesArgs = std::vector<std::string>;

// The rule specifications of the own chains, in order, each starting with the chain name (the
// arguments that follow "-A").
std::vector<IptablesArgs> ChainRules(const InitOptions& options, Family family = Family::kIpv4);

// The rule specifications of the jumps from the built-in chains into ours (after "-A"/"-C"/"-D").
std::vector<IptablesArgs> JumpRules();

enum class StepKind {
  kEnsureChain,  // args: {"-t","nat","-N",chain}; run only when {"-t","nat","-S",chain} fails
  kRun,          // args run as they are; must succeed
  kSyncChain,    // args: {"-t","nat","-F",chain}; `rules`: the chain's wanted content (-A args).
                 // Nothing is run when `-S chain` already lists exactly these rules; otherwise
                 // the chain is flushed and refilled.
  kEnsureJump,   // args: {"-t","nat","-A",...}; run only when the same rule with -C is absent
  kDeleteJump,   // args: {"-t","nat","-D",...}; run while the same rule with -C is present
  kDeleteChain,  // args: {"-t","nat","-X",chain}; preceded by a flush; skipped when absent
};

struct Step {
  StepKind kind;
  IptablesArgs args;
  std::vector<IptablesArgs> rules;  // kSyncChain only
};

// True when the output of `iptables -t nat -S chain` lists exactly `-N chain` (unless built in)
// followed by `rules` (each {"-t","nat","-A",chain,...}) in order. Quotes are ignored.
bool ChainMatches(std::string_view list_output, const std::string& chain,
                  const std::vector<IptablesArgs>& rules);

// Install: ensure both chains, sync their content with ChainRules, ensure the jumps.
std::vector<Step> InstallPlan(const InitOptions& options, Family family = Family::kIpv4);
// Cleanup: delete the jumps (every copy), then flush and delete both chains.
std::vector<Step> CleanupPlan();

// The same argument list with the first occurrence of `from` (e.g. "-A") replaced by `to`.
IptablesArgs WithOperation(IptablesArgs args, std::string_view from, std::string_view to);

// A shell-readable rendering of a plan for --dry-run: one command per line, conditional steps
// written with `||` / `&&` as a shell would run them.
std::string RenderPlan(const std::string& iptables, const std::vector<Step>& plan);

// One command line as a shell would read it (arguments with spaces quoted).
std::string RenderCommand(const std::string& iptables, const IptablesArgs& args);

// What the output of a failed iptables run means for the user: a message that says what to do.
std::string ExplainFailure(const std::string& iptables, const IptablesArgs& args, int exit_code,
                           std::string_view output);

// The ip6tables binary that goes with an iptables one: "iptables-nft" -> "ip6tables-nft",
// "/usr/sbin/iptables-legacy" -> "/usr/sbin/ip6tables-legacy"; nullopt when the file name does
// not start with "iptables" (then --ip6tables must name it).
std::optional<std::string> Ip6tablesTwin(const std::string& iptables);

// What the namespace offers IPv6, from the text of /proc/net/if_inet6 (nullopt: the file is
// missing) and the values of /proc/sys/net/ipv6/conf/<interface>/disable_ipv6.
struct Ipv6State {
  bool kernel = false;   // the kernel has IPv6 (if_inet6 exists)
  bool enabled = false;  // an address exists, or an interface may get one (disable_ipv6 = 0)
  std::string detail;    // for the log: the addresses, or why there is no IPv6
};
Ipv6State ClassifyIpv6(const std::optional<std::string>& if_inet6,
                       const std::map<std::string, std::string>& disable_ipv6);

// Whether the IPv6 rules are handled: installing needs IPv6 enabled (auto), removing only a
// kernel with IPv6 (rules installed with --ipv6 on may exist where every interface disables it).
bool WantIpv6(const InitOptions& options, const Ipv6State& state);

// True when the text of /proc/self/status grants capability `cap` (e.g. 12, CAP_NET_ADMIN) in
// its effective set (CapEff).
bool HasEffectiveCapability(std::string_view proc_status, int cap);

// Number of rules ("-A ..." lines) in the output of an iptables-save.
int CountSavedRules(std::string_view iptables_save_output);

}  // namespace k8shmir::init
