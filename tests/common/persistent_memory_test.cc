// The persistent-memory seam: the fault-injecting double really forgets what was not
// persisted (so the crash-point enumeration test in tests/metadata can fail), and the
// libpmem implementation maps files and refuses missing device-DAX paths clearly.
#include "common/persistent_memory.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "common/fault_injecting_memory.h"
#include "common/pool.h"

namespace dpmfs::pmem {
namespace {

using ::testing::HasSubstr;
using Mode = FaultInjectingMemory::CrashMode;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST(FaultInjectingMemoryTest, StartsWithItsImageDurable) {
  std::vector<uint8_t> image = Pattern(4096, 1);
  FaultInjectingMemory m(image);
  ASSERT_EQ(m.size(), image.size());
  EXPECT_EQ(std::memcmp(m.base(), image.data(), image.size()), 0);
  EXPECT_EQ(m.DurableImage(), image);
  EXPECT_EQ(m.UnpersistedBytes(), 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.base()) % 64, 0u);
}

TEST(FaultInjectingMemoryTest, CrashForgetsEveryUnpersistedByte) {
  FaultInjectingMemory m(std::vector<uint8_t>(4096, 0));
  std::memset(m.base() + 100, 0xaa, 50);   // persisted below
  std::memset(m.base() + 1000, 0xbb, 20);  // never persisted
  m.Persist(m.base() + 100, 50);
  std::memset(m.base() + 2000, 0xcc, 8);  // written after the last persist
  EXPECT_EQ(m.UnpersistedBytes(), 28u);
  m.Crash();
  std::vector<uint8_t> d = m.DurableImage();
  for (size_t i = 0; i < d.size(); ++i) {
    const uint8_t want = i >= 100 && i < 150 ? 0xaa : 0;
    ASSERT_EQ(d[i], want) << "byte " << i;
  }
  // Dead: nothing reaches the durable image any more.
  m.Persist(m.base(), m.size());
  EXPECT_EQ(m.DurableImage(), d);
  EXPECT_TRUE(m.crashed());
}

TEST(FaultInjectingMemoryTest, CrashAtAPersistPointKeepsEarlierPointsOnly) {
  FaultInjectingMemory m(std::vector<uint8_t>(256, 0));
  m.CrashAt(3);
  for (uint8_t i = 0; i < 5; ++i) {
    m.base()[i * 8] = static_cast<uint8_t>(i + 1);
    m.Persist(m.base() + i * 8, 8);
    EXPECT_EQ(m.crashed(), i >= 2) << "after point " << i + 1;
  }
  EXPECT_EQ(m.persist_points(), 5u);
  std::vector<uint8_t> d = m.DurableImage();
  EXPECT_EQ(d[0], 1);
  EXPECT_EQ(d[8], 2);
  EXPECT_EQ(d[16], 0);  // point 3 itself did not become durable
  EXPECT_EQ(d[24], 0);
  EXPECT_EQ(d[32], 0);
  // The program's view is untouched by the crash.
  EXPECT_EQ(m.base()[32], 5);
}

TEST(FaultInjectingMemoryTest, FlushIsDurableOnlyAfterDrain) {
  FaultInjectingMemory m(std::vector<uint8_t>(128, 0));
  m.base()[0] = 1;
  m.base()[64] = 2;
  m.Flush(m.base(), 1);
  m.Flush(m.base() + 64, 1);
  EXPECT_EQ(m.DurableImage()[0], 0);  // flushed, not drained
  m.Drain();
  EXPECT_EQ(m.DurableImage()[0], 1);
  EXPECT_EQ(m.DurableImage()[64], 2);
  // A flush not yet drained at the crash is lost.
  m.base()[1] = 3;
  m.Flush(m.base() + 1, 1);
  m.Crash();
  EXPECT_EQ(m.DurableImage()[1], 0);
}

TEST(FaultInjectingMemoryTest, MemcpyAndMemsetPersist) {
  FaultInjectingMemory m(std::vector<uint8_t>(128, 0));
  const char text[] = "durable";
  m.MemcpyPersist(m.base() + 8, text, sizeof(text));
  m.MemsetPersist(m.base() + 64, 0x5a, 16);
  EXPECT_EQ(m.persist_points(), 2u);
  m.Crash();
  std::vector<uint8_t> d = m.DurableImage();
  EXPECT_EQ(std::memcmp(d.data() + 8, text, sizeof(text)), 0);
  EXPECT_EQ(d[64], 0x5a);
  EXPECT_EQ(d[79], 0x5a);
  EXPECT_EQ(d[80], 0);
  EXPECT_TRUE(m.Sync(m.base() + 120, 16).code() == StatusCode::kOutOfRange);
}

TEST(FaultInjectingMemoryTest, TearingKeepsWholeWordsOfEitherImage) {
  // Every 8-byte word of an unpersisted range is old or new, never a mix; over 64 words
  // both kinds appear (a seeded coin per word).
  std::vector<uint8_t> image(512, 0x11);
  FaultInjectingMemory m(image);
  std::memset(m.base(), 0x22, 512);
  m.CrashAt(1, Mode::kTearUnpersisted, 7);
  m.Persist(m.base(), 8);
  ASSERT_TRUE(m.crashed());
  std::vector<uint8_t> d = m.DurableImage();
  int old_words = 0, new_words = 0;
  for (size_t w = 0; w < 64; ++w) {
    const uint8_t first = d[w * 8];
    for (size_t i = 1; i < 8; ++i) ASSERT_EQ(d[w * 8 + i], first) << "word " << w << " torn";
    (first == 0x11 ? old_words : new_words)++;
  }
  EXPECT_GT(old_words, 0);
  EXPECT_GT(new_words, 0);
  // Same seed, same crash.
  FaultInjectingMemory again(image);
  std::memset(again.base(), 0x22, 512);
  again.Crash(Mode::kTearUnpersisted, 7);
  EXPECT_EQ(again.DurableImage(), d);
}

TEST(FaultInjectingMemoryTest, ObserverSeesEveryPointBeforeItTakesEffect) {
  FaultInjectingMemory m(std::vector<uint8_t>(64, 0));
  std::vector<std::pair<uint64_t, uint8_t>> seen;
  m.SetObserver([&](uint64_t point) { seen.emplace_back(point, m.DurableImage()[0]); });
  m.base()[0] = 9;
  m.Persist(m.base(), 1);
  m.Drain();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (std::pair<uint64_t, uint8_t>{1, 0}));
  EXPECT_EQ(seen[1], (std::pair<uint64_t, uint8_t>{2, 9}));
}

