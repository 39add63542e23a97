// How a group's shared records are laid out on etcd, beside its log ("/k8shmir/<g>/log/") and
// snapshots ("/k8shmir/<g>/snapshots/"): the format marker "/k8shmir/<g>/format", one record per
// live replica under "/k8shmir/<g>/replicas/<replica id>" and the snapshot taker's key
// "/k8shmir/<g>/snapshot-taker" (its value the holder's id), both attached to the holder's lease.
// Pure functions; the etcd calls are in group_registry.cc.
#pragma once

#include <string>
#include <string_view>

#include "k8shmir/group_registry.h"
#include "k8shmir/result.h"

namespace k8shmir {

// "/k8shmir/g/" for the log prefix "/k8shmir/g/log/" (its last path element removed).
std::string GroupRootOf(std::string_view log_prefix);
std::string GroupFormatKey(std::string_view log_prefix);
std::string ReplicaRegistryPrefix(std::string_view log_prefix);
std::string SnapshotTakerKey(std::string_view log_prefix);

// {"format": N}
std::string EncodeGroupFormat(int format);
// kProtocol when `value` is not a format marker.
Result<int> ParseGroupFormat(std::string_view value);

std::string EncodeReplicaRecord(const ReplicaRecord& record);
// kProtocol when `value` is not a record.
Result<ReplicaRecord> ParseReplicaRecord(std::string_view value);

}  // namespace k8shmir
