#include "log/snapshot_format.h"

#include <openssl/evp.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace k8shmir {

namespace {

std::string Padded(int64_t value, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*lld", width, static_cast<long long>(value));
  return buf;
}

}  // namespace

std::string SnapshotPrefixOf(std::string_view log_prefix) {
  std::string_view p = log_prefix;
  if (!p.empty() && p.back() == '/') p.remove_suffix(1);
  const auto slash = p.rfind('/');
  p = slash == std::string_view::npos ? std::string_view() : p.substr(0, slash + 1);
  return std::string(p) + "snapshots/";
}

std::string SnapshotDir(std::string_view prefix, int64_t index) {
  return std::string(prefix) + Padded(index, 20) + "/";
}

std::string SnapshotChunkKey(std::string_view prefix, int64_t index, uint32_t chunk) {
  return SnapshotDir(prefix, index) + "chunk-" + Padded(chunk, 6);
}

std::string SnapshotManifestKey(std::string_view prefix, int64_t index) {
  return SnapshotDir(prefix, index) + "manifest";
}

SnapshotKey ParseSnapshotKey(std::string_view prefix, std::string_view key) {
  SnapshotKey out;
  if (key.substr(0, prefix.size()) != prefix) return out;
  key.remove_prefix(prefix.size());
  if (key.size() < 21 || key[20] != '/') return out;
  int64_t index = -1;
  auto [ptr, ec] = std::from_chars(key.data(), key.data() + 20, index);
  if (ec != std::errc() || ptr != key.data() + 20 || index < 0) return out;
  out.index = index;
  out.manifest = key.substr(21) == "manifest";
  return out;
}

std::string EncodeManifest(const SnapshotManifest& m) {
  // Not the revision: it is the manifest key's own (its mod_revision), known once written.
  return nlohmann::json{{"format", 1},
                        {"index", m.index},
                        {"size", m.size},
                        {"chunks", m.chunks},
                        {"sha256", m.sha256},
                        {"taker", m.taker},
                        {"taken_unix_ms", m.taken_unix_ms}}
      .dump();
}

Result<SnapshotManifest> ParseManifest(std::string_view value, int64_t index) {
  auto j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) -> Result<SnapshotManifest> {
    return Error{ErrorCode::kProtocol,
                 "snapshot manifest at index " + std::to_string(index) + ": " + why};
  };
  if (!j.is_object()) return bad("not a JSON object");
  if (!j.contains("format") || j["format"] != 1) {
    return bad("unknown format " + j.value("format", nlohmann::json()).dump());
  }
  SnapshotManifest m;
  try {
    m.index = j.at("index").get<int64_t>();
    m.size = j.at("size").get<uint64_t>();
    m.chunks = j.at("chunks").get<uint32_t>();
    m.sha256 = j.at("sha256").get<std::string>();
    m.taker = j.value("taker", "");
    m.taken_unix_ms = j.value("taken_unix_ms", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
  if (m.index != index) return bad("it says index " + std::to_string(m.index));
  if (m.chunks != ChunkCount(m.size)) return bad("chunk count does not fit its size");
  if (m.sha256.size() != 64) return bad("not a SHA-256");
  return m;
}

std::string Sha256Hex(std::string_view data) {
  std::array<unsigned char, 32> digest{};
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

uint32_t ChunkCount(uint64_t size) {
  if (size == 0) return 1;
  return static_cast<uint32_t>((size + kSnapshotChunkBytes - 1) / kSnapshotChunkBytes);
}

}  // namespace k8shmir
