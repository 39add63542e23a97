#include "init/rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>

namespace k8shmir::init {
namespace {

Error Invalid(std::string message) { return Error{ErrorCode::kInvalid, std::move(message)}; }

template <class Int>
Result<Int> ParseNumber(const std::string& flag, const std::string& s, Int min, Int max) {
  Int v{};
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || v < min || v > max) {
    return Invalid("--" + flag + "=" + s + ": expected an integer in [" + std::to_string(min) +
                   ", " + std::to_string(max) + "]");
  }
  return v;
}

Result<bool> ParseBool(const std::string& name, const std::string& s) {
  std::string v;
  for (char c : s) v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off" || v.empty()) return false;
  return Invalid(name + "=" + s + ": expected true or false");
}

struct Flag {
  std::string name;  // without "--"
  bool boolean;
  std::string help;
  std::string default_text;
  std::function<Status(InitOptions&, const std::string&)> apply;
};

std::string EnvName(const std::string& flag) {
  std::string env = "K8SHMIR_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

Flag PortFlag(std::string name, std::string help, uint16_t InitOptions::*field, uint16_t def) {
  return {name, false, std::move(help), std::to_string(def),
          [name, field](InitOptions& o, const std::string& v) -> Status {
            auto r = ParseNumber<int>(name, v, 1, 65535);
            if (!r) return r.error();
            o.*field = static_cast<uint16_t>(*r);
            return OkStatus();
          }};
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      PortFlag("app-port", "the app's port: TCP to it is redirected to the proxy",
               &InitOptions::app_port, 3000),
      PortFlag("proxy-port", "the proxy's client port (the redirect target); never redirected",
               &InitOptions::proxy_port, 8080),
      PortFlag("admin-port", "the proxy's admin port; never redirected", &InitOptions::admin_port,
               9901),
      {"proxy-uid", false,
       "uid the proxy runs as: its connections to the app on loopback are not redirected", "1337",
       [](InitOptions& o, const std::string& v) -> Status {
         auto r = ParseNumber<uint32_t>("proxy-uid", v, 0, 4294967294u);
         if (!r) return r.error();
         o.proxy_uid = *r;
         return OkStatus();
       }},
      {"ignore-ports", false, "comma-separated ports that are never redirected", "(none)",
       [](InitOptions& o, const std::string& v) -> Status {
         o.ignore_ports.clear();
         std::stringstream in(v);
         std::string item;
         while (std::getline(in, item, ',')) {
           item.erase(std::remove_if(item.begin(), item.end(),
                                     [](unsigned char c) { return std::isspace(c); }),
                      item.end());
           if (item.empty()) continue;
           auto r = ParseNumber<int>("ignore-ports", item, 1, 65535);
           if (!r) return r.error();
           const auto port = static_cast<uint16_t>(*r);
           if (std::find(o.ignore_ports.begin(), o.ignore_ports.end(), port) ==
               o.ignore_ports.end()) {
             o.ignore_ports.push_back(port);
           }
         }
         return OkStatus();
       }},
      {"iptables", false,
       "iptables binary: a name in PATH, a path, or 'auto' (iptables-legacy when only the legacy "
       "backend has rules, else iptables-nft)",
       "iptables",
       [](InitOptions& o, const std::string& v) -> Status {
         if (v.empty()) return Invalid("--iptables: empty");
         o.iptables = v;
         return OkStatus();
       }},
      {"ip6tables", false, "ip6tables binary for the IPv6 rules: a name in PATH or a path",
       "the IPv6 twin of --iptables",
       [](InitOptions& o, const std::string& v) -> Status {
         o.ip6tables = v;
         return OkStatus();
       }},
      {"ipv6", false,
       "auto: also install the rules with ip6tables when the namespace has IPv6 (any address, ::1 "
       "included); on: always; off: never (IPv6 clients bypass the proxy if the app listens on "
       "[::])",
       "auto",
       [](InitOptions& o, const std::string& v) -> Status {
         if (v == "auto") {
           o.ipv6 = Ipv6Mode::kAuto;
         } else if (v == "on") {
           o.ipv6 = Ipv6Mode::kOn;
         } else if (v == "off") {
           o.ipv6 = Ipv6Mode::kOff;
         } else {
           return Invalid("--ipv6=" + v + ": expected auto, on or off");
         }
         return OkStatus();
       }},
      {"timeout-ms", false, "timeout of each iptables invocation", "10000",
       [](InitOptions& o, const std::string& v) -> Status {
         auto r = ParseNumber<int64_t>("timeout-ms", v, 100, 600000);
         if (!r) return r.error();
         o.timeout = std::chrono::milliseconds(*r);
         return OkStatus();
       }},
      {"dry-run", true, "print the iptables commands instead of running them", "false",
       [](InitOptions& o, const std::string& v) -> Status {
         auto r = ParseBool("K8SHMIR_DRY_RUN", v);
         if (!r) return r.error();
         o.dry_run = *r;
         return OkStatus();
       }},
      {"cleanup", true, "remove k8shmir's chains and the jumps to them instead of installing",
       "false",
       [](InitOptions& o, const std::string& v) -> Status {
         auto r = ParseBool("K8SHMIR_CLEANUP", v);
         if (!r) return r.error();
         o.cleanup = *r;
         return OkStatus();
       }},
  };
  return flags;
}

IptablesArgs Nat(std::initializer_list<std::string> rest) {
  IptablesArgs args = {"-t", kTable};
  args.insert(args.end(), rest);
  return args;
}

IptablesArgs Concat(IptablesArgs a, const IptablesArgs& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

IptablesArgs Comment(const std::string& text) {
  return {"-m", "comment", "--comment", "k8shmir: " + text};
}

std::string Quote(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || std::strchr("-_./:,=!+@%", c) != nullptr;
  });
  if (plain) return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

Result<ParsedInitArgs> ParseInitArgs(int argc, const char* const* argv, const char* const* envp) {
  ParsedInitArgs parsed;
  std::map<std::string, const Flag*> by_name;
  for (const Flag& f : Flags()) by_name[f.name] = &f;

  // Environment first, then flags.
  for (const char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    const auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    const std::string name = entry.substr(0, eq);
    for (const Flag& f : Flags()) {
      if (EnvName(f.name) != name) continue;
      if (Status s = f.apply(parsed.options, entry.substr(eq + 1)); !s) {
        return Invalid("environment " + name + ": " + s.error().message);
      }
    }
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      parsed.show_help = true;
      return parsed;
    }
    if (arg.rfind("--", 0) != 0) return Invalid("unexpected argument '" + arg + "' (see --help)");
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = by_name.find(name);
    if (it == by_name.end()) return Invalid("unknown flag --" + name + " (see --help)");
    const Flag& f = *it->second;
    if (f.boolean) {
      if (!has_value) value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) return Invalid("--" + name + " needs a value");
      value = argv[++i];
    }
    if (Status s = f.apply(parsed.options, value); !s) return s.error();
  }
  if (Status s = ValidateInitOptions(parsed.options); !s) return s.error();
  return parsed;
}

