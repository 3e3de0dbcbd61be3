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


// Both bounds, each on its own: many small replies stop at the count with their bytes
// far below the byte bound; a few big ones stop at the bytes with the count far below
// its bound; and a reply bigger than the whole byte bound is still kept (its retry
// must be answered), alone.
TEST(ReplyCache, TheCountAndTheByteBoundEachEvictOnTheirOwn) {
  auto conn = std::make_shared<int>(1);
  int32_t status = 0;
  std::vector<uint8_t> reply;
  SessionReplyCache::Waiters waiters;
  auto run = [&](SessionReplyCache& c, uint64_t first, uint64_t n, size_t size) {
    for (uint64_t seq = first; seq < first + n; ++seq) {
      ASSERT_EQ(c.Begin(seq, {conn, seq}, &status, &reply), Start::kExecute) << seq;
      c.Finish(seq, 0, std::vector<uint8_t>(size, static_cast<uint8_t>(seq)), &waiters);
    }
  };

  SessionReplyCache by_count(4, 1 << 20);
  ASSERT_NO_FATAL_FAILURE(run(by_count, 1, 10, 100));
  EXPECT_EQ(by_count.done(), 4u) << "the count bound did not hold";
  EXPECT_EQ(by_count.bytes(), 400u);
  EXPECT_EQ(by_count.evicted_max(), 6u);

  SessionReplyCache by_bytes(100, 10000);
  ASSERT_NO_FATAL_FAILURE(run(by_bytes, 1, 10, 3000));
  EXPECT_EQ(by_bytes.done(), 3u) << "the byte bound did not hold";
  EXPECT_EQ(by_bytes.bytes(), 9000u);
  EXPECT_EQ(by_bytes.evicted_max(), 7u);
  EXPECT_EQ(by_bytes.Begin(7, {conn, 0}, &status, &reply), Start::kTooOld);
  EXPECT_EQ(by_bytes.Begin(8, {conn, 0}, &status, &reply), Start::kCached);
  EXPECT_EQ(reply, std::vector<uint8_t>(3000, 8));

  ASSERT_NO_FATAL_FAILURE(run(by_bytes, 11, 1, 20000));  // over the byte bound alone
  EXPECT_EQ(by_bytes.done(), 1u);
  EXPECT_EQ(by_bytes.bytes(), 20000u);
  EXPECT_EQ(by_bytes.Begin(11, {conn, 0}, &status, &reply), Start::kCached);
  EXPECT_EQ(reply.size(), 20000u);
  // Evicted later like any other: the bytes go back down.
  ASSERT_NO_FATAL_FAILURE(run(by_bytes, 12, 2, 10));
  EXPECT_EQ(by_bytes.done(), 2u);
  EXPECT_EQ(by_bytes.bytes(), 20u);
}

}  // namespace
}  // namespace dpmfs::rpc
