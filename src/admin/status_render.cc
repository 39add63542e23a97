#include "admin/status_render.h"

#include "config/read_routes.h"
#include "k8shmir/log.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

namespace k8shmir {

namespace {

nlohmann::json ReadsJson(const ReplicaStatus& s) {
  nlohmann::json j = {{"pending", s.pending_reads},
                      {"barriers", s.read_barriers},
                      {"barrier_reads", s.read_barrier_reads},
                      {"appends", s.read_appends},
                      {"append_reads", s.read_append_reads},
                      {"barrier_failures", s.read_barrier_failures}};
  for (auto c : {ReadConsistency::kLinearizable, ReadConsistency::kLocal}) {
    nlohmann::json by_outcome = nlohmann::json::object();
    for (auto o : kAllReadOutcomes)
      by_outcome[ReadOutcomeName(o)] = s.reads[static_cast<int>(c)].Of(o);
    j[ReadConsistencyName(c)] = by_outcome;
  }
  return j;
}

nlohmann::json RejectionsJson(const ReplicaStatus& s) {
  nlohmann::json j = nlohmann::json::object();
  for (auto r : kAllRejections) j[RejectionName(r)] = s.Of(r);
  return j;
}

}  // namespace

std::string RenderStatusJson(const ReplicaStatus& s) {
  nlohmann::json j = {
      {"replica_id", s.replica_id},
      {"group", s.group},
      {"state", ReplicaStateName(s.state)},
      {"state_reason", s.state_reason},
      {"ready", s.Ready()},
      {"applied_index", s.applied_index},
      {"log_head", s.log_head},
      {"log_last_index", s.log_last_index},
      {"lag", s.Lag()},
      {"lag_entries", s.lag_entries},
      {"oldest_unapplied_age_seconds", s.oldest_unapplied_age_seconds},
      {"app_unanswered_seconds", s.app_unanswered_seconds},
      {"app_hung", s.AppHung()},
      {"last_error", s.last_error},
      {"last_error_unix_ms", s.last_error_unix_ms},
      {"pending_requests", s.pending_requests},
      {"queued_entries", s.queued_entries},
      {"queued_bytes", s.queued_bytes},
      {"pending_bytes", s.pending_bytes},
      {"app_contract_violations", s.app_contract_violations},
      {"app_stalls", s.app_stalls},
      {"watch_pauses", s.watch_pauses},
      {"range_catch_ups", s.range_catch_ups},
      {"log_full_refusals", s.log_full_refusals},
      {"entries_applied", s.entries_applied},
      {"entries_replayed", s.entries_replayed},
      {"entries_dropped", s.entries_dropped},
      {"recoveries", s.recoveries},
      {"last_recovery_ms", s.last_recovery_ms},
      {"app_pipelining", s.app_pipelining},
      {"app_snapshots", s.app_snapshots},
      {"app_pipeline_depth", s.app_pipeline_depth},
      {"watch_restarts", s.watch_restarts},
      {"log_appends", s.log_appends},
      {"log_appended_entries", s.log_appended_entries},
      {"retention",
       {{"state", s.retention},
        {"snapshot_taker", s.snapshot_taker},
        {"snapshot_taker_id", s.snapshot_taker_id},
        {"live_replicas", s.live_replicas},
        {"last_snapshot_index", s.last_snapshot_index},
        {"last_snapshot_started_unix_ms", s.last_snapshot_started_unix_ms},
        {"last_snapshot_unix_ms", s.last_snapshot_unix_ms},
        {"last_snapshot_bytes", s.last_snapshot_bytes},
        {"last_snapshot_ms", s.last_snapshot_ms},
        {"trimmed_index", s.trimmed_index},
        {"snapshot_error", s.snapshot_error},
        {"snapshots_taken", s.snapshots_taken},
        {"snapshots_too_large", s.snapshots_too_large},
        {"snapshot_failures", s.snapshot_failures},
        {"snapshots_restored", s.snapshots_restored},
        {"snapshots_rejected", s.snapshots_rejected},
        {"trims", s.trims},
        {"entries_trimmed", s.entries_trimmed}}},
      {"reads", ReadsJson(s)},
      {"requests",
       {{"committed", s.requests_committed},
        {"not_committed", s.requests_not_committed},
        {"unknown", s.requests_unknown}}},
      {"rejections", RejectionsJson(s)},
      {"app_call_errors", s.app_call_errors},
      {"app_call_timeouts", s.app_call_timeouts},
      {"etcd", {{"endpoint", s.etcd_endpoint}, {"failovers", s.etcd_failovers}}},
  };
  // null until etcd answered an alarm poll, then the raised alarms (usually none).
  nlohmann::json alarms = nullptr;
  if (s.etcd_alarms_known) {
    alarms = nlohmann::json::array();
    if (s.etcd_nospace_alarm) alarms.push_back("NOSPACE");
    if (s.etcd_corrupt_alarm) alarms.push_back("CORRUPT");
  }
  j["etcd"]["alarms"] = std::move(alarms);
  j["etcd"]["db_size_bytes"] =
      s.etcd_db_size_bytes < 0 ? nlohmann::json(nullptr) : nlohmann::json(s.etcd_db_size_bytes);
  j["etcd"]["leader_endpoint"] = s.etcd_leader_endpoint.empty()
                                     ? nlohmann::json(nullptr)
                                     : nlohmann::json(s.etcd_leader_endpoint);
  return j.dump() + "\n";
}

std::string PrometheusLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PrometheusFloat(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // The shortest text that reads back as the same double: a running sum of latencies grows past
  // the 6 significant digits an ostream prints by default (1.23457e+06), and rate() over such a
  // rounded sum is noise.
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return "NaN";  // cannot happen: 32 bytes hold any double
  return std::string(buf, end);
}

namespace {

// One histogram's series (several label sets of one metric share its HELP and TYPE lines).
void WriteHistogramSeries(std::ostringstream& out, const std::string& name,
                          const std::string& labels, const Histogram& h) {
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    cumulative += h.counts[i];
    out << name << "_bucket{" << labels << ",le=\"" << Histogram::kBounds[i] << "\"} " << cumulative
        << "\n";
  }
  cumulative += h.counts.back();
  out << name << "_bucket{" << labels << ",le=\"+Inf\"} " << cumulative << "\n";
  out << name << "_sum{" << labels << "} " << PrometheusFloat(h.sum) << "\n";
  out << name << "_count{" << labels << "} " << h.count << "\n";
}

void WriteHistogram(std::ostringstream& out, const std::string& name, const std::string& help,
                    const std::string& labels, const Histogram& h) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  WriteHistogramSeries(out, name, labels, h);
}

