#include "support/http_client.h"

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <optional>

#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

namespace k8shmir::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kResponseBodyLimit = 1ull << 30;
constexpr std::uint32_t kResponseHeaderLimit = 1 << 20;

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

tcp::endpoint Loopback(uint16_t port) { return {asio::ip::make_address_v4("127.0.0.1"), port}; }

}  // namespace

std::string HttpResult::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (IEquals(n, name)) return v;
  }
  return "";
}

bool HttpResult::HasHeader(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (IEquals(n, name)) return true;
  }
  return false;
}

json HttpResult::Json() const { return json::parse(body, nullptr, /*allow_exceptions=*/false); }

std::string HttpResult::Describe() const {
  if (status == 0) return "transport error: " + error;
  std::string s = "HTTP " + std::to_string(status);
  if (HasHeader("K8shmir-Outcome")) s += " outcome=" + Header("K8shmir-Outcome");
  if (HasHeader("K8shmir-Log-Index")) s += " log-index=" + Header("K8shmir-Log-Index");
  s += " body=" + (body.size() > 300 ? body.substr(0, 300) + "..." : body);
  return s;
}

struct HttpConnection::Impl {
  explicit Impl(uint16_t p) : port(p) {}

  HttpResult Request(std::string method, std::string target, std::string body, Headers headers,
                     std::chrono::milliseconds timeout) {
    HttpResult result;
    const auto deadline = Clock::now() + timeout;

    if (!stream) {
      stream.emplace(ioc);
      buffer.clear();
      ++opened;
      stream->expires_at(deadline);
      beast::error_code connect_ec;
      stream->async_connect(Loopback(port), [&](beast::error_code ec) { connect_ec = ec; });
      Run();
      if (connect_ec) {
        result.error = "connect to 127.0.0.1:" + std::to_string(port) + ": " + connect_ec.message();
        stream.reset();
        return result;
      }
    }

    http::request<http::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    req.set(http::field::user_agent, "k8shmir-test");
    req.body() = std::move(body);
    req.prepare_payload();
    for (const auto& [name, value] : headers) req.set(name, value);

    stream->expires_at(deadline);
    bool write_done = false;
    beast::error_code write_ec;
    bool read_done = false;
    beast::error_code read_ec;
    std::optional<http::response_parser<http::string_body>> parser;

    // The response is read while the request is written: a server may answer (413, 431) and stop
    // reading before the request is complete.
    std::function<void()> start_read = [&] {
      parser.emplace();
      parser->body_limit(kResponseBodyLimit);
      parser->header_limit(kResponseHeaderLimit);
      if (method == "HEAD") parser->skip(true);
      http::async_read(*stream, buffer, *parser, [&](beast::error_code ec, std::size_t) {
        if (!ec && parser->get().result_int() >= 100 && parser->get().result_int() < 200) {
          start_read();  // 1xx: the real response follows
          return;
        }
        read_done = true;
        read_ec = ec;
        if (!write_done) {
          // Answered before the request was fully sent: stop writing.
          beast::error_code ignored;
          stream->socket().cancel(ignored);
        }
      });
    };
    http::async_write(*stream, req, [&](beast::error_code ec, std::size_t) {
      write_done = true;
      write_ec = ec;
    });
    start_read();
    Run();

    if (read_ec) {
      result.error = "read: " + read_ec.message();
      if (write_ec) result.error += " (write: " + write_ec.message() + ")";
      stream.reset();
      return result;
    }
    const auto& res = parser->get();
    result.status = res.result_int();
    for (const auto& field : res) {
      result.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    result.body = res.body();
    if (!res.keep_alive() || write_ec || !write_done) stream.reset();
    return result;
  }

  void Run() {
    ioc.restart();
    ioc.run();
  }

  uint16_t port;
  asio::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  int opened = 0;
};

HttpConnection::HttpConnection(uint16_t port) : impl_(std::make_unique<Impl>(port)) {}
HttpConnection::~HttpConnection() = default;

HttpResult HttpConnection::Request(std::string method, std::string target, std::string body,
                                   Headers headers, std::chrono::milliseconds timeout) {
  return impl_->Request(std::move(method), std::move(target), std::move(body), std::move(headers),
                        timeout);
}

int HttpConnection::connections_opened() const { return impl_->opened; }

HttpResult Http(uint16_t port, std::string method, std::string target, std::string body,
                Headers headers, std::chrono::milliseconds timeout) {
  HttpConnection conn(port);
  return conn.Request(std::move(method), std::move(target), std::move(body), std::move(headers),
                      timeout);
}

std::string RawExchange(uint16_t port, std::string bytes, std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  std::string received;
  std::array<char, 16384> chunk;
  std::function<void()> read_more = [&] {
    stream.async_read_some(asio::buffer(chunk), [&](beast::error_code ec, std::size_t n) {
      received.append(chunk.data(), n);
      if (!ec) read_more();
    });
  };
  stream.async_connect(Loopback(port), [&](beast::error_code ec) {
    if (ec) return;
    asio::async_write(stream, asio::buffer(bytes), [](beast::error_code, std::size_t) {});
    read_more();
  });
  ioc.run();
  return received;
}

RawClient::RawClient(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

RawClient::~RawClient() { ::close(fd_); }

bool RawClient::Send(const std::string& bytes) {
  return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(bytes.size());
}

std::string RawClient::Read(const std::string& until, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (received_.find(until) == std::string::npos && !closed_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) break;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      break;
    }
    received_.append(buf, static_cast<std::size_t>(n));
  }
  return received_;
}

bool RawClient::ClosedWithin(std::chrono::milliseconds timeout) {
  Read("\x01never\x02", timeout);
  return closed_;
}

unsigned RawStatus(std::string_view response) {
  // "HTTP/1.1 400 ..."
  if (response.size() < 12 || response.substr(0, 5) != "HTTP/") return 0;
  size_t sp = response.find(' ');
  if (sp == std::string_view::npos || sp + 4 > response.size()) return 0;
  unsigned code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (response[i] < '0' || response[i] > '9') return 0;
    code = code * 10 + static_cast<unsigned>(response[i] - '0');
  }
  return code;
}

std::string RawHeader(std::string_view response, std::string_view name) {
  size_t head_end = response.find("\r\n\r\n");
  std::string_view head = response.substr(0, head_end);
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos) {
    size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    std::string_view line = head.substr(start, end == std::string_view::npos ? end : end - start);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && IEquals(line.substr(0, colon), name)) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
      }
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
      }
      return std::string(value);
    }
    pos = end;
  }
  return "";
}

double MetricSum(std::string_view metrics, std::string_view metric, std::string_view label) {
  double sum = -1;
  size_t pos = 0;
  while (pos < metrics.size()) {
    size_t end = metrics.find('\n', pos);
    if (end == std::string_view::npos) end = metrics.size();
    const std::string_view line = metrics.substr(pos, end - pos);
    pos = end + 1;
    if (line.substr(0, metric.size()) != metric || line.size() == metric.size()) continue;
    const char next = line[metric.size()];
    if (next != '{' && next != ' ') continue;  // another metric whose name starts alike
    const size_t value_at = line.rfind(' ');
    if (!label.empty() && line.substr(0, value_at).find(label) == std::string_view::npos) continue;
    sum = (sum < 0 ? 0 : sum) + std::stod(std::string(line.substr(value_at + 1)));
  }
  return sum;
}

}  // namespace k8shmir::testing
