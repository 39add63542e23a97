// k8shmir-init: option parsing, the generated rules, and the install/cleanup plans carried out
// against an in-memory model of iptables' nat table (idempotency, cleanup, error handling).
#include "init/rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "init/apply.h"

namespace k8shmir::init {
namespace {

using namespace std::chrono_literals;

Result<ParsedInitArgs> Parse(std::vector<const char*> args, std::vector<const char*> env = {}) {
  args.insert(args.begin(), "k8shmir-init");
  env.push_back(nullptr);
  return ParseInitArgs(static_cast<int>(args.size()), args.data(), env.data());
}

std::string Join(const IptablesArgs& args) {
  std::string out;
  for (const auto& a : args) out += (out.empty() ? "" : " ") + a;
  return out;
}

std::vector<std::string> JoinAll(const std::vector<IptablesArgs>& rules) {
  std::vector<std::string> out;
  for (const auto& r : rules) out.push_back(Join(r));
  return out;
}

// The nat table as iptables keeps it, with the exit codes and messages of iptables 1.8.
class FakeIptables {
 public:
  FakeIptables() {
    chains_["PREROUTING"];
    chains_["INPUT"];
    chains_["OUTPUT"];
    chains_["POSTROUTING"];
  }

  CommandResult Run(const IptablesArgs& args) {
    log_.push_back(Join(args));
    CommandResult r;
    r.started = true;
    if (args.size() < 4 || args[0] != "-t" || args[1] != "nat") return Fail(2, "bad usage");
    const std::string& op = args[2];
    const std::string& chain = args[3];
    std::string rule;
    for (size_t i = 4; i < args.size(); ++i) rule += (rule.empty() ? "" : " ") + args[i];
    const bool exists = chains_.count(chain) != 0;
    if (op == "-N") {
      if (exists) return Fail(1, "iptables: Chain already exists.");
      chains_[chain];
      order_.push_back(chain);
      return Ok();
    }
    if (!exists) return Fail(1, "iptables: No chain/target/match by that name.");
    // A rule that jumps to a chain that does not exist: iptables-nft says so with exit 2 (also
    // for -C, where "absent" would be exit 1).
    if (op == "-A" || op == "-C" || op == "-D") {
      const auto j = std::find(args.begin(), args.end(), "-j");
      if (j != args.end() && j + 1 != args.end() && *(j + 1) != "RETURN" &&
          *(j + 1) != "REDIRECT" && *(j + 1) != "ACCEPT" && chains_.count(*(j + 1)) == 0) {
        return Fail(2, "iptables v1.8.9 (nf_tables): Chain '" + *(j + 1) + "' does not exist");
      }
    }
    auto& rules = chains_[chain];
    if (op == "-S") {
      r.exit_code = 0;
      r.output = (Builtin(chain) ? "-P " + chain + " ACCEPT\n" : "-N " + chain + "\n");
      for (const auto& x : rules) r.output += "-A " + chain + " " + Quoted(x) + "\n";
      return r;
    }
    if (op == "-F") {
      rules.clear();
      return Ok();
    }
    if (op == "-A") {
      rules.push_back(rule);
      return Ok();
    }
    if (op == "-C") {
      if (std::find(rules.begin(), rules.end(), rule) != rules.end()) return Ok();
      return Fail(1, "iptables: Bad rule (does a matching rule exist in that chain?).");
    }
    if (op == "-D") {
      auto it = std::find(rules.begin(), rules.end(), rule);
      if (it == rules.end()) return Fail(1, "iptables: Bad rule");
      rules.erase(it);
      return Ok();
    }
    if (op == "-X") {
      if (!rules.empty() || Builtin(chain)) return Fail(1, "iptables: Directory not empty.");
      for (const auto& [name, rs] : chains_) {
        for (const auto& x : rs) {
          if (x.find("-j " + chain) != std::string::npos) {
            return Fail(1, "iptables: Too many links.");
          }
        }
      }
      chains_.erase(chain);
      order_.erase(std::remove(order_.begin(), order_.end(), chain), order_.end());
      return Ok();
    }
    return Fail(2, "unknown op " + op);
  }

