// The accept loop shared by the client and admin servers (src/common/accept_loop.h), through the
// admin server on a fake replica: out of descriptors (EMFILE), a failing accept must not spin.
//
// This test alone exhausts the process's descriptors, which makes UBSan's vptr check report
// false positives (on a type-cache miss it probes the vtable's memory with a pipe(2), which then
// fails): `make test-asan` leaves it out (Makefile, ASAN_EXCLUDE); it runs everywhere else.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "admin/admin_fixture.h"
#include "support/http_client.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;
using testing::Http;

double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

using AcceptLoopTest = testing::AdminServerFakeReplicaTest;

// Out of descriptors, accept fails while the connection stays pending: an immediate retry
// spins a core. The loop must pause instead.
TEST_F(AcceptLoopTest, AFailingAcceptDoesNotSpin) {
  Start(/*liveness=*/10s);
  const uint16_t port = admin_->port();
  ASSERT_EQ(Http(port, "GET", "/healthz").status, 200u);

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Every descriptor below the new soft limit in use, but one for the client's socket.
  std::vector<int> filler;
  for (;;) {
    int fd = ::dup(0);
    if (fd < 0) break;
    filler.push_back(fd);
    if (fd >= 1000) break;
  }
  ASSERT_FALSE(filler.empty());
  const int highest = filler.back();
  ::close(filler.back());
  filler.pop_back();
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest + 1);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  // The server cannot accept (EMFILE) for a second: it must not burn that second.
  const double before = CpuSeconds();
  std::this_thread::sleep_for(1s);
  const double used = CpuSeconds() - before;

  ::setrlimit(RLIMIT_NOFILE, &saved);
  for (int fd : filler) ::close(fd);
  EXPECT_LT(used, 0.2) << "CPU seconds spent while accept failed for 1 s";
  // With descriptors back, the pending connection is accepted and served.
  const char request[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(client, request, sizeof request - 1), static_cast<ssize_t>(sizeof request - 1));
  timeval timeout{5, 0};
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char buf[256] = {};
  const ssize_t n = ::read(client, buf, sizeof buf - 1);
  ::close(client);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, 15), "HTTP/1.1 200 OK");
}

}  // namespace
}  // namespace k8shmir
