// The snapshot endpoints of the example app (counter-app: GET and PUT /snapshot), through the
// proxy's HttpApp: a snapshot taken from one app and given to an empty one makes the second hold
// exactly the first one's state and index, and go on from there like it.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <optional>
#include <string>

#include "app/http_app.h"
#include "support/http_client.h"
#include "support/ports.h"
#include "support/process.h"
#include "support/replicated_cluster.h"
#include "support/util.h"

namespace k8shmir::testing {
namespace {

using namespace std::chrono_literals;

// A scratch directory for the apps' logs, removed with the test.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) : path_(MakeTempDir(prefix)) {}
  ~ScratchDir() { RemoveTree(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class CounterApp {
 public:
  explicit CounterApp(const std::filesystem::path& dir, const std::string& name,
                      std::vector<std::string> extra = {})
      : port_(FreePort()) {
    std::vector<std::string> args = {kCounterBin, "--host", "127.0.0.1", "--port",
                                     std::to_string(port_)};
    args.insert(args.end(), extra.begin(), extra.end());
    process_.Start(args, {}, dir / (name + ".log"));
    EXPECT_TRUE(
        WaitFor([&] { return Http(port_, "GET", "/last-index", "", {}, 1s).status == 200; }, 10s));
  }
  uint16_t port() const { return port_; }
  // A replicated request, as a proxy would send it.
  void Apply(const std::string& path, const std::string& body, int64_t index) {
    auto r = Http(port_, "POST", path, body, {{"Log-Index", std::to_string(index)}}, 5s);
    ASSERT_EQ(r.status, 200u) << r.Describe();
  }
  json Digest() { return Http(port_, "GET", "/journal/digest", "", {}, 5s).Json(); }

 private:
  uint16_t port_;
  ChildProcess process_;
};

template <class T>
T Wait(boost::asio::io_context& ioc, std::optional<T>& result) {
  ioc.restart();
  for (int i = 0; i < 2000 && !result; ++i) ioc.run_for(5ms);
  EXPECT_TRUE(result.has_value());
  return result ? std::move(*result) : T(Error{ErrorCode::kUnknown, "no result"});
}

TEST(AppSnapshot, ACounterSnapshotRestoredIntoAnEmptyAppGivesTheSameStateAndIndex) {
  ScratchDir dir("app-snapshot");
  CounterApp source(dir.path(), "source");
  CounterApp target(dir.path(), "target");
  source.Apply("/integer", R"({"op":"SET","value":7})", 256);
  source.Apply("/journal", "first", 512);
  source.Apply("/integer", R"({"op":"MUL","value":6})", 768);
  source.Apply("/integer/reset", "", 1024);
  source.Apply("/integer", R"({"op":"INC","value":5})", 1280);

  boost::asio::io_context ioc;
  HttpAppOptions options;
  options.port = source.port();
  HttpApp from(ioc.get_executor(), options);
  std::optional<Result<AppIndex>> declared;
  from.LastIndex([&](Result<AppIndex> r) { declared = std::move(r); });
  auto index = Wait(ioc, declared);
  ASSERT_TRUE(index.ok()) << index.error().message;
  EXPECT_TRUE(index->snapshots);
  EXPECT_EQ(index->index, 1280);

  std::optional<Result<AppSnapshot>> got;
  from.GetSnapshot(1 << 20, [&](Result<AppSnapshot> r) { got = std::move(r); });
  auto snapshot = Wait(ioc, got);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
  EXPECT_EQ(snapshot->index, 1280);

  options.port = target.port();
  HttpApp to(ioc.get_executor(), options);
  std::optional<Status> put;
  to.PutSnapshot(*snapshot, [&](Status s) { put = std::move(s); });
  auto stored = Wait(ioc, put);
  ASSERT_TRUE(stored.ok()) << stored.error().message;

  json a = source.Digest();
  json b = target.Digest();
  EXPECT_EQ(b["last_index"], 1280);
  EXPECT_EQ(b["value"], 5);
  EXPECT_EQ(b["count"], 5);
  EXPECT_EQ(a["hash"], b["hash"]);
  // Both go on alike; an index not above the restored one is refused as stale.
  source.Apply("/integer", R"({"op":"MUL","value":3})", 1536);
  target.Apply("/integer", R"({"op":"MUL","value":3})", 1536);
  EXPECT_EQ(source.Digest(), target.Digest());
  auto stale = Http(target.port(), "POST", "/journal", "late", {{"Log-Index", "1280"}}, 5s);
  EXPECT_EQ(stale.status, 409u) << stale.Describe();
}

TEST(AppSnapshot, AnAppWithoutSnapshotsDoesNotDeclareThem) {
  ScratchDir dir("app-no-snapshot");
  CounterApp app(dir.path(), "plain", {"--no-snapshots"});
  boost::asio::io_context ioc;
  HttpAppOptions options;
  options.port = app.port();
  HttpApp client(ioc.get_executor(), options);
  std::optional<Result<AppIndex>> declared;
  client.LastIndex([&](Result<AppIndex> r) { declared = std::move(r); });
  auto index = Wait(ioc, declared);
  ASSERT_TRUE(index.ok());
  EXPECT_FALSE(index->snapshots);
  std::optional<Result<AppSnapshot>> got;
  client.GetSnapshot(1 << 20, [&](Result<AppSnapshot> r) { got = std::move(r); });
  auto snapshot = Wait(ioc, got);
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, ErrorCode::kProtocol) << snapshot.error().message;
}

}  // namespace
}  // namespace k8shmir::testing
