// k8shmir-bench's entry point: options, signal handling, the run (bench/README.md).
#include <signal.h>

#include <csignal>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <utility>

#include "bench.h"
#include "reads.h"
#include "soak.h"

int main(int argc, char** argv) {
  using namespace k8shmir::bench;
  Options o = ParseOptions(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Quiet gRPC/spdlog output of the in-process etcd clients.
  ::setenv("GRPC_VERBOSITY", "ERROR", 0);
  int rc = 0;
  try {
    if (o.only_soak) {
      rc = RunSoak(o);
    } else if (o.only_reads) {
      rc = RunReads(std::move(o));
    } else {
      Bench bench(std::move(o));
      rc = bench.Run();
    }
  } catch (const Interrupted&) {
    std::cerr << "k8shmir-bench: interrupted; everything it started was stopped\n";
    rc = 130;
  } catch (const std::exception& e) {
    std::cerr << "k8shmir-bench: " << e.what() << "\n";
    rc = 1;
  }
  return rc;
}
