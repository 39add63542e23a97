// Unit tests of the etcd log's pure parts (key ranges, error classification, watch decoding, the
// timer queue) and of EtcdLog's behaviour when no etcd answers at all (a closed local port).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "log/batch_format.h"
#include "log/etcd_errors.h"
#include "log/etcd_log.h"
#include "log/timer_queue.h"
#include "log/watch_decoder.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;
using grpc::StatusCode;

// ---- PrefixRangeEnd ---------------------------------------------------------------------------

TEST(FirstEndpointFor, IsStableAndSpreadsReplicaIds) {
  EXPECT_EQ(FirstEndpointFor("anything", 0), 0u);
  EXPECT_EQ(FirstEndpointFor("anything", 1), 0u);
  // FNV-1a 64 of "" and "a" (published test vectors), modulo 3 and 1000.
  EXPECT_EQ(FirstEndpointFor("", 1000), 14695981039346656037ull % 1000);
  EXPECT_EQ(FirstEndpointFor("a", 1000), 0xaf63dc4c8601ec8cull % 1000);
  std::vector<int> hits(3);
  for (int i = 0; i < 300; ++i) {
    ++hits[FirstEndpointFor("orders-5d8f7c9b4-" + std::to_string(i), 3)];
  }
  for (int h : hits) EXPECT_GT(h, 60);  // 100 each if uniform
}

TEST(PrefixRangeEnd, IncrementsLastByte) {
  EXPECT_EQ(PrefixRangeEnd("/k8shmir/g/log/"), "/k8shmir/g/log0");
  EXPECT_EQ(PrefixRangeEnd("a"), "b");
  EXPECT_EQ(PrefixRangeEnd("aa"), "ab");
}

TEST(PrefixRangeEnd, DropsTrailingFF) {
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xfe\xff\xff", 4)), std::string("a\xff", 2));
}

