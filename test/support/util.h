// Small helpers shared by the test harness: temporary directories, log tails, polling, base64.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace k8shmir::testing {

// Creates a new directory `<base>/<prefix>XXXXXX` (base: $TMPDIR or /tmp when empty).
std::filesystem::path MakeTempDir(std::string_view prefix, std::filesystem::path base = {});

// A directory for large scratch data that benefits from RAM (etcd's WAL fsyncs): /dev/shm when
// it is writable, else $TMPDIR or /tmp.
std::filesystem::path ScratchBase();

// The last `lines` lines of a text file ("" when it cannot be read).
std::string TailFile(const std::filesystem::path& file, size_t lines);

// Removes a directory tree, ignoring errors.
void RemoveTree(const std::filesystem::path& dir);

// A name usable in paths for the running GoogleTest test ("Suite.Name" sanitized), or "test".
std::string CurrentTestName();

// True when the running test (if any) has failed so far, when an exception is unwinding the
// stack, or when K8SHMIR_KEEP_TEST_LOGS is set (not "0"): then logs are kept and printed.
bool ShouldKeepLogs();

// How the harness asks the test framework about the running test. The harness itself needs no
// GoogleTest (the bench links it too): test binaries install GoogleTest's answers
// (test/support/gtest_context.cc); without hooks there is no test name and no failure.
struct TestContextHooks {
  std::function<std::string()> test_name;  // "Suite.Name", "" outside a test
  std::function<bool()> failed;            // the running test has failed so far
};
void SetTestContextHooks(TestContextHooks hooks);

// Calls `pred` every `interval` until it returns true or `timeout` passes; the last call happens
// at or after the deadline. True when `pred` returned true.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = std::chrono::milliseconds(50));

// A "Vm..." field of /proc/<pid>/status in KiB (e.g. "VmRSS", "VmHWM"), -1 when unreadable.
int64_t ProcStatusKib(int pid, std::string_view field);

std::string Base64Encode(std::string_view in);
std::string Base64Decode(std::string_view in);

}  // namespace k8shmir::testing
