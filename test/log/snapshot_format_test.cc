// The snapshot layout: keys in index order, manifests, pieces, SHA-256.
#include "log/snapshot_format.h"

#include <gtest/gtest.h>

namespace k8shmir {
namespace {

TEST(SnapshotFormatTest, KeysSortInIndexOrderAndParseBack) {
  const std::string prefix = SnapshotPrefixOf("/k8shmir/g/log/");
  EXPECT_EQ(prefix, "/k8shmir/g/snapshots/");
  EXPECT_EQ(SnapshotManifestKey(prefix, 512), "/k8shmir/g/snapshots/00000000000000000512/manifest");
  EXPECT_EQ(SnapshotChunkKey(prefix, 512, 3),
            "/k8shmir/g/snapshots/00000000000000000512/chunk-000003");
  EXPECT_LT(SnapshotManifestKey(prefix, 999), SnapshotChunkKey(prefix, 1000, 0));
  auto m = ParseSnapshotKey(prefix, SnapshotManifestKey(prefix, 512));
  EXPECT_EQ(m.index, 512);
  EXPECT_TRUE(m.manifest);
  auto c = ParseSnapshotKey(prefix, SnapshotChunkKey(prefix, 7, 1));
  EXPECT_EQ(c.index, 7);
  EXPECT_FALSE(c.manifest);
  EXPECT_EQ(ParseSnapshotKey(prefix, "/k8shmir/g/log/x.1").index, -1);
  EXPECT_EQ(ParseSnapshotKey(prefix, prefix + "12/manifest").index, -1);
}

TEST(SnapshotFormatTest, ManifestsRoundTripAndBadOnesAreProtocolErrors) {
  SnapshotManifest m;
  m.index = 4096;
  m.size = 3 * kSnapshotChunkBytes + 1;
  m.chunks = 4;
  m.sha256 = Sha256Hex("x");
  m.taker = "r1";
  m.taken_unix_ms = 1700000000000;
  auto back = ParseManifest(EncodeManifest(m), 4096);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->size, m.size);
  EXPECT_EQ(back->chunks, 4u);
  EXPECT_EQ(back->sha256, m.sha256);
  EXPECT_EQ(back->taker, "r1");
  EXPECT_EQ(ParseManifest(EncodeManifest(m), 4095).error().code, ErrorCode::kProtocol);
  m.chunks = 3;
  EXPECT_FALSE(ParseManifest(EncodeManifest(m), 4096).ok());
  EXPECT_FALSE(ParseManifest("{\"format\": 2}", 1).ok());
  EXPECT_FALSE(ParseManifest("garbage", 1).ok());
}

TEST(SnapshotFormatTest, Sha256AndChunkCount) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ChunkCount(0), 1u);
  EXPECT_EQ(ChunkCount(1), 1u);
  EXPECT_EQ(ChunkCount(kSnapshotChunkBytes), 1u);
  EXPECT_EQ(ChunkCount(kSnapshotChunkBytes + 1), 2u);
}

}  // namespace
}  // namespace k8shmir
