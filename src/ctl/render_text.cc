#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ctl/render.h"

namespace k8shmir::ctl {
namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = c == '-' ? ' ' : static_cast<char>(std::toupper(c));
  return s;
}

std::string Pad(const std::string& s, std::size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

std::string YesNo(std::optional<bool> b) { return !b ? "?" : *b ? "yes" : "no"; }

void PrintVerdict(std::ostream& out, const std::string& what, const ctl::Verdict& v) {
  out << what << ": " << Upper(v.name) << " (exit " << v.exit_code << ")\n";
  for (const auto& p : v.problems) out << "  - " << p << "\n";
}

void Etcd(std::ostream& out, const EtcdHealth& etcd) {
  std::size_t answered = 0;
  int64_t largest = 0;
  for (const auto& e : etcd.endpoints) {
    answered += e.reachable ? 1 : 0;
    if (e.reachable) largest = std::max(largest, e.db_size);
  }
  const uint64_t leader = AgreedLeader(etcd);
  out << "\nETCD: " << answered << " of " << etcd.endpoints.size() << " endpoints answered, "
      << (leader != 0 ? "leader " + MemberIdHex(leader) : std::string("no agreed leader"));
  if (etcd.members_known) out << ", " << etcd.members.size() << " members";
  out << "\n  " << Pad("ENDPOINT", 24) << Pad("MEMBER", 18) << Pad("LEADER", 8) << Pad("VERSION", 9)
      << Pad("DB SIZE", 11) << Pad("IN USE", 11) << "RAFT TERM/INDEX\n";
  for (const auto& e : etcd.endpoints) {
    out << "  " << Pad(e.endpoint, 24);
    if (!e.reachable) {
      out << "unreachable: " << e.error << "\n";
      continue;
    }
    std::string name = MemberIdHex(e.member_id);
    for (const auto& m : etcd.members) {
      if (m.id == e.member_id && !m.name.empty()) name = m.name;
    }
    out << Pad(name, 18)
        << Pad(e.leader == 0             ? "none"
               : e.leader == e.member_id ? "self"
                                         : "other",
               8)
        << Pad(e.version, 9) << Pad(HumanBytes(e.db_size), 11)
        << Pad(HumanBytes(e.db_size_in_use), 11) << e.raft_term << "/" << e.raft_index
        << (e.is_learner ? " (learner)" : "") << "\n";
  }
  out << "  database: largest " << HumanBytes(largest) << " of ";
  if (etcd.quota_bytes > 0) {
    out << HumanBytes(etcd.quota_bytes) << " quota (" << largest * 100 / etcd.quota_bytes
        << "%; the quota is --quota-backend-bytes, "
        << "etcd 3.4 does not report it)\n";
  } else {
    out << "an unknown quota\n";
  }
  out << "  alarms: ";
  if (!etcd.alarms_known) {
    out << "unknown (no member answered)\n";
  } else if (etcd.alarms.empty()) {
    out << "none\n";
  } else {
    for (std::size_t i = 0; i < etcd.alarms.size(); ++i) {
      out << (i ? ", " : "") << etcd.alarms[i].alarm << " on "
          << MemberIdHex(etcd.alarms[i].member_id);
    }
    out << "\n";
  }
}

}  // namespace

std::string MemberIdHex(uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(id));
  return buf;
}

std::string HumanBytes(int64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

std::string HumanAge(int64_t ms) {
  char buf[32];
  const int64_t s = ms / 1000;
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buf;
}

std::string RenderStatusText(const GroupReport& r, const ctl::Verdict& v) {
  std::ostringstream out;
  PrintVerdict(out, "group " + r.group, v);
  if (r.group_read) {
    out << "\nREPLICAS (" << r.replicas.size() << ")\n  " << Pad("ID", 20) << Pad("STATE", 22)
        << Pad("APPLIED", 14) << Pad("LAG", 7) << Pad("BEHIND", 10) << Pad("PIPELINING", 11)
        << Pad("SNAPSHOTS", 10) << Pad("RECORD AGE", 11) << "LAST ERROR\n";
    for (const auto& rep : r.replicas) {
      std::string id = rep.replica_id + (rep.replica_id == r.snapshot_taker ? " *" : "");
      const int64_t behind = std::max<int64_t>(0, r.log.last_index - rep.applied_index);
      std::string error = "-";
      if (!rep.last_error.empty()) {
        error = rep.last_error;
        if (rep.last_error_unix_ms > 0) {
          error += " (" + HumanAge(AgeMs(r.now_unix_ms, rep.last_error_unix_ms)) + " ago)";
        }
      }
      out << "  " << Pad(id, 20) << Pad(rep.state, 22) << Pad(std::to_string(rep.applied_index), 14)
          << Pad(rep.lag_entries ? std::to_string(*rep.lag_entries) : "?", 7)
          << Pad(std::to_string(behind), 10) << Pad(YesNo(rep.app_pipelining), 11)
          << Pad(YesNo(rep.app_snapshots), 10)
          << Pad(HumanAge(AgeMs(r.now_unix_ms, rep.updated_unix_ms)), 11) << error << "\n";
    }
    if (!r.snapshot_taker.empty()) out << "  (* takes the snapshots)\n";
    out << "  LAG: committed entries received and not applied; BEHIND: log index distance "
           "(not entries); ?: an older proxy\n";

    const auto& l = r.log;
    out << "\nLOG /k8shmir/" << r.group << "/log/\n  revision " << l.revision << ", last index "
        << l.last_index;
    if (l.committed_index != 0) out << " (committed head " << l.committed_index << ")";
    out << "\n  retained: ";
    if (l.keys == 0) {
      out << "empty";
    } else {
      out << "index " << l.first_index << " to " << l.last_index;
    }
    out << (l.trimmed_index > 0 ? ", trimmed through " + std::to_string(l.trimmed_index)
                                : std::string(", never trimmed"))
        << "; " << l.keys << " keys, "
        << (l.bytes ? HumanBytes(*l.bytes) : std::string("bytes not measured (--log-bytes)"))
        << "\n";

    out << "\nSNAPSHOTS";
    if (r.snapshots.empty()) out << ": none";
    out << "\n";
    for (const auto& s : r.snapshots) {
      out << "  index " << Pad(std::to_string(s.index), 14);
      if (!s.error.empty()) {
        out << "unreadable: " << s.error << "\n";
        continue;
      }
      out << Pad(HumanBytes(static_cast<int64_t>(s.size)), 11) << "taken "
          << HumanAge(AgeMs(r.now_unix_ms, s.taken_unix_ms)) << " ago by " << s.taker << "\n";
    }
  }
  Etcd(out, r.etcd);
  return out.str();
}

std::string RenderGroupsText(const GroupsReport& r, const ctl::Verdict& v) {
  std::ostringstream out;
  if (v.exit_code != kExitHealthy) PrintVerdict(out, "etcd", v);
  if (r.read) {
    if (r.groups.empty()) out << "no k8shmir groups on this etcd\n";
    if (!r.groups.empty()) {
      out << Pad("GROUP", 30) << Pad("FORMAT", 8) << Pad("REPLICAS", 10) << Pad("LOG KEYS", 10)
          << "LAST INDEX\n";
    }
    for (const auto& g : r.groups) {
      out << Pad(g.name, 30) << Pad(g.format ? std::to_string(*g.format) : "?", 8)
          << Pad(std::to_string(g.replicas), 10) << Pad(std::to_string(g.keys), 10) << g.last_index
          << "\n";
    }
  }
  return out.str();
}

}  // namespace k8shmir::ctl
