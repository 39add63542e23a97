// How k8shmir lays its log out on etcd: one key per batch of entries, named
// "<prefix><batch id>.<entry count>", whose value is a k8shmir.v1.Batch. Entry i of a batch
// created at revision R has index R * 256 + i. Indices thus increase strictly along the log,
// keep gaps (other writes to etcd), and stay below 2^53 (exact in JavaScript) while R < 2^45.
// Every mapping between etcd revisions and log indices lives here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "k8shmir/log.h"
#include "k8shmir/result.h"

namespace k8shmir {

inline constexpr int kBatchPositionBits = 8;
static_assert((std::size_t{1} << kBatchPositionBits) == kMaxBatchEntries);
// Revisions from here on would give indices of 2^53 and more.
inline constexpr int64_t kMaxBatchRevision = int64_t{1} << (53 - kBatchPositionBits);

inline int64_t IndexOf(int64_t revision, int64_t position) {
  return (revision << kBatchPositionBits) + position;
}
inline int64_t RevisionOfIndex(int64_t index) { return index >> kBatchPositionBits; }
// The highest index a batch created at or before `revision` can have.
inline int64_t EndIndexOfRevision(int64_t revision) {
  return IndexOf(revision, static_cast<int64_t>(kMaxBatchEntries) - 1);
}

// "<batch id>.<count>".
std::string BatchKeySuffix(std::string_view batch_id, std::size_t count);
// The entry count a key suffix announces: 1 when it does not end in ".<1..256>" (not a batch of
// ours: the decoder turns it into one malformed record).
std::size_t BatchCountOfKey(std::string_view suffix);
// Index of the last entry of the batch stored under `suffix`, created at `revision`.
inline int64_t LastIndexOfBatch(int64_t revision, std::string_view suffix) {
  return IndexOf(revision, static_cast<int64_t>(BatchCountOfKey(suffix)) - 1);
}

// kInvalid when the batch is empty, has more than kMaxBatchEntries entries, or an empty id.
Result<std::string> EncodeBatch(std::vector<LogEntry> entries);

// Appends the records of the batch stored under `suffix` at `revision`. A value that is not a
// batch, or whose entry count differs from the key's, becomes one malformed record at the index
// the key announces last, so that every replica skips it alike and the log head stays reachable.
void DecodeBatch(int64_t revision, std::string_view suffix, const std::string& value,
                 std::vector<LogRecord>& out);

// Retention's marker: "<prefix without its last '/'>.trimmed", e.g. "/k8shmir/g/log.trimmed" for
// the log "/k8shmir/g/log/", outside the log's key range (it sorts just before it), so watches and
// range reads of the log never see it. Its value, {"trimmed_index": T}, says that entries with
// index <= T may have been deleted; it is written before anything is deleted. `prefix` ends
// with '/' (ValidateEtcdLogOptions).
std::string TrimmedMarkerKey(std::string_view prefix);
std::string EncodeTrimmedMarker(int64_t trimmed_index);
// kProtocol when `value` is not such a marker.
Result<int64_t> ParseTrimmedMarker(std::string_view value);

// The group's committed head: "<prefix without its last '/'>.head", beside the retention marker
// and outside the log's key range. The transaction that creates a batch also writes it, with the
// batch's entry count as its value, so its mod revision is the newest batch's revision and one
// linearizable read of this single key gives the group's last committed index, whatever the
// log's size (Log::ReadCommittedIndex).
std::string CommittedHeadKey(std::string_view prefix);
std::string EncodeCommittedHead(std::size_t count);
// The last index of the batch the head names (created at `mod_revision`); kProtocol when `value`
// is not an entry count of 1 to kMaxBatchEntries.
Result<int64_t> ParseCommittedHead(int64_t mod_revision, std::string_view value);

}  // namespace k8shmir
