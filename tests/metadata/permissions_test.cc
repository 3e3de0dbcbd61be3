// The permission rules of metadata/permissions.h, case by case against what Linux
// answers (the errno a local file system gives for the same caller, mode and call),
// and the caller policy (root_squash, allowed uids per host) of caller_policy.h.
#include "metadata/permissions.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>

#include "metadata/caller_policy.h"

namespace dpmfs::meta {
namespace {

using namespace perm;

Credentials User(uint32_t uid, uint32_t gid, std::initializer_list<uint32_t> groups = {}) {
  Credentials c;
  c.uid = uid;
  c.gid = gid;
  for (uint32_t g : groups) c.groups.push_back(g);
  return c;
}
const Credentials kRoot = User(0, 0);
const Credentials kAlice = User(1000, 1000, {100});
const Credentials kBob = User(1001, 1001);

InodeAttr Attr(uint32_t mode, uint32_t uid, uint32_t gid) {
  InodeAttr a;
  a.mode = mode;
  a.uid = uid;
  a.gid = gid;
  return a;
}

TEST(Permissions, ClassBitsOwnerGroupOthers) {
  const InodeAttr f = Attr(S_IFREG | 0640, 1000, 100);
  EXPECT_EQ(MayAccess(kAlice, f, kRead | kWrite), 0);   // owner rw-
  EXPECT_EQ(MayAccess(kAlice, f, kExec), EACCES);
  EXPECT_EQ(MayAccess(User(2000, 2000, {100}), f, kRead), 0);  // supplementary group r--
  EXPECT_EQ(MayAccess(User(2000, 100), f, kRead), 0);          // primary group
  EXPECT_EQ(MayAccess(User(2000, 100), f, kWrite), EACCES);
  EXPECT_EQ(MayAccess(kBob, f, kRead), EACCES);                // others ---
  // A member gets the group's bits even when the others' are wider (Linux does not
  // fall through to the others' class).
  EXPECT_EQ(MayAccess(User(2000, 100), Attr(S_IFREG | 0604, 1000, 100), kRead), EACCES);
  // The owner gets the owner's bits only.
  EXPECT_EQ(MayAccess(kAlice, Attr(S_IFREG | 0077, 1000, 1000), kRead), EACCES);
}

TEST(Permissions, RootOverridesExceptExecWithoutAnyXBit) {
  EXPECT_EQ(MayAccess(kRoot, Attr(S_IFREG | 0000, 1000, 1000), kRead | kWrite), 0);
  EXPECT_EQ(MayAccess(kRoot, Attr(S_IFREG | 0644, 1000, 1000), kExec), EACCES);
  EXPECT_EQ(MayAccess(kRoot, Attr(S_IFREG | 0001, 1000, 1000), kExec), 0);
  EXPECT_EQ(MayAccess(kRoot, Attr(S_IFDIR | 0000, 1000, 1000), kExec | kWrite), 0);
}

TEST(Permissions, LookupCreateDelete) {
  const InodeAttr dir = Attr(S_IFDIR | 0755, 0, 0);
  EXPECT_EQ(MayLookup(kAlice, dir), 0);
  EXPECT_EQ(MayLookup(kAlice, Attr(S_IFDIR | 0700, 0, 0)), EACCES);
  EXPECT_EQ(MayCreate(kAlice, dir), EACCES);
  EXPECT_EQ(MayCreate(kAlice, Attr(S_IFDIR | 0777, 0, 0)), 0);
  EXPECT_EQ(MayCreate(kAlice, Attr(S_IFDIR | 0766, 0, 0)), EACCES);  // w without x
  const InodeAttr victim = Attr(S_IFREG | 0644, 0, 0);
  EXPECT_EQ(MayDelete(kAlice, dir, victim), EACCES);
  EXPECT_EQ(MayDelete(kAlice, Attr(S_IFDIR | 0777, 0, 0), victim), 0);
}

TEST(Permissions, StickyDirectory) {
  const InodeAttr tmp = Attr(S_IFDIR | 01777, 0, 0);
  const InodeAttr bobs = Attr(S_IFREG | 0666, 1001, 1001);
  EXPECT_EQ(MayDelete(kAlice, tmp, bobs), EPERM);                     // not hers
  EXPECT_EQ(MayDelete(kBob, tmp, bobs), 0);                           // his own
  EXPECT_EQ(MayDelete(kRoot, tmp, bobs), 0);                          // root
  EXPECT_EQ(MayDelete(kAlice, Attr(S_IFDIR | 01777, 1000, 0), bobs), 0);  // her directory
  EXPECT_EQ(MayDelete(kAlice, Attr(S_IFDIR | 01755, 0, 0), bobs), EACCES);  // w first
}

TEST(Permissions, OpenModes) {
  const InodeAttr f = Attr(S_IFREG | 0604, 0, 0);
  EXPECT_EQ(MayOpen(kAlice, f, O_RDONLY), 0);
  EXPECT_EQ(MayOpen(kAlice, f, O_WRONLY), EACCES);
  EXPECT_EQ(MayOpen(kAlice, f, O_RDWR), EACCES);
  EXPECT_EQ(MayOpen(kAlice, f, O_RDONLY | O_TRUNC), EACCES);
  EXPECT_EQ(MayOpen(kAlice, Attr(S_IFREG | 0602, 0, 0), O_WRONLY), 0);
  EXPECT_EQ(MayOpen(kAlice, Attr(S_IFREG | 0602, 0, 0), O_RDONLY), EACCES);
  EXPECT_EQ(MayOpen(kRoot, Attr(S_IFREG | 0000, 1, 1), O_RDWR), 0);
}

// The kernel opens a program for execve with O_RDONLY | __FMODE_EXEC and FUSE passes
// the flags on: x is what it needs, not r (xfstests generic/126: a mode-001 program).
TEST(Permissions, OpenForExecNeedsExecNotRead) {
  EXPECT_EQ(OpenAccess(O_RDONLY | kFmodeExec), kExec);
  EXPECT_EQ(OpenAccess(O_RDONLY), kRead);
  const InodeAttr exec_only = Attr(S_IFREG | 0001, 0, 0);
  EXPECT_EQ(MayOpen(kAlice, exec_only, O_RDONLY | kFmodeExec), 0);
  EXPECT_EQ(MayOpen(kAlice, exec_only, O_RDONLY), EACCES);
  const InodeAttr read_only = Attr(S_IFREG | 0004, 0, 0);
  EXPECT_EQ(MayOpen(kAlice, read_only, O_RDONLY | kFmodeExec), EACCES);
  // Root executes only what someone may execute.
  EXPECT_EQ(MayOpen(kRoot, Attr(S_IFREG | 0644, 1, 1), O_RDONLY | kFmodeExec), EACCES);
  EXPECT_EQ(MayOpen(kRoot, Attr(S_IFREG | 0100, 1, 1), O_RDONLY | kFmodeExec), 0);
}

// Where the blocks are: a reader (or the owner), a writer, or an executor may ask.
TEST(Permissions, LayoutForReadersWritersOwnersAndExecutors) {
  EXPECT_EQ(MayReadLayout(kBob, Attr(S_IFREG | 0004, 1000, 1000)), 0);
  EXPECT_EQ(MayReadLayout(kBob, Attr(S_IFREG | 0002, 1000, 1000)), 0);
  EXPECT_EQ(MayReadLayout(kBob, Attr(S_IFREG | 0001, 1000, 1000)), 0);
  EXPECT_EQ(MayReadLayout(kBob, Attr(S_IFREG | 0770, 1000, 1000)), EACCES);
  EXPECT_EQ(MayReadLayout(kAlice, Attr(S_IFREG | 0000, 1000, 1000)), 0);  // owner
  EXPECT_EQ(MayReadLayout(kRoot, Attr(S_IFREG | 0000, 1000, 1000)), 0);
}

TEST(Permissions, MknodDevicesNeedRoot) {
  EXPECT_EQ(MayMknod(kAlice, S_IFCHR), EPERM);
  EXPECT_EQ(MayMknod(kAlice, S_IFBLK), EPERM);
  EXPECT_EQ(MayMknod(kAlice, S_IFIFO), 0);
  EXPECT_EQ(MayMknod(kRoot, S_IFCHR), 0);
}

SetattrRequest Chmod(uint32_t mode) {
  SetattrRequest r;
  r.valid = SetattrRequest::kMode;
  r.mode = mode;
  return r;
}

TEST(Permissions, ChmodOwnerOrRoot) {
  const InodeAttr f = Attr(S_IFREG | 0644, 1000, 1000);
  uint32_t mode = 0;
  EXPECT_EQ(MaySetattr(kAlice, f, Chmod(0600), &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 0600u);
  EXPECT_EQ(MaySetattr(kBob, f, Chmod(0666), &mode), EPERM);
  EXPECT_EQ(MaySetattr(kRoot, f, Chmod(04755), &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 04755u);
}

TEST(Permissions, ChmodBySomeoneOutsideTheGroupDropsSetgid) {
  const InodeAttr f = Attr(S_IFREG | 0644, 1000, 500);  // alice's file, group 500
  uint32_t mode = 0;
  EXPECT_EQ(MaySetattr(kAlice, f, Chmod(02755), &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 0755u);
  EXPECT_EQ(MaySetattr(User(1000, 1000, {500}), f, Chmod(02755), &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 02755u);
  EXPECT_EQ(MaySetattr(kRoot, f, Chmod(02755), &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 02755u);
}

TEST(Permissions, KillPrivByAWriterIsAllowedAndNothingElse) {
  const InodeAttr f = Attr(S_IFREG | 06776, 1000, 1000);  // bob may write (others rw)
  uint32_t mode = 0;
  EXPECT_EQ(MaySetattr(kBob, f, Chmod(0776), &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 0776u);
  EXPECT_EQ(MaySetattr(kBob, f, Chmod(0777), &mode), EPERM);   // adds a bit
  EXPECT_EQ(MaySetattr(kBob, f, Chmod(06776), &mode), EPERM);  // changes nothing
  EXPECT_EQ(MaySetattr(kBob, Attr(S_IFREG | 06774, 1000, 1000), Chmod(0774), &mode), EPERM);
}

TEST(Permissions, Chown) {
  const InodeAttr f = Attr(S_IFREG | 06755, 1000, 1000);
  SetattrRequest r;
  uint32_t mode = 0;
  r.valid = SetattrRequest::kUid;
  r.uid = 1001;
  EXPECT_EQ(MaySetattr(kAlice, f, r, &mode), EPERM);  // giving it away: root only
  EXPECT_EQ(MaySetattr(kRoot, f, r, &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 0755u);  // set-ID bits gone (group x was set)
  r.uid = 1000;
  EXPECT_EQ(MaySetattr(kAlice, f, r, &mode), 0);  // to herself: a no-op, allowed
  r.valid = SetattrRequest::kGid;
  r.gid = 100;
  EXPECT_EQ(MaySetattr(kAlice, f, r, &mode), 0);  // a group she is in
  r.gid = 4242;
  EXPECT_EQ(MaySetattr(kAlice, f, r, &mode), EPERM);
  EXPECT_EQ(MaySetattr(kBob, f, r, &mode), EPERM);  // not the owner
  // A directory keeps its set-group-ID bit across chown.
  r.gid = 100;
  EXPECT_EQ(MaySetattr(kAlice, Attr(S_IFDIR | 02755, 1000, 1000), r, &mode), 0);
  EXPECT_EQ(mode, S_IFDIR | 02755u);
}

TEST(Permissions, Utimes) {
  const InodeAttr f = Attr(S_IFREG | 0646, 1000, 1000);  // bob may write
  SetattrRequest now;
  now.valid = SetattrRequest::kAtime | SetattrRequest::kAtimeNow | SetattrRequest::kMtime |
              SetattrRequest::kMtimeNow;
  SetattrRequest set;
  set.valid = SetattrRequest::kAtime | SetattrRequest::kMtime;
  uint32_t mode = 0;
  EXPECT_EQ(MaySetattr(kBob, f, now, &mode), 0);        // touch: write permission is enough
  EXPECT_EQ(MaySetattr(kBob, f, set, &mode), EPERM);    // explicit times: owner or root
  EXPECT_EQ(MaySetattr(kAlice, f, set, &mode), 0);
  EXPECT_EQ(MaySetattr(kRoot, f, set, &mode), 0);
  const InodeAttr ro = Attr(S_IFREG | 0644, 1000, 1000);
  EXPECT_EQ(MaySetattr(kBob, ro, now, &mode), EACCES);  // now, without write
  EXPECT_EQ(MaySetattr(kAlice, ro, now, &mode), 0);
}

TEST(Permissions, TruncateAndWritesClearSetIdForNonRoot) {
  SetattrRequest t;
  t.valid = SetattrRequest::kSize;
  uint32_t mode = 0;
  EXPECT_EQ(MaySetattr(kBob, Attr(S_IFREG | 0644, 1000, 1000), t, &mode), EACCES);
  EXPECT_EQ(MaySetattr(kAlice, Attr(S_IFREG | 0444, 1000, 1000), t, &mode), 0);  // owner
  EXPECT_EQ(MaySetattr(kBob, Attr(S_IFREG | 06777, 1000, 1000), t, &mode), 0);
  EXPECT_EQ(mode, S_IFREG | 0777u);
  EXPECT_EQ(ModeAfterWrite(kBob, S_IFREG | 06755), S_IFREG | 0755u);
  EXPECT_EQ(ModeAfterWrite(kBob, S_IFREG | 06745), S_IFREG | 02745u);  // sgid without g+x stays
  EXPECT_EQ(ModeAfterWrite(kRoot, S_IFREG | 06755), S_IFREG | 06755u);
}

// xfstests generic/683-685: fallocate, punch and zero by another user take set-user-ID,
// and set-group-ID when the group may execute or the caller is not in the group.
TEST(Permissions, FallocateClearsSetIdAsALocalFileSystemDoes) {
  EXPECT_EQ(ModeAfterFallocate(kBob, S_IFREG | 06666, 1000), S_IFREG | 0666u);  // not in 1000
  EXPECT_EQ(ModeAfterFallocate(kBob, S_IFREG | 06676, 1000), S_IFREG | 0676u);
  EXPECT_EQ(ModeAfterFallocate(kAlice, S_IFREG | 06666, 100), S_IFREG | 02666u)  // a member
      << "set-group-ID without group execute stays for a member of the group";
  EXPECT_EQ(ModeAfterFallocate(kAlice, S_IFREG | 06676, 100), S_IFREG | 0676u);
  EXPECT_EQ(ModeAfterFallocate(kRoot, S_IFREG | 06666, 1000), S_IFREG | 06666u);  // CAP_FSETID
}

TEST(Permissions, DataOperationsOwnerOverride) {
  const InodeAttr f = Attr(S_IFREG | 0444, 1000, 1000);
  EXPECT_EQ(MayAccessOwnerOverride(kAlice, f, kWrite), 0);
  EXPECT_EQ(MayAccessOwnerOverride(kBob, f, kWrite), EACCES);
  EXPECT_EQ(MayAccessOwnerOverride(kBob, f, kRead), 0);
}

TEST(Permissions, NewInodesBelongToTheCaller) {
  uint32_t uid = 7, gid = 7;
  NewOwner(kAlice, 0, 0, &uid, &gid);  // a non-root caller cannot make root's files
  EXPECT_EQ(uid, 1000u);
  EXPECT_EQ(gid, 1000u);
  NewOwner(kRoot, 1001, 1002, &uid, &gid);  // root may name the owner
  EXPECT_EQ(uid, 1001u);
  EXPECT_EQ(gid, 1002u);
  // A set-group-ID directory: its group; directories keep the bit; a file with
  // set-group-ID and group x made by a non-member loses the bit.
  const InodeAttr sgid_dir = Attr(S_IFDIR | 02777, 0, 500);
  uint32_t mode = S_IFREG | 02755;
  gid = 1000;
  InheritFromDirectory(kAlice, sgid_dir, &mode, &gid);
  EXPECT_EQ(gid, 500u);
  EXPECT_EQ(mode, S_IFREG | 0755u);
  mode = S_IFREG | 02755;
  InheritFromDirectory(User(1000, 1000, {500}), sgid_dir, &mode, &gid);
  EXPECT_EQ(mode, S_IFREG | 02755u);
  mode = S_IFDIR | 0755;
  InheritFromDirectory(kAlice, sgid_dir, &mode, &gid);
  EXPECT_EQ(mode, S_IFDIR | 02755u);
}

TEST(Permissions, Xattrs) {
  const InodeAttr f = Attr(S_IFREG | 0644, 1000, 1000);
  EXPECT_EQ(MayXattr(kBob, f, "user.a", false), 0);
  EXPECT_EQ(MayXattr(kBob, f, "user.a", true), EACCES);
  EXPECT_EQ(MayXattr(kAlice, f, "user.a", true), 0);
  EXPECT_EQ(MayXattr(kBob, Attr(S_IFREG | 0600, 1000, 1000), "user.a", false), EACCES);
  EXPECT_EQ(MayXattr(kAlice, f, "trusted.a", true), EPERM);
  EXPECT_EQ(MayXattr(kAlice, f, "trusted.a", false), ENODATA);
  EXPECT_EQ(MayXattr(kRoot, f, "trusted.a", true), 0);
  EXPECT_EQ(MayXattr(kAlice, f, "security.a", true), EPERM);
  EXPECT_EQ(MayXattr(kAlice, f, "security.a", false), 0);
  EXPECT_EQ(MayXattr(kAlice, Attr(S_IFLNK | 0777, 1000, 1000), "user.a", true), EPERM);
  EXPECT_EQ(MayXattr(kAlice, Attr(S_IFLNK | 0777, 1000, 1000), "user.a", false), ENODATA);
  // A sticky directory: user.* writes by owner or root only, even with write access.
  EXPECT_EQ(MayXattr(kBob, Attr(S_IFDIR | 01777, 1000, 1000), "user.a", true), EPERM);
  EXPECT_EQ(MayXattr(kAlice, Attr(S_IFDIR | 01777, 1000, 1000), "user.a", true), 0);
  EXPECT_FALSE(MayListXattr(kAlice, "trusted.a"));
  EXPECT_TRUE(MayListXattr(kAlice, "user.a"));
  EXPECT_TRUE(MayListXattr(kRoot, "trusted.a"));
}

// The kernel's kill-priv after a write by another user removes security.capability
// as that user: whoever may write the file may remove it, and nothing else of security.*
// (xfstests generic/688 failed with EPERM on fallocate by another user).
TEST(Permissions, AWriterMayRemoveSecurityCapabilityOnly) {
  const InodeAttr writable = Attr(S_IFREG | 0666, 1000, 1000);
  EXPECT_EQ(MayRemoveXattr(kBob, writable, "security.capability"), 0);
  EXPECT_EQ(MayRemoveXattr(kBob, writable, "security.selinux"), EPERM);
  EXPECT_EQ(MayRemoveXattr(kBob, writable, "trusted.a"), EPERM);
  EXPECT_EQ(MayRemoveXattr(kBob, Attr(S_IFREG | 0644, 1000, 1000), "security.capability"),
            EPERM);
  EXPECT_EQ(MayRemoveXattr(kBob, writable, "user.a"), 0);  // as MayXattr's write
  EXPECT_EQ(MayRemoveXattr(kBob, Attr(S_IFREG | 0644, 1000, 1000), "user.a"), EACCES);
  EXPECT_EQ(MayRemoveXattr(kRoot, Attr(S_IFREG | 0000, 1000, 1000), "security.capability"), 0);
}

TEST(CallerPolicy, RootSquash) {
  CallerPolicyOptions o;
  o.root_squash = true;
  auto p = CallerPolicy::Create(o);
  ASSERT_TRUE(p.ok());
  Credentials c = User(0, 0, {0, 10});
  EXPECT_EQ(p->Map("10.0.0.7:5000", &c), 0);
  EXPECT_EQ(c.uid, kAnonymousId);
  EXPECT_EQ(c.gid, kAnonymousId);
  EXPECT_EQ(c.groups[0], kAnonymousId);
  EXPECT_EQ(c.groups[1], 10u);
  Credentials a = kAlice;
  EXPECT_EQ(p->Map("10.0.0.7:5000", &a), 0);
  EXPECT_EQ(a, kAlice);
}

TEST(CallerPolicy, AllowedUidsPerHost) {
  auto spec = ParseAllowUids("10.0.0.7=1000-1999,3000");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  CallerPolicyOptions o;
  o.allow_uids.push_back(*spec);
  auto p = CallerPolicy::Create(o);
  ASSERT_TRUE(p.ok());
  Credentials c = kAlice;
  EXPECT_EQ(p->Map("10.0.0.7:41000", &c), 0);
  c = User(3000, 1);
  EXPECT_EQ(p->Map("10.0.0.7:41000", &c), 0);
  c = User(2000, 1);
  EXPECT_EQ(p->Map("10.0.0.7:41000", &c), EPERM);
  c = kRoot;
  EXPECT_EQ(p->Map("10.0.0.7:41000", &c), EPERM);
  c = User(kAnonymousId, kAnonymousId);
  EXPECT_EQ(p->Map("10.0.0.7:41000", &c), 0);  // nobody is always allowed
  c = User(2000, 1);
  EXPECT_EQ(p->Map("10.0.0.8:41000", &c), 0);  // another host: no rule
  // With root_squash, root arrives as nobody and is allowed as nobody.
  o.root_squash = true;
  auto q = CallerPolicy::Create(o);
  c = kRoot;
  EXPECT_EQ(q->Map("10.0.0.7:1", &c), 0);
  EXPECT_EQ(c.uid, kAnonymousId);
}

TEST(CallerPolicy, BadSpecsSayWhatIsWrong) {
  for (const char* bad : {"10.0.0.7", "=1-2", "10.0.0.7=", "10.0.0.7=5-1", "10.0.0.7=a-b",
                          "10.0.0.7=1-2,", "10.0.0.7=1-99999999999"}) {
    auto r = ParseAllowUids(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("HOST=LO-HI"), std::string::npos) << r.status().ToString();
  }
  CallerPolicyOptions o;
  o.allow_uids.push_back(*ParseAllowUids("h=1"));
  o.allow_uids.push_back(*ParseAllowUids("h=2"));
  EXPECT_FALSE(CallerPolicy::Create(o).ok());
  EXPECT_EQ(PeerHost("[::1]:7000"), "::1");
  EXPECT_EQ(PeerHost("127.0.0.1:7000"), "127.0.0.1");
}

}  // namespace
}  // namespace dpmfs::meta
