#include "support/process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace k8shmir::testing {
namespace {

std::string ResolveProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return name;
}

std::string Timestamp() {
  char buf[64];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

ChildProcess::~ChildProcess() { Kill(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), last_status_(other.last_status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Kill();
    pid_ = std::exchange(other.pid_, -1);
    last_status_ = other.last_status_;
  }
  return *this;
}

void ChildProcess::Start(const std::vector<std::string>& argv, const EnvVars& env,
                         const std::filesystem::path& log_file) {
  Start(argv, env, log_file, ProcessOptions{});
}

void ChildProcess::Start(const std::vector<std::string>& argv, const EnvVars& env,
                         const std::filesystem::path& log_file, const ProcessOptions& options) {
  if (Running()) throw std::logic_error("ChildProcess::Start: a process is still running");
  if (argv.empty()) throw std::invalid_argument("ChildProcess::Start: empty argv");

  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  const std::string program = ResolveProgram(argv[0]);
  std::vector<std::string> env_strings;
  std::set<std::string> overridden;
  for (const auto& [name, value] : env) overridden.insert(name);
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    if (overridden.count(entry.substr(0, entry.find('='))) == 0) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  std::vector<char*> argv_ptrs;
  for (const auto& a : argv) argv_ptrs.push_back(const_cast<char*>(a.c_str()));
  argv_ptrs.push_back(nullptr);
  std::vector<char*> env_ptrs;
  for (auto& e : env_strings) env_ptrs.push_back(e.data());
  env_ptrs.push_back(nullptr);

  int netns_fd = -1;
  if (!options.netns.empty()) {
    const std::string path = "/run/netns/" + options.netns;
    netns_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) {
      throw std::runtime_error("ChildProcess::Start: cannot open network namespace " + path + ": " +
                               std::strerror(errno));
    }
  }
  const bool set_user = options.uid.has_value();
  const uid_t uid = options.uid.value_or(0);
  const gid_t gid = options.gid.value_or(static_cast<gid_t>(uid));

  int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    throw std::runtime_error("ChildProcess::Start: cannot open " + log_file.string() + ": " +
                             std::strerror(errno));
  }
  std::string banner = "=== start " + Timestamp() + ":";
  for (const auto& a : argv) banner += " " + a;
  WriteAll(log_fd, banner + "\n");

  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int err_pipe[2];
  if (null_fd < 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    int saved = errno;
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    if (netns_fd >= 0) ::close(netns_fd);
    throw std::runtime_error(std::string("ChildProcess::Start: ") + std::strerror(saved));
  }

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    // Descriptors inherited from other threads of the test (sockets) must not leak.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    bool ready = true;
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) ready = false;
    if (ready && set_user &&
        (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)) {
      ready = false;
    }
    // A change of credentials clears the parent-death signal: arm it again.
    if (ready && set_user) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
    }
    if (ready) ::execve(program.c_str(), argv_ptrs.data(), env_ptrs.data());
    int err = errno;
    ssize_t ignored = ::write(err_pipe[1], &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(err_pipe[1]);
  ::close(log_fd);
  ::close(null_fd);
  if (netns_fd >= 0) ::close(netns_fd);
  if (pid < 0) {
    ::close(err_pipe[0]);
    throw std::runtime_error(std::string("ChildProcess::Start: fork: ") +
                             std::strerror(fork_errno));
  }
  ::setpgid(pid, pid);  // also here, so the group exists before any Kill()
  pid_ = pid;

  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  if (n > 0) {
    Kill();
    std::string where;
    if (!options.netns.empty()) where += " in network namespace " + options.netns;
    if (set_user) where += " as uid " + std::to_string(uid);
    throw std::runtime_error("ChildProcess::Start: cannot execute " + program + where + ": " +
                             std::strerror(child_errno));
  }
}

void ChildProcess::Reap(int status) {
  last_status_ = status;
  pid_ = -1;
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  // The unreaped leader keeps the group id alive, so this cannot hit an unrelated group.
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    Reap(status);
  } else {
    pid_ = -1;  // ECHILD: someone else reaped it
  }
}

bool ChildProcess::Terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return true;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!Running()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return false;
}

bool ChildProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    Reap(status);
  } else {
    pid_ = -1;
  }
  return false;
}

std::string ChildProcess::DescribeExit() const {
  if (pid_ > 0) return "running";
  if (!last_status_) return "never started";
  int s = *last_status_;
  if (WIFEXITED(s)) return "exited " + std::to_string(WEXITSTATUS(s));
  if (WIFSIGNALED(s)) return "killed by signal " + std::to_string(WTERMSIG(s));
  return "status " + std::to_string(s);
}

}  // namespace k8shmir::testing
