// k8shmirctl: reads a k8shmir group's state from etcd and says whether it is healthy, in text or
// JSON, with an exit code for scripts (src/ctl/options.h). Nothing it does writes to etcd.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "ctl/assess.h"
#include "ctl/collect.h"
#include "ctl/etcd_client.h"
#include "ctl/options.h"
#include "ctl/render.h"

extern char** environ;

namespace {

std::atomic<bool> g_interrupted{false};

// The first Ctrl-C ends --watch after the refresh under way (its calls end by their deadline);
// a second one at once.
void OnInterrupt(int) {
  if (g_interrupted.exchange(true)) _exit(130);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace k8shmir::ctl;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = ParseCtlArgs(args, environ);
  if (!parsed) {
    std::cerr << "k8shmirctl: " << parsed.error().message << "\n";
    return kExitUsage;
  }
  const CtlOptions& options = *parsed;
  if (options.command == Command::kHelp) {
    std::cout << CtlUsage();
    return 0;
  }
  if (options.command == Command::kVersion) {
    std::cout << CtlVersion();
    return 0;
  }
  // gRPC logs connection failures to stderr on its own; the report says them once, better.
  if (getenv("GRPC_VERBOSITY") == nullptr) setenv("GRPC_VERBOSITY", "NONE", 1);

  auto client = EtcdClient::Create(options.endpoints, options.tls, options.timeout);
  if (!client) {
    // A TLS file that cannot be read is as fatal as an endpoint that does not answer.
    std::cerr << "k8shmirctl: " << client.error().message << "\n";
    return kExitUnreachable;
  }
  const bool json = options.output == Output::kJson;

  auto once = [&](bool clear) {
    Verdict verdict;
    std::string text;
    if (options.command == Command::kGroups) {
      GroupsReport report = CollectGroups(**client, options);
      verdict = AssessGroups(report);
      text = json ? RenderGroupsJson(report, verdict) : RenderGroupsText(report, verdict);
    } else {
      GroupReport report = CollectStatus(**client, options);
      verdict = Assess(report, ThresholdsOf(options));
      text = json ? RenderStatusJson(report, verdict) : RenderStatusText(report, verdict);
    }
    if (clear) std::cout << "\x1b[H\x1b[2J";
    // An unreachable etcd or an unknown group has nothing else to show: one line each on stderr
    // (for JSON too, beside the object on stdout), or on the refreshed screen.
    const bool terse =
        verdict.exit_code == kExitUnreachable || verdict.exit_code == kExitUnknownGroup;
    if (terse) {
      std::ostream& out = clear ? std::cout : std::cerr;
      for (const auto& p : verdict.problems) out << "k8shmirctl: " << p << "\n";
    }
    if (!terse || json) std::cout << text;
    std::cout << std::flush;
    return verdict.exit_code;
  };

  if (!options.watch) return once(false);

  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  // JSON under --watch is one object per line (JSON Lines): no screen to clear.
  const bool clear = !json && isatty(STDOUT_FILENO);
  int code = kExitHealthy;
  while (!g_interrupted) {
    code = once(clear);
    if (!json) {
      std::cout << "\nevery " << options.interval.count() << " ms; Ctrl-C to stop\n" << std::flush;
    }
    const auto until = std::chrono::steady_clock::now() + options.interval;
    while (!g_interrupted && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return code;
}
