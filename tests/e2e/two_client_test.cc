// Two clients of one cluster: DPMFS_TEST_DIR and DPMFS_TEST_DIR2 name the same directory
// through two different mounts (two dpmfs-mount processes). Close-to-open consistency,
// concurrent appends, unlink while the other client holds the file open.
// Skipped without DPMFS_TEST_DIR2; with DPMFS_TEST_DIR2 = DPMFS_TEST_DIR (one local file
// system) the tests check themselves.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/two_client_fixture.h"

namespace dpmfs::e2e {
namespace {

constexpr size_t kMiB = 1u << 20;

TEST_F(TwoClientTest, CloseToOpenVisibility) {
  // Client 2 looks at the file first, so it holds cached attributes (size 0) and pages.
  ASSERT_TRUE(WriteFile(P("f"), ""));
  struct stat st{};
  ASSERT_EQ(::stat(Q("f").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_TRUE(ReadFile(Q("f")).empty());
  // Client 1 writes and closes; client 2 opens afterwards and must see all of it.
  std::vector<uint8_t> d = Pattern(31, 0, 3 * kMiB + 5);
  {
    Fd fd(::open(P("f").c_str(), O_WRONLY));
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(PwriteAll(fd.get(), d.data(), d.size(), 0));
    ASSERT_EQ(fd.Close(), 0);
  }
  std::vector<uint8_t> seen = ReadFile(Q("f"));
  EXPECT_EQ(seen.size(), d.size()) << "client 2 opened after client 1 closed and saw a stale size";
  EXPECT_EQ(FirstDifference(seen, d), -1);
  // An overwrite of cached pages: client 2 has just read them all.
  std::vector<uint8_t> patch = Pattern(32, kMiB, 10000);
  {
    Fd fd(::open(P("f").c_str(), O_WRONLY));
    ASSERT_TRUE(PwriteAll(fd.get(), patch.data(), patch.size(), kMiB));
    ASSERT_EQ(fd.Close(), 0);
  }
  std::copy(patch.begin(), patch.end(), d.begin() + kMiB);
  seen = ReadFile(Q("f"));
  EXPECT_EQ(FirstDifference(seen, d), -1) << "client 2 read stale cached data after open";
  // A shrink by client 1 is seen by client 2's next open.
  ASSERT_EQ(::truncate(P("f").c_str(), 1000), 0);
  seen = ReadFile(Q("f"));
  EXPECT_EQ(seen.size(), 1000u);
  // And the other way round, with a new file.
  std::vector<uint8_t> back = Pattern(33, 0, 200000);
  ASSERT_TRUE(WriteFile(Q("from2"), std::string(back.begin(), back.end())));
  EXPECT_EQ(FirstDifference(ReadFile(P("from2")), back), -1);
}

TEST_F(TwoClientTest, NamespaceChangesAreSeen) {
  ASSERT_TRUE(WriteFile(P("a"), "A"));
  ASSERT_SYS(::mkdir(P("d").c_str(), 0755));
  std::vector<std::string> names = ListDir(dir2_);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "d"}));
  ASSERT_SYS(::rename(P("a").c_str(), P("d/b").c_str()));
  EXPECT_EQ(ReadFileString(Q("d/b")), "A");
  EXPECT_EQ(ListDir(Q("d")), std::vector<std::string>{"b"});
  ASSERT_SYS(::chmod(P("d/b").c_str(), 0600));
  // Attributes: client 2 sees the change within the attribute timeout (1 s by default).
  bool seen = false;
  for (int i = 0; i < 40 && !seen; ++i) {
    struct stat st{};
    seen = ::stat(Q("d/b").c_str(), &st) == 0 && (st.st_mode & 07777) == 0600;
    if (!seen) ::usleep(100 * 1000);
  }
  EXPECT_TRUE(seen) << "chmod by client 1 not visible to client 2 after 4 s";
}

TEST_F(TwoClientTest, ConcurrentAppendsToDifferentFiles) {
  constexpr int kRecords = 1500;
  constexpr size_t kRecordSize = 100;
  auto record = [](char who, int i) {
    std::string r(kRecordSize, static_cast<char>('a' + i % 26));
    std::snprintf(r.data(), 16, "%c%08d|", who, i);
    r.back() = '\n';
    return r;
  };
  std::atomic<int> errors{0};
  auto appender = [&](const std::string& path, char who) {
    Fd fd(::open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644));
    if (!fd.ok()) {
      errors++;
      return;
    }
    for (int i = 0; i < kRecords; ++i) {
      std::string r = record(who, i);
      if (::write(fd.get(), r.data(), r.size()) != static_cast<ssize_t>(r.size())) errors++;
    }
    if (fd.Close() != 0) errors++;
  };
  std::thread t1(appender, P("one"), '1');
  std::thread t2(appender, Q("two"), '2');
  t1.join();
  t2.join();
  ASSERT_EQ(errors.load(), 0);
  // Each file read through the client that did not write it.
  auto check = [&](const std::string& path, char who) {
    std::string all = ReadFileString(path);
    ASSERT_EQ(all.size(), kRecords * kRecordSize) << path;
    for (int i = 0; i < kRecords; ++i) {
      ASSERT_EQ(all.substr(i * kRecordSize, kRecordSize), record(who, i)) << path << " record " << i;
    }
  };
  check(Q("one"), '1');
  check(P("two"), '2');
}

