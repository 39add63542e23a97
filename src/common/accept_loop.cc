#include "common/accept_loop.h"

#include "common/logging.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace k8shmir {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

asio::awaitable<void> AcceptLoop(tcp::acceptor& acceptor, asio::io_context& ioc, std::string what,
                                 std::function<bool()> stopping,
                                 std::function<void(tcp::socket)> on_accept) {
  constexpr std::chrono::milliseconds kFirstPause{50};
  constexpr std::chrono::milliseconds kMaxPause{1000};
  std::chrono::milliseconds pause{0};
  uint64_t failures = 0;
  for (;;) {
    boost::system::error_code ec;
    auto strand = asio::make_strand(ioc);
    tcp::socket socket =
        co_await acceptor.async_accept(strand, asio::redirect_error(asio::use_awaitable, ec));
    if (stopping() || !acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
    if (!ec) {
      if (failures > 0) {
        LogLine(spdlog::level::info, "accept works again",
                {{"listener", what}, {"failures", failures}});
        failures = 0;
      }
      pause = std::chrono::milliseconds(0);
      on_accept(std::move(socket));
      continue;
    }
    pause = pause.count() == 0 ? kFirstPause : std::min(pause * 2, kMaxPause);
    // Logged on the first failure and then once a second at most (the pause is capped at 1 s).
    if (failures++ == 0 || pause == kMaxPause) {
      LogLine(spdlog::level::warn, "accept failed; trying again after a pause",
              {{"listener", what},
               {"failures", failures},
               {"error", ec.message()},
               {"retry_ms", pause.count()}});
    }
    asio::steady_timer timer(acceptor.get_executor(), pause);
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace k8shmir
