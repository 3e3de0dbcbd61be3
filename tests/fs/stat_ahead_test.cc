#include "fs/stat_ahead.h"

#include <gtest/gtest.h>

#include <thread>

namespace dpmfs::fs {
namespace {

using meta::InodeAttr;
using Answer = StatAhead::Answer;
using namespace std::chrono_literals;

constexpr meta::InodeId kDir = 10;

InodeAttr A(meta::InodeId ino, uint64_t size = 0) {
  InodeAttr a;
  a.ino = ino;
  a.mode = 0100644;
  a.size = size;
  return a;
}

StatAhead::Options Opts(uint32_t trigger = 3, StatAhead::Clock::duration validity = 10s) {
  StatAhead::Options o;
  o.trigger = trigger;
  o.validity = validity;
  return o;
}

// Runs `trigger` misses in `dir`; returns whether one of them asked for a fetch.
bool Trigger(StatAhead& sa, meta::InodeId dir = kDir) {
  bool fetch = false;
  for (uint32_t i = 0; i < sa.options().trigger; ++i) fetch = sa.NoteLookupMiss(dir) || fetch;
  return fetch;
}

std::vector<StatAhead::Entry> Entries() {
  return {{"a", A(100, 1)}, {"b", A(101, 2)}, {"c", A(102, 3)}};
}

TEST(StatAhead, FetchesAfterARunOfLookupsInOneDirectory) {
  StatAhead sa(Opts(3));
  EXPECT_FALSE(sa.NoteLookupMiss(kDir));
  EXPECT_FALSE(sa.NoteLookupMiss(kDir));
  EXPECT_FALSE(sa.NoteLookupMiss(kDir + 1));  // another directory: the run starts over
  EXPECT_FALSE(sa.NoteLookupMiss(kDir));
  EXPECT_FALSE(sa.NoteLookupMiss(kDir));
  EXPECT_TRUE(sa.NoteLookupMiss(kDir));
  // One fetch at a time.
  EXPECT_FALSE(Trigger(sa));
  StatAhead off(Opts(0));
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(off.NoteLookupMiss(kDir));
}

TEST(StatAhead, AListingAnswersFoundAndAbsentUntilItExpires) {
  StatAhead sa(Opts(3, 300ms));
  StatAhead::Found f;
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kUnknown);
  ASSERT_TRUE(Trigger(sa));
  auto sent = StatAhead::Clock::now();
  ASSERT_TRUE(sa.Store(kDir, Entries(), 42, sent));
  ASSERT_EQ(sa.Lookup(kDir, "b", &f), Answer::kFound);
  EXPECT_EQ(f.attr.ino, 101u);
  EXPECT_EQ(f.attr.size, 2u);
  EXPECT_EQ(f.seq_before, 42u);
  EXPECT_EQ(f.as_of, sent);
  EXPECT_GT(f.remaining, 0s);
  EXPECT_LE(f.remaining, 300ms);
  EXPECT_EQ(sa.Lookup(kDir, "zz", &f), Answer::kAbsent);
  EXPECT_EQ(sa.Lookup(kDir + 1, "a", &f), Answer::kUnknown);  // another directory
  // While it is valid, misses (none expected) do not fetch it again.
  EXPECT_FALSE(Trigger(sa));
  std::this_thread::sleep_for(350ms);
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kUnknown);
  EXPECT_EQ(sa.Lookup(kDir, "zz", &f), Answer::kUnknown);
  EXPECT_TRUE(Trigger(sa));  // expired: fetched again after another run
}

// lookupcache=positive: a listing still answers for the names it holds, never that a
// name is absent (another client may have just created it).
TEST(StatAhead, WithoutAnswerAbsentOnlyFoundNamesAreAnswered) {
  StatAhead::Options o = Opts(3);
  o.answer_absent = false;
  StatAhead sa(o);
  ASSERT_TRUE(Trigger(sa));
  ASSERT_TRUE(sa.Store(kDir, Entries(), 1, StatAhead::Clock::now()));
  StatAhead::Found f;
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kFound);
  EXPECT_EQ(sa.Lookup(kDir, "zz", &f), Answer::kUnknown);
  // A name this client removed is not in the listing either: asked too.
  sa.NoteRemoved(kDir, "b");
  EXPECT_EQ(sa.Lookup(kDir, "b", &f), Answer::kUnknown);
}

TEST(StatAhead, ThisClientsChangesAreApplied) {
  StatAhead sa(Opts());
  ASSERT_TRUE(Trigger(sa));
  ASSERT_TRUE(sa.Store(kDir, Entries(), 1, StatAhead::Clock::now()));
  StatAhead::Found f;
  sa.NoteAdded(kDir, "new", A(200, 7));
  ASSERT_EQ(sa.Lookup(kDir, "new", &f), Answer::kFound);
  EXPECT_EQ(f.attr.ino, 200u);
  sa.NoteRemoved(kDir, "a");
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kAbsent);
  // An inode whose attributes this client changed is answered by the server.
  sa.NoteAttrChanged(101);
  EXPECT_EQ(sa.Lookup(kDir, "b", &f), Answer::kUnknown);
  EXPECT_EQ(sa.Lookup(kDir, "c", &f), Answer::kFound);
  // A rename drops the whole listing.
  sa.NoteChanged(kDir);
  EXPECT_EQ(sa.Lookup(kDir, "c", &f), Answer::kUnknown);
  EXPECT_EQ(sa.Lookup(kDir, "zz", &f), Answer::kUnknown);
}

