#include "support/tcp_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace k8shmir::testing {

namespace {

constexpr std::size_t kBufferBytes = 256 * 1024;

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// One relayed connection: bytes from `from` wait in `buffer` until `to` takes them.
struct Direction {
  int from = -1;
  int to = -1;
  std::vector<char> buffer;
  bool eof = false;  // `from` closed its side: shut `to`'s write side once the buffer is empty
};

struct Pair {
  int client = -1;
  int server = -1;  // -1: accepted during a cut, held without an upstream connection
  Direction up;     // client -> server
  Direction down;   // server -> client
  bool dead = false;
  ~Pair() {
    if (client != -1) ::close(client);
    if (server != -1) ::close(server);
  }
};

// Moves what it can of one direction; false once the connection is finished with.
bool Pump(Direction& d, short from_events, short to_events) {
  if ((from_events & (POLLIN | POLLHUP | POLLERR)) != 0 && !d.eof &&
      d.buffer.size() < kBufferBytes) {
    char chunk[65536];
    ssize_t n = ::read(d.from, chunk, sizeof chunk);
    if (n > 0) {
      d.buffer.insert(d.buffer.end(), chunk, chunk + n);
    } else if (n == 0) {
      d.eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  if ((to_events & POLLERR) != 0) return false;
  if (!d.buffer.empty()) {
    ssize_t n = ::send(d.to, d.buffer.data(), d.buffer.size(), MSG_NOSIGNAL);
    if (n > 0) {
      d.buffer.erase(d.buffer.begin(), d.buffer.begin() + n);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
  }
  if (d.eof && d.buffer.empty()) ::shutdown(d.to, SHUT_WR);
  return true;
}

}  // namespace

TcpRelay::TcpRelay(uint16_t target_port) : target_port_(target_port) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = Loopback(0);
  if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener_, 128) != 0 || ::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::runtime_error(std::string("tcp relay: cannot listen: ") + std::strerror(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  SetNonBlocking(listener_);
  thread_ = std::thread([this] { Run(); });
}

TcpRelay::~TcpRelay() {
  stop_ = true;
  Wake();
  thread_.join();
  ::close(listener_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void TcpRelay::Cut() {
  cut_ = true;
  Wake();
}

void TcpRelay::Restore() {
  restore_ = true;
  cut_ = false;
  Wake();
}

void TcpRelay::Wake() {
  char b = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_[1], &b, 1);
}

void TcpRelay::Run() {
  std::vector<std::unique_ptr<Pair>> pairs;
  while (!stop_) {
    if (restore_.exchange(false)) pairs.clear();  // what the cut held is closed
    const bool cut = cut_;
    std::vector<pollfd> fds;
    fds.push_back({wake_[0], POLLIN, 0});
    fds.push_back({listener_, POLLIN, 0});
    if (!cut) {
      for (auto& p : pairs) {
        short up_in = (!p->up.eof && p->up.buffer.size() < kBufferBytes) ? POLLIN : 0;
        short down_in = (!p->down.eof && p->down.buffer.size() < kBufferBytes) ? POLLIN : 0;
        short client_out = p->down.buffer.empty() ? 0 : POLLOUT;
        short server_out = p->up.buffer.empty() ? 0 : POLLOUT;
        fds.push_back({p->client, static_cast<short>(up_in | client_out), 0});
        fds.push_back({p->server, static_cast<short>(down_in | server_out), 0});
      }
    }
    const std::size_t polled = cut ? 0 : pairs.size();
    ::poll(fds.data(), fds.size(), 200);
    if ((fds[0].revents & POLLIN) != 0) {
      char sink[64];
      while (::read(wake_[0], sink, sizeof sink) > 0) {
      }
    }
    if ((fds[1].revents & POLLIN) != 0) {
      for (;;) {
        int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (client < 0) break;
        auto pair = std::make_unique<Pair>();
        pair->client = client;
        if (!cut_) {
          int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in target = Loopback(target_port_);
          if (server < 0 ||
              ::connect(server, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
            if (server >= 0) ::close(server);
            continue;  // the target is down: the client sees its connection closed
          }
          int one = 1;
          ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          SetNonBlocking(server);
          pair->server = server;
          pair->up = Direction{client, server, {}, false};
          pair->down = Direction{server, client, {}, false};
        }
        pairs.push_back(std::move(pair));
      }
    }
    if (cut) continue;
    for (std::size_t k = 0; k < polled; ++k) {
      Pair* p = pairs[k].get();
      short client_events = fds[2 + 2 * k].revents;
      short server_events = fds[3 + 2 * k].revents;
      if (p->server == -1) {  // held by a cut that ended: never relayed
        p->dead = true;
        continue;
      }
      if (!Pump(p->up, client_events, server_events) ||
          !Pump(p->down, server_events, client_events) ||
          (p->up.eof && p->down.eof && p->up.buffer.empty() && p->down.buffer.empty())) {
        p->dead = true;
      }
    }
    std::erase_if(pairs, [](const std::unique_ptr<Pair>& p) { return p->dead; });
  }
}

}  // namespace k8shmir::testing
