// k8shmir-init's effects: running iptables (fork/execv, no shell, with a timeout) and carrying out
// a plan from rules.h with it.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "init/rules.h"

namespace k8shmir::init {

struct CommandResult {
  bool started = false;    // false: the program could not be executed (see exec_errno)
  int exec_errno = 0;      // errno of the failed execv
  bool timed_out = false;  // killed after the timeout
  int exit_code = -1;      // exit status, or 128 + signal
  std::string output;      // stdout and stderr, interleaved, at most 64 KiB
};

// Runs `program` (a path) with `args` (argv[1..]), stdin from /dev/null, an environment with only
// PATH and LANG=C, and kills it (SIGKILL) when it has not exited within `timeout`.
CommandResult RunCommand(const std::string& program, const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout);

// The path of an executable named `name` (returned as is when it contains '/'), searched in PATH
// and then /usr/local/sbin, /usr/sbin, /sbin; nullopt when there is none.
std::optional<std::string> FindExecutable(const std::string& name);

// Runs iptables with the given arguments (the binary is bound by the caller).
using IptablesRunner = std::function<CommandResult(const IptablesArgs&)>;

struct PlanOutcome {
  int commands_run = 0;
  int changes = 0;  // commands that changed the rules (-N -F -A -D -X)
};

// Carries out a plan step by step (see StepKind). The first failure ends it with an error whose
// message comes from ExplainFailure; code kUnavailable when the failure means "not permitted".
Result<PlanOutcome> ExecutePlan(const std::vector<Step>& plan, const IptablesRunner& run,
                                const std::string& iptables_name);

}  // namespace k8shmir::init
