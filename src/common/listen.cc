#include "common/listen.h"

namespace k8shmir {

Status ListenOn(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, uint16_t port,
                const std::string& what) {
  namespace asio = boost::asio;
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) return Error{ErrorCode::kInvalid, "bad " + what + " address '" + address + "'"};
  asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error{ErrorCode::kUnavailable, "cannot listen on " + what + " " + address + ":" +
                                              std::to_string(port) + ": " + ec.message()};
  }
  return OkStatus();
}

}  // namespace k8shmir