TEST(PrefixRangeEnd, AllFFMeansEndOfKeyspace) {
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

// ---- ClassifyWriteFailure ---------------------------------------------------------------------

void ExpectClass(const RpcFailure& failure, FailureKind kind, ErrorCode code) {
  EXPECT_EQ(failure.kind, kind) << failure.message;
  EXPECT_EQ(failure.code, code) << failure.message;
}

TEST(ClassifyWriteFailure, RefusedBeforeProposal) {
  ExpectClass(ClassifyWriteFailure(StatusCode::UNAVAILABLE, "etcdserver: no leader"),
              FailureKind::kRefused, ErrorCode::kUnavailable);
  ExpectClass(ClassifyWriteFailure(StatusCode::UNAVAILABLE, "etcdserver: not capable"),
              FailureKind::kRefused, ErrorCode::kUnavailable);
  ExpectClass(
      ClassifyWriteFailure(StatusCode::UNAVAILABLE, "etcdserver: rpc not supported for learner"),
      FailureKind::kRefused, ErrorCode::kUnavailable);
  ExpectClass(ClassifyWriteFailure(StatusCode::RESOURCE_EXHAUSTED, "etcdserver: too many requests"),
              FailureKind::kRefused, ErrorCode::kUnavailable);
}

TEST(ClassifyWriteFailure, NeverSent) {
  ExpectClass(ClassifyWriteFailure(StatusCode::UNAVAILABLE,
                                   "failed to connect to all addresses; last error: UNKNOWN: "
                                   "ipv4:127.0.0.1:1: Failed to connect to remote host: "
                                   "Connection refused"),
              FailureKind::kRefused, ErrorCode::kUnavailable);
  ExpectClass(ClassifyWriteFailure(StatusCode::UNAVAILABLE,
                                   "DNS resolution failed for etcd-0.etcd:2379: C-ares status is "
                                   "not ARES_SUCCESS"),
              FailureKind::kRefused, ErrorCode::kUnavailable);
}

// Issue 10: the retry policy's two hints. Only the client-side "no connection" statuses say the
// call never left this process, and only etcd's own interceptor answer says "no leader".
TEST(RetryHints, NeverSentAndNoLeader) {
  EXPECT_TRUE(NeverSent(StatusCode::UNAVAILABLE,
                        "failed to connect to all addresses; last error: UNKNOWN: "
                        "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused"));
  EXPECT_TRUE(NeverSent(StatusCode::UNAVAILABLE, "DNS resolution failed for etcd-0.etcd:2379"));
  for (const char* message : {"Socket closed", "Connection reset by peer", "etcdserver: no leader",
                              "etcdserver: request timed out", ""}) {
    EXPECT_FALSE(NeverSent(StatusCode::UNAVAILABLE, message)) << message;
  }
  EXPECT_FALSE(NeverSent(StatusCode::DEADLINE_EXCEEDED, "failed to connect to all addresses"));

  EXPECT_TRUE(NoLeader(StatusCode::UNAVAILABLE, "etcdserver: no leader"));
  for (const char* message : {"no leader", "etcdserver: leader changed",
                              "etcdserver: request timed out, possibly due to previous leader "
                              "failure",
                              "Socket closed"}) {
    EXPECT_FALSE(NoLeader(StatusCode::UNAVAILABLE, message)) << message;
  }
  EXPECT_FALSE(NoLeader(StatusCode::UNKNOWN, "etcdserver: no leader"));
}

TEST(ClassifyWriteFailure, UnavailableAfterSendingIsAmbiguous) {
  for (const char* message :
       {"etcdserver: request timed out",
        "etcdserver: request timed out, possibly due to previous leader "
        "failure",
        "etcdserver: request timed out, possibly due to connection lost",
        "etcdserver: leader changed", "etcdserver: server stopped", "Socket closed",
        "Connection reset by peer", "keepalive watchdog timeout", "", "no leader"}) {
    ExpectClass(ClassifyWriteFailure(StatusCode::UNAVAILABLE, message), FailureKind::kAmbiguous,
                ErrorCode::kUnknown);
  }
}

TEST(ClassifyWriteFailure, OtherCodesAreAmbiguous) {
  for (auto code : {StatusCode::DEADLINE_EXCEEDED, StatusCode::CANCELLED, StatusCode::UNKNOWN,
                    StatusCode::INTERNAL, StatusCode::FAILED_PRECONDITION, StatusCode::ABORTED}) {
    ExpectClass(ClassifyWriteFailure(code, "etcdserver: no leader"), FailureKind::kAmbiguous,
                ErrorCode::kUnknown);
  }
  // The client's own limit on the response: etcd already applied the request.
  ExpectClass(ClassifyWriteFailure(StatusCode::RESOURCE_EXHAUSTED,
                                   "Received message larger than max (20000000 vs. 16777216)"),
              FailureKind::kAmbiguous, ErrorCode::kUnknown);
  ExpectClass(ClassifyWriteFailure(StatusCode::INVALID_ARGUMENT, "etcdserver: key not found"),
              FailureKind::kAmbiguous, ErrorCode::kUnknown);
}

TEST(ClassifyWriteFailure, Rejected) {
  ExpectClass(
      ClassifyWriteFailure(StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large"),
      FailureKind::kRejected, ErrorCode::kInvalid);
  ExpectClass(ClassifyWriteFailure(StatusCode::RESOURCE_EXHAUSTED,
                                   "grpc: received message larger than max (3000000 vs. 2097152)"),
              FailureKind::kRejected, ErrorCode::kInvalid);
}

TEST(ClassifyWriteFailure, MessageNamesTheCode) {
  EXPECT_EQ(ClassifyWriteFailure(StatusCode::UNAVAILABLE, "etcdserver: no leader").message,
            "UNAVAILABLE: etcdserver: no leader");
  EXPECT_EQ(DescribeGrpcStatus(StatusCode::DEADLINE_EXCEEDED, ""), "DEADLINE_EXCEEDED");
}

TEST(ClassifyCompactFailure, CompactedAndFuture) {
  ExpectClass(ClassifyCompactFailure(StatusCode::OUT_OF_RANGE,
                                     "etcdserver: mvcc: required revision has been compacted"),
              FailureKind::kRejected, ErrorCode::kCompacted);
  ExpectClass(ClassifyCompactFailure(StatusCode::OUT_OF_RANGE,
                                     "etcdserver: mvcc: required revision is a future revision"),
              FailureKind::kRejected, ErrorCode::kInvalid);
  ExpectClass(ClassifyCompactFailure(StatusCode::UNAVAILABLE, "etcdserver: no leader"),
              FailureKind::kRefused, ErrorCode::kUnavailable);
  ExpectClass(ClassifyCompactFailure(StatusCode::DEADLINE_EXCEEDED, ""), FailureKind::kAmbiguous,
              ErrorCode::kUnknown);
}

TEST(WatchStreamError, Codes) {
  EXPECT_EQ(WatchStreamError(StatusCode::UNAVAILABLE, "etcdserver: no leader").code,
            ErrorCode::kUnavailable);
  EXPECT_EQ(WatchStreamError(StatusCode::UNAVAILABLE, "etcdserver: no leader").message,
            "watch stream ended: UNAVAILABLE: etcdserver: no leader");
  EXPECT_EQ(WatchStreamError(StatusCode::OK, "").code, ErrorCode::kUnavailable);
  EXPECT_EQ(WatchStreamError(StatusCode::INTERNAL, "boom").code, ErrorCode::kUnknown);
}

// ---- Endpoints and options --------------------------------------------------------------------

TEST(NormalizeEndpoint, AcceptsHostPort) {
  EXPECT_EQ(NormalizeEndpoint("127.0.0.1:2379").value(), "127.0.0.1:2379");
  EXPECT_EQ(NormalizeEndpoint("http://etcd-0.etcd:2379/").value(), "etcd-0.etcd:2379");
  EXPECT_EQ(NormalizeEndpoint("[::1]:2379").value(), "[::1]:2379");
  // The scheme is dropped: TLS is decided by the log's TLS options (see etcd_credentials_test).
  EXPECT_EQ(NormalizeEndpoint("https://etcd-0.etcd:2379/").value(), "etcd-0.etcd:2379");
}

TEST(NormalizeEndpoint, Rejects) {
  for (const char* bad : {"grpcs://etcd:2379", "etcd", "etcd:", ":2379", "etcd:0", "etcd:70000",
                          "etcd:12ab", "unix://sock", "http://etcd:2379/path"}) {
    auto result = NormalizeEndpoint(bad);
    ASSERT_FALSE(result.ok()) << bad;
    EXPECT_EQ(result.error().code, ErrorCode::kInvalid) << bad;
  }
}

TEST(ValidateEtcdLogOptions, Rules) {
  EtcdLogOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  options.prefix = "/k8shmir/g/log/";
  EXPECT_TRUE(ValidateEtcdLogOptions(options).ok());
  auto no_prefix = options;
  no_prefix.prefix.clear();
  EXPECT_FALSE(ValidateEtcdLogOptions(no_prefix).ok());
  auto no_endpoint = options;
  no_endpoint.endpoints.clear();
  EXPECT_FALSE(ValidateEtcdLogOptions(no_endpoint).ok());
  auto bad_endpoint = options;
  bad_endpoint.endpoints.push_back("unix://x:1");
  EXPECT_FALSE(ValidateEtcdLogOptions(bad_endpoint).ok());
  auto https_without_tls = options;
  https_without_tls.endpoints.push_back("https://x:1");
  EXPECT_FALSE(ValidateEtcdLogOptions(https_without_tls).ok());
  auto missing_ca = options;
  missing_ca.tls.ca_file = "/nonexistent/ca.crt";
  EXPECT_FALSE(ValidateEtcdLogOptions(missing_ca).ok());
  EXPECT_THROW(EtcdLog{missing_ca}, std::invalid_argument);
  auto zero = options;
  zero.liveness_timeout = 0ms;
  EXPECT_FALSE(ValidateEtcdLogOptions(zero).ok());
  EXPECT_THROW(EtcdLog{no_prefix}, std::invalid_argument);
}

// ---- WatchDecoder -----------------------------------------------------------------------------

constexpr char kPrefix[] = "/k8shmir/g/log/";

etcdserverpb::WatchResponse Created(int64_t watch_id = 0, int64_t revision = 10) {
  etcdserverpb::WatchResponse r;
  r.mutable_header()->set_revision(revision);
  r.set_watch_id(watch_id);
  r.set_created(true);
  return r;
}

// A put of the raw key `prefix + key`.
void AddRawPut(etcdserverpb::WatchResponse& r, const std::string& key, int64_t create, int64_t mod,
               const std::string& value, const std::string& prefix = kPrefix) {
  auto* ev = r.add_events();
  ev->set_type(mvccpb::Event::PUT);
  ev->mutable_kv()->set_key(prefix + key);
  ev->mutable_kv()->set_create_revision(create);
  ev->mutable_kv()->set_mod_revision(mod);
  ev->mutable_kv()->set_version(mod == create ? 1 : 2);
  ev->mutable_kv()->set_value(value);
}

// A batch key holding `entries` (id, value), as EtcdLog::AppendBatch writes it.
void AddBatch(etcdserverpb::WatchResponse& r, const std::string& batch_id,
              std::vector<LogEntry> entries, int64_t create, int64_t mod) {
  std::size_t count = entries.size();
  auto value = EncodeBatch(std::move(entries));
  ASSERT_TRUE(value.ok());
  AddRawPut(r, BatchKeySuffix(batch_id, count), create, mod, *value);
}

// A batch of one entry named `id`.
void AddPut(etcdserverpb::WatchResponse& r, const std::string& id, int64_t create, int64_t mod,
            const std::string& value, const std::string& prefix = kPrefix) {
  auto encoded = EncodeBatch({LogEntry{id, value}});
  ASSERT_TRUE(encoded.ok());
  AddRawPut(r, BatchKeySuffix(id, 1), create, mod, *encoded, prefix);
}

// The index of the single entry of the batch created at `revision`.
int64_t At(int64_t revision) { return IndexOf(revision, 0); }

etcdserverpb::WatchResponse Events(int64_t revision, int64_t watch_id = 0) {
  etcdserverpb::WatchResponse r;
  r.mutable_header()->set_revision(revision);
  r.set_watch_id(watch_id);
  return r;
}

const LogBatch& AsBatch(const std::vector<LogEvent>& events) {
  EXPECT_EQ(events.size(), 1u);
  return std::get<LogBatch>(events.at(0));
}

TEST(WatchDecoder, CreatedThenBatch) {
  WatchDecoder d(kPrefix, At(5));
  EXPECT_TRUE(d.Feed(Created(7)).empty());
  EXPECT_TRUE(d.created());
  auto r = Events(12, 7);
  AddPut(r, "a", 5, 5, "va");
  AddPut(r, "b", 9, 9, "vb");
  auto events = d.Feed(r);
  const auto& batch = AsBatch(events);
  EXPECT_EQ(batch.revision, 12);
  ASSERT_EQ(batch.records.size(), 2u);
  EXPECT_EQ(batch.records[0].index, 1280);
  EXPECT_EQ(batch.records[0].id, "a");
  EXPECT_EQ(batch.records[0].value, "va");
  EXPECT_FALSE(batch.records[0].malformed);
  EXPECT_EQ(batch.records[1].index, 2304);
  EXPECT_EQ(batch.records[1].id, "b");
  EXPECT_EQ(d.delivered_index(), 2304);
}

TEST(WatchDecoder, DataBeforeCreatedIsAProtocolError) {
  WatchDecoder d(kPrefix, 1);
  auto r = Events(3);
  AddPut(r, "a", 3, 3, "v");
  auto events = d.Feed(r);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<LogClosed>(events[0]).error.code, ErrorCode::kProtocol);
  EXPECT_TRUE(d.closed());
  EXPECT_TRUE(d.Feed(Created()).empty());
}

TEST(WatchDecoder, ProgressNotification) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto events = d.Feed(Events(20));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<LogProgress>(events[0]).revision, 20);
  EXPECT_EQ(std::get<LogProgress>(events[0]).end_index, 20 * 256 + 255);
  EXPECT_EQ(d.progress_revision(), 20);
  // Not moving forward: nothing.
  EXPECT_TRUE(d.Feed(Events(20)).empty());
  EXPECT_TRUE(d.Feed(Events(19)).empty());
}

