// The accept loop shared by the client and admin servers.
#pragma once

#include <utility>  // boost/asio/awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
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

}  // namespace k8shmir
