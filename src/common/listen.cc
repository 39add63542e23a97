#include "common/listen.h"

#include "common/logging.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/v6_only.hpp>

namespace k8shmir {
namespace {

boost::system::error_code TryListen(boost::asio::ip::tcp::acceptor& acceptor,
                                    const boost::asio::ip::tcp::endpoint& endpoint) {
  namespace asio = boost::asio;
  boost::system::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  // "::" serves IPv4 too (as v4-mapped addresses) whatever net.ipv6.bindv6only says: with the
  // ip6tables redirect, the same port takes both families.
  if (!ec && endpoint.address().is_v6() && endpoint.address().is_unspecified()) {
    acceptor.set_option(asio::ip::v6_only(false), ec);
  }
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec && acceptor.is_open()) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
  }
  return ec;
}

}  // namespace

Status ListenOn(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, uint16_t port,
                const std::string& what) {
  namespace asio = boost::asio;
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) return Error{ErrorCode::kInvalid, "bad " + what + " address '" + address + "'"};
  std::string bound = address;
  ec = TryListen(acceptor, asio::ip::tcp::endpoint(ip, port));
  // A kernel without IPv6 (ipv6.disable=1) has no AF_INET6 sockets: "::" (every address, the
  // default) then means every IPv4 address, so that such hosts keep working.
  if ((ec == asio::error::address_family_not_supported ||
       ec == boost::system::errc::address_not_available) &&
      ip.is_v6() && ip.is_unspecified()) {
    LogLine(spdlog::level::warn, "no IPv6 here: listening on 0.0.0.0 instead of [::]",
            {{"listener", what}, {"port", port}, {"error", ec.message()}});
    bound = "0.0.0.0";
    ec = TryListen(acceptor, asio::ip::tcp::endpoint(asio::ip::address_v4::any(), port));
  }
  if (ec) {
    const bool v6 = bound.find(':') != std::string::npos;
    return Error{ErrorCode::kUnavailable, "cannot listen on " + what + " " +
                                              (v6 ? "[" + bound + "]" : bound) + ":" +
                                              std::to_string(port) + ": " + ec.message()};
  }
  return OkStatus();
}

uint16_t BoundPort(const boost::asio::ip::tcp::acceptor& acceptor) {
  boost::system::error_code ec;
  auto endpoint = acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

}  // namespace k8shmir