// Both clients extend one file at once, each at its own offsets past the end of file as
// it last saw it: every acknowledged record must survive (NFS keeps disjoint ranges
// written by two clients). A client that zeroes "past its cached EOF" or pads a block it
// believes unwritten destroys the other's records; `every` > 2 leaves records nobody
// writes, which must read as zeros.
struct InterleavedCase {
  size_t record;  // bytes per record: unaligned, so records share blocks
  int records;    // in all
  int every;      // client 1 writes record i % every == 0, client 2 i % every == 1
};

void PrintTo(const InterleavedCase& c, std::ostream* os) {
  *os << c.records << " records of " << c.record << " bytes, clients write 2 of every " << c.every;
}

class SharedFileExtension : public TwoClientTest,
                            public ::testing::WithParamInterface<InterleavedCase> {};

TEST_P(SharedFileExtension, EveryAcknowledgedRecordSurvives) {
  const InterleavedCase c = GetParam();
  ASSERT_TRUE(WriteFile(P("shared"), ""));
  Fd f1(::open(P("shared").c_str(), O_WRONLY));
  Fd f2(::open(Q("shared").c_str(), O_WRONLY));
  ASSERT_TRUE(f1.ok() && f2.ok()) << std::strerror(errno);
  auto record = [&](int i) { return Pattern(1000 + i, 0, c.record); };
  std::atomic<int> errors{0};
  auto writer = [&](int fd, int which) {
    for (int i = which; i < c.records; i += c.every) {
      std::vector<uint8_t> r = record(i);
      if (!PwriteAll(fd, r.data(), r.size(), static_cast<off_t>(i * c.record))) errors++;
    }
  };
  std::thread t1(writer, f1.get(), 0);
  std::thread t2(writer, f2.get(), 1);
  t1.join();
  t2.join();
  ASSERT_EQ(errors.load(), 0) << std::strerror(errno);
  ASSERT_EQ(f1.Close(), 0);
  ASSERT_EQ(f2.Close(), 0);
  std::vector<uint8_t> all = ReadFile(R("shared"));
  int last = c.records - 1;
  while (last % c.every > 1) --last;  // the last record anyone wrote
  ASSERT_EQ(all.size(), (last + 1) * c.record);
  int lost = 0, first_lost = -1, dirty_gaps = 0;
  const std::vector<uint8_t> zeros(c.record, 0);
  for (int i = 0; i <= last; ++i) {
    std::vector<uint8_t> got(all.begin() + i * c.record, all.begin() + (i + 1) * c.record);
    if (i % c.every > 1) {
      dirty_gaps += got != zeros;
    } else if (got != record(i)) {
      if (first_lost < 0) first_lost = i;
      ++lost;
    }
  }
  EXPECT_EQ(lost, 0) << lost << " acknowledged records of " << c.record
                     << " bytes lost, the first at record " << first_lost << " (offset "
                     << first_lost * static_cast<long>(c.record) << ")";
  EXPECT_EQ(dirty_gaps, 0) << "records nobody wrote must read as zeros";
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, SharedFileExtension,
    ::testing::Values(InterleavedCase{100, 2000, 2}, InterleavedCase{1000, 600, 2},
                      InterleavedCase{4097, 200, 2}, InterleavedCase{333, 1200, 3},
                      InterleavedCase{5000, 150, 3}),
    [](const ::testing::TestParamInfo<InterleavedCase>& info) {
      return "Record" + std::to_string(info.param.record) + "Every" +
             std::to_string(info.param.every);
    });

// Reads on one client update the access time the other client sees (relatime: the
// atime was older than the mtime), without the reader doing anything but close.
TEST_F(TwoClientTest, AtimeOfReadsReachesTheOtherClient) {
  ASSERT_TRUE(WriteFile(P("f"), "hello"));
  struct timespec old[2] = {{1000, 0}, {0, UTIME_OMIT}};
  ASSERT_SYS(::utimensat(AT_FDCWD, P("f").c_str(), old, 0));
  {
    Fd fd(::open(P("f").c_str(), O_RDONLY));
    ASSERT_TRUE(fd.ok());
    char buf[8];
    ASSERT_EQ(::read(fd.get(), buf, sizeof buf), 5);
  }
  // The reader commits the access time when it releases the file, which the kernel
  // sends just after close() returned.
  time_t seen = 0;
  for (int i = 0; i < 30 && seen <= 1000; ++i) {
    struct stat st{};
    ASSERT_EQ(::stat(Q("f").c_str(), &st), 0) << std::strerror(errno);
    seen = st.st_atime;
    if (seen <= 1000) ::usleep(100 * 1000);
  }
  EXPECT_GT(seen, 1000) << "client 2 never saw the access time of client 1's read";
}