TEST(WatchDecoder, ManualProgressReplyOnlyProvesLiveness) {
  WatchDecoder d(kPrefix, 1);
  // May come before the creation response, too.
  EXPECT_TRUE(d.Feed(Events(30, -1)).empty());
  d.Feed(Created());
  EXPECT_TRUE(d.Feed(Events(31, -1)).empty());
  EXPECT_FALSE(d.closed());
  EXPECT_EQ(d.progress_revision(), 0);
}

// One catch-up response may carry 1,000 revisions of up to 1.5 MiB: its fragments are delivered
// as they come, so that the subscriber's byte bound holds (and pauses the watch) within one.
TEST(WatchDecoder, FragmentsAreDeliveredAsTheyCome) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto f1 = Events(50);
  f1.set_fragment(true);
  AddPut(f1, "a", 2, 2, "1");
  AddPut(f1, "b", 3, 3, "2");
  auto f2 = Events(50);
  f2.set_fragment(true);
  AddPut(f2, "c", 4, 4, "3");
  auto f3 = Events(50);
  AddPut(f3, "d", 7, 7, "4");
  auto first = d.Feed(f1);
  const auto& b1 = AsBatch(first);
  ASSERT_EQ(b1.records.size(), 2u);
  EXPECT_EQ(b1.records[0].id, "a");
  EXPECT_EQ(b1.records[1].id, "b");
  EXPECT_EQ(b1.revision, 50);
  auto second = d.Feed(f2);
  const auto& b2 = AsBatch(second);
  ASSERT_EQ(b2.records.size(), 1u);
  EXPECT_EQ(b2.records[0].index, At(4));
  auto third = d.Feed(f3);
  const auto& b3 = AsBatch(third);
  ASSERT_EQ(b3.records.size(), 1u);
  EXPECT_EQ(b3.records[0].id, "d");
  EXPECT_EQ(d.delivered_index(), At(7));
  // A repeat of a batch delivered in an earlier fragment is still recognised.
  auto again = Events(51);
  AddPut(again, "d", 7, 7, "4");
  EXPECT_TRUE(d.Feed(again).empty());
}