InodeAttr Linked(meta::InodeId ino, uint32_t nlink) {
  InodeAttr a = A(ino);
  a.nlink = nlink;
  return a;
}

// Removing one name of a hard-linked file (xfstests generic/002): its other names, in
// any listing, are answered by the server again (the nlink and ctime moved). When no
// listing held the removed name, every listed file with other names goes back.
TEST(StatAhead, ARemovedNameTakesItsInodesOtherNamesBackToTheServer) {
  StatAhead sa(Opts());
  ASSERT_TRUE(Trigger(sa, kDir));
  ASSERT_TRUE(sa.Store(kDir,
                       {{"a", Linked(100, 3)}, {"a2", Linked(100, 3)}, {"b", Linked(101, 1)},
                        {"h", Linked(102, 2)}},
                       1, StatAhead::Clock::now()));
  ASSERT_TRUE(Trigger(sa, kDir + 1));
  ASSERT_TRUE(sa.Store(kDir + 1, {{"x", Linked(100, 3)}, {"y", Linked(103, 1)}}, 1,
                       StatAhead::Clock::now()));
  StatAhead::Found f;
  sa.NoteRemoved(kDir, "a");
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kAbsent);
  EXPECT_EQ(sa.Lookup(kDir, "a2", &f), Answer::kUnknown);
  EXPECT_EQ(sa.Lookup(kDir + 1, "x", &f), Answer::kUnknown) << "another listing";
  EXPECT_EQ(sa.Lookup(kDir, "h", &f), Answer::kFound) << "another inode";
  // A name of a directory not listed: which inode is not known.
  ASSERT_TRUE(Trigger(sa, kDir + 2));  // being fetched meanwhile
  sa.NoteRemoved(kDir + 5, "q");
  EXPECT_EQ(sa.Lookup(kDir, "h", &f), Answer::kUnknown);
  EXPECT_EQ(sa.Lookup(kDir, "b", &f), Answer::kFound) << "one link: no other name";
  EXPECT_EQ(sa.Lookup(kDir + 1, "y", &f), Answer::kFound);
  ASSERT_TRUE(sa.Store(kDir + 2, {{"k", Linked(104, 2)}, {"m", Linked(105, 1)}}, 1,
                       StatAhead::Clock::now()));
  EXPECT_EQ(sa.Lookup(kDir + 2, "k", &f), Answer::kUnknown) << "listed before the unlink";
  EXPECT_EQ(sa.Lookup(kDir + 2, "m", &f), Answer::kFound);
}

TEST(StatAhead, ChangesDuringTheFetchAreAppliedWhenItIsStored) {
  StatAhead sa(Opts());
  ASSERT_TRUE(Trigger(sa));
  auto sent = StatAhead::Clock::now();
  // The server's answer may or may not include these: whichever, they win.
  sa.NoteAdded(kDir, "new", A(200));
  sa.NoteRemoved(kDir, "a");
  sa.NoteAttrChanged(102);
  sa.NoteAdded(kDir, "tmp", A(201));
  sa.NoteRemoved(kDir, "tmp");
  ASSERT_TRUE(sa.Store(kDir, Entries(), 1, sent));
  StatAhead::Found f;
  EXPECT_EQ(sa.Lookup(kDir, "new", &f), Answer::kFound);
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kAbsent);
  EXPECT_EQ(sa.Lookup(kDir, "tmp", &f), Answer::kAbsent);
  EXPECT_EQ(sa.Lookup(kDir, "b", &f), Answer::kFound);
  EXPECT_EQ(sa.Lookup(kDir, "c", &f), Answer::kUnknown);
}

TEST(StatAhead, ARenameDuringTheFetchDropsItAndQuietsTheDirectory) {
  StatAhead sa(Opts(3, 200ms));
  ASSERT_TRUE(Trigger(sa));
  sa.NoteChanged(kDir);
  EXPECT_FALSE(sa.Store(kDir, Entries(), 1, StatAhead::Clock::now()));
  StatAhead::Found f;
  EXPECT_EQ(sa.Lookup(kDir, "a", &f), Answer::kUnknown);
  EXPECT_FALSE(Trigger(sa));  // not again at once
  std::this_thread::sleep_for(250ms);
  EXPECT_TRUE(Trigger(sa));
  // A failed (or too large) fetch quiets it the same way.
  sa.Abandon(kDir);
  EXPECT_FALSE(Trigger(sa));
}

TEST(StatAhead, KeepsAtMostMaxListings) {
  StatAhead::Options o = Opts(1);
  o.max_listings = 2;
  StatAhead sa(o);
  for (meta::InodeId d = 1; d <= 3; ++d) {
    ASSERT_TRUE(sa.NoteLookupMiss(d));
    ASSERT_TRUE(sa.Store(d, Entries(), 1, StatAhead::Clock::now()));
    std::this_thread::sleep_for(2ms);
  }
  StatAhead::Found f;
  EXPECT_EQ(sa.Lookup(1, "a", &f), Answer::kUnknown);  // the oldest went
  EXPECT_EQ(sa.Lookup(2, "a", &f), Answer::kFound);
  EXPECT_EQ(sa.Lookup(3, "a", &f), Answer::kFound);
  EXPECT_EQ(sa.listings_stored(), 3u);
}

}  // namespace
}  // namespace dpmfs::fs