TEST(FaultInjectingMemoryTest, CrashImageDoesNotCrashAndRestartBoots) {
  FaultInjectingMemory m(std::vector<uint8_t>(64, 0));
  m.base()[0] = 1;
  m.Persist(m.base(), 1);
  m.base()[8] = 2;  // unpersisted
  std::vector<uint8_t> image;
  m.CrashImage(Mode::kDropUnpersisted, 0, &image);
  EXPECT_EQ(image[0], 1);
  EXPECT_EQ(image[8], 0);
  EXPECT_FALSE(m.crashed());
  m.Persist(m.base() + 8, 1);  // still alive
  EXPECT_EQ(m.DurableImage()[8], 2);
  // Restart: both images become the given one, crash state and points cleared.
  m.Crash();
  m.Restart(image);
  EXPECT_FALSE(m.crashed());
  EXPECT_EQ(m.persist_points(), 0u);
  EXPECT_EQ(m.base()[8], 0);
  EXPECT_EQ(m.UnpersistedBytes(), 0u);
  m.base()[16] = 3;
  m.Persist(m.base() + 16, 1);
  EXPECT_EQ(m.DurableImage()[16], 3);
}

// --- libpmem ---

std::string ScratchPath(const std::string& name) {
  std::string dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
  return dir + "/dpmfs-pmem-test-" + std::to_string(::getpid()) + "-" + name;
}

TEST(LibpmemMemoryTest, MapsAFileWholeAndPersists) {
  const std::string path = ScratchPath("file");
  {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    ::close(fd);
  }
  {
    auto m = MapPersistentMemory(path);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    PersistentMemory& mem = **m;
    EXPECT_EQ(mem.size(), 1u << 20);
    EXPECT_EQ(mem.name(), path);
    mem.MemcpyPersist(mem.base() + 10, "abc", 3);
    mem.MemsetPersist(mem.base() + 100, 'z', 4);
    mem.base()[200] = 'q';
    mem.Flush(mem.base() + 200, 1);
    mem.Drain();
    EXPECT_TRUE(mem.Sync(mem.base(), mem.size()).ok());
    EXPECT_EQ(mem.Sync(mem.base() + mem.size() - 1, 2).code(), StatusCode::kOutOfRange);
  }
  // What went through the mapping is in the file.
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[256];
  ASSERT_EQ(::pread(fd, buf, sizeof(buf), 0), static_cast<ssize_t>(sizeof(buf)));
  ::close(fd);
  EXPECT_EQ(std::memcmp(buf + 10, "abc", 3), 0);
  EXPECT_EQ(std::memcmp(buf + 100, "zzzz", 4), 0);
  EXPECT_EQ(buf[200], 'q');
  ::unlink(path.c_str());
}

TEST(LibpmemMemoryTest, MissingDeviceDaxIsAClearError) {
  // This machine has no device DAX; the VM suite (tests/vm) has an NVDIMM.
  const std::string dax = "/dev/dax97.3";
  ASSERT_FALSE(std::filesystem::exists(dax));
  auto m = MapPersistentMemory(dax);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("device-DAX pool /dev/dax97.3 does not exist"));
  EXPECT_THAT(m.status().message(), HasSubstr("ndctl create-namespace -m devdax"));
  // The pool functions say the same, and mkfs never creates a file in /dev instead.
  EXPECT_EQ(pool::ReadPoolHeader(dax).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(pool::MappedPool::Open(dax, {}).status().code(), StatusCode::kNotFound);
  pool::FormatOptions fo;
  fo.geometry = {pool::Role::kData, pool::ClusterUuid::Generate(), 0, 4096, 4ull << 20};
  auto made = pool::FormatPool(dax, fo);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(made.status().message(), HasSubstr("no such device"));
  EXPECT_FALSE(std::filesystem::exists(dax));
}

TEST(LibpmemMemoryTest, OtherCharacterDevicesAreRefused) {
  // /dev/null is a character device but not device DAX: libpmem refuses to map it.
  auto m = MapPersistentMemory("/dev/null");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("/dev/null"));
  auto h = pool::ReadPoolHeader("/dev/null");
  EXPECT_FALSE(h.ok());
}

TEST(LibpmemMemoryTest, MissingFileAndDirectory) {
  auto m = MapPersistentMemory(ScratchPath("missing"));
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("does not exist"));
  auto d = MapPersistentMemory("/tmp");
  EXPECT_EQ(d.status().code(), StatusCode::kNotSupported);
}

}  // namespace
}  // namespace dpmfs::pmem
