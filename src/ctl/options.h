// k8shmirctl's command line: the command, the group, etcd's endpoints and TLS files (the proxy's
// flag names and environment variables, so that `kubectl exec` into the proxy's container needs
// none of them), and what counts as degraded.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "k8shmir/result.h"
#include "log/etcd_log.h"

namespace k8shmir::ctl {

// What a script can rely on (docs/kubernetes.md, "k8shmirctl").
enum ExitCode : int {
  kExitHealthy = 0,
  kExitDegraded = 1,
  kExitUnreachable = 2,
  kExitUnknownGroup = 3,
  kExitUsage = 64,
};

enum class Command { kNone, kStatus, kGroups, kHelp, kVersion };
enum class Output { kText, kJson };

struct CtlOptions {
  Command command = Command::kNone;
  std::string group;
  std::vector<std::string> endpoints;
  EtcdTlsOptions tls;
  std::chrono::milliseconds timeout{5000};  // of every RPC
  Output output = Output::kText;
  bool watch = false;
  std::chrono::milliseconds interval{2000};
  // etcd 3.4 does not report its quota: the operator says it (0: unknown). etcd's default.
  int64_t quota_backend_bytes = int64_t{2} << 30;
  // Degraded above this many committed entries a replica has received and not applied.
  uint64_t max_lag_entries = 1000;
  // Degraded when a replica's record is older: proxies refresh theirs every 2 s (a hung proxy's
  // record lives until its 10 s lease expires). Compares clocks of two machines.
  std::chrono::milliseconds stale_after{6000};
  // Sum the values under the log prefix (reads the whole log: off by default).
  bool log_bytes = false;
};

// argv without the program name; `env` as environ (K8SHMIR_ETCD_ENDPOINTS, K8SHMIR_ETCD_CA_FILE,
// K8SHMIR_ETCD_CERT_FILE, K8SHMIR_ETCD_KEY_FILE, K8SHMIR_ETCD_SERVER_NAME,
// K8SHMIR_QUOTA_BACKEND_BYTES and K8SHMIR_GROUP are read when the flag is absent). kInvalid with a
// one-line reason on a usage error.
Result<CtlOptions> ParseCtlArgs(const std::vector<std::string>& args, const char* const* env);

std::string CtlUsage();
std::string CtlVersion();  // "k8shmirctl 0.1.0 (<git revision>)\n"
const char* CtlVersionNumber();

// "2s", "500ms", "1m" or a plain number of milliseconds.
Result<std::chrono::milliseconds> ParseDuration(const std::string& text);

}  // namespace k8shmir::ctl