TEST(WatchDecoder, FinalFragmentMayBeEmpty) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto f1 = Events(50);
  f1.set_fragment(true);
  AddPut(f1, "a", 2, 2, "1");
  EXPECT_EQ(AsBatch(d.Feed(f1)).records.size(), 1u);
  // The empty last fragment ends the response; it is not a progress notification.
  EXPECT_TRUE(d.Feed(Events(50)).empty());
  EXPECT_EQ(d.progress_revision(), 0);
}

TEST(WatchDecoder, CompactionCloses) {
  WatchDecoder d(kPrefix, At(3));
  d.Feed(Created());
  auto r = Events(40);
  r.set_canceled(true);
  r.set_compact_revision(17);
  auto events = d.Feed(r);
  ASSERT_EQ(events.size(), 1u);
  const auto& closed = std::get<LogClosed>(events[0]);
  EXPECT_EQ(closed.error.code, ErrorCode::kCompacted);
  EXPECT_EQ(closed.compact_revision, 17);
  EXPECT_TRUE(d.closed());
  auto later = Events(41);
  AddPut(later, "x", 41, 41, "v");
  EXPECT_TRUE(d.Feed(later).empty());
}

TEST(WatchDecoder, FailedCreateCloses) {
  // etcd answers a create it cannot honour with watch_id -1, created and canceled.
  WatchDecoder d(kPrefix, 1);
  auto r = Created(-1);
  r.set_canceled(true);
  r.set_cancel_reason("mvcc: watcher range is empty");
  auto events = d.Feed(r);
  ASSERT_EQ(events.size(), 1u);
  const auto& closed = std::get<LogClosed>(events[0]);
  EXPECT_EQ(closed.error.code, ErrorCode::kUnavailable);
  EXPECT_EQ(closed.error.message, "etcd canceled the watch: mvcc: watcher range is empty");
  EXPECT_EQ(closed.compact_revision, 0);
}