// Reads that skip the log: counts by consistency and outcome, latency, barriers.
void WriteReads(std::ostringstream& out, const std::string& labels, const ReplicaStatus& s) {
  constexpr ReadConsistency kConsistencies[] = {ReadConsistency::kLinearizable,
                                                ReadConsistency::kLocal};
  out << "# HELP k8shmir_reads_total Requests on read routes, served without the log, by "
         "consistency and outcome.\n"
      << "# TYPE k8shmir_reads_total counter\n";
  for (auto c : kConsistencies) {
    for (auto o : kAllReadOutcomes) {
      out << "k8shmir_reads_total{" << labels << ",consistency=\"" << ReadConsistencyName(c)
          << "\",outcome=\"" << ReadOutcomeName(o) << "\"} " << s.reads[static_cast<int>(c)].Of(o)
          << "\n";
    }
  }
  out << "# HELP k8shmir_read_latency_seconds Served reads, from arrival to answer.\n"
      << "# TYPE k8shmir_read_latency_seconds histogram\n";
  for (auto c : kConsistencies) {
    WriteHistogramSeries(out, "k8shmir_read_latency_seconds",
                         labels + ",consistency=\"" + ReadConsistencyName(c) + "\"",
                         s.reads[static_cast<int>(c)].latency);
  }
  out << "# HELP k8shmir_read_barriers_total Linearizable etcd reads of the committed index.\n"
      << "# TYPE k8shmir_read_barriers_total counter\n"
      << "k8shmir_read_barriers_total{" << labels << "} " << s.read_barriers << "\n"
      << "# HELP k8shmir_read_barrier_reads_total Linearizable reads answered by those barriers "
         "(divided by k8shmir_read_barriers_total: reads coalesced per etcd round trip).\n"
      << "# TYPE k8shmir_read_barrier_reads_total counter\n"
      << "k8shmir_read_barrier_reads_total{" << labels << "} " << s.read_barrier_reads << "\n"
      << "# HELP k8shmir_read_appends_total Appends whose transaction's committed head served "
         "as linearizable reads' barrier instead of an etcd read.\n"
      << "# TYPE k8shmir_read_appends_total counter\n"
      << "k8shmir_read_appends_total{" << labels << "} " << s.read_appends << "\n"
      << "# HELP k8shmir_read_append_reads_total Linearizable reads that rode those appends "
         "(reads per etcd round trip: (barrier reads + these) / (barriers + appends)).\n"
      << "# TYPE k8shmir_read_append_reads_total counter\n"
      << "k8shmir_read_append_reads_total{" << labels << "} " << s.read_append_reads << "\n"
      << "# HELP k8shmir_read_barrier_failures_total Barriers the log could not confirm.\n"
      << "# TYPE k8shmir_read_barrier_failures_total counter\n"
      << "k8shmir_read_barrier_failures_total{" << labels << "} " << s.read_barrier_failures << "\n"
      << "# HELP k8shmir_pending_reads Reads on read routes waiting.\n"
      << "# TYPE k8shmir_pending_reads gauge\n"
      << "k8shmir_pending_reads{" << labels << "} " << s.pending_reads << "\n";
  WriteHistogram(out, "k8shmir_read_barrier_latency_seconds",
                 "Time of one linearizable etcd read of the committed index.", labels,
                 s.read_barrier_latency);
}

