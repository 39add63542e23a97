// Plain HTTP message values exchanged between k8shmir's modules. They carry no I/O state, so the
// replica logic can be tested without sockets.
#pragma once

#include <string>
#include <vector>

namespace k8shmir {

struct HttpHeader {
  std::string name;
  std::string value;
};

// A client request as it is replicated: only end-to-end headers, complete body.
struct HttpRequest {
  std::string method;
  std::string target;
  unsigned version = 11;  // 10 or 11
  std::vector<HttpHeader> headers;
  std::string body;
};

struct HttpResponse {
  unsigned status = 0;
  unsigned version = 11;
  std::vector<HttpHeader> headers;
  std::string body;
};

}  // namespace k8shmir
