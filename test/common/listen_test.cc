// ListenOn: "::" (the proxy's default) serves both families on one port, whatever
// net.ipv6.bindv6only says, since k8shmir-init redirects IPv4 and IPv6 connections to it.
#include "common/listen.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace k8shmir {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Connects to address:port and accepts that connection; returns the accepted peer's address.
std::string ConnectAndAccept(asio::io_context& io, tcp::acceptor& acceptor,
                             const std::string& address, uint16_t port) {
  tcp::socket client(io);
  boost::system::error_code ec;
  client.connect(tcp::endpoint(asio::ip::make_address(address), port), ec);
  if (ec) return "connect failed: " + ec.message();
  tcp::socket server(io);
  acceptor.accept(server, ec);  // the connection is in the backlog already
  if (ec) return "accept failed: " + ec.message();
  return server.remote_endpoint().address().to_string();
}

TEST(ListenOn, UnspecifiedIpv6TakesBothFamilies) {
  asio::io_context io;
  tcp::acceptor acceptor(io);
  ASSERT_TRUE(ListenOn(acceptor, "::", 0, "client"));
  const tcp::endpoint local = acceptor.local_endpoint();
  if (local.address().is_v4()) GTEST_SKIP() << "no IPv6 in this kernel: fell back to 0.0.0.0";
  EXPECT_EQ(local.address().to_string(), "::");
  const uint16_t port = local.port();
  EXPECT_EQ(ConnectAndAccept(io, acceptor, "127.0.0.1", port), "::ffff:127.0.0.1");
  EXPECT_EQ(ConnectAndAccept(io, acceptor, "::1", port), "::1");
}

TEST(ListenOn, ErrorsNameTheAddress) {
  asio::io_context io;
  tcp::acceptor first(io);
  ASSERT_TRUE(ListenOn(first, "::", 0, "client"));
  const uint16_t port = first.local_endpoint().port();
  tcp::acceptor second(io);
  Status busy = ListenOn(second, "::", port, "client");
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kUnavailable);
  if (first.local_endpoint().address().is_v6()) {
    EXPECT_NE(busy.error().message.find("cannot listen on client [::]:" + std::to_string(port)),
              std::string::npos)
        << busy.error().message;
  }
  // An IPv4 listener on the same port conflicts with the dual-stack one.
  tcp::acceptor v4(io);
  EXPECT_FALSE(ListenOn(v4, "127.0.0.1", port, "admin"));

  Status bad = ListenOn(second, "not-an-address", 1, "admin");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
  EXPECT_NE(bad.error().message.find("bad admin address 'not-an-address'"), std::string::npos);
}

}  // namespace
}  // namespace k8shmir