  // Every rule as iptables-save would list it (chains in creation order after the built-ins).
  std::vector<std::string> Save() const {
    std::vector<std::string> out;
    std::vector<std::string> names = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"};
    names.insert(names.end(), order_.begin(), order_.end());
    for (const auto& n : names) {
      if (!Builtin(n)) out.push_back("-N " + n);
    }
    for (const auto& n : names) {
      for (const auto& x : chains_.at(n)) out.push_back("-A " + n + " " + x);
    }
    return out;
  }

  IptablesRunner Runner() {
    return [this](const IptablesArgs& a) { return Run(a); };
  }
  std::vector<std::string>& log() { return log_; }

 private:
  static bool Builtin(const std::string& c) {
    return c == "PREROUTING" || c == "INPUT" || c == "OUTPUT" || c == "POSTROUTING";
  }
  // iptables -S puts the comment in double quotes.
  static std::string Quoted(const std::string& rule) {
    const std::string key = "--comment ";
    auto pos = rule.find(key);
    if (pos == std::string::npos) return rule;
    pos += key.size();
    auto end = rule.find(" -j ", pos);
    return rule.substr(0, pos) + "\"" + rule.substr(pos, end - pos) + "\"" + rule.substr(end);
  }
  static CommandResult Ok() {
    CommandResult r;
    r.started = true;
    r.exit_code = 0;
    return r;
  }
  static CommandResult Fail(int code, std::string text) {
    CommandResult r;
    r.started = true;
    r.exit_code = code;
    r.output = std::move(text) + "\n";
    return r;
  }

  std::map<std::string, std::vector<std::string>> chains_;
  std::vector<std::string> order_;
  std::vector<std::string> log_;
};

const std::vector<std::string> kDefaultSave = {
    "-N K8SHMIR_INBOUND",
    "-N K8SHMIR_OUTPUT",
    "-A PREROUTING -p tcp -m comment --comment k8shmir: inbound -j K8SHMIR_INBOUND",
    "-A OUTPUT -p tcp -m comment --comment k8shmir: output -j K8SHMIR_OUTPUT",
    "-A K8SHMIR_INBOUND -p tcp -m tcp --dport 8080 -m comment --comment k8shmir: proxy port never "
    "redirected -j RETURN",
    "-A K8SHMIR_INBOUND -p tcp -m tcp --dport 9901 -m comment --comment k8shmir: admin port never "
    "redirected -j RETURN",
    "-A K8SHMIR_INBOUND -p tcp -m tcp --dport 3000 -m comment --comment k8shmir: inbound app "
    "traffic to the proxy -j REDIRECT --to-ports 8080",
    "-A K8SHMIR_OUTPUT -p tcp -m tcp --dport 8080 -m comment --comment k8shmir: proxy port never "
    "redirected -j RETURN",
    "-A K8SHMIR_OUTPUT -p tcp -m tcp --dport 9901 -m comment --comment k8shmir: admin port never "
    "redirected -j RETURN",
    "-A K8SHMIR_OUTPUT -d 127.0.0.0/8 -p tcp -m tcp --dport 3000 -m owner ! --uid-owner 1337 -m "
    "comment --comment k8shmir: local app traffic to the proxy, except from the proxy uid -j "
    "REDIRECT --to-ports 8080",
};

TEST(InitArgs, DefaultsAndFlagsOverEnvironment) {
  auto d = Parse({});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->options.app_port, 3000);
  EXPECT_EQ(d->options.proxy_port, 8080);
  EXPECT_EQ(d->options.admin_port, 9901);
  EXPECT_EQ(d->options.proxy_uid, 1337u);
  EXPECT_EQ(d->options.iptables, "iptables");
  EXPECT_TRUE(d->options.ignore_ports.empty());
  EXPECT_FALSE(d->options.dry_run);
  EXPECT_FALSE(d->options.cleanup);
  EXPECT_EQ(d->options.timeout, 10000ms);
  EXPECT_EQ(d->options.ipv6, Ipv6Mode::kAuto);
  EXPECT_EQ(d->options.ip6tables, "");

