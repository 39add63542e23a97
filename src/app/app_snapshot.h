// The app's snapshot endpoint (README, "The app contract"): GET returns its whole state with the
// index header, PUT replaces it. Each call on a connection of its own. Internal to src/app; the
// public face is HttpApp::GetSnapshot / PutSnapshot.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <utility>  // boost/asio/awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <string>

#include "app/http_app.h"

namespace k8shmir {

// The snapshot in a GET answer: HTTP 200 and an index header holding an integer >= 0, else
// kProtocol (saying which).
Result<AppSnapshot> ParseSnapshotAnswer(unsigned status, const std::string* index_header,
                                        std::string body);

// Connects to the app, GETs its snapshot (at most `max_bytes` of body: kInvalid beyond), and
// closes the connection. Runs on `executor`.
boost::asio::awaitable<Result<AppSnapshot>> FetchAppSnapshot(boost::asio::any_io_executor executor,
                                                             HttpAppOptions options,
                                                             std::size_t max_bytes);

// Connects to the app, PUTs `snapshot`, and closes the connection. A 2xx answer is success; the
// caller then checks the app's last index.
boost::asio::awaitable<Status> StoreAppSnapshot(boost::asio::any_io_executor executor,
                                                HttpAppOptions options, AppSnapshot snapshot);

}  // namespace k8shmir
