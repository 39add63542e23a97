// Binds and listens an acceptor on address:port, with an error that names them (and `what`).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

#include "k8shmir/result.h"

namespace k8shmir {

Status ListenOn(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, uint16_t port,
                const std::string& what);

// The port `acceptor` is bound to, 0 when it is not bound.
uint16_t BoundPort(const boost::asio::ip::tcp::acceptor& acceptor);

}  // namespace k8shmir
