// A real etcd cluster on loopback ports for integration tests (Debian's /usr/bin/etcd).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support/http_client.h"
#include "support/process.h"

namespace k8shmir::testing {

inline constexpr const char* kEtcdBin = "/usr/bin/etcd";

// TLS on the members' client URLs (peers stay plaintext: the tests are about clients).
struct EtcdClusterTls {
  std::filesystem::path cert_file;  // the server certificate (--cert-file); empty: no TLS
  std::filesystem::path key_file;   // --key-file
  std::filesystem::path ca_file;    // --trusted-ca-file: the CA client certificates must chain to
  bool client_cert_auth = true;     // --client-cert-auth
};

// How the members run. The tests' defaults make elections fast (50 ms heartbeats, 500 ms
// election timeout); the bench uses etcd's own defaults unless told otherwise.
struct EtcdClusterOptions {
  std::string binary = kEtcdBin;
  int heartbeat_ms = 50;
  int election_ms = 500;
  std::string log_level = "info";
  std::vector<std::string> extra_flags;  // appended to every member's command line
};

class EtcdCluster {
 public:
  // Picks ports and directories; starts nothing. Data directories live under a fresh temporary
  // directory (on /dev/shm when possible) removed by the destructor; logs (etcd-<i>.log) go to
  // `log_dir`, or to a fresh temporary directory when empty, which is removed by the destructor
  // unless the test failed (then its path and the last 50 lines of each log are printed).
  // With `tls.cert_file` set, clients connect with TLS (https:// client URLs), and /health is
  // served in plaintext on a separate metrics port (--listen-metrics-urls) for the harness's
  // own HTTP client; the v3 JSON gateway calls below (Revision, Put, Compact, CountPrefix,
  // LeaderIndex) are then unavailable and throw std::logic_error.
  explicit EtcdCluster(int members = 3, std::filesystem::path log_dir = {}, EtcdClusterTls tls = {},
                       EtcdClusterOptions options = {});
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Starts every member and waits until each answers GET /health with {"health":"true"}.
  // Throws std::runtime_error (naming the log directory) when that takes longer than `timeout`.
  void Start(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // SIGKILL to one member / to all members.
  void KillMember(int i);
  void KillAll();
  // Starts a killed member again on its data directory and ports. Does not wait.
  void StartMember(int i);
  // StartMember(i), then waits until every running member is healthy; throws on timeout.
  void RestartMember(int i, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Starts every killed member, then waits until all are healthy; throws on timeout.
  void RestartAll(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // True when every running member answers /health with "true" before `timeout`.
  bool WaitHealthy(std::chrono::milliseconds timeout);
  bool MemberHealthy(int i, std::chrono::milliseconds timeout = std::chrono::seconds(2)) const;
  bool MemberRunning(int i);
  // The member's process id (-1 when not running), e.g. to SIGSTOP / SIGCONT it.
  pid_t MemberPid(int i) const;

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" (no scheme), as --etcd-endpoints takes it. With
  // TLS as well: the client's TLS options, not the scheme, decide (see EtcdTlsOptions).
  std::string Endpoints() const;
  // The same with the scheme: "https://127.0.0.1:p1,..." with TLS, "http://..." without.
  std::string Urls() const;
  bool tls() const { return !tls_.cert_file.empty(); }
  std::string Endpoint(int i) const;  // "127.0.0.1:p"
  uint16_t ClientPort(int i) const;
  uint16_t PeerPort(int i) const;
  // Where GET /health is answered in plaintext: the client port, or the metrics port with TLS.
  uint16_t HealthPort(int i) const;

  // The member that is leader, as the running members see it; -1 when no leader is agreed on
  // within `timeout`.
  int LeaderIndex(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Through the v3 JSON gateway of the first member that answers. Each throws std::runtime_error
  // when no member answers successfully.
  int64_t Revision();                                             // current revision
  int64_t Put(const std::string& key, const std::string& value);  // revision of the put
  void Compact(int64_t revision);                                 // physical compaction
  void Delete(const std::string& key);
  // Defragments every running member (gives the space of compacted history back).
  void Defragment();
  // The raised alarms ("NOSPACE", "CORRUPT"), and disarming every one of them.
  std::vector<std::string> Alarms();
  void DisarmAlarms();
  // The keys under `prefix`, in key order.
  std::vector<std::string> Keys(const std::string& prefix);
  // Number of keys under `prefix` (a serializable count is not used: linearizable).
  int64_t CountPrefix(const std::string& prefix);
  // Number of log entries in the batch keys under `prefix` (each key "<id>.<n>" holds n).
  int64_t CountLogEntries(const std::string& prefix);
  // The entries of the batch keys under `prefix` whose index is above `above` (retention keeps a
  // batch that straddles its trimmed point), and the newest entry's index (0 when none).
  struct LogCount {
    int64_t entries = 0;
    int64_t last_index = 0;
  };
  LogCount CountLogEntriesAbove(const std::string& prefix, int64_t above);
  // The trimmed point of the log under `prefix` (its retention marker), 0 when none.
  int64_t TrimmedIndex(const std::string& prefix);

  const std::filesystem::path& log_dir() const { return log_dir_; }
  std::filesystem::path LogFile(int i) const;
  // Prints the log directory and the last `lines` lines of each member's log.
  void DumpLogs(std::ostream& out, size_t lines = 50) const;

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    uint16_t metrics_port = 0;  // only with TLS
    std::filesystem::path data_dir;
    ChildProcess process;
  };

  std::vector<std::string> MemberArgs(int i) const;
  std::string ClientUrl(int i) const;
  // Throws std::logic_error naming `what` when the cluster uses TLS (no plaintext gateway).
  void RequirePlaintext(const char* what) const;
  // POST `path` with a JSON body to the first member that answers 200; throws otherwise.
  json GatewayPost(const std::string& path, const json& body);

  EtcdClusterTls tls_;
  EtcdClusterOptions options_;
  std::string token_;
  std::filesystem::path data_root_;
  std::filesystem::path log_dir_;
  bool own_log_dir_ = false;
  std::vector<std::unique_ptr<Member>> members_;
};

}  // namespace k8shmir::testing