std::string InitUsage() {
  std::ostringstream out;
  out << "Usage: k8shmir-init [flags]\n"
         "Installs (or with --cleanup removes) k8shmir's iptables nat rules in this network\n"
         "namespace: inbound TCP to the app port, and TCP to 127.0.0.0/8:app-port (IPv6: "
         "[::1]:app-port)\n"
         "from every uid but the proxy's, are redirected to the proxy port; with iptables, and "
         "with\n"
         "ip6tables when the namespace has IPv6 (--ipv6). Idempotent. Needs root with NET_ADMIN\n"
         "(and NET_RAW), unless --dry-run.\n"
         "Every flag can also be set by its environment variable; a flag wins.\n\n";
  for (const Flag& f : Flags()) {
    out << "  --" << f.name << (f.boolean ? "" : " VALUE") << "  (" << EnvName(f.name)
        << ", default " << f.default_text << ")\n      " << f.help << "\n";
  }
  out << "\nExit codes: 0 done; 1 an iptables command failed; 2 invalid flags; 3 iptables not\n"
         "found; 4 not permitted (NET_ADMIN missing, or not root).\n";
  return out.str();
}

Status ValidateInitOptions(const InitOptions& o) {
  if (o.app_port == o.proxy_port) {
    return Invalid("--app-port and --proxy-port are both " + std::to_string(o.app_port) +
                   ": the proxy must listen on another port than the app");
  }
  if (o.app_port == o.admin_port) {
    return Invalid("--app-port and --admin-port are both " + std::to_string(o.app_port));
  }
  if (std::find(o.ignore_ports.begin(), o.ignore_ports.end(), o.app_port) != o.ignore_ports.end()) {
    return Invalid("--ignore-ports contains the app port " + std::to_string(o.app_port) +
                   ": nothing would be redirected");
  }
  return OkStatus();
}