TEST_F(TwoClientTest, UnlinkWhileOpenOnTheOther) {
  std::vector<uint8_t> d = Pattern(41, 0, 4 * kMiB);
  ASSERT_TRUE(WriteFile(P("victim"), std::string(d.begin(), d.end())));
  Fd held(::open(Q("victim").c_str(), O_RDONLY));
  ASSERT_TRUE(held.ok()) << std::strerror(errno);
  ASSERT_SYS(::unlink(P("victim").c_str()));
  struct stat st{};
  EXPECT_ERRNO(::stat(P("victim").c_str(), &st), ENOENT);
  // Client 1 writes a lot of new data, which an allocator would like to put in the
  // blocks of the unlinked file: they must stay the open file's until its last close.
  for (int i = 0; i < 4; ++i) {
    std::vector<uint8_t> other = Pattern(100 + i, 0, 4 * kMiB);
    ASSERT_TRUE(WriteFile(P("filler" + std::to_string(i)), std::string(other.begin(), other.end())));
  }
  ASSERT_TRUE(WriteFile(P("victim"), "a new file with the old name"));
  std::vector<uint8_t> back(d.size());
  size_t got = 0;
  ASSERT_TRUE(PreadAll(held.get(), back.data(), back.size(), 0, &got)) << std::strerror(errno);
  EXPECT_EQ(got, d.size());
  EXPECT_EQ(FirstDifference(back, d), -1) << "the open, unlinked file's data changed under it";
  EXPECT_EQ(held.Close(), 0);
  // The new file of that name: client 2 may use its cached name -> old inode until the
  // entry timeout (1 s by default) lapses.
  bool new_seen = false;
  for (int i = 0; i < 30 && !new_seen; ++i) {
    Fd probe(::open(Q("victim").c_str(), O_RDONLY));
    char buf[64];
    ssize_t n = probe.ok() ? ::read(probe.get(), buf, sizeof(buf)) : -1;
    new_seen = n >= 0 && std::string(buf, static_cast<size_t>(n)) == "a new file with the old name";
    if (!new_seen) ::usleep(100 * 1000);
  }
  EXPECT_TRUE(new_seen) << "client 2 does not see the new file of the unlinked one's name after 3 s";
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(FirstDifference(ReadFile(Q("filler" + std::to_string(i))), Pattern(100 + i, 0, 4 * kMiB)), -1);
  }
}

// The set-group-ID directory rule is the metadata server's: a file or directory made
// by the other client gets the directory's group (and a directory the bit) as well.
TEST_F(TwoClientTest, SetgidDirectoryRuleHoldsForTheOtherClient) {
  constexpr gid_t kDirGid = 4242;
  ASSERT_SYS(::mkdir(P("sg").c_str(), 0777));
  ASSERT_SYS(::chown(P("sg").c_str(), static_cast<uid_t>(-1), kDirGid));
  ASSERT_SYS(::chmod(P("sg").c_str(), 02777));
  ASSERT_TRUE(WriteFile(Q("sg/f"), "x"));
  ASSERT_SYS(::mkdir(Q("sg/d").c_str(), 0755));
  for (const std::string& p : {P("sg/f"), Q("sg/f"), P("sg/d"), Q("sg/d")}) {
    struct stat st{};
    ASSERT_EQ(::stat(p.c_str(), &st), 0) << p << ": " << std::strerror(errno);
    EXPECT_EQ(st.st_gid, kDirGid) << p;
    EXPECT_EQ(st.st_mode & 02000, S_ISDIR(st.st_mode) ? 02000u : 0u) << p;
  }
}

// With lookupcache=positive (run_e2e.sh mounts the second client so and says it in
// DPMFS_TEST_LOOKUPCACHE2), a name the other client just created is found at once,
// even right after this client learned it was absent (and listed the directory).
TEST_F(TwoClientTest, LookupcachePositiveFindsNewNamesAtOnce) {
  const char* mode = std::getenv("DPMFS_TEST_LOOKUPCACHE2");
  if (mode == nullptr || std::string(mode) != "positive") {
    GTEST_SKIP() << "the second client is not mounted with lookupcache=positive "
                    "(DPMFS_TEST_LOOKUPCACHE2 is not 'positive')";
  }
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(WriteFile(P("x" + std::to_string(i)), "x"));
  for (int round = 0; round < 20; ++round) {
    const std::string name = "new" + std::to_string(round);
    // Client 2 walks the directory (enough lookups for a statahead listing) and learns
    // that the name is absent.
    for (int i = 0; i < 20; ++i) {
      struct stat st{};
      ASSERT_EQ(::stat(Q("x" + std::to_string(i)).c_str(), &st), 0);
    }
    struct stat st{};
    ASSERT_NE(::stat(Q(name).c_str(), &st), 0);
    ASSERT_TRUE(WriteFile(P(name), "made by client 1"));
    Fd fd(::open(Q(name).c_str(), O_RDONLY));
    EXPECT_TRUE(fd.ok()) << "client 2 does not find " << name << " client 1 created: "
                         << std::strerror(errno);
  }
}

}  // namespace
}  // namespace dpmfs::e2e
