// Turns a callback-style operation into an Asio asynchronous operation (so a coroutine can
// co_await it), resuming the waiter on its own executor whatever thread the callback runs on.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <functional>
#include <memory>

namespace k8shmir {

// `start` receives a std::function<void(Value)> to call exactly once; it is called before this
// returns. Pass it as a named local: g++ 12 miscompiles lambdas with non-trivial captures built
// inside a co_await expression (they are destroyed twice), so nothing non-trivial is copied here.
template <class Value, class Start, class Token>
auto AsyncFromCallback(Start& start, Token&& token) {
  return boost::asio::async_initiate<Token, void(Value)>(
      [](auto handler, Start* start) {
        using Handler = decltype(handler);
        // std::function needs a copyable target; the handler is move-only.
        auto shared = std::make_shared<Handler>(std::move(handler));
        auto work = std::make_shared<
            boost::asio::executor_work_guard<boost::asio::associated_executor_t<Handler>>>(
            boost::asio::get_associated_executor(*shared));
        (*start)(std::function<void(Value)>([shared, work](Value v) {
          auto ex = work->get_executor();
          boost::asio::dispatch(ex, [shared, work, v = std::move(v)]() mutable {
            (*shared)(std::move(v));
            work->reset();
          });
        }));
      },
      token, &start);
}

}  // namespace k8shmir