std::vector<IptablesArgs> ChainRules(const InitOptions& o, Family family) {
  // Ports never redirected, in a stable order without duplicates: proxy, admin, then ignored.
  std::vector<std::pair<uint16_t, std::string>> excluded;
  std::set<uint16_t> seen;
  auto exclude = [&](uint16_t port, const std::string& why) {
    if (port != o.app_port && seen.insert(port).second) excluded.emplace_back(port, why);
  };
  exclude(o.proxy_port, "proxy port");
  exclude(o.admin_port, "admin port");
  for (uint16_t p : o.ignore_ports) exclude(p, "ignored port");

  const std::string app = std::to_string(o.app_port);
  const std::string proxy = std::to_string(o.proxy_port);
  std::vector<IptablesArgs> rules;
  for (const char* chain : {kInboundChain, kOutputChain}) {
    for (const auto& [port, why] : excluded) {
      rules.push_back(Concat({chain, "-p", "tcp", "-m", "tcp", "--dport", std::to_string(port)},
                             Concat(Comment(why + " never redirected"), {"-j", "RETURN"})));
    }
  }
  // Inserted in chain order: inbound rules first, then output rules.
  std::vector<IptablesArgs> ordered;
  for (const auto& r : rules) {
    if (r[0] == kInboundChain) ordered.push_back(r);
  }
  ordered.push_back(Concat({kInboundChain, "-p", "tcp", "-m", "tcp", "--dport", app},
                           Concat(Comment("inbound app traffic to the proxy"),
                                  {"-j", "REDIRECT", "--to-ports", proxy})));
  for (const auto& r : rules) {
    if (r[0] == kOutputChain) ordered.push_back(r);
  }
  ordered.push_back(Concat(
      {kOutputChain, "-d", family == Family::kIpv4 ? "127.0.0.0/8" : "::1/128", "-p", "tcp", "-m",
       "tcp", "--dport", app, "-m", "owner", "!", "--uid-owner", std::to_string(o.proxy_uid)},
      Concat(Comment("local app traffic to the proxy, except from the proxy uid"),
             {"-j", "REDIRECT", "--to-ports", proxy})));
  return ordered;
}

std::vector<IptablesArgs> JumpRules() {
  return {
      Concat({"PREROUTING", "-p", "tcp"}, Concat(Comment("inbound"), {"-j", kInboundChain})),
      Concat({"OUTPUT", "-p", "tcp"}, Concat(Comment("output"), {"-j", kOutputChain})),
  };
}

std::vector<Step> InstallPlan(const InitOptions& o, Family family) {
  std::vector<Step> plan;
  for (const char* chain : {kInboundChain, kOutputChain}) {
    plan.push_back({StepKind::kEnsureChain, Nat({"-N", chain}), {}});
  }
  const auto rules = ChainRules(o, family);
  for (const char* chain : {kInboundChain, kOutputChain}) {
    Step sync{StepKind::kSyncChain, Nat({"-F", chain}), {}};
    for (const auto& rule : rules) {
      if (rule.at(0) == chain) sync.rules.push_back(Concat(Nat({"-A"}), rule));
    }
    plan.push_back(std::move(sync));
  }
  for (const auto& jump : JumpRules()) {
    plan.push_back({StepKind::kEnsureJump, Concat(Nat({"-A"}), jump), {}});
  }
  return plan;
}

std::vector<Step> CleanupPlan() {
  std::vector<Step> plan;
  for (const auto& jump : JumpRules()) {
    plan.push_back({StepKind::kDeleteJump, Concat(Nat({"-D"}), jump), {}});
  }
  for (const char* chain : {kInboundChain, kOutputChain}) {
    plan.push_back({StepKind::kDeleteChain, Nat({"-X", chain}), {}});
  }
  return plan;
}