  auto r = Parse({"--app-port=5000", "--proxy-uid", "2000", "--dry-run", "--ignore-ports",
                  "15020, 15021,15020"},
                 {"K8SHMIR_APP_PORT=4000", "K8SHMIR_PROXY_PORT=18080", "K8SHMIR_CLEANUP=true",
                  "K8SHMIR_IPTABLES=/usr/sbin/iptables-legacy", "K8SHMIR_TIMEOUT_MS=2500"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->options.app_port, 5000);  // the flag wins
  EXPECT_EQ(r->options.proxy_port, 18080);
  EXPECT_EQ(r->options.proxy_uid, 2000u);
  EXPECT_TRUE(r->options.dry_run);
  EXPECT_TRUE(r->options.cleanup);
  EXPECT_EQ(r->options.iptables, "/usr/sbin/iptables-legacy");
  EXPECT_EQ(r->options.timeout, 2500ms);
  EXPECT_EQ(r->options.ignore_ports, (std::vector<uint16_t>{15020, 15021}));

  auto v6 = Parse({"--ipv6=off"}, {"K8SHMIR_IPV6=on", "K8SHMIR_IP6TABLES=/opt/ip6tables"});
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->options.ipv6, Ipv6Mode::kOff);
  EXPECT_EQ(v6->options.ip6tables, "/opt/ip6tables");
  auto on = Parse({}, {"K8SHMIR_IPV6=on"});
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_EQ(on->options.ipv6, Ipv6Mode::kOn);
  EXPECT_NE(Parse({"--ipv6", "yes"}).error().message.find("auto, on or off"), std::string::npos);
  EXPECT_NE(Parse({}, {"K8SHMIR_IPV6=1"}).error().message.find("K8SHMIR_IPV6"), std::string::npos);

