// The replica's pending-request bookkeeping, without Asio: which request waits for which index,
// what a deadline or an applied index hands back, and the byte count behind --max-pending-bytes.
#include "replica/pending_requests.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

namespace k8shmir {
namespace {

using namespace std::chrono_literals;
using Pending = PendingRequests<std::function<void(int)>>;
using Clock = Pending::Clock;

Pending::Request Req(Clock::time_point deadline, std::size_t bytes, std::vector<int>* answers,
                     int tag) {
  Pending::Request r;
  r.done = [answers, tag](int) { answers->push_back(tag); };
  r.submitted_at = deadline - 10s;
  r.deadline = deadline;
  r.bytes = bytes;
  return r;
}

std::vector<std::string> Ids(const std::vector<Pending::Taken>& taken) {
  std::vector<std::string> out;
  for (const auto& [id, request] : taken) out.push_back(id);
  return out;
}

TEST(PendingRequests, CountsRequestsAndBytesAndRefusesADuplicateId) {
  Pending p;
  std::vector<int> answers;
  const auto t0 = Clock::now();
  EXPECT_TRUE(p.Add("a", Req(t0 + 1s, 100, &answers, 1)));
  EXPECT_TRUE(p.Add("b", Req(t0 + 2s, 50, &answers, 2)));
  EXPECT_FALSE(p.Add("a", Req(t0 + 3s, 7, &answers, 3)));
  EXPECT_EQ(p.size(), 2u);
  EXPECT_EQ(p.bytes(), 150u);
  EXPECT_TRUE(p.contains("a"));
  EXPECT_TRUE(p.Find("a")->in_outbox);
  p.MarkSent("a");
  EXPECT_FALSE(p.Find("a")->in_outbox);
  auto a = p.Take("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->bytes, 100u);
  EXPECT_EQ(p.bytes(), 50u);
  EXPECT_FALSE(p.Take("a"));  // answered once only
  a->done(0);
  EXPECT_EQ(answers, std::vector<int>{1});
}

TEST(PendingRequests, AppliedIndicesHandBackTheirRequestsInIndexOrder) {
  Pending p;
  std::vector<int> answers;
  const auto t0 = Clock::now();
  p.Add("x", Req(t0 + 1s, 1, &answers, 1));
  p.Add("y", Req(t0 + 1s, 1, &answers, 2));
  p.Add("z", Req(t0 + 1s, 1, &answers, 3));
  p.SetIndex("y", 512);
  p.SetIndex("x", 768);
  p.SetIndex("z", 1024);
  p.SetIndex("gone", 300);  // answered already: nothing to do
  EXPECT_TRUE(p.TakeUpTo(511).empty());
  EXPECT_EQ(Ids(p.TakeUpTo(768)), (std::vector<std::string>{"y", "x"}));
  EXPECT_EQ(p.size(), 1u);
  // Taken by id, a request no longer waits for its index.
  ASSERT_TRUE(p.Take("z"));
  EXPECT_TRUE(p.TakeUpTo(5000).empty());
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.bytes(), 0u);
}

TEST(PendingRequests, DeadlinesExpireOldestFirstAndTheNextOneIsKnown) {
  Pending p;
  std::vector<int> answers;
  const auto t0 = Clock::now();
  EXPECT_FALSE(p.NextDeadline());
  p.Add("late", Req(t0 + 3s, 1, &answers, 1));
  p.Add("early", Req(t0 + 1s, 1, &answers, 2));
  p.Add("same", Req(t0 + 1s, 1, &answers, 3));
  ASSERT_TRUE(p.NextDeadline());
  EXPECT_EQ(*p.NextDeadline(), t0 + 1s);
  p.SetIndex("early", 256);
  EXPECT_TRUE(p.TakeExpired(t0).empty());
  auto expired = p.TakeExpired(t0 + 2s);
  EXPECT_EQ(Ids(expired), (std::vector<std::string>{"early", "same"}));
  EXPECT_EQ(expired[0].second.index, 256);
  // An expired request no longer waits for its index either.
  EXPECT_TRUE(p.TakeUpTo(256).empty());
  EXPECT_EQ(*p.NextDeadline(), t0 + 3s);
  ASSERT_TRUE(p.Take("late"));
  EXPECT_FALSE(p.NextDeadline());
  EXPECT_TRUE(p.TakeExpired(t0 + 10s).empty());
}

TEST(PendingRequests, IdsListsEveryWaitingRequest) {
  Pending p;
  std::vector<int> answers;
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) p.Add("r" + std::to_string(i), Req(t0 + 1s, 1, &answers, i));
  p.Take("r2");
  auto ids = p.Ids();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"r0", "r1", "r3", "r4"}));
}

}  // namespace
}  // namespace k8shmir
