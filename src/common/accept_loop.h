// The accept loop shared by the client and admin servers.
#pragma once

#include <utility>  // boost/asio/awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

namespace k8shmir {

// Accepts connections on `acceptor` until it is closed (or `stopping()` says so), handing each
// socket, bound to a new strand of `ioc`, to `on_accept`. A failed accept (EMFILE when the
// process is out of descriptors, ENFILE, ENOBUFS, ...) pauses before the next attempt, from 50 ms
// doubling to 1 s while it keeps failing, instead of retrying at once: the pending connection
// stays readable, so retrying at once would spin a core and starve every other handler.
// `acceptor` and `ioc` must outlive the returned coroutine (callers keep their state alive in
// the coroutine's frame).
boost::asio::awaitable<void> AcceptLoop(
    boost::asio::ip::tcp::acceptor& acceptor, boost::asio::io_context& ioc, std::string what,
    std::function<bool()> stopping, std::function<void(boost::asio::ip::tcp::socket)> on_accept);

// AcceptLoop for a server whose state `Server` has `acceptor`, `ioc` and a coroutine
// `Session(tcp::socket)`: one session per connection, on the connection's strand. Each session's
// frame holds `server`, so the state outlives every session whoever lets go of it first.
template <class Server>
boost::asio::awaitable<void> AcceptSessions(std::shared_ptr<Server> server, std::string what,
                                            std::function<bool()> stopping) {
  std::function<void(boost::asio::ip::tcp::socket)> on_accept =
      [server](boost::asio::ip::tcp::socket socket) {
        auto executor = socket.get_executor();
        boost::asio::co_spawn(
            executor,
            [server, socket = std::move(socket)]() mutable -> boost::asio::awaitable<void> {
              auto session = server->Session(std::move(socket));
              co_await std::move(session);
            },
            boost::asio::detached);
      };
  // Named locals only in the co_await (g++ 12 miscompiles temporaries there).
  auto loop = AcceptLoop(server->acceptor, server->ioc, std::move(what), std::move(stopping),
                         std::move(on_accept));
  co_await std::move(loop);
}

}  // namespace k8shmir