  auto help = Parse({"--help"});
  ASSERT_TRUE(help);
  EXPECT_TRUE(help->show_help);
  EXPECT_NE(InitUsage().find("K8SHMIR_PROXY_UID"), std::string::npos);
  EXPECT_NE(InitUsage().find("--ipv6 VALUE  (K8SHMIR_IPV6, default auto)"), std::string::npos);
  EXPECT_NE(InitUsage().find("--ip6tables VALUE  (K8SHMIR_IP6TABLES"), std::string::npos);
}

TEST(InitArgs, RejectsWhatWouldBreakTheRedirect) {
  EXPECT_NE(Parse({"--app-port", "8080"}).error().message.find("proxy-port"), std::string::npos);
  EXPECT_NE(Parse({"--app-port", "9901"}).error().message.find("admin-port"), std::string::npos);
  EXPECT_NE(Parse({"--ignore-ports", "1,3000"}).error().message.find("app port 3000"),
            std::string::npos);
  EXPECT_FALSE(Parse({"--app-port", "0"}));
  EXPECT_FALSE(Parse({"--app-port", "65536"}));
  EXPECT_FALSE(Parse({"--proxy-uid", "-1"}));
  EXPECT_FALSE(Parse({"--ignore-ports", "80,x"}));
  EXPECT_FALSE(Parse({"--app-port"}));
  EXPECT_NE(Parse({"--nope"}).error().message.find("unknown flag --nope"), std::string::npos);
  EXPECT_FALSE(Parse({"stray"}));
  EXPECT_NE(Parse({}, {"K8SHMIR_DRY_RUN=maybe"}).error().message.find("K8SHMIR_DRY_RUN"),
            std::string::npos);
}

TEST(InitRules, DefaultRulesExactly) {
  const auto rules = JoinAll(ChainRules(InitOptions{}));
  const std::vector<std::string> want = {
      "K8SHMIR_INBOUND -p tcp -m tcp --dport 8080 -m comment --comment k8shmir: proxy port never "
      "redirected -j RETURN",
      "K8SHMIR_INBOUND -p tcp -m tcp --dport 9901 -m comment --comment k8shmir: admin port never "
      "redirected -j RETURN",
      "K8SHMIR_INBOUND -p tcp -m tcp --dport 3000 -m comment --comment k8shmir: inbound app "
      "traffic to the proxy -j REDIRECT --to-ports 8080",
      "K8SHMIR_OUTPUT -p tcp -m tcp --dport 8080 -m comment --comment k8shmir: proxy port never "
      "redirected -j RETURN",
      "K8SHMIR_OUTPUT -p tcp -m tcp --dport 9901 -m comment --comment k8shmir: admin port never "
      "redirected -j RETURN",
      "K8SHMIR_OUTPUT -d 127.0.0.0/8 -p tcp -m tcp --dport 3000 -m owner ! --uid-owner 1337 -m "
      "comment --comment k8shmir: local app traffic to the proxy, except from the proxy uid -j "
      "REDIRECT --to-ports 8080",
  };
  EXPECT_EQ(rules, want);
  EXPECT_EQ(JoinAll(JumpRules()),
            (std::vector<std::string>{
                "PREROUTING -p tcp -m comment --comment k8shmir: inbound -j K8SHMIR_INBOUND",
                "OUTPUT -p tcp -m comment --comment k8shmir: output -j K8SHMIR_OUTPUT"}));
}

TEST(InitRules, CustomPortsUidAndIgnoredPorts) {
  InitOptions o;
  o.app_port = 5000;
  o.proxy_port = 15001;
  o.admin_port = 15001;  // same as the proxy: listed once
  o.proxy_uid = 2002;
  o.ignore_ports = {22, 15001};
  const auto rules = JoinAll(ChainRules(o));
  ASSERT_EQ(rules.size(), 6u);
  EXPECT_EQ(rules[0],
            "K8SHMIR_INBOUND -p tcp -m tcp --dport 15001 -m comment --comment k8shmir: proxy port "
            "never redirected -j RETURN");
  EXPECT_EQ(rules[1],
            "K8SHMIR_INBOUND -p tcp -m tcp --dport 22 -m comment --comment k8shmir: ignored port "
            "never redirected -j RETURN");
  EXPECT_EQ(rules[2],
            "K8SHMIR_INBOUND -p tcp -m tcp --dport 5000 -m comment --comment k8shmir: inbound app "
            "traffic to the proxy -j REDIRECT --to-ports 15001");
  EXPECT_EQ(rules[5],
            "K8SHMIR_OUTPUT -d 127.0.0.0/8 -p tcp -m tcp --dport 5000 -m owner ! --uid-owner 2002 "
            "-m comment --comment k8shmir: local app traffic to the proxy, except from the proxy "
            "uid -j REDIRECT --to-ports 15001");
  // Never a rule that redirects the proxy or admin port.
  for (const auto& r : rules) {
    if (r.find("REDIRECT") != std::string::npos) {
      EXPECT_EQ(r.find("--dport 15001 "), std::string::npos) << r;
    }
  }
}

// The IPv6 set is the IPv4 one with ::1 for 127.0.0.0/8: the same chains, jumps, exclusions.
TEST(InitRules, Ipv6RulesDifferOnlyInTheLoopbackDestination) {
  InitOptions o;
  o.ignore_ports = {22};
  const auto v4 = JoinAll(ChainRules(o, Family::kIpv4));
  const auto v6 = JoinAll(ChainRules(o, Family::kIpv6));
  ASSERT_EQ(v4.size(), v6.size());
  ASSERT_EQ(v6.size(), 8u);
  for (size_t i = 0; i < v4.size(); ++i) {
    std::string want = v4[i];
    if (const auto pos = want.find("-d 127.0.0.0/8 "); pos != std::string::npos) {
      want.replace(pos, 15, "-d ::1/128 ");
    }
    EXPECT_EQ(v6[i], want);
  }
  // Exactly as ip6tables -S lists it (::1/128, not ::1), so that a re-run finds it in place.
  EXPECT_EQ(v6.back(),
            "K8SHMIR_OUTPUT -d ::1/128 -p tcp -m tcp --dport 3000 -m owner ! --uid-owner 1337 -m "
            "comment --comment k8shmir: local app traffic to the proxy, except from the proxy uid "
            "-j REDIRECT --to-ports 8080");
  EXPECT_EQ(ChainRules(o), ChainRules(o, Family::kIpv4));
}

TEST(InitPlan, Ipv6InstallReinstallAndCleanup) {
  FakeIptables ip6t;
  auto first = ExecutePlan(InstallPlan(InitOptions{}, Family::kIpv6), ip6t.Runner(), "ip6tables");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->changes, 12);
  std::vector<std::string> want = kDefaultSave;
  want.back().replace(want.back().find("127.0.0.0/8"), 11, "::1/128");
  EXPECT_EQ(ip6t.Save(), want);
  auto second = ExecutePlan(InstallPlan(InitOptions{}, Family::kIpv6), ip6t.Runner(), "ip6tables");
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->changes, 0);
  // The IPv4 plan over IPv6 rules is a change (the loopback rule differs): the sets are distinct.
  FakeIptables copy = ip6t;
  auto v4 = ExecutePlan(InstallPlan(InitOptions{}), copy.Runner(), "iptables");
  ASSERT_TRUE(v4);
  EXPECT_GT(v4->changes, 0);
  auto cleanup = ExecutePlan(CleanupPlan(), ip6t.Runner(), "ip6tables");
  ASSERT_TRUE(cleanup) << cleanup.error().message;
  EXPECT_TRUE(ip6t.Save().empty());

  const std::string text = RenderPlan("ip6tables", InstallPlan(InitOptions{}, Family::kIpv6));
  EXPECT_NE(text.find("\nip6tables -t nat -A K8SHMIR_OUTPUT -d ::1/128 -p tcp -m tcp --dport "
                      "3000 -m owner ! --uid-owner 1337 "),
            std::string::npos)
      << text;
}

