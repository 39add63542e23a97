// Which request headers travel in a log entry. Hop-by-hop headers describe one connection, not
// the request, and must not be replayed to every replica; headers the proxy owns must not be
// forged by a client.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "k8shmir/http_message.h"

namespace k8shmir {

bool IEquals(std::string_view a, std::string_view b);

// Returns the end-to-end headers of `headers`, in order: without the RFC 9110 hop-by-hop set
// (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
// Proxy-Authorization, Proxy-Authenticate), without those named by Connection, without Expect
// and Content-Length (the proxy answers the first and recomputes the second), without
// `index_header` (a client must not choose the index the app sees) and without any K8shmir-*
// header (the proxy's own).
std::vector<HttpHeader> EndToEndHeaders(const std::vector<HttpHeader>& headers,
                                        std::string_view index_header);

}  // namespace k8shmir
