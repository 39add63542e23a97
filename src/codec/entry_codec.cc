#include "codec/entry_codec.h"

#include <google/protobuf/arena.h>

#include <cstddef>
#include <random>

#include "k8shmir/entry.pb.h"  // generated from proto/k8shmir/entry.proto

namespace k8shmir {

std::string EncodeEntry(const Entry& entry) {
  k8shmir::v1::Entry pb;
  pb.set_request_id(entry.request_id);
  pb.set_origin(entry.origin);
  pb.set_method(entry.request.method);
  pb.set_target(entry.request.target);
  pb.set_http_version(entry.request.version);
  for (const auto& h : entry.request.headers) {
    auto* out = pb.add_headers();
    out->set_name(h.name);
    out->set_value(h.value);
  }
  pb.set_body(entry.request.body);
  pb.set_appended_unix_ms(entry.appended_unix_ms);
  return pb.SerializeAsString();
}

Result<Entry> DecodeEntry(std::string_view bytes) {
  // Every replica decodes every entry: parse into an arena that starts on the stack (one block
  // for a typical entry instead of a heap allocation per field), then move the strings out.
  alignas(std::max_align_t) char initial_block[2048];
  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = initial_block;
  arena_options.initial_block_size = sizeof initial_block;
  google::protobuf::Arena arena(arena_options);
  auto& pb = *google::protobuf::Arena::CreateMessage<k8shmir::v1::Entry>(&arena);
  if (!pb.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Error{ErrorCode::kProtocol, "entry is not a valid k8shmir.v1.Entry"};
  }
  if (pb.method().empty() || pb.target().empty()) {
    return Error{ErrorCode::kProtocol, "entry has no method or target"};
  }
  if (pb.http_version() != 10 && pb.http_version() != 11) {
    return Error{ErrorCode::kProtocol,
                 "entry has unsupported HTTP version " + std::to_string(pb.http_version())};
  }
  Entry e;
  e.request_id = std::move(*pb.mutable_request_id());
  e.origin = std::move(*pb.mutable_origin());
  e.appended_unix_ms = pb.appended_unix_ms();
  e.request.method = std::move(*pb.mutable_method());
  e.request.target = std::move(*pb.mutable_target());
  e.request.version = pb.http_version();
  e.request.headers.reserve(pb.headers_size());
  for (auto& h : *pb.mutable_headers()) {
    e.request.headers.push_back({std::move(*h.mutable_name()), std::move(*h.mutable_value())});
  }
  e.request.body = std::move(*pb.mutable_body());
  return e;
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  static const char* kHex = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t v = rng();
    for (int i = 0; i < 16; ++i) id[half * 16 + i] = kHex[(v >> (i * 4)) & 0xf];
  }
  return id;
}

}  // namespace k8shmir
