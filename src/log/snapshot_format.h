// How a group's snapshots are laid out on etcd, beside its log: under
// "<group>/snapshots/<index, 20 digits>/", the state in pieces "chunk-<n, 6 digits>" of at most
// kSnapshotChunkBytes, then "manifest", a JSON
// SnapshotManifest written last. Zero-padded indices make key order index order. Pure functions;
// the etcd calls are in snapshot_store.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "k8shmir/result.h"
#include "k8shmir/snapshot_store.h"

namespace k8shmir {

// Half of what the log itself needs etcd to accept (one entry is up to ~1.5 MiB): any etcd that
// takes the log takes the pieces.
inline constexpr std::size_t kSnapshotChunkBytes = 512 * 1024;

// "/k8shmir/g/snapshots/" for the log prefix "/k8shmir/g/log/" (its last path element replaced).
std::string SnapshotPrefixOf(std::string_view log_prefix);
// "<prefix><index, 20 digits>/": every key of one snapshot.
std::string SnapshotDir(std::string_view prefix, int64_t index);
std::string SnapshotChunkKey(std::string_view prefix, int64_t index, uint32_t chunk);
std::string SnapshotManifestKey(std::string_view prefix, int64_t index);
// The index of the snapshot a key under `prefix` belongs to, and whether it is its manifest;
// index -1 for a key that is not a snapshot's.
struct SnapshotKey {
  int64_t index = -1;
  bool manifest = false;
};
SnapshotKey ParseSnapshotKey(std::string_view prefix, std::string_view key);

std::string EncodeManifest(const SnapshotManifest& manifest);
// kProtocol when `value` is not a manifest (or is not the one for `index`).
Result<SnapshotManifest> ParseManifest(std::string_view value, int64_t index);

// Lowercase hex SHA-256.
std::string Sha256Hex(std::string_view data);
// How many pieces `size` bytes take (at least one: an empty state is one empty piece).
uint32_t ChunkCount(uint64_t size);

}  // namespace k8shmir
