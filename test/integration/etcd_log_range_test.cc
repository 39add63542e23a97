// EtcdLog::ReadRange on a real etcd: the live entries from an index, in log order, page by page
// at one revision, after the history was compacted; bounded pages; the retention marker.
#include <gtest/gtest.h>

#include "integration/etcd_log_fixture.h"

namespace k8shmir {
namespace {

using namespace std::chrono_literals;

Result<LogRange> ReadRangeSync(Log& log, int64_t from_index, int64_t revision) {
  auto result = Await<Result<LogRange>>(
      [&](std::function<void(Result<LogRange>)> done) {
        log.ReadRange(from_index, revision, std::chrono::steady_clock::now() + 5s, std::move(done));
      },
      10s);
  if (!result) return Error{ErrorCode::kInvalid, "no callback"};
  return std::move(*result);
}

// Every page from `from` to the end, as the replica reads them.
struct ReadAll {
  std::vector<LogRecord> records;
  std::vector<LogRange> pages;  // without their records
};
ReadAll ReadEverything(Log& log, int64_t from) {
  ReadAll all;
  int64_t revision = 0;
  for (int n = 0; n < 1000; ++n) {
    auto page = ReadRangeSync(log, from, revision);
    EXPECT_TRUE(page.ok()) << page.error().message;
    if (!page.ok()) break;
    for (auto& r : page->records) all.records.push_back(std::move(r));
    page->records.clear();
    all.pages.push_back(*page);
    if (!page->more) break;
    EXPECT_GT(page->next_index, from);
    from = page->next_index;
    revision = page->revision;
  }
  return all;
}

class EtcdLogRangeTest : public EtcdLogTest {
 protected:
  std::unique_ptr<EtcdLog> MakeLog(std::size_t page_keys, std::size_t page_bytes) {
    auto options = Options(EndpointList(*etcd_), "g");
    options.range_page_keys = page_keys;
    options.range_page_bytes = page_bytes;
    return std::make_unique<EtcdLog>(options);
  }
};

// Batch ids chosen so that key order is not log order: "z..." first, "a..." last.
TEST_F(EtcdLogRangeTest, ReadsTheLiveEntriesInLogOrderAfterCompaction) {
  auto log = MakeLog(/*page_keys=*/3, /*page_bytes=*/1 << 20);
  std::vector<ExpectedRecord> want;
  for (int b = 0; b < 10; ++b) {
    const std::string batch = std::string(1, static_cast<char>('z' - b)) + "-batch";
    const int n = 1 + b % 3;
    auto r = AppendBatchSync(*log, batch, Entries(batch, n));
    ASSERT_TRUE(r.ok()) << r.error().message;
    for (int i = 0; i < n; ++i) {
      const std::string id = batch + "-" + std::to_string(i);
      want.push_back({r->first_index + i, id, Value(id)});
    }
  }
  auto head = HeadSync(*log);
  ASSERT_TRUE(head.ok());
  ASSERT_TRUE(CompactSync(*log, head->revision).ok());

  // From the middle of a batch of three: its earlier entries are not returned.
  const std::size_t start = 3;  // batch 2's first entry; batch 2 has 3 entries
  ASSERT_EQ(RevisionOfIndex(want[start].index), RevisionOfIndex(want[start + 2].index));
  auto all = ReadEverything(*log, want[start + 1].index);
  ExpectRecords(all.records, std::vector<ExpectedRecord>(want.begin() + start + 1, want.end()));
  // Three keys per page: 8 keys from batch 2 on, so three pages, all at the first one's revision.
  ASSERT_EQ(all.pages.size(), 3u);
  for (const auto& page : all.pages) {
    EXPECT_EQ(page.revision, head->revision);
    EXPECT_EQ(page.trimmed_index, 0);
  }
  EXPECT_FALSE(all.pages.back().more);
  EXPECT_EQ(all.pages.back().end_index, EndIndexOfRevision(head->revision));

  // A subscription from the end of the read continues the log.
  Collector c;
  auto sub = log->Subscribe(all.pages.back().end_index + 1, c.Callback());
  auto next = AppendSync(*log, "after", Value("after"));
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(c.WaitRecords(1));
  EXPECT_EQ(c.Records()[0].index, next->first_index);
  EXPECT_TRUE(c.Violations().empty());
}

TEST_F(EtcdLogRangeTest, APageEndsAfterTheKeyThatFillsItsBytes) {
  auto log = MakeLog(/*page_keys=*/100, /*page_bytes=*/50 * 1024);
  std::vector<int64_t> indices;
  for (int i = 0; i < 6; ++i) {
    auto r = AppendBatchSync(*log, "big" + std::to_string(i), Entries("big", 1, 30 * 1024));
    ASSERT_TRUE(r.ok()) << r.error().message;
    indices.push_back(r->first_index);
  }
  auto all = ReadEverything(*log, 1);
  ASSERT_EQ(all.records.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(all.records[i].index, indices[i]);
  // 30 KiB values, 50 KiB pages: two keys per page.
  EXPECT_EQ(all.pages.size(), 3u);
}

TEST_F(EtcdLogRangeTest, TheRetentionMarkerIsReported) {
  auto log = MakeLog(4096, 8 << 20);
  auto a = AppendSync(*log, "a", Value("a"));
  ASSERT_TRUE(a.ok());
  RawPut(etcd_->Endpoint(0), TrimmedMarkerKey("/k8shmir/g/log/"),
         EncodeTrimmedMarker(a->first_index));
  auto page = ReadRangeSync(*log, 1, 0);
  ASSERT_TRUE(page.ok()) << page.error().message;
  EXPECT_EQ(page->trimmed_index, a->first_index);
  // The marker is not an entry of the log.
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].id, "a");
  Collector c;
  auto sub = log->Subscribe(1, c.Callback());
  ASSERT_TRUE(c.WaitProgress(a->first_index));
  EXPECT_EQ(c.Records().size(), 1u);

  RawPut(etcd_->Endpoint(0), TrimmedMarkerKey("/k8shmir/g/log/"), "not a marker");
  auto bad = ReadRangeSync(*log, 1, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kProtocol) << bad.error().message;
}

TEST_F(EtcdLogRangeTest, ACompactedPageRevisionIsReportedAsCompacted) {
  auto log = MakeLog(1, 8 << 20);
  ASSERT_TRUE(AppendSync(*log, "a", Value("a")).ok());
  ASSERT_TRUE(AppendSync(*log, "b", Value("b")).ok());
  auto first = ReadRangeSync(*log, 1, 0);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_TRUE(first->more);
  ASSERT_TRUE(AppendSync(*log, "c", Value("c")).ok());
  auto head = HeadSync(*log);
  ASSERT_TRUE(CompactSync(*log, head->revision).ok());
  auto second = ReadRangeSync(*log, first->next_index, first->revision);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kCompacted) << second.error().message;
  // At the current revision it reads on, and sees the newer entry too.
  auto all = ReadEverything(*log, first->next_index);
  ASSERT_EQ(all.records.size(), 2u);
  EXPECT_EQ(all.records[0].id, "b");
  EXPECT_EQ(all.records[1].id, "c");
}

}  // namespace
}  // namespace k8shmir