IptablesArgs WithOperation(IptablesArgs args, std::string_view from, std::string_view to) {
  for (auto& a : args) {
    if (a == from) {
      a = std::string(to);
      break;
    }
  }
  return args;
}

std::string RenderCommand(const std::string& iptables, const IptablesArgs& args) {
  std::string out = Quote(iptables);
  for (const auto& a : args) out += " " + Quote(a);
  return out;
}

std::string RenderPlan(const std::string& iptables, const std::vector<Step>& plan) {
  std::string out;
  for (const Step& step : plan) {
    switch (step.kind) {
      case StepKind::kEnsureChain:
        out += RenderCommand(iptables, WithOperation(step.args, "-N", "-S")) +
               " >/dev/null 2>&1 || " + RenderCommand(iptables, step.args) + "\n";
        break;
      case StepKind::kRun:
        out += RenderCommand(iptables, step.args) + "\n";
        break;
      case StepKind::kSyncChain:
        out += "# unless `" + RenderCommand(iptables, WithOperation(step.args, "-F", "-S")) +
               "` already lists exactly these rules:\n";
        out += RenderCommand(iptables, step.args) + "\n";
        for (const auto& rule : step.rules) out += RenderCommand(iptables, rule) + "\n";
        break;
      case StepKind::kEnsureJump:
        out += RenderCommand(iptables, WithOperation(step.args, "-A", "-C")) + " 2>/dev/null || " +
               RenderCommand(iptables, step.args) + "\n";
        break;
      case StepKind::kDeleteJump:
        out += "while " + RenderCommand(iptables, WithOperation(step.args, "-D", "-C")) +
               " 2>/dev/null; do " + RenderCommand(iptables, step.args) + "; done\n";
        break;
      case StepKind::kDeleteChain: {
        const IptablesArgs check = WithOperation(step.args, "-X", "-S");
        out += "if " + RenderCommand(iptables, check) + " >/dev/null 2>&1; then " +
               RenderCommand(iptables, WithOperation(step.args, "-X", "-F")) + " && " +
               RenderCommand(iptables, step.args) + "; fi\n";
        break;
      }
    }
  }
  return out;
}

std::string ExplainFailure(const std::string& iptables, const IptablesArgs& args, int exit_code,
                           std::string_view output) {
  std::string text(output);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const std::string what = "`" + RenderCommand(iptables, args) + "` failed (exit " +
                           std::to_string(exit_code) + ")" + (text.empty() ? "" : ": " + text);
  auto has = [&](const char* s) { return text.find(s) != std::string::npos; };
  if (has("Permission denied") || has("Operation not permitted") || has("you must be root")) {
    return what +
           "\nk8shmir-init is not allowed to change iptables rules: run it as root (uid 0) with "
           "the "
           "capabilities NET_ADMIN and NET_RAW (Kubernetes: securityContext.runAsUser: 0, "
           "capabilities.add: [NET_ADMIN, NET_RAW] on the init container; docker: --cap-add "
           "NET_ADMIN --cap-add NET_RAW).";
  }
  if (has("Table does not exist") || has("can't initialize") || has("insmod")) {
    if (iptables.find("ip6tables") != std::string::npos) {
      return what +
             "\nThe kernel offers no IPv6 nat table to this ip6tables backend: load the module "
             "(ip6table_nat for legacy, nft_chain_nat for nf_tables) on the node, or name the "
             "other backend with --ip6tables ip6tables-legacy / --ip6tables ip6tables-nft. Only "
             "if the app cannot be reached over IPv6 at all, --ipv6 off skips these rules.";
    }
    return what +
           "\nThe kernel offers no nat table to this iptables backend: load the module "
           "(iptable_nat for legacy, nft_chain_nat for nf_tables) on the node, or try the other "
           "backend with --iptables iptables-legacy / --iptables iptables-nft (or --iptables "
           "auto).";
  }
  if (has("Couldn't load match") || has("Couldn't load target") || has("No chain/target/match")) {
    return what +
           "\nA match or target used by k8shmir (comment, owner, tcp, REDIRECT) is missing from "
           "the "
           "kernel or from this iptables: check the node's netfilter modules (xt_comment, "
           "xt_owner, xt_REDIRECT / nft_redir).";
  }
  if (has("xtables lock") || has("Resource temporarily unavailable")) {
    return what + "\nAnother iptables command holds the xtables lock; run k8shmir-init again.";
  }
  return what;
}

