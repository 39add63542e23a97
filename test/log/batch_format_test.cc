// The log's layout on etcd: batch keys, batch values and the revision <-> index mapping.
#include "log/batch_format.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

TEST(BatchFormat, IndexMapping) {
  EXPECT_EQ(IndexOf(1, 0), 256);
  EXPECT_EQ(IndexOf(7, 3), 7 * 256 + 3);
  EXPECT_EQ(RevisionOfIndex(7 * 256 + 3), 7);
  EXPECT_EQ(RevisionOfIndex(7 * 256), 7);
  EXPECT_EQ(RevisionOfIndex(1), 0);
  EXPECT_EQ(EndIndexOfRevision(7), 7 * 256 + 255);
  // The last revision k8shmir can index still gives indices below 2^53.
  EXPECT_EQ(EndIndexOfRevision(kMaxBatchRevision - 1), (int64_t{1} << 53) - 1);
}

TEST(BatchFormat, KeySuffixCarriesTheEntryCount) {
  EXPECT_EQ(BatchKeySuffix("abc", 1), "abc.1");
  EXPECT_EQ(BatchKeySuffix("abc", 256), "abc.256");
  EXPECT_EQ(BatchCountOfKey("abc.1"), 1u);
  EXPECT_EQ(BatchCountOfKey("abc.17"), 17u);
  EXPECT_EQ(BatchCountOfKey("a.b.256"), 256u);
  EXPECT_EQ(LastIndexOfBatch(9, "abc.17"), 9 * 256 + 16);
}

TEST(BatchFormat, KeysOfOthersCountAsOne) {
  for (const char* key : {"abc", "abc.", ".5", "abc.0", "abc.257", "abc.05", "abc.1x", "abc.-1",
                          "abc.99999999999999999999"}) {
    EXPECT_EQ(BatchCountOfKey(key), 1u) << key;
  }
}

TEST(BatchFormat, EncodeDecodeRoundTrip) {
  auto value = EncodeBatch({{"r1", "first"}, {"r2", std::string("\0\xff", 2)}, {"r3", ""}});
  ASSERT_TRUE(value.ok());
  std::vector<LogRecord> out;
  DecodeBatch(12, "r1.3", *value, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].index, 12 * 256);
  EXPECT_EQ(out[0].id, "r1");
  EXPECT_EQ(out[0].value, "first");
  EXPECT_EQ(out[1].index, 12 * 256 + 1);
  EXPECT_EQ(out[1].value, std::string("\0\xff", 2));
  EXPECT_EQ(out[2].index, 12 * 256 + 2);
  EXPECT_EQ(out[2].id, "r3");
  EXPECT_EQ(out[2].value, "");
  for (const auto& r : out) EXPECT_FALSE(r.malformed);
}

TEST(BatchFormat, EncodeRefusesWhatCannotBeABatch) {
  EXPECT_EQ(EncodeBatch({}).error().code, ErrorCode::kInvalid);
  EXPECT_EQ(EncodeBatch({{"", "v"}}).error().code, ErrorCode::kInvalid);
  std::vector<LogEntry> many(kMaxBatchEntries + 1, LogEntry{"id", "v"});
  auto too_many = EncodeBatch(many);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(too_many.error().message, "a batch holds at most 256 entries, not 257");
  std::vector<LogEntry> full(kMaxBatchEntries, LogEntry{"id", "v"});
  EXPECT_TRUE(EncodeBatch(full).ok());
}

TEST(BatchFormat, MalformedValuesBecomeOneSkippableRecord) {
  std::vector<LogRecord> out;
  DecodeBatch(5, "foreign", "\xff\xff\xff", out);
  auto one = EncodeBatch({{"a", "1"}});
  DecodeBatch(6, "x.4", *one, out);  // the key announces 4 entries, the value holds 1
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].index, 5 * 256);
  EXPECT_EQ(out[0].id, "foreign");
  EXPECT_TRUE(out[0].malformed);
  EXPECT_EQ(out[1].index, 6 * 256 + 3);
  EXPECT_TRUE(out[1].malformed);
  EXPECT_EQ(out[1].value, "");
}

}  // namespace
}  // namespace k8shmir

namespace k8shmir {
namespace {

TEST(BatchFormat, CommittedHeadNamesTheLastEntryOfItsBatch) {
  EXPECT_EQ(CommittedHeadKey("/k8shmir/g/log/"), "/k8shmir/g/log.head");
  EXPECT_EQ(EncodeCommittedHead(5), "5");
  EXPECT_EQ(*ParseCommittedHead(10, "1"), IndexOf(10, 0));
  EXPECT_EQ(*ParseCommittedHead(10, "256"), IndexOf(10, 255));
  for (const char* bad : {"", "0", "257", "-1", "5x", " 5", "five"}) {
    auto r = ParseCommittedHead(10, bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kProtocol) << bad;
  }
  EXPECT_FALSE(ParseCommittedHead(0, "1"));
}

}  // namespace
}  // namespace k8shmir
