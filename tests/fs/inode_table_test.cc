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