bool ChainMatches(std::string_view list_output, const std::string& chain,
                  const std::vector<IptablesArgs>& rules) {
  auto normalize = [](std::string_view line) {
    std::string out;
    for (char c : line) {
      if (c != '"' && c != '\r') out += c;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  };
  std::vector<std::string> want;
  want.push_back("-N " + chain);
  for (const auto& rule : rules) {
    std::string line;
    for (size_t i = 2; i < rule.size(); ++i) {  // without "-t nat"
      if (!line.empty()) line += ' ';
      line += rule[i];
    }
    want.push_back(normalize(line));
  }
  std::vector<std::string> have;
  size_t start = 0;
  while (start < list_output.size()) {
    size_t end = list_output.find('\n', start);
    if (end == std::string_view::npos) end = list_output.size();
    std::string line = normalize(list_output.substr(start, end - start));
    if (!line.empty()) have.push_back(std::move(line));
    start = end + 1;
  }
  return have == want;
}

std::optional<std::string> Ip6tablesTwin(const std::string& iptables) {
  const auto slash = iptables.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  if (iptables.compare(base, 8, "iptables") != 0) return std::nullopt;
  return iptables.substr(0, base) + "ip6tables" + iptables.substr(base + 8);
}

Ipv6State ClassifyIpv6(const std::optional<std::string>& if_inet6,
                       const std::map<std::string, std::string>& disable_ipv6) {
  Ipv6State state;
  if (!if_inet6) {
    state.detail = "the kernel has no IPv6 (no /proc/net/if_inet6)";
    return state;
  }
  state.kernel = true;
  // Lines: address (32 hex digits), ifindex, prefix length, scope, flags, interface.
  std::istringstream in(*if_inet6);
  std::string line;
  std::string addresses;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string hex, index, prefix, scope, flags, name;
    if (!(fields >> hex >> index >> prefix >> scope >> flags >> name) || hex.size() != 32) continue;
    unsigned char bytes[16];
    bool ok = true;
    for (int i = 0; i < 16 && ok; ++i) {
      auto [p, ec] = std::from_chars(hex.data() + 2 * i, hex.data() + 2 * i + 2, bytes[i], 16);
      ok = ec == std::errc() && p == hex.data() + 2 * i + 2;
    }
    char text[INET6_ADDRSTRLEN];
    if (!ok || ::inet_ntop(AF_INET6, bytes, text, sizeof text) == nullptr) continue;
    addresses += (addresses.empty() ? "" : ", ") + std::string(text) + " on " + name;
  }
  if (!addresses.empty()) {
    state.enabled = true;
    state.detail = "IPv6 addresses: " + addresses;
    return state;
  }
  // No address now; one may come (an interface brought up later, SLAAC) unless every interface
  // disables IPv6, which only a process with NET_ADMIN in the namespace could undo.
  for (const auto& [name, value] : disable_ipv6) {
    if (name == "all" || name == "default") continue;
    std::string v = value;
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
    if (v == "0") {
      state.enabled = true;
      state.detail = "no IPv6 address yet, but IPv6 is enabled on " + name;
      return state;
    }
  }
  state.detail = "IPv6 is disabled on every interface (disable_ipv6 = 1) and no address is set";
  return state;
}

bool WantIpv6(const InitOptions& o, const Ipv6State& state) {
  switch (o.ipv6) {
    case Ipv6Mode::kOn:
      return true;
    case Ipv6Mode::kOff:
      return false;
    case Ipv6Mode::kAuto:
      return o.cleanup ? state.kernel : state.enabled;
  }
  return true;
}

bool HasEffectiveCapability(std::string_view proc_status, int cap) {
  const std::string_view key = "CapEff:";
  const auto pos = proc_status.find(key);
  if (pos == std::string_view::npos || cap < 0 || cap > 63) return false;
  std::string_view rest = proc_status.substr(pos + key.size());
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  uint64_t mask = 0;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), mask, 16);
  if (ec != std::errc() || ptr == rest.data()) return false;
  return (mask >> cap) & 1u;
}

int CountSavedRules(std::string_view text) {
  int count = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (text.substr(start, 3) == "-A ") ++count;
    start = end + 1;
  }
  return count;
}

}  // namespace k8shmir::init