TEST(InitIpv6, TwinOfTheIptablesBinary) {
  EXPECT_EQ(Ip6tablesTwin("iptables"), "ip6tables");
  EXPECT_EQ(Ip6tablesTwin("iptables-nft"), "ip6tables-nft");
  EXPECT_EQ(Ip6tablesTwin("iptables-legacy"), "ip6tables-legacy");
  EXPECT_EQ(Ip6tablesTwin("/usr/sbin/iptables-legacy"), "/usr/sbin/ip6tables-legacy");
  EXPECT_EQ(Ip6tablesTwin("/opt/iptables/bin/iptables"), "/opt/iptables/bin/ip6tables");
  EXPECT_EQ(Ip6tablesTwin("xtables-nft-multi"), std::nullopt);
  EXPECT_EQ(Ip6tablesTwin("/iptables/xt"), std::nullopt);
}

TEST(InitIpv6, WhatCountsAsAnIpv6Namespace) {
  // A dual-stack pod: a global (or ULA) address, link-local, ::1.
  const std::string dual =
      "fd000000000000000000000000000002 04 40 00 82     eth0\n"
      "00000000000000000000000000000001 01 80 10 80       lo\n"
      "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n";
  Ipv6State s = ClassifyIpv6(dual, {{"all", "0\n"}, {"eth0", "0\n"}, {"lo", "0\n"}});
  EXPECT_TRUE(s.kernel);
  EXPECT_TRUE(s.enabled);
  EXPECT_NE(s.detail.find("fd00::2 on eth0, ::1 on lo, fe80::fc:ff:fe00:1 on eth0"),
            std::string::npos)
      << s.detail;

  // An IPv4-only pod whose runtime left ::1 on lo: a local caller over ::1 reaches an app on [::].
  s = ClassifyIpv6("00000000000000000000000000000001 01 80 10 80       lo\n",
                   {{"eth0", "1\n"}, {"lo", "0\n"}});
  EXPECT_TRUE(s.enabled) << s.detail;

  // No address yet, but an interface that may get one.
  s = ClassifyIpv6("", {{"all", "1"}, {"default", "1"}, {"eth0", "0"}, {"lo", "1"}});
  EXPECT_TRUE(s.enabled);
  EXPECT_NE(s.detail.find("enabled on eth0"), std::string::npos) << s.detail;

  // Disabled on every interface ("all"/"default" are not interfaces).
  s = ClassifyIpv6("", {{"all", "0"}, {"default", "0"}, {"eth0", "1\n"}, {"lo", "1\n"}});
  EXPECT_TRUE(s.kernel);
  EXPECT_FALSE(s.enabled);
  EXPECT_NE(s.detail.find("disabled on every interface"), std::string::npos) << s.detail;

  // A kernel without IPv6.
  s = ClassifyIpv6(std::nullopt, {});
  EXPECT_FALSE(s.kernel);
  EXPECT_FALSE(s.enabled);
  EXPECT_NE(s.detail.find("no IPv6"), std::string::npos) << s.detail;

  // Garbage lines are skipped, not taken for addresses.
  EXPECT_FALSE(ClassifyIpv6("zz 01 80 10 80 lo\n", {{"lo", "1"}}).enabled);
}

