#include "init/apply.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace k8shmir::init {
namespace {

constexpr size_t kOutputLimit = 64 * 1024;

bool IsExecutable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

}  // namespace

std::optional<std::string> FindExecutable(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) {
    if (IsExecutable(name)) return name;
    return std::nullopt;
  }
  const char* env_path = std::getenv("PATH");
  std::string dirs = env_path != nullptr ? env_path : "";
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      const std::string candidate = dir + "/" + name;
      if (IsExecutable(candidate)) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

CommandResult RunCommand(const std::string& program, const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout) {
  CommandResult result;
  // Prepared before fork: after it the child only makes async-signal-safe calls.
  std::vector<std::string> argv_strings;
  argv_strings.push_back(program);
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string path_var = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::string lang_var = "LANG=C";
  std::vector<char*> envp = {path_var.data(), lang_var.data(), nullptr};

  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.exec_errno = errno;
    return result;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.exec_errno = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return result;
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(out_pipe[1], STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    int err = errno;
    ssize_t ignored = ::write(err_pipe[1], &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    result.exec_errno = fork_errno;
    return result;
  }
  ::setpgid(pid, pid);

  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  if (n > 0) {
    result.exec_errno = child_errno;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ::close(out_pipe[0]);
    return result;
  }
  result.started = true;

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  bool open = true;
  while (open) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      break;
    }
    pollfd pfd{out_pipe[0], POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == 0) continue;  // the deadline check above ends the loop
    const ssize_t got = ::read(out_pipe[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      open = false;
      break;
    }
    if (result.output.size() < kOutputLimit) {
      result.output.append(buf,
                           std::min(static_cast<size_t>(got), kOutputLimit - result.output.size()));
    }
  }
  ::close(out_pipe[0]);

  int status = 0;
  if (!result.timed_out) {
    // Output closed: the child is exiting; still bounded by the deadline.
    while (true) {
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) break;
      if (r < 0 && errno != EINTR) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        result.timed_out = true;
        break;
      }
      ::usleep(2000);
    }
  }
  if (result.timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = 128 + SIGKILL;
    return result;
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

Result<PlanOutcome> ExecutePlan(const std::vector<Step>& plan, const IptablesRunner& run,
                                const std::string& iptables_name) {
  PlanOutcome outcome;
  auto call = [&](const IptablesArgs& args) {
    ++outcome.commands_run;
    return run(args);
  };
  auto fail = [&](const IptablesArgs& args, const CommandResult& r) -> Error {
    if (!r.started) {
      return Error{ErrorCode::kInvalid,
                   "cannot execute " + iptables_name + ": " + std::strerror(r.exec_errno)};
    }
    if (r.timed_out) {
      return Error{ErrorCode::kUnknown, "`" + RenderCommand(iptables_name, args) +
                                            "` did not finish in time and was killed"};
    }
    std::string message = ExplainFailure(iptables_name, args, r.exit_code, r.output);
    const bool denied = message.find("not allowed to change iptables") != std::string::npos;
    return Error{denied ? ErrorCode::kUnavailable : ErrorCode::kProtocol, std::move(message)};
  };
  auto must = [&](const IptablesArgs& args) -> Status {
    CommandResult r = call(args);
    if (!r.started || r.timed_out || r.exit_code != 0) return fail(args, r);
    ++outcome.changes;
    return OkStatus();
  };
  // A check (-S / -C) answers with exit 1 for "absent"; anything else that is not 0 is an error
  // (e.g. 4 for a permission problem) and must not be taken for "absent".
  auto check = [&](const IptablesArgs& args) -> Result<bool> {
    CommandResult r = call(args);
    if (!r.started || r.timed_out) return fail(args, r);
    if (r.exit_code == 0) return true;
    if (r.exit_code == 1 && r.output.find("ermission denied") == std::string::npos &&
        r.output.find("not permitted") == std::string::npos) {
      return false;
    }
    return fail(args, r);
  };

  for (const Step& step : plan) {
    switch (step.kind) {
      case StepKind::kRun: {
        if (Status s = must(step.args); !s) return s.error();
        break;
      }
      case StepKind::kSyncChain: {
        const IptablesArgs list = WithOperation(step.args, "-F", "-S");
        CommandResult current = call(list);
        if (!current.started || current.timed_out || current.exit_code != 0) {
          return fail(list, current);
        }
        if (ChainMatches(current.output, step.args.back(), step.rules)) break;
        if (Status s = must(step.args); !s) return s.error();
        for (const auto& rule : step.rules) {
          if (Status s = must(rule); !s) return s.error();
        }
        break;
      }
      case StepKind::kEnsureChain: {
        auto present = check(WithOperation(step.args, "-N", "-S"));
        if (!present) return present.error();
        if (!*present) {
          if (Status s = must(step.args); !s) return s.error();
        }
        break;
      }
      case StepKind::kEnsureJump: {
        auto present = check(WithOperation(step.args, "-A", "-C"));
        if (!present) return present.error();
        if (!*present) {
          if (Status s = must(step.args); !s) return s.error();
        }
        break;
      }
      case StepKind::kDeleteJump: {
        // No target chain, no jump to it; and iptables -C fails (exit 2, "Chain ... does not
        // exist") rather than answer "absent" when the target is missing, e.g. on a cleanup run
        // twice or for a family whose rules were never installed.
        const auto target = std::find(step.args.begin(), step.args.end(), "-j");
        if (target != step.args.end() && target + 1 != step.args.end()) {
          auto chain = check({"-t", kTable, "-S", *(target + 1)});
          if (!chain) return chain.error();
          if (!*chain) break;
        }
        // Every copy (an older tool version may have added more than one); bounded.
        for (int i = 0; i < 100; ++i) {
          auto present = check(WithOperation(step.args, "-D", "-C"));
          if (!present) return present.error();
          if (!*present) break;
          if (Status s = must(step.args); !s) return s.error();
        }
        break;
      }
      case StepKind::kDeleteChain: {
        auto present = check(WithOperation(step.args, "-X", "-S"));
        if (!present) return present.error();
        if (*present) {
          if (Status s = must(WithOperation(step.args, "-X", "-F")); !s) return s.error();
          if (Status s = must(step.args); !s) return s.error();
        }
        break;
      }
    }
  }
  return outcome;
}

}  // namespace k8shmir::init
