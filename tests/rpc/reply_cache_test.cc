// The RPC server's per-session at-most-once reply cache (rpc/reply_cache.h): a request
// executes once, retries join it or get the stored reply, eviction keeps executing
// entries and refuses seqs older than the cache, and entries are recycled.
#include "rpc/reply_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace dpmfs::rpc {
namespace {

using Start = SessionReplyCache::Start;

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(ReplyCache, ExecutesOnceThenAnswersRetriesFromTheCache) {
  SessionReplyCache c(4);
  auto conn = std::make_shared<int>(1);
  int32_t status = -1;
  std::vector<uint8_t> reply;
  EXPECT_EQ(c.Begin(1, {conn, 100}, &status, &reply), Start::kExecute);
  EXPECT_EQ(c.Begin(1, {conn, 101}, &status, &reply), Start::kJoined) << "retry while executing";
  EXPECT_EQ(c.Begin(1, {conn, 102}, &status, &reply), Start::kJoined);
  SessionReplyCache::Waiters waiters;
  c.Finish(1, 0, Bytes("one"), &waiters);
  ASSERT_EQ(waiters.size(), 3u);
  EXPECT_EQ(waiters[0].second, 100u);
  EXPECT_EQ(waiters[2].second, 102u);
  EXPECT_EQ(waiters[0].first.lock(), conn);
  EXPECT_EQ(c.Begin(1, {conn, 103}, &status, &reply), Start::kCached);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(reply, Bytes("one"));
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.done(), 1u);
}

TEST(ReplyCache, EvictsTheOldestCompletedRepliesAndKeepsExecutingOnes) {
  SessionReplyCache c(3);
  auto conn = std::make_shared<int>(1);
  int32_t status = 0;
  std::vector<uint8_t> reply;
  SessionReplyCache::Waiters waiters;
  ASSERT_EQ(c.Begin(1, {conn, 1}, &status, &reply), Start::kExecute);  // stays executing
  for (uint64_t seq = 2; seq <= 6; ++seq) {
    ASSERT_EQ(c.Begin(seq, {conn, seq}, &status, &reply), Start::kExecute);
    c.Finish(seq, static_cast<int32_t>(seq), Bytes("r" + std::to_string(seq)), &waiters);
    ASSERT_EQ(waiters.size(), 1u);
    EXPECT_EQ(waiters[0].second, seq);
  }
  EXPECT_EQ(c.done(), 3u);
  EXPECT_EQ(c.size(), 4u) << "3 replies and the executing seq 1";
  EXPECT_EQ(c.evicted_max(), 3u);
  EXPECT_EQ(c.Begin(2, {conn, 2}, &status, &reply), Start::kTooOld);
  EXPECT_EQ(c.Begin(3, {conn, 3}, &status, &reply), Start::kTooOld);
  EXPECT_EQ(c.Begin(1, {conn, 1}, &status, &reply), Start::kJoined) << "executing: kept";
  EXPECT_EQ(c.Begin(4, {conn, 4}, &status, &reply), Start::kCached);
  EXPECT_EQ(status, 4);
  EXPECT_EQ(reply, Bytes("r4"));
  c.Finish(1, 0, Bytes("late"), &waiters);
  EXPECT_EQ(waiters.size(), 2u) << "the first caller and its retry";
  // Seq 1 finished last but is the lowest: it goes first.
  EXPECT_EQ(c.done(), 3u);
  EXPECT_EQ(c.Begin(1, {conn, 1}, &status, &reply), Start::kTooOld);
  EXPECT_EQ(c.Begin(4, {conn, 4}, &status, &reply), Start::kCached);
}

TEST(ReplyCache, FinishOfAnUnknownSeqStoresIt) {
  // The session was dropped and made again while the request executed.
  SessionReplyCache c(2);
  SessionReplyCache::Waiters waiters;
  c.Finish(7, 3, Bytes("x"), &waiters);
  EXPECT_TRUE(waiters.empty());
  int32_t status = 0;
  std::vector<uint8_t> reply;
  EXPECT_EQ(c.Begin(7, {std::weak_ptr<void>(), 1}, &status, &reply), Start::kCached);
  EXPECT_EQ(status, 3);
}

TEST(ReplyCache, ALongRunStaysBoundedAndAnswersCorrectly) {
  SessionReplyCache c(8);
  auto conn = std::make_shared<int>(1);
  int32_t status = 0;
  std::vector<uint8_t> reply;
  SessionReplyCache::Waiters waiters;
  for (uint64_t seq = 1; seq <= 10000; ++seq) {
    ASSERT_EQ(c.Begin(seq, {conn, seq}, &status, &reply), Start::kExecute);
    // Sometimes a big reply (not kept in a recycled entry), sometimes an error.
    std::vector<uint8_t> r(seq % 97 == 0 ? 100000 : seq % 13, static_cast<uint8_t>(seq));
    c.Finish(seq, static_cast<int32_t>(seq % 5), r, &waiters);
    ASSERT_LE(c.size(), 8u);
    if (seq > 8) {
      ASSERT_EQ(c.Begin(seq - 8, {conn, 0}, &status, &reply), Start::kTooOld) << seq;
      ASSERT_EQ(c.Begin(seq - 7, {conn, 0}, &status, &reply), Start::kCached) << seq;
      ASSERT_EQ(status, static_cast<int32_t>((seq - 7) % 5));
      ASSERT_EQ(reply.size(), (seq - 7) % 97 == 0 ? 100000u : (seq - 7) % 13);
      if (!reply.empty()) {
        ASSERT_EQ(reply[0], static_cast<uint8_t>(seq - 7));
      }
    }
  }
}

}  // namespace
}  // namespace dpmfs::rpc