TEST(InitIpv6, ModeDecidesWithTheDetectedState) {
  Ipv6State none;  // no IPv6 in the kernel
  Ipv6State disabled{true, false, ""};
  Ipv6State present{true, true, ""};
  InitOptions o;
  EXPECT_FALSE(WantIpv6(o, none));
  EXPECT_FALSE(WantIpv6(o, disabled));
  EXPECT_TRUE(WantIpv6(o, present));
  o.cleanup = true;  // rules made with --ipv6 on may exist where every interface disables IPv6
  EXPECT_FALSE(WantIpv6(o, none));
  EXPECT_TRUE(WantIpv6(o, disabled));
  EXPECT_TRUE(WantIpv6(o, present));
  o.cleanup = false;
  o.ipv6 = Ipv6Mode::kOn;
  EXPECT_TRUE(WantIpv6(o, none));
  EXPECT_TRUE(WantIpv6(o, disabled));
  o.ipv6 = Ipv6Mode::kOff;
  EXPECT_FALSE(WantIpv6(o, present));
  o.cleanup = true;
  EXPECT_FALSE(WantIpv6(o, present));
}

TEST(InitPlan, InstallThenReinstallChangesNothing) {
  FakeIptables ipt;
  auto first = ExecutePlan(InstallPlan(InitOptions{}), ipt.Runner(), "iptables");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(ipt.Save(), kDefaultSave);
  // 2 chains created, 2 flushed, 6 rules, 2 jumps.
  EXPECT_EQ(first->changes, 12);

  ipt.log().clear();
  auto second = ExecutePlan(InstallPlan(InitOptions{}), ipt.Runner(), "iptables");
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->changes, 0);
  EXPECT_EQ(ipt.Save(), kDefaultSave);
  // Only checks ran: -S for each chain (twice), -C for each jump.
  for (const auto& cmd : ipt.log()) {
    EXPECT_TRUE(cmd.rfind("-t nat -S ", 0) == 0 || cmd.rfind("-t nat -C ", 0) == 0) << cmd;
  }
}