TEST(WatchDecoder, SkipsOverwritesDeletionsForeignKeysAndRepeats) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto r1 = Events(5);
  AddPut(r1, "a", 2, 2, "1");
  AddRawPut(r1, "a.1", 2, 4, "overwritten");  // create != mod
  AddPut(r1, "z", 5, 5, "x", "/k8shmir/other/log/");
  auto* del = r1.add_events();
  del->set_type(mvccpb::Event::DELETE);
  del->mutable_kv()->set_key(std::string(kPrefix) + "a.1");
  del->mutable_kv()->set_mod_revision(5);
  auto events = d.Feed(r1);
  const auto& batch = AsBatch(events);
  ASSERT_EQ(batch.records.size(), 1u);
  EXPECT_EQ(batch.records[0].value, "1");

  auto r2 = Events(9);
  AddPut(r2, "a", 2, 2, "1");    // repeated
  AddPut(r2, "b", 1, 1, "old");  // back in time
  AddPut(r2, "c", 6, 6, "3");
  AddPut(r2, "d", 6, 6, "4");  // same revision as c: a foreign multi-key transaction
  AddPut(r2, "e", 8, 8, "5");
  events = d.Feed(r2);
  const auto& batch2 = AsBatch(events);
  ASSERT_EQ(batch2.records.size(), 2u);
  EXPECT_EQ(batch2.records[0].id, "c");
  EXPECT_EQ(batch2.records[1].id, "e");
  EXPECT_EQ(d.delivered_index(), At(8));

  // Nothing left after filtering: nothing delivered (not even an empty batch).
  auto r3 = Events(10);
  AddPut(r3, "e", 8, 8, "5");
  EXPECT_TRUE(d.Feed(r3).empty());
}

