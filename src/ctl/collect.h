// Reading a group's state (status) or the list of groups (groups) from etcd into reports. Never
// writes. Every call has the client's deadline; the members are asked their Status in parallel,
// so that a hung member costs one deadline, not one per call.
#pragma once

#include <string>

#include "ctl/etcd_client.h"
#include "ctl/options.h"
#include "ctl/report.h"

namespace k8shmir::ctl {

std::string GroupLogPrefix(const std::string& group);

EtcdHealth CollectEtcdHealth(const EtcdClient& client, int64_t quota_bytes);
GroupReport CollectStatus(const EtcdClient& client, const CtlOptions& options);
GroupsReport CollectGroups(const EtcdClient& client, const CtlOptions& options);

}  // namespace k8shmir::ctl
