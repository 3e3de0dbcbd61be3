#include "fs/release_batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace dpmfs::fs {
namespace {

using namespace std::chrono_literals;

// Records what the batcher sends.
struct Sink {
  std::mutex mu;
  std::vector<std::vector<meta::ReleaseRequest>> batches;
  std::atomic<int> err{0};
  ReleaseBatcher::Send fn() {
    return [this](const std::vector<meta::ReleaseRequest>& b) {
      std::lock_guard lock(mu);
      batches.push_back(b);
      return err.load();
    };
  }
  size_t handles() {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& b : batches) n += b.size();
    return n;
  }
};

TEST(ReleaseBatcher, SendsWithinTheDelayInOneBatch) {
  Sink sink;
  ReleaseBatcher rb(sink.fn(), 50ms, 100);
  for (uint64_t i = 1; i <= 10; ++i) rb.Add(i, 100 + i);
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(sink.handles(), 0u);  // waiting for company
  for (int i = 0; i < 100 && sink.handles() < 10; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(sink.handles(), 10u);
  std::lock_guard lock(sink.mu);
  ASSERT_EQ(sink.batches.size(), 1u);
  for (uint64_t i = 1; i <= 10; ++i) {
    EXPECT_EQ(sink.batches[0][i - 1].ino, i);
    EXPECT_EQ(sink.batches[0][i - 1].handle, 100 + i);
  }
}

TEST(ReleaseBatcher, AFullBatchGoesAtOnceAndNoneIsLarger) {
  Sink sink;
  ReleaseBatcher rb(sink.fn(), 10s, 4);
  for (uint64_t i = 1; i <= 9; ++i) rb.Add(i, i);
  // The first full batch wakes the sender, which then sends all it has (the 10 s delay
  // does not hold it back).
  for (int i = 0; i < 200 && sink.handles() < 9; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(sink.handles(), 9u);
  std::lock_guard lock(sink.mu);
  for (const auto& b : sink.batches) EXPECT_LE(b.size(), 4u);
}

TEST(ReleaseBatcher, FlushAndTheDestructorSendEverything) {
  Sink sink;
  {
    ReleaseBatcher rb(sink.fn(), 10s, 100);
    rb.Add(1, 1);
    rb.Flush();  // returns only once sent
    EXPECT_EQ(sink.handles(), 1u);
    rb.Add(2, 2);
    rb.Add(3, 3);
  }
  EXPECT_EQ(sink.handles(), 3u);
}

TEST(ReleaseBatcher, AFailedBatchIsNotResentAndLaterOnesGo) {
  Sink sink;
  sink.err = EIO;
  ReleaseBatcher rb(sink.fn(), 1ms, 100);
  rb.Add(1, 1);
  rb.Flush();
  sink.err = 0;
  rb.Add(2, 2);
  rb.Flush();
  EXPECT_EQ(sink.handles(), 2u);
  EXPECT_EQ(rb.batches_sent(), 2u);
}

TEST(ReleaseBatcher, ManyThreadsLoseNothing) {
  Sink sink;
  ReleaseBatcher rb(sink.fn(), 1ms, 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        rb.Add(static_cast<meta::InodeId>(t * 1000 + i + 1), static_cast<uint64_t>(i));
        if (i % 97 == 0) rb.Flush();
      }
    });
  }
  for (auto& th : threads) th.join();
  rb.Flush();
  EXPECT_EQ(sink.handles(), 4000u);
  std::set<meta::InodeId> seen;
  std::lock_guard lock(sink.mu);
  for (const auto& b : sink.batches) {
    for (const auto& r : b) EXPECT_TRUE(seen.insert(r.ino).second) << "sent twice: " << r.ino;
  }
}

}  // namespace
}  // namespace dpmfs::fs