// Every client answer: latency by outcome, status classes, rejections by reason, app errors.
void WriteAnswers(std::ostringstream& out, const std::string& labels, const ReplicaStatus& s) {
  out << "# HELP k8shmir_request_latency_seconds Client requests from arrival to answer, by "
         "outcome (\"read\": a request on a read route).\n"
      << "# TYPE k8shmir_request_latency_seconds histogram\n";
  for (std::size_t i = 0; i < std::size(kRequestOutcomeLabels); ++i) {
    WriteHistogramSeries(out, "k8shmir_request_latency_seconds",
                         labels + ",outcome=\"" + kRequestOutcomeLabels[i] + "\"",
                         s.request_latency[i]);
  }
  out << "# HELP k8shmir_responses_total Answers to clients by status class.\n"
      << "# TYPE k8shmir_responses_total counter\n";
  for (std::size_t i = 0; i < s.responses_by_class.size(); ++i) {
    out << "k8shmir_responses_total{" << labels << ",class=\"" << i + 1 << "xx\"} "
        << s.responses_by_class[i] << "\n";
  }
  out << "# HELP k8shmir_rejections_total Client requests refused without being committed, by "
         "reason.\n"
      << "# TYPE k8shmir_rejections_total counter\n";
  for (auto r : kAllRejections) {
    out << "k8shmir_rejections_total{" << labels << ",reason=\"" << RejectionName(r) << "\"} "
        << s.Of(r) << "\n";
  }
  out << "# HELP k8shmir_app_call_errors_total Calls to the app that failed (broken connection, "
         "malformed answer) or got no answer in time.\n"
      << "# TYPE k8shmir_app_call_errors_total counter\n"
      << "k8shmir_app_call_errors_total{" << labels << ",kind=\"failed\"} " << s.app_call_errors
      << "\n"
      << "k8shmir_app_call_errors_total{" << labels << ",kind=\"timeout\"} "
      << s.app_call_timeouts + s.app_stalls << "\n";
  out << "# HELP k8shmir_etcd_endpoint The etcd member calls go to first (value 1).\n"
      << "# TYPE k8shmir_etcd_endpoint gauge\n"
      << "k8shmir_etcd_endpoint{" << labels << ",endpoint=\""
      << PrometheusLabelValue(s.etcd_endpoint) << "\"} 1\n"
      << "# HELP k8shmir_etcd_failovers_total Times calls moved to another etcd member after a "
         "failure.\n"
      << "# TYPE k8shmir_etcd_failovers_total counter\n"
      << "k8shmir_etcd_failovers_total{" << labels << "} " << s.etcd_failovers << "\n"
      << "# HELP k8shmir_etcd_errors_total Failed etcd call attempts by kind (unavailable: "
         "certainly not applied; unknown: maybe applied; rejected: refused for good; no-leader).\n"
      << "# TYPE k8shmir_etcd_errors_total counter\n";
  for (std::size_t i = 0; i < s.etcd_errors.size(); ++i) {
    out << "k8shmir_etcd_errors_total{" << labels << ",kind=\"" << kLogErrorKinds[i] << "\"} "
        << s.etcd_errors[i] << "\n";
  }
  if (s.etcd_db_size_bytes >= 0) {
    out << "# HELP k8shmir_etcd_db_size_bytes The largest etcd member database, as etcd reported "
           "it last (its quota, --quota-backend-bytes, limits each member's).\n"
        << "# TYPE k8shmir_etcd_db_size_bytes gauge\n"
        << "k8shmir_etcd_db_size_bytes{" << labels << "} " << s.etcd_db_size_bytes << "\n";
  }
  // Absent until etcd answered a poll: 0 would claim to know there is no alarm.
  if (s.etcd_alarms_known) {
    out << "# HELP k8shmir_etcd_alarm An etcd alarm raised (1) or not (0), as etcd reported it "
           "last (NOSPACE: etcd refuses writes until an operator disarms it).\n"
        << "# TYPE k8shmir_etcd_alarm gauge\n"
        << "k8shmir_etcd_alarm{" << labels << ",alarm=\"NOSPACE\"} "
        << (s.etcd_nospace_alarm ? 1 : 0) << "\n"
        << "k8shmir_etcd_alarm{" << labels << ",alarm=\"CORRUPT\"} "
        << (s.etcd_corrupt_alarm ? 1 : 0) << "\n";
  }
}

}  // namespace