TEST(WatchDecoder, EntriesBeforeTheStartAreDropped) {
  WatchDecoder d(kPrefix, At(10));
  d.Feed(Created());
  auto r = Events(12);
  AddPut(r, "a", 9, 9, "1");
  AddPut(r, "b", 10, 10, "2");
  auto events = d.Feed(r);
  const auto& batch = AsBatch(events);
  ASSERT_EQ(batch.records.size(), 1u);
  EXPECT_EQ(batch.records[0].index, At(10));
}

TEST(WatchDecoder, BatchesExpandIntoConsecutiveIndices) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto r = Events(9);
  AddBatch(r, "x", {{"x", "1"}, {"y", "2"}, {"z", "3"}}, 7, 7);
  AddPut(r, "w", 9, 9, "4");
  auto events = d.Feed(r);
  const auto& batch = AsBatch(events);
  ASSERT_EQ(batch.records.size(), 4u);
  std::vector<std::pair<int64_t, std::string>> got;
  for (const auto& rec : batch.records) got.emplace_back(rec.index, rec.id + "=" + rec.value);
  EXPECT_EQ(got,
            (std::vector<std::pair<int64_t, std::string>>{
                {7 * 256, "x=1"}, {7 * 256 + 1, "y=2"}, {7 * 256 + 2, "z=3"}, {9 * 256, "w=4"}}));
  EXPECT_EQ(d.delivered_index(), 9 * 256);
}

TEST(WatchDecoder, AForeignMultiKeyTransactionKeepsTheAnnouncedHeadReachable) {
  // One foreign Txn put "y.1" and "x.3" at revision 3: Head() names x.3's last index, 3*256+2.
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto r = Events(3);
  AddPut(r, "y", 3, 3, "v");
  AddRawPut(r, "x.3", 3, 3, "whatever");
  AddRawPut(r, "w.2", 3, 3, "whatever");  // announces less than already delivered: nothing
  auto events = d.Feed(r);
  const auto& batch = AsBatch(events);
  ASSERT_EQ(batch.records.size(), 2u);
  EXPECT_EQ(batch.records[0].index, 3 * 256);
  EXPECT_EQ(batch.records[0].id, "y");
  EXPECT_FALSE(batch.records[0].malformed);
  EXPECT_EQ(batch.records[1].index, 3 * 256 + 2);
  EXPECT_EQ(batch.records[1].id, "x.3");
  EXPECT_TRUE(batch.records[1].malformed);
  EXPECT_EQ(d.delivered_index(), LastIndexOfBatch(3, "x.3"));
}

TEST(WatchDecoder, StartsInsideABatch) {
  // A replica that applied the first two entries of the batch at revision 7 resumes at its third.
  WatchDecoder d(kPrefix, 7 * 256 + 2);
  d.Feed(Created());
  auto r = Events(7);
  AddBatch(r, "x", {{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}}, 7, 7);
  auto events = d.Feed(r);
  const auto& batch = AsBatch(events);
  ASSERT_EQ(batch.records.size(), 2u);
  EXPECT_EQ(batch.records[0].index, 7 * 256 + 2);
  EXPECT_EQ(batch.records[0].id, "c");
  EXPECT_EQ(batch.records[1].index, 7 * 256 + 3);
  EXPECT_EQ(batch.records[1].id, "d");
}

TEST(WatchDecoder, ForeignValuesBecomeOneMalformedRecordAtTheAnnouncedLastIndex) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created());
  auto r = Events(6);
  AddRawPut(r, "plain-key", 3, 3, "not a batch \xff\xff");
  AddRawPut(r, "liar.3", 4, 4, *EncodeBatch({{"only", "one"}}));  // announces 3, holds 1
  AddPut(r, "ok", 6, 6, "v");
  auto events = d.Feed(r);
  const auto& batch = AsBatch(events);
  ASSERT_EQ(batch.records.size(), 3u);
  EXPECT_EQ(batch.records[0].index, 3 * 256);
  EXPECT_TRUE(batch.records[0].malformed);
  EXPECT_EQ(batch.records[0].value, "");
  EXPECT_EQ(batch.records[1].index, 4 * 256 + 2);
  EXPECT_TRUE(batch.records[1].malformed);
  EXPECT_EQ(batch.records[2].index, 6 * 256);
  EXPECT_FALSE(batch.records[2].malformed);
  EXPECT_EQ(batch.records[2].value, "v");
}

