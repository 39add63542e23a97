// Printing reports: text for people, JSON for scripts (one object per report; field names are
// documented in docs/kubernetes.md, "k8shmirctl", and kept stable).
#pragma once

#include <cstdint>
#include <string>

#include "ctl/assess.h"
#include "ctl/report.h"

namespace k8shmir::ctl {

std::string RenderStatusText(const GroupReport& report, const Verdict& verdict);
std::string RenderStatusJson(const GroupReport& report, const Verdict& verdict);
std::string RenderGroupsText(const GroupsReport& report, const Verdict& verdict);
std::string RenderGroupsJson(const GroupsReport& report, const Verdict& verdict);

// "512 B", "1.5 KiB", "2.0 GiB".
std::string HumanBytes(int64_t bytes);
// "850ms", "12s", "3m05s", "2h10m", "3d4h".
std::string HumanAge(int64_t ms);
// etcd's member ids as etcdctl prints them.
std::string MemberIdHex(uint64_t id);

}  // namespace k8shmir::ctl
