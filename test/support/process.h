// A child process owned by a test: started with fork/execve, its output appended to a log file,
// killed with its whole process group, always reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace k8shmir::testing {

using EnvVars = std::vector<std::pair<std::string, std::string>>;

// Where and as whom a child runs (the defaults: this process's network namespace and user).
struct ProcessOptions {
  // A named network namespace (as `ip netns add NAME` creates it, /run/netns/NAME) the child
  // enters before it execs, like `ip netns exec NAME`. Empty: this process's namespace.
  std::string netns;
  // Run as this uid (and `gid`, default: the same number), with no supplementary groups. Set
  // after entering the namespace, so a root test can start an unprivileged child in it.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();  // Kill()
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;

  // Starts argv[0] (an absolute path, or a name looked up in PATH) with argv, this process's
  // environment plus `env` (which overrides variables of the same name), stdin from /dev/null and
  // stdout and stderr appended to `log_file` (after a "=== start" line). The child leads its own
  // process group and gets SIGKILL when the thread that started it exits, so start children from
  // the test's main thread. Throws std::runtime_error when the program cannot be executed, and
  // std::logic_error when this object still runs a process.
  void Start(const std::vector<std::string>& argv, const EnvVars& env,
             const std::filesystem::path& log_file);
  // The same, in another network namespace and/or as another user (see ProcessOptions). Throws
  // std::runtime_error when the namespace cannot be entered or the user cannot be set.
  void Start(const std::vector<std::string>& argv, const EnvVars& env,
             const std::filesystem::path& log_file, const ProcessOptions& options);

  // SIGKILL to the process group, then reaps the child. No-op when nothing runs.
  void Kill();

  // SIGTERM, then Kill() if the child has not exited within `timeout`. True when it exited by
  // itself in time.
  bool Terminate(std::chrono::milliseconds timeout);

  // True while the child exists and has not been reaped (reaps it when it has exited).
  bool Running();

  // The child's pid while it is Running(), else -1.
  pid_t pid() const { return pid_; }

  // The wait status (as from waitpid) of the last child that was reaped, if any.
  std::optional<int> last_wait_status() const { return last_status_; }

  // A readable description of last_wait_status(): "exited 0", "killed by signal 9", "running".
  std::string DescribeExit() const;

 private:
  void Reap(int status);

  pid_t pid_ = -1;
  std::optional<int> last_status_;
};

}  // namespace k8shmir::testing