TEST(WatchDecoder, OtherWatchIdsAreIgnored) {
  WatchDecoder d(kPrefix, 1);
  d.Feed(Created(3));
  auto r = Events(5, 4);
  AddPut(r, "a", 5, 5, "1");
  EXPECT_TRUE(d.Feed(r).empty());
  EXPECT_FALSE(d.closed());
}

// ---- TimerQueue -------------------------------------------------------------------------------

TEST(TimerQueue, RunsInTimeOrderAndFifoForEqualTimes) {
  TimerQueue timer;
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> all;
  auto now = TimerQueue::Clock::now();
  auto add = [&](int v) {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(v);
    if (order.size() == 4) all.set_value();
  };
  timer.Schedule(now + 60ms, [&] { add(4); });
  timer.Schedule(now + 20ms, [&] { add(2); });
  timer.Schedule(now + 20ms, [&] { add(3); });
  timer.Post([&] { add(1); });
  ASSERT_EQ(all.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
}

TEST(TimerQueue, RunEverythingNow) {
  TimerQueue timer;
  std::promise<TimerQueue::Clock::time_point> ran;
  timer.Schedule(TimerQueue::Clock::now() + 1h, [&] { ran.set_value(TimerQueue::Clock::now()); });
  auto before = TimerQueue::Clock::now();
  timer.RunEverythingNow();
  auto future = ran.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_LT(future.get() - before, 5s);
}

TEST(TimerQueue, StopDropsPendingTasks) {
  auto flag = std::make_shared<int>(0);
  {
    TimerQueue timer;
    timer.Schedule(TimerQueue::Clock::now() + 1h, [flag] { *flag = 1; });
    timer.Stop();
    timer.Post([flag] { *flag = 2; });
  }
  EXPECT_EQ(*flag, 0);
  EXPECT_EQ(flag.use_count(), 1);  // the tasks were destroyed
}

// ---- EtcdLog without a reachable etcd ---------------------------------------------------------

// A loopback port nobody listens on (bound, then closed).
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

EtcdLogOptions DeadOptions() {
  EtcdLogOptions options;
  options.endpoints = {"127.0.0.1:" + std::to_string(ClosedPort()),
                       "127.0.0.1:" + std::to_string(ClosedPort())};
  options.prefix = "/k8shmir/unit/log/";
  options.rpc_timeout = 500ms;
  options.progress_interval = 200ms;
  options.liveness_timeout = 500ms;
  return options;
}

TEST(EtcdLogNoServer, AppendIsCertainlyNotCommitted) {
  EtcdLog log(DeadOptions());
  std::promise<Result<AppendResult>> promise;
  std::atomic<bool> in_call{true};
  auto caller = std::this_thread::get_id();
  std::atomic<bool> inline_call{false};
  auto start = std::chrono::steady_clock::now();
  log.Append("id-1", "v", start + 1s, [&](Result<AppendResult> r) {
    if (in_call && std::this_thread::get_id() == caller) inline_call = true;
    promise.set_value(std::move(r));
  });
  in_call = false;
  auto future = promise.get_future();
  ASSERT_EQ(future.wait_for(10s), std::future_status::ready);
  auto elapsed = std::chrono::steady_clock::now() - start;
  auto result = future.get();
  EXPECT_FALSE(inline_call);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kUnavailable) << result.error().message;
  EXPECT_LT(elapsed, 1500ms);
}

TEST(EtcdLogNoServer, ExpiredDeadlineAnswersOffTheCallersThread) {
  EtcdLog log(DeadOptions());
  std::promise<Result<LogHead>> promise;
  auto caller = std::this_thread::get_id();
  std::thread::id callee;
  log.Head(std::chrono::steady_clock::now() - 1s, [&](Result<LogHead> r) {
    callee = std::this_thread::get_id();
    promise.set_value(std::move(r));
  });
  auto future = promise.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto result = future.get();
  EXPECT_NE(callee, caller);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kUnavailable);
}

TEST(EtcdLogNoServer, EmptyIdIsInvalid) {
  EtcdLog log(DeadOptions());
  std::promise<Result<AppendResult>> promise;
  log.Append("", "v", std::chrono::steady_clock::now() + 1s,
             [&](Result<AppendResult> r) { promise.set_value(std::move(r)); });
  auto future = promise.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto result = future.get();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kInvalid);
}