std::string RenderPrometheus(const ReplicaStatus& s) {
  std::ostringstream out;
  const std::string labels = "group=\"" + PrometheusLabelValue(s.group) + "\",replica=\"" +
                             PrometheusLabelValue(s.replica_id) + "\"";
  auto gauge = [&](const std::string& name, const std::string& help, auto value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n"
        << name << "{" << labels << "} " << value << "\n";
  };
  auto counter = [&](const std::string& name, const std::string& help, auto value) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n"
        << name << "{" << labels << "} " << value << "\n";
  };
  out << "# HELP k8shmir_requests_total Client requests by outcome.\n"
      << "# TYPE k8shmir_requests_total counter\n"
      << "k8shmir_requests_total{" << labels << ",outcome=\"committed\"} " << s.requests_committed
      << "\n"
      << "k8shmir_requests_total{" << labels << ",outcome=\"not-committed\"} "
      << s.requests_not_committed << "\n"
      << "k8shmir_requests_total{" << labels << ",outcome=\"unknown\"} " << s.requests_unknown
      << "\n";
  gauge("k8shmir_applied_index", "Log index of the last entry the app applied.", s.applied_index);
  gauge("k8shmir_log_head", "Newest log service revision seen.", s.log_head);
  gauge("k8shmir_log_last_index", "Newest entry index of the group seen.", s.log_last_index);
  gauge("k8shmir_lag", "Index distance between the newest entry and the app.", s.Lag());
  gauge("k8shmir_lag_entries",
        "Committed entries received from the log and not yet applied by the app.", s.lag_entries);
  gauge("k8shmir_app_unanswered_seconds",
        "Seconds the app has answered nothing the proxy asked of it (0: it answers).",
        PrometheusFloat(s.app_unanswered_seconds));
  gauge("k8shmir_oldest_unapplied_age_seconds",
        "Seconds since the oldest entry not yet applied arrived from the log (0: none waits).",
        PrometheusFloat(s.oldest_unapplied_age_seconds));
  gauge("k8shmir_pending_requests", "Client requests waiting for their entry.", s.pending_requests);
  gauge("k8shmir_pending_bytes", "Encoded entries of the client requests waiting, in bytes.",
        s.pending_bytes);
  gauge("k8shmir_queued_entries", "Committed entries waiting to be applied.", s.queued_entries);
  gauge("k8shmir_queued_bytes", "Committed entries waiting to be applied, in bytes.",
        s.queued_bytes);
  gauge("k8shmir_app_pipeline_depth",
        "Entries in flight to the app at most (above 1 only if it declares \"pipelining\").",
        s.app_pipeline_depth);
  out << "# HELP k8shmir_state Replica state (1 for the current one).\n"
      << "# TYPE k8shmir_state gauge\n";
  for (auto st : kAllReplicaStates) {
    out << "k8shmir_state{" << labels << ",state=\"" << ReplicaStateName(st) << "\"} "
        << (s.state == st ? 1 : 0) << "\n";
  }
  counter("k8shmir_entries_applied_total", "Entries applied to the app.", s.entries_applied);
  counter("k8shmir_entries_replayed_total", "Entries applied while catching up or recovering.",
          s.entries_replayed);
  counter("k8shmir_entries_dropped_total", "Duplicate, out-of-order or undecodable entries.",
          s.entries_dropped);
  counter("k8shmir_recoveries_total", "Recoveries from an app or forwarding failure.",
          s.recoveries);
  counter("k8shmir_watch_restarts_total", "Log watch streams re-created.", s.watch_restarts);
  counter("k8shmir_log_appends_total", "Append requests (batches of entries) sent to the log.",
          s.log_appends);
  counter("k8shmir_log_appended_entries_total", "Entries sent to the log in those batches.",
          s.log_appended_entries);
  counter("k8shmir_app_contract_violations_total",
          "Last-index answers whose index was not a number (null, missing, not JSON).",
          s.app_contract_violations);
  counter("k8shmir_app_stalls_total", "Entries the app did not answer within the app timeout.",
          s.app_stalls);
  counter("k8shmir_watch_pauses_total",
          "Log watch paused because the queue of entries to apply was full (entries or bytes).",
          s.watch_pauses);
  counter("k8shmir_log_full_refusals_total",
          "Appends the log refused for lack of space (etcd NOSPACE); none of them committed.",
          s.log_full_refusals);
  counter("k8shmir_range_catch_ups_total",
          "Catch-ups by reading the log's live keys because the watch history was compacted.",
          s.range_catch_ups);
  gauge("k8shmir_retention_on",
        "1 when the group's log is trimmed after snapshots; 0 when it grows (see /status).",
        s.retention == "on" ? 1 : 0);
  gauge("k8shmir_snapshot_taker", "1 on the replica that takes the group's snapshots.",
        s.snapshot_taker ? 1 : 0);
  gauge("k8shmir_live_replicas", "Replicas in the group's registry at the last refresh.",
        s.live_replicas);
  gauge("k8shmir_last_snapshot_index", "Log index of the newest snapshot taken or restored here.",
        s.last_snapshot_index);
  gauge("k8shmir_last_snapshot_bytes", "Size of the newest snapshot taken here.",
        s.last_snapshot_bytes);
  gauge("k8shmir_trimmed_index", "The group's trimmed point: entries at or below may be gone.",
        s.trimmed_index);
  counter("k8shmir_snapshots_taken_total", "Snapshots of the app taken and stored.",
          s.snapshots_taken);
  counter("k8shmir_snapshots_too_large_total",
          "Snapshots refused for exceeding the size limit (the log is then not trimmed).",
          s.snapshots_too_large);
  counter("k8shmir_snapshot_failures_total", "Snapshots that could not be taken or stored.",
          s.snapshot_failures);
  counter("k8shmir_snapshots_restored_total", "State transfers: snapshots put into the app.",
          s.snapshots_restored);
  counter("k8shmir_snapshots_rejected_total",
          "Stored snapshots refused as corrupt or incomplete when loaded.", s.snapshots_rejected);
  counter("k8shmir_trims_total", "Times this replica trimmed the group's log.", s.trims);
  counter("k8shmir_entries_trimmed_total", "Log entries deleted by this replica's trims.",
          s.entries_trimmed);
  counter("k8shmir_requests_over_byte_budget_total",
          "Client requests refused because the pending requests' bytes were at their limit.",
          s.requests_over_byte_budget);
  WriteHistogram(out, "k8shmir_append_latency_seconds", "Time to append an entry to the log.",
                 labels, s.append_latency);
  WriteHistogram(out, "k8shmir_apply_latency_seconds",
                 "Time from handing an entry to the app connection to its response (with "
                 "pipelining, includes the entries ahead of it).",
                 labels, s.apply_latency);
  WriteReads(out, labels, s);
  WriteAnswers(out, labels, s);
  return out.str();
}

}  // namespace k8shmir
