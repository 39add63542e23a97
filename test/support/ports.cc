#include "support/ports.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>

namespace k8shmir::testing {
namespace {

// True when 127.0.0.1:port can be bound now; sets *port to the bound port when it was 0.
bool TryBind(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(*port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (ok && *port == 0) {
    socklen_t len = sizeof addr;
    ok = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    *port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return ok;
}

// The low end of the ephemeral port range (32768 on stock Linux).
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  if (in >> low >> high && low > 0) return low;
  return 32768;
}

// Reserves `port` among every process on this machine that uses FreePort: an flock on
// <tmp>/k8shmir-ports/<port>, held until this process exits (the kernel releases it then, so a
// killed test leaves nothing reserved). Tests run in parallel (ctest -j2): a port that merely
// binds now may be taken by the other test's processes before ours bind it.
bool ReserveAcrossProcesses(uint16_t port) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string d = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/k8shmir-ports";
    ::mkdir(d.c_str(), 0777);
    ::chmod(d.c_str(), 01777);
    return d;
  }();
  const std::string path = dir + "/" + std::to_string(port);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return true;  // cannot coordinate: fall back to the bind check alone
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;  // another process holds it
  }
  return true;  // fd stays open (and locked) for the life of the process
}

}  // namespace

uint16_t FreePort() {
  static std::mutex mu;
  static std::set<uint16_t> handed_out;
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  std::lock_guard<std::mutex> lock(mu);

  const int low = 10000;
  const int high = EphemeralLow() - 1;
  if (high - low > 1000) {
    std::uniform_int_distribution<int> dist(low, high);
    for (int attempt = 0; attempt < 1000; ++attempt) {
      uint16_t port = static_cast<uint16_t>(dist(rng));
      if (handed_out.count(port) != 0) continue;
      if (TryBind(&port) && ReserveAcrossProcesses(port)) {
        handed_out.insert(port);
        return port;
      }
    }
  }
  for (int attempt = 0; attempt < 1000; ++attempt) {
    uint16_t port = 0;
    if (TryBind(&port) && ReserveAcrossProcesses(port) && handed_out.insert(port).second) {
      return port;
    }
  }
  throw std::runtime_error("FreePort: no free port found");
}

}  // namespace k8shmir::testing