TEST(EtcdLogNoServer, SubscriptionCloses) {
  EtcdLog log(DeadOptions());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<LogEvent> events;
  auto sub = log.Subscribe(1, [&](LogEvent e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(std::move(e));
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return !events.empty(); }));
  ASSERT_EQ(events.size(), 1u);
  const auto& closed = std::get<LogClosed>(events[0]);
  EXPECT_EQ(closed.error.code, ErrorCode::kUnavailable) << closed.error.message;
  // Nothing more after LogClosed.
  lock.unlock();
  std::this_thread::sleep_for(300ms);
  lock.lock();
  EXPECT_EQ(events.size(), 1u);
}

TEST(EtcdLogNoServer, DestructorCompletesPendingOperationsAndCancelsSubscriptions) {
  std::atomic<int> append_callbacks{0};
  std::atomic<int> events{0};
  std::unique_ptr<Subscription> sub;
  Result<AppendResult> last = Error{ErrorCode::kInvalid, "not called"};
  std::mutex mu;
  {
    EtcdLog log(DeadOptions());
    for (int i = 0; i < 5; ++i) {
      log.Append("id-" + std::to_string(i), "v", std::chrono::steady_clock::now() + 1h,
                 [&](Result<AppendResult> r) {
                   std::lock_guard<std::mutex> lock(mu);
                   last = std::move(r);
                   ++append_callbacks;
                 });
    }
    sub = log.Subscribe(1, [&](LogEvent) { ++events; });
    std::this_thread::sleep_for(50ms);
  }  // ~EtcdLog: every callback has run when it returns
  EXPECT_EQ(append_callbacks.load(), 5);
  ASSERT_FALSE(last.ok());
  // kUnknown if an attempt was in flight (it may have been sent) when shutdown cancelled it.
  EXPECT_TRUE(last.error().code == ErrorCode::kUnavailable ||
              last.error().code == ErrorCode::kUnknown)
      << last.error().message;
  // The subscription outlives the log; using its handle is harmless.
  sub->RequestProgress();
  sub->Cancel();
  sub.reset();
}

// Every attempt fails at once (both endpoints refuse), and the first retry of each operation comes
// without backoff (the other member is tried at once): the timer thread starts it while gRPC may
// still be running the failed attempt's callback. Before the fix the retry destroyed that
// attempt's ClientContext there, under the callback (TSan: the context's call freed on the timer
// thread racing gRPC's completion tag on the callback's thread); now the callback releases it.
TEST(EtcdLogNoServer, ImmediateRetriesLeaveEachAttemptsContextToItsCallback) {
  EtcdLog log(DeadOptions());
  constexpr int kCalls = 40;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int unavailable = 0;
  for (int i = 0; i < kCalls; ++i) {
    log.Head(std::chrono::steady_clock::now() + 300ms, [&](Result<LogHead> r) {
      std::lock_guard<std::mutex> lock(mu);
      if (!r.ok() && r.error().code == ErrorCode::kUnavailable) ++unavailable;
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return done == kCalls; }));
  EXPECT_EQ(unavailable, kCalls);
}

// A subscription made while the log is being destroyed (here from the callback of an operation
// that the destructor completes, on the log's timer thread) must be cancelled like the others:
// it delivers nothing, and the destructor neither waits for it nor leaves it running on a freed
// log. Before the fix the destructor cancelled only the sessions it had seen when it started:
// this one delivered its LogClosed after the destructor had begun (or, had the destructor won the
// race, touched the freed log: ASan's heap-use-after-free).
TEST(EtcdLogNoServer, SubscribingDuringTheDestructorDeliversNothing) {
  std::atomic<int> events{0};
  std::atomic<bool> head_done{false};
  std::unique_ptr<Subscription> late;
  std::mutex mu;
  auto log = std::make_unique<EtcdLog>(DeadOptions());
  EtcdLog* raw = log.get();
  // Retried (every endpoint refuses) until the destructor completes it.
  log->Head(std::chrono::steady_clock::now() + 1h, [&, raw](Result<LogHead> r) {
    EXPECT_FALSE(r.ok());
    auto sub = raw->Subscribe(1, [&](LogEvent) { ++events; });
    std::lock_guard<std::mutex> lock(mu);
    late = std::move(sub);
    head_done = true;
  });
  std::this_thread::sleep_for(100ms);
  auto start = std::chrono::steady_clock::now();
  log.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(head_done.load());
  // A watch on a refusing endpoint closes within milliseconds: its LogClosed would come now.
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(events.load(), 0);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_NE(late, nullptr);
  late->RequestProgress();  // harmless on a dead log
  late.reset();
  EXPECT_EQ(events.load(), 0);
}

}  // namespace
}  // namespace k8shmir