TEST(InitPlan, ReinstallWithOtherOptionsReplacesOwnRulesOnly) {
  FakeIptables ipt;
  ASSERT_TRUE(ipt.Run({"-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "ACCEPT"}).exit_code == 0);
  ASSERT_TRUE(ExecutePlan(InstallPlan(InitOptions{}), ipt.Runner(), "iptables"));
  InitOptions o;
  o.app_port = 3001;
  auto r = ExecutePlan(InstallPlan(o), ipt.Runner(), "iptables");
  ASSERT_TRUE(r) << r.error().message;
  const auto saved = ipt.Save();
  EXPECT_EQ(std::count(saved.begin(), saved.end(),
                       "-A OUTPUT -p tcp -m comment --comment k8shmir: output -j K8SHMIR_OUTPUT"),
            1);
  EXPECT_EQ(std::count(saved.begin(), saved.end(), "-A OUTPUT -p udp -j ACCEPT"), 1);
  int redirects = 0;
  for (const auto& line : saved) {
    if (line.find("REDIRECT") == std::string::npos) continue;
    ++redirects;
    EXPECT_NE(line.find("--dport 3001 "), std::string::npos) << line;
  }
  EXPECT_EQ(redirects, 2);
}

TEST(InitPlan, CleanupRemovesChainsAndEveryJumpAndIsIdempotent) {
  FakeIptables ipt;
  ASSERT_TRUE(ExecutePlan(InstallPlan(InitOptions{}), ipt.Runner(), "iptables"));
  // A duplicated jump, as a careless older tool would have left.
  IptablesArgs dup = {"-t", "nat", "-A"};
  const auto jumps = JumpRules();
  for (const auto& a : jumps[1]) dup.push_back(a);
  ASSERT_EQ(ipt.Run(dup).exit_code, 0);
  ASSERT_EQ(ipt.Run({"-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "ACCEPT"}).exit_code, 0);

  auto r = ExecutePlan(CleanupPlan(), ipt.Runner(), "iptables");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(ipt.Save(), (std::vector<std::string>{"-A OUTPUT -p udp -j ACCEPT"}));

  auto again = ExecutePlan(CleanupPlan(), ipt.Runner(), "iptables");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->changes, 0);

  // Nothing ever installed (an IPv6 table before k8shmir-init knew ip6tables): nothing to do.
  FakeIptables fresh;
  auto none = ExecutePlan(CleanupPlan(), fresh.Runner(), "ip6tables");
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_EQ(none->changes, 0);
}

TEST(InitPlan, PermissionDeniedIsReportedNotTakenForAbsent) {
  IptablesRunner denied = [](const IptablesArgs&) {
    CommandResult r;
    r.started = true;
    r.exit_code = 4;
    r.output =
        "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied "
        "(you must be root)\n";
    return r;
  };
  auto r = ExecutePlan(InstallPlan(InitOptions{}), denied, "iptables");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("NET_ADMIN"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("iptables -t nat -S K8SHMIR_INBOUND"), std::string::npos);

  // Legacy backend wording, exit 1 on a check: still a permission error.
  IptablesRunner legacy = [](const IptablesArgs&) {
    CommandResult r;
    r.started = true;
    r.exit_code = 1;
    r.output = "iptables: Permission denied (you must be root).\n";
    return r;
  };
  auto l = ExecutePlan(InstallPlan(InitOptions{}), legacy, "iptables-legacy");
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, ErrorCode::kUnavailable);

  IptablesRunner missing = [](const IptablesArgs&) {
    CommandResult r;
    r.exec_errno = ENOENT;
    return r;
  };
  auto m = ExecutePlan(InstallPlan(InitOptions{}), missing, "iptables");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kInvalid);
  EXPECT_NE(m.error().message.find("cannot execute iptables"), std::string::npos);
}

TEST(InitPlan, DryRunRenderingIsAShellScript) {
  const std::string text = RenderPlan("iptables", InstallPlan(InitOptions{}));
  EXPECT_NE(text.find("iptables -t nat -S K8SHMIR_INBOUND >/dev/null 2>&1 || iptables -t nat -N "
                      "K8SHMIR_INBOUND\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("iptables -t nat -A K8SHMIR_OUTPUT -d 127.0.0.0/8 -p tcp -m tcp --dport "
                      "3000 -m owner ! --uid-owner 1337 -m comment --comment 'k8shmir: local app "
                      "traffic to the proxy, except from the proxy uid' -j REDIRECT --to-ports "
                      "8080\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("iptables -t nat -C PREROUTING -p tcp -m comment --comment 'k8shmir: "
                      "inbound' -j K8SHMIR_INBOUND 2>/dev/null || iptables -t nat -A PREROUTING"),
            std::string::npos)
      << text;
  EXPECT_EQ(RenderCommand("ip tables", {"it's"}), "'ip tables' 'it'\\''s'");
}

TEST(InitHelpers, ExplainFailureSaysWhatToDo) {
  EXPECT_NE(ExplainFailure("iptables", {"-t", "nat", "-N", "X"}, 3,
                           "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table "
                           "does not exist (do you need to insmod?)")
                .find("--iptables iptables-nft"),
            std::string::npos);
  const std::string v6 = ExplainFailure("ip6tables-legacy", {"-t", "nat", "-N", "X"}, 3,
                                        "ip6tables v1.8.9 (legacy): can't initialize ip6tables "
                                        "table `nat': Table does not exist");
  EXPECT_NE(v6.find("ip6table_nat"), std::string::npos) << v6;
  EXPECT_NE(v6.find("--ip6tables ip6tables-nft"), std::string::npos) << v6;
  EXPECT_NE(ExplainFailure("iptables", {"-t", "nat"}, 4, "Permission denied")
                .find("capabilities NET_ADMIN and NET_RAW"),
            std::string::npos);
  const std::string plain = ExplainFailure("iptables", {"-t", "nat", "-F", "X"}, 1, "odd\n");
  EXPECT_EQ(plain, "`iptables -t nat -F X` failed (exit 1): odd");
}

TEST(InitHelpers, CapabilitiesAndSavedRules) {
  const std::string root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
  const std::string plain = "Name:\tx\nCapEff:\t0000000000000000\n";
  const std::string only_raw = "CapEff:\t0000000000002000\n";  // bit 13: NET_RAW
  EXPECT_TRUE(HasEffectiveCapability(root, 12));
  EXPECT_FALSE(HasEffectiveCapability(plain, 12));
  EXPECT_FALSE(HasEffectiveCapability(only_raw, 12));
  EXPECT_TRUE(HasEffectiveCapability(only_raw, 13));
  EXPECT_FALSE(HasEffectiveCapability("garbage", 12));
  EXPECT_EQ(CountSavedRules("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X\n-A X -j "
                            "RETURN\nCOMMIT\n"),
            2);
  EXPECT_EQ(CountSavedRules(""), 0);
}

TEST(InitHelpers, ChainMatchesIgnoresQuotesOnly) {
  const auto plan = InstallPlan(InitOptions{});
  const Step& sync = plan.at(2);
  ASSERT_EQ(sync.kind, StepKind::kSyncChain);
  std::string listed = "-N K8SHMIR_INBOUND\n";
  for (const auto& r : sync.rules) {
    std::string line;
    for (size_t i = 2; i < r.size(); ++i) line += (line.empty() ? "" : " ") + r[i];
    listed += line + "\n";
  }
  EXPECT_TRUE(ChainMatches(listed, "K8SHMIR_INBOUND", sync.rules));
  EXPECT_FALSE(ChainMatches("-N K8SHMIR_INBOUND\n", "K8SHMIR_INBOUND", sync.rules));
  EXPECT_FALSE(
      ChainMatches(listed + "-A K8SHMIR_INBOUND -j RETURN\n", "K8SHMIR_INBOUND", sync.rules));
}

TEST(RunCommand, ExitCodeOutputTimeoutAndMissingProgram) {
  auto ok = RunCommand("/bin/sh", {"-c", "echo out; echo err >&2; exit 3"}, 5s);
  EXPECT_TRUE(ok.started);
  EXPECT_FALSE(ok.timed_out);
  EXPECT_EQ(ok.exit_code, 3);
  EXPECT_EQ(ok.output, "out\nerr\n");

  const auto start = std::chrono::steady_clock::now();
  auto slow = RunCommand("/bin/sleep", {"30"}, 300ms);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);

  auto missing = RunCommand("/nonexistent/iptables", {}, 1s);
  EXPECT_FALSE(missing.started);
  EXPECT_EQ(missing.exec_errno, ENOENT);

  EXPECT_TRUE(FindExecutable("sh").has_value());
  EXPECT_FALSE(FindExecutable("k8shmir-no-such-tool"));
  EXPECT_FALSE(FindExecutable("/nonexistent/x"));
}

}  // namespace
}  // namespace k8shmir::init
