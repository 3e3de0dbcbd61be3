// The client's inode table (fs/inode_table.h): lookup counting for forget, open
// handles, stale attribute replies, the lazy mtime overlay.
#include "fs/inode_table.h"

#include <gtest/gtest.h>

namespace dpmfs::fs {
namespace {

meta::InodeAttr Attr(meta::InodeId ino, uint64_t size, uint32_t mode = 0100644) {
  meta::InodeAttr a;
  a.ino = ino;
  a.generation = 1;
  a.size = size;
  a.mode = mode;
  a.mtime = {1000, 0};
  return a;
}

TEST(InodeTable, ForgetDropsAnInodeOnlyWhenNoLookupAndNoHandleRemain) {
  InodeTable t;
  EXPECT_EQ(t.size(), 1u);  // the root
  auto a = t.AddLookup(Attr(5, 0), AttrSequence());
  t.AddLookup(Attr(5, 0), AttrSequence());
  EXPECT_EQ(t.size(), 2u);
  t.Forget(5, 1);
  EXPECT_EQ(t.size(), 2u);
  t.Opened(a);
  t.Forget(5, 1);
  EXPECT_EQ(t.size(), 2u) << "still open";
  EXPECT_TRUE(t.Closed(a));
  EXPECT_EQ(t.size(), 1u);
  t.Forget(meta::kRootInode, 100);
  EXPECT_EQ(t.size(), 1u) << "the root is never forgotten";
  // Two handles: only the second close is the last.
  auto b = t.AddLookup(Attr(6, 0), AttrSequence());
  t.Opened(b);
  t.Opened(b);
  EXPECT_FALSE(t.Closed(b));
  EXPECT_TRUE(t.Closed(b));
}

// Many inodes (the table grows its buckets several times), found again by number, then
// forgotten in another order; an inode outlives its entry while someone holds it, and
// an open re-attaches an entry a racing forget removed.
TEST(InodeTable, ManyInodesGrowFindAndForget) {
  InodeTable t;
  constexpr meta::InodeId kN = 5000;
  for (meta::InodeId ino = 2; ino < kN + 2; ++ino) t.AddLookup(Attr(ino * 7919, ino), 0);
  EXPECT_EQ(t.size(), kN + 1);
  for (meta::InodeId ino = 2; ino < kN + 2; ++ino) {
    auto in = t.Find(ino * 7919);
    ASSERT_NE(in, nullptr) << ino;
    EXPECT_EQ(in->ino(), ino * 7919);
    EXPECT_EQ(in->size(), ino);
  }
  EXPECT_EQ(t.Find(3), nullptr);
  EXPECT_EQ(t.Get(3)->ino(), 3u) << "Get makes an entry";
  EXPECT_EQ(t.size(), kN + 2);
  t.Forget(3, 1);  // no lookup counted: erased
  EXPECT_EQ(t.size(), kN + 1);
  auto held = t.Find(2 * 7919);
  for (meta::InodeId ino = kN + 1; ino >= 2; --ino) t.Forget(ino * 7919, 1);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.Find(2 * 7919), nullptr);
  EXPECT_EQ(held->size(), 2u) << "the inode lives while held";
  t.Opened(held);
  EXPECT_EQ(t.Find(2 * 7919), held) << "an open re-attaches it";
  EXPECT_TRUE(t.Closed(held));
  EXPECT_EQ(t.size(), 1u);
  // A new inode of the same number is another object.
  auto again = t.AddLookup(Attr(2 * 7919, 9), 0);
  EXPECT_NE(again, held);
  EXPECT_EQ(t.size(), 2u);
}

TEST(Inode, StaleRepliesDoNotMoveTheSizeBack) {
  Inode inode(7);
  inode.SetAttr(Attr(7, 100));
  uint64_t seq = AttrSequence();                 // a getattr is sent...
  inode.SetAttr(Attr(7, 200));                   // ...a commit of ours finishes meanwhile...
  inode.UpdateAttr(Attr(7, 100, 0100600), seq);  // ...and the getattr's reply arrives
  EXPECT_EQ(inode.size(), 200u);
  EXPECT_EQ(inode.attr().mode, 0100600u) << "the other fields are taken";
  inode.UpdateAttr(Attr(7, 50), AttrSequence());  // a reply sent after: taken whole
  EXPECT_EQ(inode.size(), 50u);
  // Another generation is another file: taken whole, whatever the sequence.
  meta::InodeAttr other = Attr(7, 9);
  other.generation = 2;
  inode.UpdateAttr(other, 0);
  EXPECT_EQ(inode.size(), 9u);
}

TEST(Inode, PendingMtimeIsShownUntilTaken) {
  Inode inode(8);
  inode.SetAttr(Attr(8, 0));
  inode.NoteOverwrite({2000, 5});
  EXPECT_EQ(inode.attr().mtime, (meta::Timespec{2000, 5}));
  EXPECT_EQ(inode.server_attr().mtime, (meta::Timespec{1000, 0}));
  meta::Timespec t;
  ASSERT_TRUE(inode.TakePendingMtime(&t));
  EXPECT_EQ(t, (meta::Timespec{2000, 5}));
  EXPECT_FALSE(inode.TakePendingMtime(&t));
}

// A read's atime is shown until the server has it: while its commit (at the release,
// after close() returned) is in flight, a getattr answered from what the server had
// must not bring the old atime back.
TEST(Inode, PendingAtimeIsShownUntilCommitted) {
  Inode inode(9);
  meta::InodeAttr a = Attr(9, 5);
  a.atime = {1000, 0};  // older than the mtime: relatime updates it
  inode.SetAttr(a);
  ASSERT_TRUE(inode.NoteAccess({3000, 1}, AtimePolicy::kRelatime));
  meta::Timespec t;
  ASSERT_TRUE(inode.PendingAtime(&t));
  EXPECT_EQ(t, (meta::Timespec{3000, 1}));
  inode.UpdateAttr(a, AttrSequence());  // a getattr reply from before the commit landed
  EXPECT_EQ(inode.attr().atime, (meta::Timespec{3000, 1})) << "the commit is in flight";
  meta::InodeAttr committed = a;
  committed.atime = t;
  inode.UpdateAttr(committed, AttrSequence());
  inode.AtimeCommitted(t);
  EXPECT_FALSE(inode.PendingAtime(&t));
  EXPECT_EQ(inode.attr().atime, (meta::Timespec{3000, 1}));
  // A later access during a commit stays pending after it.
  ASSERT_TRUE(inode.NoteAccess({90000, 0}, AtimePolicy::kStrictatime));
  inode.AtimeCommitted({3000, 1});
  ASSERT_TRUE(inode.PendingAtime(&t));
  EXPECT_EQ(t, (meta::Timespec{90000, 0}));
}

TEST(Inode, OpenKeepsThePageCacheOnlyIfSizeAndMtimeAreUnchanged) {
  Inode inode(9);
  EXPECT_FALSE(inode.RefreshAtOpen(Attr(9, 10), AttrSequence())) << "nothing cached yet";
  EXPECT_TRUE(inode.RefreshAtOpen(Attr(9, 10), AttrSequence()));
  EXPECT_FALSE(inode.RefreshAtOpen(Attr(9, 11), AttrSequence()));
  meta::InodeAttr touched = Attr(9, 11);
  touched.mtime = {1001, 0};
  EXPECT_FALSE(inode.RefreshAtOpen(touched, AttrSequence()));
}

}  // namespace
}  // namespace dpmfs::fs
