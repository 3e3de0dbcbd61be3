// Namespace, in process: every operation and errno, rename edge cases, readdir cookies,
// big directories, xattrs, data operations, ENOSPC, sessions, and the two properties
// recovery relies on: journal replay reproduces the state exactly, and a checkpoint
// round trip is lossless. Every test ends with the namespace's invariant check.
#include "metadata/namespace.h"
#include "metadata/posix_acl.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <chrono>
#include <cstring>
#include <random>
#include <set>

#include "metadata/mutation.h"
#include "metadata/namespace_internal.h"

namespace dpmfs::meta {
namespace {

constexpr uint32_t kBlock = 4096;
constexpr uint32_t kUnit = 64 * 1024;

NamespaceConfig MakeConfig(uint64_t pool_bytes = 64ull << 20, uint32_t pools = 2) {
  NamespaceConfig c;
  c.block_size = kBlock;
  c.stripe_unit = kUnit;
  for (uint32_t i = 0; i < pools; ++i) c.pools.push_back(DataPoolGeometry{i, kBlock, pool_bytes});
  c.root_time = Timespec{1600000000, 5};
  c.max_inodes = 1u << 30;
  c.reply_cache_entries = 8;
  c.lease_ms = 1000;
  c.cluster.block_size = kBlock;
  c.cluster.stripe_unit = kUnit;
  for (uint32_t i = 0; i < pools; ++i) {
    c.cluster.servers.push_back(
        DataServerInfo{i, "127.0.0.1:" + std::to_string(7001 + i), pool_bytes});
  }
  return c;
}

class NamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override { ns_ = std::make_unique<Namespace>(config_); }
  void TearDown() override {
    Status st = ns_->CheckInvariants();
    EXPECT_TRUE(st.ok()) << st.ToString();
  }

  // Runs a mutation like MetaService does and keeps its journal record.
  template <class Req, class Rep>
  int Mut(Opcode op, const Req& req, Rep* rep) {
    return MutRaw(static_cast<uint16_t>(op), Encode(req), rep);
  }
  template <class Rep>
  int MutRaw(uint16_t op, const std::vector<uint8_t>& payload, Rep* rep) {
    OpContext ctx;
    ++tick_;
    ctx.now = Timespec{1700000000 + static_cast<int64_t>(tick_), static_cast<uint32_t>(tick_)};
    ctx.session = session_;
    ctx.seq = ++seq_;
    ctx.lease_deadline_ms = 1;
    ctx.space_wait_limit_ms = wait_limit_ms_;
    ctx.caller = caller_;
    clock_ms_ += clock_step_ms_;
    int err = -1;
    auto r = ns_->Mutate(op, payload, ctx, &err);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return -1;
    last_retry_at_ms_ = ctx.retry_at_ms;
    if (ctx.retry_at_ms != 0) {
      // Not an answer yet (MetaService waits and runs it again): not journaled.
      EXPECT_EQ(err, ENOSPC);
      return err;
    }
    std::vector<uint8_t> bytes;
    EncodeMutation(RecordOf(op, ctx, err, payload), &bytes);
    log_.push_back(std::move(bytes));
    int e = 0;
    std::span<const uint8_t> body;
    EXPECT_TRUE(SplitReply(*r, &e, &body).ok());
    EXPECT_EQ(e, err);
    if (err == 0 && rep != nullptr) {
      Status st = Decode(body, rep);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    return err;
  }
  template <class Req, class Rep>
  int Rd(Opcode op, const Req& req, Rep* rep) {
    auto r = ns_->Read(static_cast<uint16_t>(op), Encode(req));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return -1;
    int e = 0;
    std::span<const uint8_t> body;
    EXPECT_TRUE(SplitReply(*r, &e, &body).ok());
    if (e == 0 && rep != nullptr) {
      Status st = Decode(body, rep);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    return e;
  }

  // ---- Typed helpers ----
  int Create(InodeId parent, const std::string& name, InodeAttr* attr = nullptr,
             uint64_t* handle = nullptr, uint32_t flags = 0, uint32_t mode = S_IFREG | 0644) {
    CreateReply rep;
    int e = Mut(Opcode::kCreate, CreateRequest{parent, name, mode, 1000, 1000, flags}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    if (e == 0 && handle) *handle = rep.handle;
    return e;
  }
  // Creates and closes: a plain file.
  InodeId File(InodeId parent, const std::string& name) {
    InodeAttr a;
    uint64_t h = 0;
    EXPECT_EQ(Create(parent, name, &a, &h), 0) << name;
    EXPECT_EQ(Release(a.ino, h), 0);
    return a.ino;
  }
  int Mkdir(InodeId parent, const std::string& name, InodeAttr* attr = nullptr) {
    EntryReply rep;
    int e = Mut(Opcode::kMkdir, MkdirRequest{parent, name, 0755, 0, 0}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  InodeId Dir(InodeId parent, const std::string& name) {
    InodeAttr a;
    EXPECT_EQ(Mkdir(parent, name, &a), 0) << name;
    return a.ino;
  }
  int Mknod(InodeId parent, const std::string& name, uint32_t mode, uint64_t rdev = 0,
            InodeAttr* attr = nullptr) {
    EntryReply rep;
    int e = Mut(Opcode::kMknod, MknodRequest{parent, name, mode, rdev, 0, 0}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  int Symlink(InodeId parent, const std::string& name, const std::string& target,
              InodeAttr* attr = nullptr) {
    EntryReply rep;
    int e = Mut(Opcode::kSymlink, SymlinkRequest{parent, name, target, 0, 0}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  int Readlink(InodeId ino, std::string* target) {
    ReadlinkReply rep;
    int e = Rd(Opcode::kReadlink, ReadlinkRequest{ino}, &rep);
    if (e == 0) *target = rep.target;
    return e;
  }
  int Link(InodeId ino, InodeId parent, const std::string& name, InodeAttr* attr = nullptr) {
    EntryReply rep;
    int e = Mut(Opcode::kLink, LinkRequest{ino, parent, name}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  // Unlink, Rmdir and Rename keep the changed directories of their reply in last_dirs_.
  int Unlink(InodeId parent, const std::string& name) {
    DirsReply rep;
    int e = Mut(Opcode::kUnlink, UnlinkRequest{parent, name}, &rep);
    last_dirs_ = rep.dirs;
    return e;
  }
  int Rmdir(InodeId parent, const std::string& name) {
    DirsReply rep;
    int e = Mut(Opcode::kRmdir, UnlinkRequest{parent, name}, &rep);
    last_dirs_ = rep.dirs;
    return e;
  }
  int Rename(InodeId p, const std::string& n, InodeId np, const std::string& nn,
             uint32_t flags = 0) {
    DirsReply rep;
    int e = Mut(Opcode::kRename, RenameRequest{p, n, np, nn, flags}, &rep);
    last_dirs_ = rep.dirs;
    return e;
  }
  int Lookup(InodeId parent, const std::string& name, InodeAttr* attr = nullptr) {
    EntryReply rep;
    int e = Rd(Opcode::kLookup, LookupRequest{parent, name}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  InodeAttr Attr(InodeId ino) {
    AttrReply rep;
    EXPECT_EQ(Rd(Opcode::kGetattr, GetattrRequest{ino}, &rep), 0) << ino;
    return rep.attr;
  }
  int Getattr(InodeId ino) {
    AttrReply rep;
    return Rd(Opcode::kGetattr, GetattrRequest{ino}, &rep);
  }
  int Open(InodeId ino, uint32_t flags, uint64_t* handle = nullptr, InodeAttr* attr = nullptr) {
    OpenReply rep;
    int e = Mut(Opcode::kOpen, OpenRequest{ino, flags}, &rep);
    if (e == 0 && handle) *handle = rep.handle;
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  int Release(InodeId ino, uint64_t handle) {
    EmptyReply rep;
    return Mut(Opcode::kRelease, ReleaseRequest{ino, handle}, &rep);
  }
  int Setattr(const SetattrRequest& req, InodeAttr* attr = nullptr) {
    AttrReply rep;
    int e = Mut(Opcode::kSetattr, req, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  int Truncate(InodeId ino, uint64_t size) {
    SetattrRequest r;
    r.ino = ino;
    r.valid = SetattrRequest::kSize;
    r.size = size;
    return Setattr(r);
  }
  int Setxattr(InodeId ino, const std::string& name, const std::string& value, uint32_t flags = 0) {
    EmptyReply rep;
    return Mut(Opcode::kSetxattr, SetxattrRequest{ino, name, value, flags}, &rep);
  }
  int Getxattr(InodeId ino, const std::string& name, std::string* value) {
    GetxattrReply rep;
    int e = Rd(Opcode::kGetxattr, GetxattrRequest{ino, name}, &rep);
    if (e == 0) *value = rep.value;
    return e;
  }
  int Removexattr(InodeId ino, const std::string& name) {
    EmptyReply rep;
    return Mut(Opcode::kRemovexattr, RemovexattrRequest{ino, name}, &rep);
  }
  std::vector<std::string> Listxattr(InodeId ino) {
    ListxattrReply rep;
    EXPECT_EQ(Rd(Opcode::kListxattr, ListxattrRequest{ino}, &rep), 0);
    return rep.names;
  }
  int Allocate(InodeId ino, uint64_t off, uint64_t len, std::vector<Extent>* out = nullptr) {
    AllocateReply rep;
    int e = Mut(Opcode::kAllocate, AllocateRequest{ino, off, len}, &rep);
    if (e == 0 && out) *out = rep.extents;
    return e;
  }
  int Commit(InodeId ino, uint64_t new_size, std::vector<ByteRange> written,
             InodeAttr* attr = nullptr) {
    CommitRequest r;
    r.ino = ino;
    r.valid = CommitRequest::kSize;
    r.new_size = new_size;
    r.mtime = Timespec{1800000000, 7};
    r.written = std::move(written);
    AttrReply rep;
    int e = Mut(Opcode::kCommit, r, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  int Fallocate(InodeId ino, uint32_t mode, uint64_t off, uint64_t len, InodeAttr* attr = nullptr) {
    AttrReply rep;
    int e = Mut(Opcode::kFallocate, FallocateRequest{ino, mode, off, len}, &rep);
    if (e == 0 && attr) *attr = rep.attr;
    return e;
  }
  std::vector<Extent> Layout(InodeId ino, uint64_t off = 0, uint64_t len = 0) {
    LayoutReply rep;
    EXPECT_EQ(Rd(Opcode::kLayout, LayoutRequest{ino, off, len}, &rep), 0);
    return rep.extents;
  }
  StatfsReply Statfs() {
    StatfsReply rep;
    EXPECT_EQ(Rd(Opcode::kStatfs, StatfsRequest{}, &rep), 0);
    return rep;
  }
  int Readdir(InodeId ino, uint64_t cookie, uint32_t max, bool plus, ReaddirReply* rep) {
    return Rd(Opcode::kReaddir, ReaddirRequest{ino, cookie, max, plus}, rep);
  }
  std::vector<std::string> List(InodeId dir) {
    std::vector<std::string> names;
    uint64_t cookie = 0;
    for (;;) {
      ReaddirReply rep;
      EXPECT_EQ(Readdir(dir, cookie, kMaxReaddirEntries, false, &rep), 0);
      for (const DirEntry& e : rep.entries) {
        names.push_back(e.name);
        cookie = e.cookie;
      }
      if (rep.eof) break;
      if (rep.entries.empty()) {
        ADD_FAILURE() << "readdir made no progress";
        break;
      }
    }
    return names;
  }

  // Replays the journal onto a fresh namespace (optionally starting from a checkpoint
  // taken after `from` records) and expects exactly the live state.
  void ExpectReplayEqual(const std::vector<uint8_t>* checkpoint = nullptr, size_t from = 0) {
    Namespace b(config_);
    if (checkpoint != nullptr) {
      Status st = b.Load(*checkpoint);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    for (size_t i = from; i < log_.size(); ++i) {
      Status st = ApplyRecord(b, i + 1, log_[i]);
      ASSERT_TRUE(st.ok()) << "record " << i << ": " << st.ToString();
    }
    Status st = b.CheckInvariants();
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(b.Serialize() == ns_->Serialize()) << "replayed state differs from the live one";
    // Replay quarantines nothing: what the live namespace still holds is free there.
    EXPECT_EQ(b.quarantined_bytes(), 0u);
    EXPECT_EQ(b.free_bytes(), ns_->free_bytes() + ns_->quarantined_bytes());
  }
  void ExpectCheckpointRoundTrip() {
    std::vector<uint8_t> blob = ns_->Serialize();
    Namespace c(config_);
    Status st = c.Load(blob);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(c.Serialize() == blob);
    EXPECT_EQ(c.free_bytes(), ns_->free_bytes() + ns_->quarantined_bytes());
  }

  NamespaceConfig config_ = MakeConfig();
  std::unique_ptr<Namespace> ns_;
  std::vector<std::vector<uint8_t>> log_;
  uint64_t session_ = 0x5e55;
  uint64_t seq_ = 0;
  uint64_t tick_ = 0;
  Credentials caller_;  // whom the mutations act for (root unless a test changes it)
  std::vector<InodeAttr> last_dirs_;  // of the last Unlink, Rmdir or Rename
  // The quarantine's clock (QuarantineTest hooks it into config_): each mutation first
  // moves it clock_step_ms_ on.
  int64_t clock_ms_ = 1000;
  int64_t clock_step_ms_ = 0;
  int64_t wait_limit_ms_ = 0;     // OpContext::space_wait_limit_ms of every mutation
  int64_t last_retry_at_ms_ = 0;  // OpContext::retry_at_ms of the last mutation

  void RandomWorkloadReplaysExactly(uint64_t seed);
};

// ---------------------------------------------------------------------------------------

TEST_F(NamespaceTest, RootDirectory) {
  InodeAttr root = Attr(kRootInode);
  EXPECT_EQ(root.mode, S_IFDIR | 0755u);
  EXPECT_EQ(root.nlink, 2u);
  EXPECT_EQ(root.mtime, (Timespec{1600000000, 5}));
  EXPECT_EQ(List(kRootInode).size(), 0u);
  EXPECT_EQ(Getattr(999), ENOENT);
}

TEST_F(NamespaceTest, CreateLookupOpen) {
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "a", &a, &h), 0);
  EXPECT_EQ(a.mode, S_IFREG | 0644u);
  EXPECT_EQ(a.nlink, 1u);
  EXPECT_EQ(a.uid, 1000u);
  EXPECT_EQ(a.size, 0u);
  EXPECT_NE(h, 0u);
  EXPECT_GT(a.ino, kRootInode);
  InodeAttr b;
  ASSERT_EQ(Lookup(kRootInode, "a", &b), 0);
  EXPECT_EQ(a, b);
  EXPECT_EQ(Attr(kRootInode).mtime, a.mtime);  // the parent changed at the same moment
  // Existing: opened, not created; O_EXCL refuses.
  CreateReply rep;
  ASSERT_EQ(Mut(Opcode::kCreate, CreateRequest{kRootInode, "a", 0644, 0, 0, O_CREAT}, &rep), 0);
  EXPECT_FALSE(rep.created);
  EXPECT_EQ(rep.attr.ino, a.ino);
  EXPECT_NE(rep.handle, h);
  EXPECT_EQ(Create(kRootInode, "a", nullptr, nullptr, O_CREAT | O_EXCL), EEXIST);
  EXPECT_EQ(Release(a.ino, h), 0);
  EXPECT_EQ(Release(a.ino, rep.handle), 0);
  EXPECT_EQ(Release(a.ino, rep.handle), EBADF);
  // Errors.
  EXPECT_EQ(Create(12345, "x"), ENOENT);
  EXPECT_EQ(Create(a.ino, "x"), ENOTDIR);
  EXPECT_EQ(Create(kRootInode, "d", nullptr, nullptr, 0, S_IFDIR | 0755), EINVAL);
  EXPECT_EQ(Lookup(kRootInode, "missing"), ENOENT);
  EXPECT_EQ(Lookup(a.ino, "x"), ENOTDIR);
  ASSERT_EQ(Mkdir(kRootInode, "d"), 0);
  EXPECT_EQ(Create(kRootInode, "d"), EISDIR);
  // Open.
  uint64_t h2 = 0;
  EXPECT_EQ(Open(a.ino, O_RDWR, &h2), 0);
  EXPECT_EQ(Release(a.ino + 1000, h2), EINVAL);  // handle of another inode
  EXPECT_EQ(Release(a.ino, h2), 0);
  EXPECT_EQ(Open(777777, O_RDONLY), ENOENT);
  InodeAttr d;
  ASSERT_EQ(Lookup(kRootInode, "d", &d), 0);
  EXPECT_EQ(Open(d.ino, O_RDWR), EISDIR);
  uint64_t hd = 0;
  EXPECT_EQ(Open(d.ino, O_RDONLY | O_DIRECTORY, &hd), 0);
  EXPECT_EQ(Release(d.ino, hd), 0);
  ExpectReplayEqual();
}

// The journal keeps the caller each mutation acted for: replay must decide as the live
// run did (here the owner of a new inode), not as root. (This file's journal once dropped the caller and replayed as root.)
TEST_F(NamespaceTest, ReplayDecidesForTheJournaledCaller) {
  EntryReply dir;
  ASSERT_EQ(Mut(Opcode::kMkdir, MkdirRequest{kRootInode, "shared", 0777, 0, 0}, &dir), 0);
  caller_.uid = 1000;
  caller_.gid = 1000;
  CreateReply created;
  // Asks for root's ownership: a non-root caller gets its own.
  ASSERT_EQ(Mut(Opcode::kCreate, CreateRequest{dir.attr.ino, "f", 0644, 0, 0, O_CREAT}, &created),
            0);
  EXPECT_EQ(created.attr.uid, 1000u);
  EntryReply refused;
  EXPECT_EQ(Mut(Opcode::kMkdir, MkdirRequest{kRootInode, "mine", 0755, 0, 0}, &refused), EACCES);
  ExpectReplayEqual();
}

// POSIX ACLs through the xattr operations (metadata/posix_acl.h has the rules; here,
// that the server applies them): set with the mode following, checked for access,
// rewritten by chmod, inherited by new inodes, and the same after replay and checkpoint.
TEST_F(NamespaceTest, PosixAclsDecideAccessFollowChmodAndAreInherited) {
  using acl::Entry;
  using acl::Tag;
  auto value = [](std::vector<Entry> entries) {
    std::vector<uint8_t> b = acl::Encode(acl::PosixAcl{std::move(entries)});
    return std::string(b.begin(), b.end());
  };
  const uint32_t u = acl::kUndefinedId;
  InodeId d = Dir(kRootInode, "shared");  // 0755, root's
  InodeId f = File(d, "f");               // 0644, uid 1000 gid 1000
  const std::string grant_1001 = value({{Tag::kUserObj, 6, u}, {Tag::kUser, 6, 1001},
                                        {Tag::kGroupObj, 4, u}, {Tag::kMask, 6, u},
                                        {Tag::kOther, 4, u}});
  caller_ = Credentials{1001, 1001, {}};
  EXPECT_EQ(Open(f, O_WRONLY), EACCES) << "the mode alone: others may only read";
  EXPECT_EQ(Setxattr(f, "system.posix_acl_access", grant_1001), EPERM) << "not the owner";
  caller_ = Credentials{1000, 1000, {}};
  ASSERT_EQ(Setxattr(f, "system.posix_acl_access", grant_1001), 0) << "the owner may";
  EXPECT_EQ(Attr(f).mode & 07777, 0664u) << "the mask is the group class of the mode";
  std::string v;
  ASSERT_EQ(Getxattr(f, "system.posix_acl_access", &v), 0);
  EXPECT_EQ(v, grant_1001);
  caller_ = Credentials{1001, 1001, {}};
  EXPECT_EQ(Open(f, O_WRONLY), 0) << "user:1001:rw- within mask::rw-";
  EXPECT_EQ(Open(f, O_RDONLY), 0);
  caller_ = Credentials{1002, 1000, {}};
  EXPECT_EQ(Open(f, O_WRONLY), EACCES) << "the owning group has r-- only";
  caller_ = Credentials{};
  EXPECT_EQ(Setxattr(f, "system.posix_acl_default", grant_1001), EACCES) << "default on a file";
  // chmod rewrites the mask: user:1001 keeps rw- but the mask lets nothing through.
  SetattrRequest chmod;
  chmod.ino = f;
  chmod.valid = SetattrRequest::kMode;
  chmod.mode = 0604;
  ASSERT_EQ(Setattr(chmod), 0);
  ASSERT_EQ(Getxattr(f, "system.posix_acl_access", &v), 0);
  EXPECT_EQ(v, value({{Tag::kUserObj, 6, u}, {Tag::kUser, 6, 1001}, {Tag::kGroupObj, 4, u},
                      {Tag::kMask, 0, u}, {Tag::kOther, 4, u}}));
  caller_ = Credentials{1001, 1001, {}};
  EXPECT_EQ(Open(f, O_WRONLY), EACCES) << "chmod g-rw masks the named user";
  caller_ = Credentials{};
  // An ACL the mode says entirely is not kept: the mode holds it.
  ASSERT_EQ(Setxattr(f, "system.posix_acl_access",
                     value({{Tag::kUserObj, 7, u}, {Tag::kGroupObj, 5, u}, {Tag::kOther, 0, u}})),
            0);
  EXPECT_EQ(Attr(f).mode & 0777, 0750u);
  EXPECT_EQ(Getxattr(f, "system.posix_acl_access", &v), ENODATA);
  // A default ACL on the directory: new inodes take it instead of only their mode.
  ASSERT_EQ(Setxattr(d, "system.posix_acl_default",
                     value({{Tag::kUserObj, 7, u}, {Tag::kUser, 7, 1001}, {Tag::kGroupObj, 5, u},
                            {Tag::kMask, 7, u}, {Tag::kOther, 0, u}})),
            0);
  ASSERT_EQ(Setxattr(d, "system.posix_acl_access", grant_1001), 0);
  InodeAttr made;
  ASSERT_EQ(Create(d, "g", &made, nullptr, 0, S_IFREG | 0666), 0);
  EXPECT_EQ(made.mode & 07777, 0660u) << "user rw-, mask rw- (rwx limited by the mode), other ---";
  ASSERT_EQ(Getxattr(made.ino, "system.posix_acl_access", &v), 0);
  EXPECT_EQ(v, value({{Tag::kUserObj, 6, u}, {Tag::kUser, 7, 1001}, {Tag::kGroupObj, 5, u},
                      {Tag::kMask, 6, u}, {Tag::kOther, 0, u}}));
  EXPECT_EQ(Getxattr(made.ino, "system.posix_acl_default", &v), ENODATA) << "files take no default";
  InodeAttr sub;
  ASSERT_EQ(Mkdir(d, "sub", &sub), 0);
  EXPECT_EQ(Getxattr(sub.ino, "system.posix_acl_default", &v), 0) << "directories pass it on";
  EXPECT_EQ(Removexattr(d, "system.posix_acl_default"), 0);
  ExpectReplayEqual();
  ExpectCheckpointRoundTrip();
}

// An ACL's name counts against listxattr's 64 KiB like any other: setting one on an inode
// whose names fill the list is ENOSPC, and listxattr still answers.
// A client that leaves the umask to the server (a mount with ACLs: FUSE_CAP_DONT_MASK)
// sends it with create, mkdir and mknod: applied without a default ACL on the parent,
// replaced by it with one.
TEST_F(NamespaceTest, TheUmaskAppliesUnlessTheParentHasADefaultAcl) {
  using acl::Tag;
  const uint32_t u = acl::kUndefinedId;
  InodeId plain = Dir(kRootInode, "plain");
  InodeId with_default = Dir(kRootInode, "with_default");
  std::vector<uint8_t> def = acl::Encode(acl::PosixAcl{
      {{Tag::kUserObj, 7, u}, {Tag::kGroupObj, 7, u}, {Tag::kOther, 7, u}}});
  ASSERT_EQ(Setxattr(with_default, "system.posix_acl_default", std::string(def.begin(), def.end())), 0);
  for (InodeId parent : {plain, with_default}) {
    const bool masked = parent == plain;
    CreateReply file;
    ASSERT_EQ(Mut(Opcode::kCreate, CreateRequest{parent, "f", S_IFREG | 0666, 0, 0, 0, 027}, &file), 0);
    EXPECT_EQ(file.attr.mode & 07777, masked ? 0640u : 0666u);
    EntryReply dir;
    ASSERT_EQ(Mut(Opcode::kMkdir, MkdirRequest{parent, "d", 02777, 0, 0, 077}, &dir), 0);
    EXPECT_EQ(dir.attr.mode & 07777, masked ? 02700u : 02777u) << "set-group-ID is not umask's";
    EntryReply fifo;
    ASSERT_EQ(Mut(Opcode::kMknod, MknodRequest{parent, "p", S_IFIFO | 0666, 0, 0, 0, 022}, &fifo), 0);
    EXPECT_EQ(fifo.attr.mode & 07777, masked ? 0644u : 0666u);
  }
  ExpectReplayEqual();  // the journaled requests carry the umask
}

TEST_F(NamespaceTest, AnAclNameMustFitTheXattrList) {
  InodeId f = File(kRootInode, "full");
  for (int i = 0; i < 256; ++i) {  // 256 names of 255 bytes + NUL: exactly 65536
    std::string name = "user." + std::string(246, 'n') + std::to_string(1000 + i);
    ASSERT_EQ(Setxattr(f, name, ""), 0) << i;
  }
  std::vector<uint8_t> acl = acl::Encode(acl::PosixAcl{
      {{acl::Tag::kUserObj, 6, acl::kUndefinedId}, {acl::Tag::kUser, 6, 1001},
       {acl::Tag::kGroupObj, 4, acl::kUndefinedId}, {acl::Tag::kMask, 6, acl::kUndefinedId},
       {acl::Tag::kOther, 0, acl::kUndefinedId}}});
  EXPECT_EQ(Setxattr(f, "system.posix_acl_access", std::string(acl.begin(), acl.end())), ENOSPC);
  EXPECT_EQ(Attr(f).mode & 0777, 0644u) << "a refused ACL changes nothing";
  EXPECT_EQ(Listxattr(f).size(), 256u);
}

TEST_F(NamespaceTest, NameLimits) {
  const std::string n255(255, 'x'), n256(256, 'x');
  EXPECT_EQ(Create(kRootInode, n255), 0);
  EXPECT_EQ(Lookup(kRootInode, n255), 0);
  EXPECT_EQ(Create(kRootInode, n256), ENAMETOOLONG);
  EXPECT_EQ(Mkdir(kRootInode, n256), ENAMETOOLONG);
  EXPECT_EQ(Lookup(kRootInode, n256), ENAMETOOLONG);
  EXPECT_EQ(Symlink(kRootInode, n256, "t"), ENAMETOOLONG);
  for (const char* bad : {"", ".", ".."}) {
    EXPECT_EQ(Create(kRootInode, bad), EINVAL) << bad;
    EXPECT_EQ(Mkdir(kRootInode, bad), EINVAL) << bad;
  }
  EXPECT_EQ(List(kRootInode), std::vector<std::string>{n255});
}

TEST_F(NamespaceTest, MkdirRmdirLinkCounts) {
  InodeId d = Dir(kRootInode, "d");
  EXPECT_EQ(Attr(kRootInode).nlink, 3u);
  EXPECT_EQ(Attr(d).nlink, 2u);
  InodeId e = Dir(d, "e");
  EXPECT_EQ(Attr(d).nlink, 3u);
  File(d, "f");
  EXPECT_EQ(Attr(d).nlink, 3u);  // files do not count
  EXPECT_EQ(Mkdir(kRootInode, "d"), EEXIST);
  EXPECT_EQ(Rmdir(kRootInode, "d"), ENOTEMPTY);
  EXPECT_EQ(Rmdir(d, "f"), ENOTDIR);
  EXPECT_EQ(Unlink(d, "e"), EISDIR);
  EXPECT_EQ(Rmdir(d, "missing"), ENOENT);
  EXPECT_EQ(Rmdir(d, "e"), 0);
  EXPECT_EQ(Getattr(e), ENOENT);
  EXPECT_EQ(Attr(d).nlink, 2u);
  EXPECT_EQ(Unlink(d, "f"), 0);
  EXPECT_EQ(Unlink(d, "f"), ENOENT);
  EXPECT_EQ(Rmdir(kRootInode, "d"), 0);
  EXPECT_EQ(Attr(kRootInode).nlink, 2u);
  // A removed directory that is still open takes no new entries.
  InodeId g = Dir(kRootInode, "g");
  uint64_t h = 0;
  ASSERT_EQ(Open(g, O_RDONLY, &h), 0);
  ASSERT_EQ(Rmdir(kRootInode, "g"), 0);
  EXPECT_EQ(Attr(g).nlink, 0u);
  EXPECT_EQ(Create(g, "x"), ENOENT);
  EXPECT_EQ(Mkdir(g, "x"), ENOENT);
  EXPECT_EQ(Release(g, h), 0);
  EXPECT_EQ(Getattr(g), ENOENT);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, MknodTypes) {
  InodeAttr a;
  ASSERT_EQ(Mknod(kRootInode, "fifo", S_IFIFO | 0600, 0, &a), 0);
  EXPECT_EQ(a.mode, S_IFIFO | 0600u);
  ASSERT_EQ(Mknod(kRootInode, "sock", S_IFSOCK | 0600, 0, &a), 0);
  EXPECT_TRUE(S_ISSOCK(a.mode));
  ASSERT_EQ(Mknod(kRootInode, "chr", S_IFCHR | 0600, 0x0501, &a), 0);
  EXPECT_EQ(a.rdev, 0x0501u);
  ASSERT_EQ(Mknod(kRootInode, "blk", S_IFBLK | 0600, 0x0803, &a), 0);
  EXPECT_TRUE(S_ISBLK(a.mode));
  EXPECT_EQ(a.rdev, 0x0803u);
  ASSERT_EQ(Mknod(kRootInode, "reg", 0644, 5, &a), 0);
  EXPECT_EQ(a.mode, S_IFREG | 0644u);
  EXPECT_EQ(a.rdev, 0u);
  EXPECT_EQ(Mknod(kRootInode, "dir", S_IFDIR | 0755), EPERM);
  EXPECT_EQ(Mknod(kRootInode, "lnk", S_IFLNK | 0777), EINVAL);
  EXPECT_EQ(Mknod(kRootInode, "fifo", S_IFIFO | 0600), EEXIST);
  ReaddirReply rep;
  ASSERT_EQ(Readdir(kRootInode, 0, 100, false, &rep), 0);
  ASSERT_EQ(rep.entries.size(), 5u);
  EXPECT_EQ(rep.entries[0].mode, uint32_t{S_IFIFO});
  EXPECT_EQ(rep.entries[2].mode, uint32_t{S_IFCHR});
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, Symlinks) {
  InodeAttr a;
  ASSERT_EQ(Symlink(kRootInode, "l", "../some/where", &a), 0);
  EXPECT_EQ(a.mode, S_IFLNK | 0777u);
  EXPECT_EQ(a.size, 13u);
  std::string t;
  ASSERT_EQ(Readlink(a.ino, &t), 0);
  EXPECT_EQ(t, "../some/where");
  EXPECT_EQ(Symlink(kRootInode, "e", ""), ENOENT);
  EXPECT_EQ(Symlink(kRootInode, "long", std::string(4096, 'a')), ENAMETOOLONG);
  ASSERT_EQ(Symlink(kRootInode, "max", std::string(4095, 'a'), &a), 0);
  ASSERT_EQ(Readlink(a.ino, &t), 0);
  EXPECT_EQ(t.size(), 4095u);
  EXPECT_EQ(Symlink(kRootInode, "l", "x"), EEXIST);
  InodeId f = File(kRootInode, "f");
  EXPECT_EQ(Readlink(f, &t), EINVAL);
  EXPECT_EQ(Readlink(4242, &t), ENOENT);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, HardLinks) {
  InodeId f = File(kRootInode, "f");
  InodeId d = Dir(kRootInode, "d");
  InodeAttr a;
  ASSERT_EQ(Link(f, d, "g", &a), 0);
  EXPECT_EQ(a.nlink, 2u);
  EXPECT_EQ(Link(f, d, "g"), EEXIST);
  EXPECT_EQ(Link(d, kRootInode, "d2"), EPERM);
  EXPECT_EQ(Link(f, 999999, "x"), ENOENT);
  EXPECT_EQ(Link(999999, d, "x"), ENOENT);
  EXPECT_EQ(Link(f, f, "x"), ENOTDIR);
  EXPECT_EQ(Link(f, d, std::string(256, 'n')), ENAMETOOLONG);
  ASSERT_EQ(Unlink(kRootInode, "f"), 0);
  EXPECT_EQ(Attr(f).nlink, 1u);
  ASSERT_EQ(Lookup(d, "g", &a), 0);
  EXPECT_EQ(a.ino, f);
  ASSERT_EQ(Unlink(d, "g"), 0);
  EXPECT_EQ(Getattr(f), ENOENT);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, LinkLimit) {
  InodeId f = File(kRootInode, "f");
  InodeId d = Dir(kRootInode, "d");
  for (uint32_t i = 1; i < kMaxLinks; ++i) {
    ASSERT_EQ(Link(f, d, std::to_string(i)), 0) << i;
  }
  EXPECT_EQ(Attr(f).nlink, kMaxLinks);
  EXPECT_EQ(Link(f, d, "one-more"), EMLINK);
  // Directories: nlink = 2 + subdirectories, limited alike.
  InodeId p = Dir(kRootInode, "p");
  for (uint32_t i = 2; i < kMaxLinks; ++i) ASSERT_EQ(Mkdir(p, std::to_string(i)), 0) << i;
  EXPECT_EQ(Attr(p).nlink, kMaxLinks);
  EXPECT_EQ(Mkdir(p, "one-more"), EMLINK);
  EXPECT_EQ(Rename(kRootInode, "d", p, "moved"), EMLINK);
  EXPECT_EQ(Mknod(p, "file-is-fine", S_IFREG | 0644), 0);
}

TEST_F(NamespaceTest, UnlinkWhileOpenKeepsBlocksUntilRelease) {
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "f", &a, &h), 0);
  const uint64_t free0 = Statfs().free_blocks;
  ASSERT_EQ(Allocate(a.ino, 0, 3 * kBlock), 0);
  ASSERT_EQ(Commit(a.ino, 3 * kBlock, {{0, 3 * kBlock}}), 0);
  const uint64_t free1 = Statfs().free_blocks;
  EXPECT_LT(free1, free0);
  ASSERT_EQ(Unlink(kRootInode, "f"), 0);
  EXPECT_EQ(Lookup(kRootInode, "f"), ENOENT);
  InodeAttr o = Attr(a.ino);  // an orphan: still there by inode number
  EXPECT_EQ(o.nlink, 0u);
  EXPECT_EQ(o.size, 3u * kBlock);
  EXPECT_FALSE(Layout(a.ino).empty());
  EXPECT_EQ(Statfs().free_blocks, free1);
  ASSERT_EQ(Release(a.ino, h), 0);
  EXPECT_EQ(Getattr(a.ino), ENOENT);
  EXPECT_EQ(Statfs().free_blocks, free0);
  ExpectReplayEqual();
}

// Clients batch their releases: one mutation releases many handles, skips (and counts)
// the ones that are not open, and is never an errno, so the journal replays it exactly.
TEST_F(NamespaceTest, ReleaseManyReleasesEveryOpenHandleAndCountsTheRest) {
  InodeAttr a, b;
  uint64_t ha = 0, hb = 0, hb2 = 0;
  ASSERT_EQ(Create(kRootInode, "a", &a, &ha), 0);
  ASSERT_EQ(Create(kRootInode, "b", &b, &hb), 0);
  ASSERT_EQ(Open(b.ino, O_RDONLY, &hb2), 0);
  const uint64_t free0 = Statfs().free_blocks;
  ASSERT_EQ(Allocate(a.ino, 0, 2 * kBlock), 0);
  ASSERT_EQ(Commit(a.ino, 2 * kBlock, {{0, 2 * kBlock}}), 0);
  ASSERT_EQ(Unlink(kRootInode, "a"), 0);  // open: kept until released
  EXPECT_LT(Statfs().free_blocks, free0);
  ReleaseManyReply rep;
  ReleaseManyRequest req{{{a.ino, ha}, {b.ino, hb}, {b.ino, 424242}, {a.ino, hb2}}};
  ASSERT_EQ(Mut(Opcode::kReleaseMany, req, &rep), 0);
  EXPECT_EQ(rep.refused, 2u);         // an unknown handle; a handle of another inode
  EXPECT_EQ(Getattr(a.ino), ENOENT);  // its last handle went: freed
  EXPECT_EQ(Statfs().free_blocks, free0);
  EXPECT_EQ(Release(b.ino, hb), EBADF);  // released already
  EXPECT_EQ(Release(b.ino, hb2), 0);     // the one refused above is still open
  ReleaseManyReply none;
  ASSERT_EQ(Mut(Opcode::kReleaseMany, ReleaseManyRequest{}, &none), 0);
  EXPECT_EQ(none.refused, 0u);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, RenamePlain) {
  InodeId d1 = Dir(kRootInode, "d1");
  InodeId d2 = Dir(kRootInode, "d2");
  InodeId f = File(d1, "f");
  ASSERT_EQ(Rename(d1, "f", d1, "g"), 0);
  EXPECT_EQ(Lookup(d1, "f"), ENOENT);
  InodeAttr a;
  ASSERT_EQ(Lookup(d1, "g", &a), 0);
  EXPECT_EQ(a.ino, f);
  ASSERT_EQ(Rename(d1, "g", d2, "h"), 0);
  EXPECT_EQ(List(d1).size(), 0u);
  EXPECT_EQ(List(d2), std::vector<std::string>{"h"});
  EXPECT_EQ(Rename(d1, "missing", d2, "x"), ENOENT);
  EXPECT_EQ(Rename(999, "a", d2, "x"), ENOENT);
  EXPECT_EQ(Rename(f, "a", d2, "x"), ENOTDIR);
  EXPECT_EQ(Rename(d2, "h", d2, std::string(256, 'z')), ENAMETOOLONG);
  EXPECT_EQ(Rename(d2, "h", d2, "."), EINVAL);
  EXPECT_EQ(Rename(d2, "h", d2, "h", 3), EINVAL);
  EXPECT_EQ(Rename(d2, "h", d2, "h", 4), EINVAL);
  // Onto itself: nothing happens.
  EXPECT_EQ(Rename(d2, "h", d2, "h"), 0);
  ExpectReplayEqual();
}

// The client answers the kernel's getattr of a directory it just changed from the
// change's reply: what the reply names must be exactly what a getattr would return.
TEST_F(NamespaceTest, ChangesReplyWithTheirDirectoriesAttributes) {
  InodeId d1 = Dir(kRootInode, "d1");
  InodeId d2 = Dir(kRootInode, "d2");
  auto expect_dirs = [&](const std::vector<InodeAttr>& dirs, std::vector<InodeId> want,
                         const char* what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(dirs.size(), want.size());
    for (size_t i = 0; i < dirs.size(); ++i) {
      EXPECT_EQ(dirs[i].ino, want[i]);
      EXPECT_EQ(dirs[i], Attr(want[i]));  // every field, as getattr has it now
    }
  };
  auto entry = [&](Opcode op, const auto& req) {
    EntryReply rep;
    EXPECT_EQ(Mut(op, req, &rep), 0);
    return rep.dirs;
  };
  CreateReply created;
  ASSERT_EQ(Mut(Opcode::kCreate, CreateRequest{d1, "f", 0644, 0, 0, 0}, &created), 0);
  expect_dirs(created.dirs, {d1}, "create");
  CreateReply reopened;  // it exists: nothing changed, nothing named
  ASSERT_EQ(Mut(Opcode::kCreate, CreateRequest{d1, "f", 0644, 0, 0, 0}, &reopened), 0);
  EXPECT_FALSE(reopened.created);
  EXPECT_TRUE(reopened.dirs.empty());
  expect_dirs(entry(Opcode::kMkdir, MkdirRequest{d1, "sub", 0755, 0, 0}), {d1}, "mkdir");
  EXPECT_EQ(Attr(d1).nlink, 3u);
  expect_dirs(entry(Opcode::kMknod, MknodRequest{d1, "fifo", S_IFIFO | 0644, 0, 0, 0}), {d1},
              "mknod");
  expect_dirs(entry(Opcode::kSymlink, SymlinkRequest{d1, "ln", "f", 0, 0}), {d1}, "symlink");
  expect_dirs(entry(Opcode::kLink, LinkRequest{created.attr.ino, d2, "hard"}), {d2}, "link");
  ASSERT_EQ(Unlink(d2, "hard"), 0);
  expect_dirs(last_dirs_, {d2}, "unlink");
  ASSERT_EQ(Rename(d1, "f", d1, "g"), 0);
  expect_dirs(last_dirs_, {d1}, "rename within one directory");
  ASSERT_EQ(Rename(d1, "sub", d2, "sub"), 0);
  expect_dirs(last_dirs_, {d1, d2}, "rename across directories");
  ASSERT_EQ(Rename(d1, "g", d2, "sub", 2 /* RENAME_EXCHANGE */), 0);
  expect_dirs(last_dirs_, {d1, d2}, "exchange");
  ASSERT_EQ(Rmdir(d1, "g"), 0);  // the directory, exchanged into d1 as "g"
  expect_dirs(last_dirs_, {d1}, "rmdir");
  // Failures change nothing and name nothing (the reply is only an errno).
  EXPECT_EQ(Unlink(d1, "missing"), ENOENT);
  EXPECT_TRUE(last_dirs_.empty());
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, RenameDirectoriesAndLinkCounts) {
  InodeId a = Dir(kRootInode, "a");
  InodeId b = Dir(kRootInode, "b");
  InodeId c = Dir(a, "c");
  EXPECT_EQ(Attr(a).nlink, 3u);
  ASSERT_EQ(Rename(a, "c", b, "c"), 0);
  EXPECT_EQ(Attr(a).nlink, 2u);
  EXPECT_EQ(Attr(b).nlink, 3u);
  // The moved directory's ".." follows: its old parent is now empty and removable.
  ASSERT_EQ(Rmdir(kRootInode, "a"), 0);
  // Into its own subtree.
  InodeId d = Dir(c, "d");
  EXPECT_EQ(Rename(kRootInode, "b", c, "b"), EINVAL);
  EXPECT_EQ(Rename(kRootInode, "b", d, "b"), EINVAL);
  EXPECT_EQ(Rename(b, "c", c, "self"), EINVAL);
  // Over an empty directory: replaced; over a non-empty one: ENOTEMPTY.
  InodeId e = Dir(kRootInode, "e");
  ASSERT_EQ(Rename(kRootInode, "e", c, "d"), 0);
  EXPECT_EQ(Getattr(d), ENOENT);
  EXPECT_EQ(Attr(c).nlink, 3u);
  EXPECT_EQ(Attr(e).nlink, 2u);
  Dir(kRootInode, "full");
  InodeId full_child = Dir(c, "tmp");
  (void)full_child;
  EXPECT_EQ(Rename(kRootInode, "full", b, "c"), ENOTEMPTY);
  // Directory over file and file over directory.
  File(kRootInode, "file");
  EXPECT_EQ(Rename(kRootInode, "full", kRootInode, "file"), ENOTDIR);
  EXPECT_EQ(Rename(kRootInode, "file", kRootInode, "full"), EISDIR);
  // The target is an ancestor of the source: it cannot be empty.
  EXPECT_EQ(Rename(c, "d", kRootInode, "b"), ENOTEMPTY);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, RenameOverFileFreesIt) {
  InodeAttr x;
  uint64_t hx = 0;
  ASSERT_EQ(Create(kRootInode, "x", &x, &hx), 0);
  ASSERT_EQ(Allocate(x.ino, 0, kBlock), 0);
  ASSERT_EQ(Commit(x.ino, kBlock, {{0, kBlock}}), 0);
  ASSERT_EQ(Release(x.ino, hx), 0);
  InodeId y = File(kRootInode, "y");
  const uint64_t before = Statfs().free_blocks;
  ASSERT_EQ(Rename(kRootInode, "y", kRootInode, "x"), 0);
  EXPECT_EQ(Getattr(x.ino), ENOENT);
  EXPECT_EQ(Statfs().free_blocks, before + 1);
  InodeAttr a;
  ASSERT_EQ(Lookup(kRootInode, "x", &a), 0);
  EXPECT_EQ(a.ino, y);
  // Over another link of a file with two names: the target loses one link.
  InodeId z = File(kRootInode, "z");
  ASSERT_EQ(Link(z, kRootInode, "z2"), 0);
  ASSERT_EQ(Rename(kRootInode, "x", kRootInode, "z2"), 0);
  EXPECT_EQ(Attr(z).nlink, 1u);
  // Two names of the same inode: POSIX says nothing happens.
  ASSERT_EQ(Link(z, kRootInode, "z3"), 0);
  ASSERT_EQ(Rename(kRootInode, "z", kRootInode, "z3"), 0);
  EXPECT_EQ(Lookup(kRootInode, "z"), 0);
  EXPECT_EQ(Lookup(kRootInode, "z3"), 0);
  EXPECT_EQ(Attr(z).nlink, 2u);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, RenameNoreplaceAndExchange) {
  constexpr uint32_t kNoReplace = 1, kExchange = 2;
  InodeId d1 = Dir(kRootInode, "d1");
  InodeId d2 = Dir(kRootInode, "d2");
  InodeId f = File(d1, "f");
  InodeId g = File(d2, "g");
  EXPECT_EQ(Rename(d1, "f", d2, "g", kNoReplace), EEXIST);
  EXPECT_EQ(Rename(d1, "f", d2, "new", kNoReplace), 0);
  EXPECT_EQ(Rename(d2, "new", d1, "f", kNoReplace), 0);
  EXPECT_EQ(Rename(d1, "f", d2, "missing", kExchange), ENOENT);
  ASSERT_EQ(Rename(d1, "f", d2, "g", kExchange), 0);
  InodeAttr a;
  ASSERT_EQ(Lookup(d1, "f", &a), 0);
  EXPECT_EQ(a.ino, g);
  ASSERT_EQ(Lookup(d2, "g", &a), 0);
  EXPECT_EQ(a.ino, f);
  // A directory exchanged with a file across parents: ".." links move.
  InodeId sub = Dir(d1, "sub");
  EXPECT_EQ(Attr(d1).nlink, 3u);
  ASSERT_EQ(Rename(d1, "sub", d2, "g", kExchange), 0);
  EXPECT_EQ(Attr(d1).nlink, 2u);
  EXPECT_EQ(Attr(d2).nlink, 3u);
  ASSERT_EQ(Lookup(d2, "g", &a), 0);
  EXPECT_EQ(a.ino, sub);
  // Exchanging a directory with something inside it.
  InodeId inner = Dir(sub, "inner");
  (void)inner;
  EXPECT_EQ(Rename(d2, "g", sub, "inner", kExchange), EINVAL);
  EXPECT_EQ(Rename(sub, "inner", d2, "g", kExchange), EINVAL);
  // Two directories: counts unchanged, parents swapped.
  ASSERT_EQ(Rename(kRootInode, "d1", d2, "g", kExchange), 0);
  ASSERT_EQ(Lookup(kRootInode, "d1", &a), 0);
  EXPECT_EQ(a.ino, sub);
  EXPECT_EQ(List(sub), std::vector<std::string>{"inner"});
  ASSERT_EQ(Rmdir(sub, "inner"), 0);
  ASSERT_EQ(Rmdir(kRootInode, "d1"), 0);  // sub, now named d1 in the root
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, ReaddirCookiesStableUnderChanges) {
  InodeId d = Dir(kRootInode, "d");
  for (int i = 0; i < 100; ++i) File(d, "f" + std::to_string(i));
  ReaddirReply first;
  ASSERT_EQ(Readdir(d, 0, 30, false, &first), 0);
  ASSERT_EQ(first.entries.size(), 30u);
  EXPECT_FALSE(first.eof);
  // The directory's last cookie so far: the 100th entry's (a client ends its listing
  // there, fs/README.md).
  EXPECT_EQ(first.last_cookie, 100u);
  std::set<std::string> seen;
  for (const auto& e : first.entries) seen.insert(e.name);
  // Meanwhile: some already-read and some unread entries go, new ones come.
  for (int i : {0, 5, 29, 30, 31, 50, 99}) ASSERT_EQ(Unlink(d, "f" + std::to_string(i)), 0);
  for (int i = 0; i < 10; ++i) File(d, "new" + std::to_string(i));
  std::vector<std::string> rest;
  uint64_t cookie = first.entries.back().cookie;
  for (;;) {
    ReaddirReply rep;
    ASSERT_EQ(Readdir(d, cookie, 17, true, &rep), 0);
    for (const auto& e : rep.entries) {
      EXPECT_GT(e.cookie, cookie);
      cookie = e.cookie;
      rest.push_back(e.name);
      EXPECT_EQ(e.attr.ino, e.ino);  // plus
      EXPECT_TRUE(S_ISREG(e.mode));
    }
    if (rep.eof) break;
  }
  std::set<std::string> later(rest.begin(), rest.end());
  EXPECT_EQ(later.size(), rest.size()) << "an entry came twice";
  for (const auto& n : seen) EXPECT_EQ(later.count(n), 0u) << n << " repeated";
  for (int i = 30; i < 100; ++i) {
    const std::string n = "f" + std::to_string(i);
    const bool deleted = i == 30 || i == 31 || i == 50 || i == 99;
    EXPECT_EQ(later.count(n), deleted ? 0u : 1u) << n;
  }
  for (int i = 0; i < 10; ++i) EXPECT_EQ(later.count("new" + std::to_string(i)), 1u);
  // A rename is a new entry: the last cookie moves on.
  ReaddirReply before, after;
  ASSERT_EQ(Readdir(d, 0, 1, false, &before), 0);
  ASSERT_EQ(Rename(d, "f1", d, "moved"), 0);
  ASSERT_EQ(Readdir(d, 0, 1, false, &after), 0);
  EXPECT_EQ(after.last_cookie, before.last_cookie + 1);
  ReaddirReply rep;
  EXPECT_EQ(Readdir(d, 0, 0, false, &rep), EINVAL);
  EXPECT_EQ(Readdir(d, 0, kMaxReaddirEntries + 1, false, &rep), EINVAL);
  InodeId f = File(kRootInode, "file");
  EXPECT_EQ(Readdir(f, 0, 10, false, &rep), ENOTDIR);
  EXPECT_EQ(Readdir(4711, 0, 10, false, &rep), ENOENT);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, HundredThousandEntryDirectory) {
  InodeId d = Dir(kRootInode, "big");
  constexpr int kN = 100000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(Mknod(d, "entry-with-a-longish-name-" + std::to_string(i), S_IFREG | 0644), 0);
  }
  const double create_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto names = List(d);
  ASSERT_EQ(names.size(), size_t{kN});
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), size_t{kN});
  // Big readdir pages stay inside the message limit even with long names.
  ReaddirReply rep;
  ASSERT_EQ(Readdir(d, 0, kMaxReaddirEntries, true, &rep), 0);
  EXPECT_EQ(rep.entries.size(), size_t{kMaxReaddirEntries});
  EXPECT_LT(Encode(rep).size(), size_t{kMetaMaxMessage});
  EXPECT_EQ(Lookup(d, "entry-with-a-longish-name-77777"), 0);
  RecordProperty("mknod_per_s", static_cast<int>(kN / create_s));
  auto t1 = std::chrono::steady_clock::now();
  std::vector<uint8_t> blob = ns_->Serialize();
  auto t2 = std::chrono::steady_clock::now();
  Namespace c(config_);
  Status st = c.Load(blob);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto t3 = std::chrono::steady_clock::now();
  std::printf(
      "%d entries: %.0f mknod/s in process; checkpoint %zu bytes, serialize %.1f ms, "
      "load+check %.1f ms\n",
      kN, kN / create_s, blob.size(), std::chrono::duration<double, std::milli>(t2 - t1).count(),
      std::chrono::duration<double, std::milli>(t3 - t2).count());
  EXPECT_TRUE(c.Serialize() == blob);
}

TEST_F(NamespaceTest, ReaddirPagesRespectMessageSize) {
  InodeId d = Dir(kRootInode, "d");
  for (int i = 0; i < 1100; ++i) {
    std::string name = std::to_string(i);
    name += std::string(255 - name.size(), 'n');
    ASSERT_EQ(Mknod(d, name, S_IFREG | 0644), 0);
  }
  ReaddirReply rep;
  ASSERT_EQ(Readdir(d, 0, kMaxReaddirEntries, true, &rep), 0);
  EXPECT_GT(rep.entries.size(), 100u);
  EXPECT_LT(rep.entries.size(), size_t{kMaxReaddirEntries});
  EXPECT_FALSE(rep.eof);
  EXPECT_LT(Encode(rep).size() + 64, size_t{kMetaMaxMessage});
  EXPECT_EQ(List(d).size(), 1100u);
}

TEST_F(NamespaceTest, Xattrs) {
  InodeId f = File(kRootInode, "f");
  const Timespec ctime0 = Attr(f).ctime;
  ASSERT_EQ(Setxattr(f, "user.a", "1"), 0);
  EXPECT_NE(Attr(f).ctime, ctime0);
  std::string v;
  ASSERT_EQ(Getxattr(f, "user.a", &v), 0);
  EXPECT_EQ(v, "1");
  EXPECT_EQ(Setxattr(f, "user.a", "2", XATTR_CREATE), EEXIST);
  EXPECT_EQ(Setxattr(f, "user.b", "2", XATTR_REPLACE), ENODATA);
  ASSERT_EQ(Setxattr(f, "user.a", "22", XATTR_REPLACE), 0);
  ASSERT_EQ(Getxattr(f, "user.a", &v), 0);
  EXPECT_EQ(v, "22");
  ASSERT_EQ(Setxattr(f, "user.empty", ""), 0);
  ASSERT_EQ(Getxattr(f, "user.empty", &v), 0);
  EXPECT_EQ(v, "");
  EXPECT_EQ(Getxattr(f, "user.none", &v), ENODATA);
  EXPECT_EQ(Removexattr(f, "user.none"), ENODATA);
  EXPECT_EQ(Setxattr(f, "user.big", std::string(kMaxXattrValueLength, 'v')), 0);
  EXPECT_EQ(Setxattr(f, "user.big2", std::string(kMaxXattrValueLength + 1, 'v')), E2BIG);
  EXPECT_EQ(Setxattr(f, "", "x"), ERANGE);
  EXPECT_EQ(Setxattr(f, std::string(256, 'n'), "x"), ERANGE);
  EXPECT_EQ(Getxattr(f, std::string(256, 'n'), &v), ERANGE);
  const std::string longest = "user." + std::string(250, 'n');  // 255 bytes
  EXPECT_EQ(Setxattr(f, longest, "x"), 0);
  EXPECT_EQ(Setxattr(f, "bogus.a", "x"), EOPNOTSUPP);
  EXPECT_EQ(Setxattr(f, "noprefix", "x"), EOPNOTSUPP);
  EXPECT_EQ(Getxattr(f, "bogus.a", &v), EOPNOTSUPP);
  EXPECT_EQ(Setxattr(f, "system.posix_acl_access", "x"), EINVAL) << "not an ACL";
  EXPECT_EQ(Setxattr(f, "system.other", "x"), EOPNOTSUPP);
  EXPECT_EQ(Setxattr(f, "trusted.t", "x"), 0);
  EXPECT_EQ(Removexattr(f, "trusted.t"), 0);
  EXPECT_EQ(Setxattr(f, "user.c", "x", 4), EINVAL);
  EXPECT_EQ(Setxattr(4711, "user.c", "x"), ENOENT);
  auto names = Listxattr(f);
  EXPECT_EQ(names,
            (std::vector<std::string>{"user.a", "user.big", "user.empty", longest}));
  ASSERT_EQ(Removexattr(f, "user.a"), 0);
  EXPECT_EQ(Getxattr(f, "user.a", &v), ENODATA);
  // Directories carry xattrs too.
  InodeId d = Dir(kRootInode, "d");
  EXPECT_EQ(Setxattr(d, "user.dir", "yes"), 0);
  // The list of names is limited like Linux's XATTR_LIST_MAX.
  InodeId g = File(kRootInode, "g");
  int made = 0;
  for (;; ++made) {
    std::string n = "user." + std::to_string(made) + std::string(200, 'x');
    int e = Setxattr(g, n, "");
    if (e != 0) {
      EXPECT_EQ(e, ENOSPC);
      break;
    }
  }
  EXPECT_GT(made, 250);
  EXPECT_LT(made, 330);
  ExpectReplayEqual();
  ExpectCheckpointRoundTrip();
}

// As Linux: user.* xattrs only on regular files and directories.
TEST_F(NamespaceTest, UserXattrsOnlyOnFilesAndDirectories) {
  InodeAttr l, fifo;
  ASSERT_EQ(Symlink(kRootInode, "ln", "target", &l), 0);
  ASSERT_EQ(Mknod(kRootInode, "fifo", S_IFIFO | 0644, 0, &fifo), 0);
  for (InodeId ino : {l.ino, fifo.ino}) {
    EXPECT_EQ(Setxattr(ino, "user.a", "v"), EPERM);
    std::string v;
    EXPECT_EQ(Getxattr(ino, "user.a", &v), ENODATA);
    EXPECT_EQ(Removexattr(ino, "user.a"), EPERM);
    EXPECT_EQ(Setxattr(ino, "trusted.a", "v"), 0);  // other namespaces are not limited
    ASSERT_EQ(Getxattr(ino, "trusted.a", &v), 0);
    EXPECT_EQ(v, "v");
  }
  InodeId f = File(kRootInode, "f");
  InodeId d = Dir(kRootInode, "d");
  EXPECT_EQ(Setxattr(f, "user.a", "v"), 0);
  EXPECT_EQ(Setxattr(d, "user.a", "v"), 0);
  ExpectReplayEqual();
}

// A client's lazily committed read access time: never backwards, no ctime change, and
// nothing else may ride along.
TEST_F(NamespaceTest, AccessedSetattrMovesOnlyTheAtimeForward) {
  InodeId f = File(kRootInode, "f");
  SetattrRequest r;
  r.ino = f;
  r.valid = SetattrRequest::kAtime;
  r.atime = Timespec{500, 0};
  InodeAttr before;
  ASSERT_EQ(Setattr(r, &before), 0);
  r.valid = SetattrRequest::kAtime | SetattrRequest::kAccessed;
  r.atime = Timespec{600, 7};
  InodeAttr a;
  ASSERT_EQ(Setattr(r, &a), 0);
  EXPECT_EQ(a.atime, (Timespec{600, 7}));
  EXPECT_EQ(a.ctime, before.ctime) << "an access is not a change";
  EXPECT_EQ(a.mtime, before.mtime);
  r.atime = Timespec{550, 0};  // an older access committed late
  ASSERT_EQ(Setattr(r, &a), 0);
  EXPECT_EQ(a.atime, (Timespec{600, 7})) << "moved the atime back";
  r.valid |= SetattrRequest::kMode;
  r.mode = 0777;
  EXPECT_EQ(Setattr(r, &a), EINVAL);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, Setattr) {
  InodeId f = File(kRootInode, "f");
  SetattrRequest r;
  r.ino = f;
  r.valid = SetattrRequest::kMode | SetattrRequest::kUid | SetattrRequest::kGid |
            SetattrRequest::kAtime | SetattrRequest::kMtime;
  r.mode = S_IFDIR | 04755;  // the type bits are ignored
  r.uid = 7;
  r.gid = 8;
  r.atime = Timespec{100, 1};
  r.mtime = Timespec{200, 2};
  InodeAttr a;
  ASSERT_EQ(Setattr(r, &a), 0);
  EXPECT_EQ(a.mode, S_IFREG | 04755u);
  EXPECT_EQ(a.uid, 7u);
  EXPECT_EQ(a.gid, 8u);
  EXPECT_EQ(a.atime, (Timespec{100, 1}));
  EXPECT_EQ(a.mtime, (Timespec{200, 2}));
  EXPECT_GT(a.ctime.sec, 1700000000);
  r.valid = SetattrRequest::kAtimeNow | SetattrRequest::kCtime;
  r.ctime = Timespec{300, 3};
  ASSERT_EQ(Setattr(r, &a), 0);
  EXPECT_GT(a.atime.sec, 1700000000);
  EXPECT_EQ(a.ctime, (Timespec{300, 3}));
  r.valid = SetattrRequest::kSize;
  r.size = kMaxFileSize + 1;
  EXPECT_EQ(Setattr(r), EFBIG);
  r.size = kMaxFileSize;
  ASSERT_EQ(Setattr(r, &a), 0);  // sparse: 16 TiB of address space, no blocks
  EXPECT_EQ(a.size, kMaxFileSize);
  EXPECT_EQ(a.blocks, 0u);
  r.ino = kRootInode;
  EXPECT_EQ(Setattr(r), EISDIR);
  InodeAttr l;
  ASSERT_EQ(Symlink(kRootInode, "l", "t", &l), 0);
  r.ino = l.ino;
  EXPECT_EQ(Setattr(r), EINVAL);
  r.ino = 4711;
  EXPECT_EQ(Setattr(r), ENOENT);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, AllocateCommitLayout) {
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "f", &a, &h), 0);
  const InodeId f = a.ino;
  std::vector<Extent> ex;
  // A small append: the whole stripe unit is allocated, the part past the write is
  // speculative.
  ASSERT_EQ(Allocate(f, 0, 100, &ex), 0);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].file_offset, 0u);
  EXPECT_EQ(ex[0].length, uint64_t{kUnit});
  EXPECT_EQ(ex[0].server, StripeServer(f, 0, 2));
  EXPECT_EQ(ex[0].flags, Extent::kUnwritten | Extent::kSpeculative);
  // Allocating again returns the same blocks.
  std::vector<Extent> again;
  ASSERT_EQ(Allocate(f, 0, 100, &again), 0);
  EXPECT_EQ(again, ex);
  ASSERT_EQ(Commit(f, 100, {{0, kBlock}}, &a), 0);
  EXPECT_EQ(a.size, 100u);
  EXPECT_EQ(a.mtime, (Timespec{1800000000, 7}));
  auto lay = Layout(f);
  ASSERT_EQ(lay.size(), 2u);
  EXPECT_EQ(lay[0].flags, 0u);
  EXPECT_EQ(lay[0].length, uint64_t{kBlock});
  EXPECT_EQ(lay[1].flags, Extent::kUnwritten | Extent::kSpeculative);
  // Commit never shrinks; commit of blocks not allocated to the file is refused.
  ASSERT_EQ(Commit(f, 50, {}, &a), 0);
  EXPECT_EQ(a.size, 100u);
  EXPECT_EQ(Commit(f, 0, {{kUnit, kBlock}}), EINVAL);
  EXPECT_EQ(Commit(f, 0, {{1, kBlock}}), EINVAL);
  EXPECT_EQ(Commit(f, 0, {{0, 100}}), EINVAL);
  EXPECT_EQ(Commit(f, kMaxFileSize + 1, {}), EFBIG);
  // Striping: a write over four stripe units alternates servers and continues each
  // server's previous extent.
  ASSERT_EQ(Allocate(f, kUnit, 3 * kUnit, &ex), 0);
  ASSERT_EQ(ex.size(), 3u);
  for (size_t i = 0; i < ex.size(); ++i) {
    EXPECT_EQ(ex[i].file_offset, (i + 1) * kUnit);
    EXPECT_EQ(ex[i].server, StripeServer(f, i + 1, 2));
  }
  EXPECT_EQ(ex[1].pool_offset, lay[1].pool_offset + lay[1].length)
      << "unit 2 should continue unit 0 on its server";
  // Release trims speculative blocks past EOF, keeps the rest.
  ASSERT_EQ(Release(f, h), 0);
  lay = Layout(f);
  ASSERT_EQ(lay.size(), 1u);
  EXPECT_EQ(lay[0].length, uint64_t{kBlock});
  EXPECT_EQ(Attr(f).blocks, kBlock / 512u);
  // Layout of a range, and of a range past the end.
  EXPECT_EQ(Layout(f, 0, 10).size(), 1u);
  EXPECT_EQ(Layout(f, 10 * kUnit, kUnit).size(), 0u);
  // A write into the middle of a file allocates no speculative blocks.
  ASSERT_EQ(Truncate(f, 10 * kUnit), 0);
  ASSERT_EQ(Allocate(f, 5 * kUnit, kBlock, &ex), 0);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].length, uint64_t{kBlock});
  EXPECT_EQ(ex[0].flags, Extent::kUnwritten);
  // Errors.
  EXPECT_EQ(Allocate(f, 0, 0), EINVAL);
  EXPECT_EQ(Allocate(f, kMaxFileSize, kBlock), EFBIG);
  EXPECT_EQ(Allocate(f, 0, uint64_t{kMaxExtentsPerReply} * kBlock), EINVAL);
  EXPECT_EQ(Allocate(kRootInode, 0, 1), EISDIR);
  EXPECT_EQ(Allocate(4711, 0, 1), ENOENT);
  LayoutReply lr;
  EXPECT_EQ(Rd(Opcode::kLayout, LayoutRequest{kRootInode, 0, 0}, &lr), EISDIR);
  ExpectReplayEqual();
  ExpectCheckpointRoundTrip();
}

TEST_F(NamespaceTest, UncommittedAppendIsReclaimedAtRelease) {
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "f", &a, &h), 0);
  const uint64_t free0 = ns_->free_bytes();
  ASSERT_EQ(Allocate(a.ino, 0, 3 * kBlock), 0);  // the commit never comes
  EXPECT_LT(ns_->free_bytes(), free0);
  ASSERT_EQ(Release(a.ino, h), 0);
  EXPECT_EQ(ns_->free_bytes(), free0);
  EXPECT_TRUE(Layout(a.ino).empty());
}

TEST_F(NamespaceTest, TruncateFreesBlocks) {
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "f", &a, &h), 0);
  ASSERT_EQ(Allocate(a.ino, 0, 4 * kBlock), 0);
  ASSERT_EQ(Commit(a.ino, 4 * kBlock, {{0, 4 * kBlock}}), 0);
  ASSERT_EQ(Release(a.ino, h), 0);
  const uint64_t free0 = ns_->free_bytes();
  ASSERT_EQ(Truncate(a.ino, kBlock + 10), 0);  // keeps the block holding EOF
  EXPECT_EQ(ns_->free_bytes(), free0 + 2 * kBlock);
  auto lay = Layout(a.ino);
  ASSERT_EQ(lay.size(), 1u);
  EXPECT_EQ(lay[0].length, 2u * kBlock);
  ASSERT_EQ(Truncate(a.ino, 1 << 30), 0);  // growing makes a hole
  EXPECT_EQ(Attr(a.ino).size, 1u << 30);
  EXPECT_EQ(Layout(a.ino).size(), 1u);
  ASSERT_EQ(Truncate(a.ino, 0), 0);
  EXPECT_TRUE(Layout(a.ino).empty());
  EXPECT_EQ(Attr(a.ino).blocks, 0u);
  // open(O_TRUNC) truncates too.
  ASSERT_EQ(Open(a.ino, O_RDWR, &h), 0);
  ASSERT_EQ(Allocate(a.ino, 0, kBlock), 0);
  ASSERT_EQ(Commit(a.ino, kBlock, {{0, kBlock}}), 0);
  uint64_t h2 = 0;
  InodeAttr t;
  ASSERT_EQ(Open(a.ino, O_RDWR | O_TRUNC, &h2, &t), 0);
  EXPECT_EQ(t.size, 0u);
  EXPECT_EQ(Release(a.ino, h), 0);
  EXPECT_EQ(Release(a.ino, h2), 0);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, Fallocate) {
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "f", &a, &h), 0);
  const InodeId f = a.ino;
  ASSERT_EQ(Fallocate(f, 0, 0, 100000, &a), 0);
  EXPECT_EQ(a.size, 100000u);
  for (const Extent& e : Layout(f)) EXPECT_EQ(e.flags, Extent::kUnwritten);
  EXPECT_EQ(a.blocks, RoundUp(100000, kBlock) / 512);
  // KEEP_SIZE past EOF: allocated, size unchanged, kept across the last release.
  ASSERT_EQ(Fallocate(f, FALLOC_FL_KEEP_SIZE, 200000, 50000, &a), 0);
  EXPECT_EQ(a.size, 100000u);
  ASSERT_EQ(Release(f, h), 0);
  auto lay = Layout(f);
  uint64_t allocated = 0;
  for (const Extent& e : lay) allocated += e.length;
  EXPECT_EQ(allocated,
            RoundUp(100000, kBlock) + (RoundUp(250000, kBlock) - RoundDown(200000, kBlock)));
  // Punch: whole blocks inside go; partial blocks at the edges stay.
  ASSERT_EQ(Fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 3 * kBlock), 0);
  lay = Layout(f, 0, 4 * kBlock);
  ASSERT_EQ(lay.size(), 2u);
  EXPECT_EQ(lay[0].file_offset, 0u);
  EXPECT_EQ(lay[0].length, uint64_t{kBlock});
  EXPECT_EQ(lay[1].file_offset, 3u * kBlock);
  EXPECT_EQ(Attr(f).size, 100000u);
  // Zero range: holes allocated, written blocks inside become unwritten.
  ASSERT_EQ(Commit(f, 0, {{3 * kBlock, kBlock}, {4 * kBlock, kBlock}}), 0);
  ASSERT_EQ(Fallocate(f, FALLOC_FL_ZERO_RANGE, 0, 5 * kBlock, &a), 0);
  lay = Layout(f, 0, 5 * kBlock);
  uint64_t covered = 0;
  for (const Extent& e : lay) {
    covered += e.length;
    EXPECT_EQ(e.flags, Extent::kUnwritten) << e.file_offset;
  }
  EXPECT_EQ(covered, 5u * kBlock);
  // Modes and types refused.
  EXPECT_EQ(Fallocate(f, FALLOC_FL_PUNCH_HOLE, 0, kBlock), EOPNOTSUPP);
  EXPECT_EQ(Fallocate(f, 0x08 /* COLLAPSE_RANGE */, 0, kBlock), EOPNOTSUPP);
  EXPECT_EQ(Fallocate(f, 0, 0, 0), EINVAL);
  EXPECT_EQ(Fallocate(f, 0, kMaxFileSize, 1), EFBIG);
  EXPECT_EQ(Fallocate(kRootInode, 0, 0, 1), EISDIR);
  InodeAttr fifo;
  ASSERT_EQ(Mknod(kRootInode, "p", S_IFIFO | 0600, 0, &fifo), 0);
  EXPECT_EQ(Fallocate(fifo.ino, 0, 0, 1), ENODEV);
  ExpectReplayEqual();
  ExpectCheckpointRoundTrip();
}

TEST_F(NamespaceTest, EnospcIsAllOrNothing) {
  config_ = MakeConfig(1 << 20, 2);  // 2 x 256 blocks
  ns_ = std::make_unique<Namespace>(config_);
  InodeId f = File(kRootInode, "f");
  StatfsReply s = Statfs();
  EXPECT_EQ(s.block_size, kBlock);
  EXPECT_EQ(s.total_blocks, 512u);
  EXPECT_EQ(s.free_blocks, 512u);
  EXPECT_EQ(s.name_max, 255u);
  EXPECT_EQ(s.total_inodes - s.free_inodes, 2u);
  // 1.5 MiB fits; then 1 MiB more does not, and nothing of it is taken.
  ASSERT_EQ(Fallocate(f, 0, 0, 3 << 19), 0);
  EXPECT_EQ(Statfs().free_blocks, 128u);
  InodeId g = File(kRootInode, "g");
  EXPECT_EQ(Fallocate(g, 0, 0, 1 << 20), ENOSPC);
  EXPECT_EQ(Statfs().free_blocks, 128u);
  EXPECT_TRUE(Layout(g).empty());
  EXPECT_EQ(Attr(g).size, 0u);
  // One server full, the other not: a write striped onto the full one fails whole.
  uint64_t h = 0;
  ASSERT_EQ(Open(g, O_RDWR, &h), 0);
  int e = 0;
  uint64_t off = 0;
  while ((e = Allocate(g, off, kUnit)) == 0) {
    ASSERT_EQ(Commit(g, off + kUnit, {{off, kUnit}}), 0);
    off += kUnit;
  }
  EXPECT_EQ(e, ENOSPC);
  const uint64_t free_before = Statfs().free_blocks;
  EXPECT_EQ(Allocate(g, off, kUnit), ENOSPC);
  EXPECT_EQ(Statfs().free_blocks, free_before);
  ASSERT_EQ(Release(g, h), 0);
  // Unlinking gives everything back.
  ASSERT_EQ(Unlink(kRootInode, "f"), 0);
  ASSERT_EQ(Unlink(kRootInode, "g"), 0);
  EXPECT_EQ(Statfs().free_blocks, 512u);
  ExpectReplayEqual();
}

TEST_F(NamespaceTest, SessionsLeasesAndReplyCache) {
  RegisterReply reg;
  ASSERT_EQ(Mut(Opcode::kRegister, RegisterRequest{"host:1 /mnt"}, &reg), 0);
  EXPECT_EQ(reg.lease_ms, 1000u);
  EXPECT_EQ(reg.cluster.servers.size(), 2u);
  ASSERT_NE(ns_->FindSession(session_), nullptr);
  EXPECT_EQ(ns_->FindSession(session_)->client_name, "host:1 /mnt");
  // Replies are cached by (session, seq), errno replies included.
  InodeAttr a;
  uint64_t h = 0;
  ASSERT_EQ(Create(kRootInode, "f", &a, &h), 0);
  const uint64_t create_seq = seq_;
  EXPECT_EQ(Create(kRootInode, "f", nullptr, nullptr, O_EXCL), EEXIST);
  bool too_old = false;
  auto cached = ns_->CachedReply(session_, create_seq, &too_old);
  ASSERT_TRUE(cached.has_value());
  int err = -1;
  std::span<const uint8_t> body;
  ASSERT_TRUE(SplitReply(*cached, &err, &body).ok());
  EXPECT_EQ(err, 0);
  cached = ns_->CachedReply(session_, seq_, &too_old);
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(*cached, EncodeErrorReply(EEXIST));
  EXPECT_FALSE(ns_->CachedReply(session_, seq_ + 1, &too_old).has_value());
  EXPECT_FALSE(too_old);
  // The cache keeps the last reply_cache_entries (8 here).
  for (int i = 0; i < 10; ++i) File(kRootInode, "g" + std::to_string(i));
  EXPECT_FALSE(ns_->CachedReply(session_, create_seq, &too_old).has_value());
  EXPECT_TRUE(too_old);
  // Unlinked while open; the session's lease lapses: the handle goes, the file with it.
  ASSERT_EQ(Unlink(kRootInode, "f"), 0);
  EXPECT_EQ(Attr(a.ino).nlink, 0u);
  EXPECT_EQ(ns_->ExpiredSessions(1).size(), 1u);  // deadline 1 ms
  EXPECT_EQ(ns_->ExpiredSessions(0).size(), 0u);
  std::vector<uint8_t> payload(8);
  for (int i = 0; i < 8; ++i) payload[i] = static_cast<uint8_t>(session_ >> (8 * i));
  const uint64_t me = session_;
  session_ = 0;  // internal mutation
  EmptyReply none;
  ASSERT_EQ(MutRaw(kOpExpireSession, payload, &none), 0);
  EXPECT_EQ(ns_->FindSession(me), nullptr);
  EXPECT_EQ(Getattr(a.ino), ENOENT);
  // Unregister ends a session the same way.
  session_ = 0x77;
  uint64_t h2 = 0;
  InodeAttr b;
  ASSERT_EQ(Create(kRootInode, "keep", &b, &h2), 0);
  ASSERT_NE(ns_->FindSession(0x77), nullptr);
  ASSERT_EQ(Mut(Opcode::kUnregister, UnregisterRequest{}, &none), 0);
  EXPECT_EQ(ns_->FindSession(0x77), nullptr);
  EXPECT_EQ(Attr(b.ino).nlink, 1u);
  EXPECT_EQ(Release(b.ino, h2), EBADF);
  ExpectReplayEqual();
  ExpectCheckpointRoundTrip();
}

TEST_F(NamespaceTest, UndecodableAndWrongOpcodes) {
  OpContext ctx;
  EXPECT_EQ(ns_->Mutate(static_cast<uint16_t>(Opcode::kCreate), std::vector<uint8_t>{1, 2}, ctx)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(ns_->Mutate(static_cast<uint16_t>(Opcode::kLookup), {}, ctx).ok());
  EXPECT_FALSE(ns_->Read(static_cast<uint16_t>(Opcode::kCreate), {}).ok());
  EXPECT_FALSE(ns_->Mutate(kOpExpireSession, std::vector<uint8_t>{1}, ctx).ok());
  EXPECT_EQ(ns_->inode_count(), 1u);
  EXPECT_EQ(ns_->session_count(), 0u);
}

// A seeded random workload; replay from the start and from a mid-way checkpoint must
// reproduce the live state byte for byte.
// A seeded workload of every mutation (with a checkpoint half way); then replay from the
// start and from the checkpoint must reproduce the live state exactly.
void NamespaceTest::RandomWorkloadReplaysExactly(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<InodeId> dirs{kRootInode};
  std::vector<std::pair<InodeId, uint64_t>> open;
  std::vector<uint8_t> checkpoint;
  size_t checkpoint_at = 0;
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  for (int i = 0; i < 4000; ++i) {
    if (i == 2000) {
      checkpoint = ns_->Serialize();
      checkpoint_at = log_.size();
    }
    const InodeId d = dirs[pick(dirs.size())];
    const std::string name = "n" + std::to_string(pick(40));
    switch (pick(12)) {
      case 0: {
        InodeAttr a;
        if (Mkdir(d, name, &a) == 0) dirs.push_back(a.ino);
        break;
      }
      case 1:
      case 2: {
        InodeAttr a;
        uint64_t h;
        if (Create(d, name, &a, &h) == 0) open.emplace_back(a.ino, h);
        break;
      }
      case 3:
        Unlink(d, name);
        break;
      case 4:
        Rmdir(d, name);
        break;
      case 5:
        Rename(d, name, dirs[pick(dirs.size())], "n" + std::to_string(pick(40)),
               static_cast<uint32_t>(pick(3)));
        break;
      case 6:
        if (!open.empty()) {
          size_t k = pick(open.size());
          Release(open[k].first, open[k].second);
          open.erase(open.begin() + static_cast<long>(k));
        }
        break;
      case 7:
      case 8:
        if (!open.empty()) {
          const InodeId ino = open[pick(open.size())].first;
          const uint64_t off = pick(64) * 4096;
          const uint64_t len = 1 + pick(3 * kUnit);
          if (Allocate(ino, off, len) == 0) {
            Commit(ino, off + len,
                   {{RoundDown(off, kBlock), RoundUp(off + len, kBlock) - RoundDown(off, kBlock)}});
          }
        }
        break;
      case 9:
        if (!open.empty()) {
          const InodeId ino = open[pick(open.size())].first;
          Truncate(ino, pick(4 * kUnit));
          Fallocate(ino, pick(2) ? FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE : 0, pick(kUnit),
                    1 + pick(kUnit));
        }
        break;
      case 10:
        Setxattr(d, "user." + name, std::string(pick(100), 'v'));
        break;
      case 11: {
        InodeAttr a;
        if (Lookup(d, name, &a) == 0 && !S_ISDIR(a.mode))
          Link(a.ino, dirs[pick(dirs.size())], name + "l");
        break;
      }
    }
    if (i % 500 == 0) {
      Status st = ns_->CheckInvariants();
      ASSERT_TRUE(st.ok()) << "after op " << i << ": " << st.ToString();
    }
  }
  ExpectReplayEqual();
  ExpectReplayEqual(&checkpoint, checkpoint_at);
  ExpectCheckpointRoundTrip();
}

TEST_F(NamespaceTest, RandomWorkloadReplaysExactly) { RandomWorkloadReplaysExactly(42); }

TEST_F(NamespaceTest, CheckpointCorruptionIsDetected) {
  InodeAttr a, b;
  uint64_t ha = 0, hb = 0;
  ASSERT_EQ(Create(kRootInode, "a", &a, &ha), 0);
  ASSERT_EQ(Create(kRootInode, "b", &b, &hb), 0);
  std::vector<Extent> ea, eb;
  ASSERT_EQ(Allocate(a.ino, 0, kBlock, &ea), 0);
  // b's second stripe unit lands on the server of a's first.
  ASSERT_EQ(Allocate(b.ino, kUnit, kBlock, &eb), 0);
  ASSERT_EQ(Fallocate(a.ino, 0, 0, kBlock), 0);
  ASSERT_EQ(Commit(a.ino, kBlock, {{0, kBlock}}), 0);
  ASSERT_EQ(Release(a.ino, ha), 0);
  ASSERT_EQ(Commit(b.ino, kUnit + kBlock, {{kUnit, kBlock}}), 0);
  ASSERT_EQ(Release(b.ino, hb), 0);
  std::vector<uint8_t> blob = ns_->Serialize();
  // Point b's extent at a's blocks (same server needed): overlapping extents.
  auto la = Layout(a.ino), lb = Layout(b.ino);
  ASSERT_EQ(la.size(), 1u);
  ASSERT_EQ(lb.size(), 1u);
  ASSERT_EQ(la[0].server, lb[0].server);
  {
    std::vector<uint8_t> bad = blob;
    // Each extent is [file_offset u64][length u64][pool_offset u64][server u32][flags u32];
    // find b's by its pool offset after its file offset and length.
    std::vector<uint8_t> pat(24);
    auto put = [&](size_t at, uint64_t v) {
      for (int i = 0; i < 8; ++i) pat[at + i] = static_cast<uint8_t>(v >> (8 * i));
    };
    put(0, lb[0].file_offset);
    put(8, lb[0].length);
    put(16, lb[0].pool_offset);
    auto it = std::search(bad.begin(), bad.end(), pat.begin(), pat.end());
    ASSERT_NE(it, bad.end());
    for (int i = 0; i < 8; ++i) it[16 + i] = static_cast<uint8_t>(la[0].pool_offset >> (8 * i));
    Namespace c(config_);
    Status st = c.Load(bad);
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find("overlaps"), std::string::npos) << st.ToString();
  }
  // Truncations and single-byte flips never crash; damage to structure is Corruption.
  for (size_t cut = 0; cut < blob.size(); cut += 7) {
    Namespace c(config_);
    Status st = c.Load(std::span<const uint8_t>(blob.data(), cut));
    EXPECT_FALSE(st.ok()) << "truncated at " << cut;
  }
  int refused = 0;
  for (size_t at = 0; at < blob.size(); ++at) {
    std::vector<uint8_t> bad = blob;
    bad[at] ^= 0x5a;
    Namespace c(config_);
    if (!c.Load(bad).ok()) ++refused;
  }
  EXPECT_GT(refused, 10);
}

// ---------------------------------------------------------------------------------------
// The free quarantine (free_quarantine.h), on an injected clock: freed blocks are not
// handed out again until free_quarantine_ms has passed on it.

class QuarantineTest : public NamespaceTest {
 protected:
  static constexpr int64_t kQuarantine = 200;
  void SetUp() override {
    // One data pool of 16 blocks, stripe unit 4 blocks: reuse is the only way to
    // allocate once it is full, so "reused" and "not reused" show in the layouts.
    Configure(16, 4);
    NamespaceTest::SetUp();
  }
  void Configure(uint64_t pool_blocks, uint32_t unit_blocks) {
    config_ = MakeConfig(pool_blocks * kBlock, 1);
    config_.stripe_unit = config_.cluster.stripe_unit = unit_blocks * kBlock;
    config_.free_quarantine_ms = kQuarantine;
    config_.clock_ms = [this] { return clock_ms_; };
  }
  // A closed file whose blocks [0, blocks) are written, filling the pool from the front.
  InodeId WrittenFile(const std::string& name, uint64_t blocks) {
    InodeAttr a;
    uint64_t h = 0;
    EXPECT_EQ(Create(kRootInode, name, &a, &h), 0);
    EXPECT_EQ(Allocate(a.ino, 0, blocks * kBlock), 0);
    EXPECT_EQ(Commit(a.ino, blocks * kBlock, {{0, blocks * kBlock}}), 0);
    EXPECT_EQ(Release(a.ino, h), 0);
    return a.ino;
  }
  static std::set<uint64_t> Blocks(const std::vector<Extent>& extents) {
    std::set<uint64_t> out;
    for (const Extent& e : extents)
      for (uint64_t b = 0; b < e.length; b += kBlock) out.insert(e.pool_offset + b);
    return out;
  }
};

TEST_F(QuarantineTest, FreedBlocksAreReusedOnlyAfterTheQuarantine) {
  const InodeId a = WrittenFile("a", 16);
  const std::set<uint64_t> a_blocks = Blocks(Layout(a));
  ASSERT_EQ(a_blocks.size(), 16u);
  EXPECT_EQ(Statfs().free_blocks, 0u);
  // Truncate frees 12 blocks at t = 1000: held through 1200 (released at 1201, so that
  // a whole quarantine passes whatever the clock's sub-millisecond part was).
  const int64_t freed_at = clock_ms_;
  ASSERT_EQ(Truncate(a, 4 * kBlock), 0);
  EXPECT_EQ(ns_->quarantined_bytes(), 12u * kBlock);
  EXPECT_EQ(ns_->free_bytes(), 0u);
  EXPECT_EQ(Statfs().free_blocks, 0u) << "quarantined blocks count as used";
  InodeAttr b;
  uint64_t hb = 0;
  ASSERT_EQ(Create(kRootInode, "b", &b, &hb), 0);
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  clock_ms_ = freed_at + kQuarantine;
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC) << "reused before the quarantine ended";
  EXPECT_EQ(ns_->quarantined_bytes(), 12u * kBlock);
  clock_ms_ = freed_at + kQuarantine + 1;
  std::vector<Extent> got;
  ASSERT_EQ(Allocate(b.ino, 0, kBlock, &got), 0);
  EXPECT_EQ(ns_->quarantined_bytes(), 0u);
  EXPECT_EQ(ns_->free_bytes(), 8u * kBlock);
  // b got a stripe unit (4 blocks), all of them blocks a gave up.
  const std::set<uint64_t> b_blocks = Blocks(got);
  EXPECT_EQ(b_blocks.size(), 4u);
  for (uint64_t blk : b_blocks) EXPECT_TRUE(a_blocks.count(blk)) << blk;
  for (uint64_t blk : Blocks(Layout(a))) EXPECT_FALSE(b_blocks.count(blk)) << blk;
  EXPECT_EQ(Release(b.ino, hb), 0);  // trims b's speculative blocks: quarantined again
  EXPECT_EQ(ns_->quarantined_bytes(), 4u * kBlock);
  EXPECT_EQ(Statfs().free_blocks, 8u);
  clock_ms_ += kQuarantine + 1;
  ns_->ReleaseQuarantine();  // what the service's lease thread does for statfs
  EXPECT_EQ(Statfs().free_blocks, 12u);
  ExpectReplayEqual();
  ExpectCheckpointRoundTrip();
}

TEST_F(QuarantineTest, EveryWayOfFreeingQuarantines) {
  // 12 blocks, stripe unit 2: six files of 2 blocks fill the pool; each step frees
  // blocks one way, and none may reach the allocator at once.
  Configure(12, 2);
  ns_ = std::make_unique<Namespace>(config_);
  auto expect_held = [&](const char* how, uint64_t blocks) {
    SCOPED_TRACE(how);
    EXPECT_EQ(ns_->quarantined_bytes(), blocks * kBlock);
    EXPECT_EQ(ns_->free_bytes(), 0u);
    Status st = ns_->CheckInvariants();
    EXPECT_TRUE(st.ok()) << st.ToString();
  };
  const InodeId f = WrittenFile("f", 2);
  const InodeId t = WrittenFile("t", 2);
  WrittenFile("g", 2);
  WrittenFile("h", 2);
  const InodeId e = WrittenFile("e", 2);
  InodeAttr s;
  uint64_t hs = 0;
  ASSERT_EQ(Create(kRootInode, "s", &s, &hs), 0);
  ASSERT_EQ(Allocate(s.ino, 0, kBlock), 0);  // 2 speculative blocks, never committed
  ASSERT_EQ(ns_->free_bytes(), 0u);

  ASSERT_EQ(Fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kBlock), 0);
  expect_held("punch hole", 1);
  ASSERT_EQ(Truncate(f, 0), 0);
  expect_held("truncate", 2);
  uint64_t ht = 0;
  ASSERT_EQ(Open(t, O_RDWR | O_TRUNC, &ht), 0);
  expect_held("open O_TRUNC", 4);
  ASSERT_EQ(Release(t, ht), 0);
  ASSERT_EQ(Release(s.ino, hs), 0);
  expect_held("last release of speculative blocks", 6);
  ASSERT_EQ(Rename(kRootInode, "g", kRootInode, "h"), 0);
  expect_held("rename over a file", 8);
  ASSERT_EQ(Unlink(kRootInode, "h"), 0);
  expect_held("unlink", 10);
  // Unlinked while open, then the session's lease lapses.
  uint64_t he = 0;
  ASSERT_EQ(Open(e, O_RDWR, &he), 0);
  ASSERT_EQ(Unlink(kRootInode, "e"), 0);
  expect_held("unlink while open", 10);
  clock_ms_ += kQuarantine + 1;  // all of the above is due (nothing allocates meanwhile)
  std::vector<uint8_t> payload(8);
  for (int i = 0; i < 8; ++i) payload[i] = static_cast<uint8_t>(session_ >> (8 * i));
  session_ = 0;
  EmptyReply none;
  ASSERT_EQ(MutRaw(kOpExpireSession, payload, &none), 0);
  EXPECT_EQ(Getattr(e), ENOENT);
  expect_held("lease expiry", 12);
  ExpectReplayEqual();
  // The first 10 are due; what the expiry freed is not.
  ns_->ReleaseQuarantine();
  EXPECT_EQ(ns_->free_bytes(), 10u * kBlock);
  EXPECT_EQ(ns_->quarantined_bytes(), 2u * kBlock);
}

TEST_F(QuarantineTest, EnospcThatTheQuarantineWouldLiftAsksForARetry) {
  const InodeId a = WrittenFile("a", 16);
  InodeAttr b;
  uint64_t hb = 0;
  ASSERT_EQ(Create(kRootInode, "b", &b, &hb), 0);
  ASSERT_EQ(Truncate(a, 14 * kBlock), 0);  // blocks 14, 15 released at 1201
  wait_limit_ms_ = clock_ms_ + kQuarantine + 1;
  bool too_old = false;
  // b needs a stripe unit (4 blocks): even the whole quarantine would not do. Final.
  ASSERT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, 0);
  EXPECT_TRUE(ns_->CachedReply(session_, seq_, &too_old).has_value());
  clock_ms_ = 1100;
  ASSERT_EQ(Truncate(a, 8 * kBlock), 0);  // blocks 8..13 released at 1301
  // Now it fits once the second range is out: retry then, and nothing is cached.
  wait_limit_ms_ = clock_ms_ + kQuarantine + 1;
  ASSERT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, 1301);
  EXPECT_FALSE(ns_->CachedReply(session_, seq_, &too_old).has_value());
  // A caller that would not wait that long gets a final ENOSPC.
  wait_limit_ms_ = 1300;
  ASSERT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, 0);
  EXPECT_TRUE(ns_->CachedReply(session_, seq_, &too_old).has_value());
  // At 1201 the first range is out (2 blocks free): still 1301.
  clock_ms_ = 1201;
  wait_limit_ms_ = clock_ms_ + kQuarantine;
  ASSERT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, 1301);
  EXPECT_EQ(ns_->free_bytes(), 2u * kBlock);
  // At the announced time the retry succeeds.
  clock_ms_ = 1301;
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), 0);
  EXPECT_EQ(last_retry_at_ms_, 0);
  EXPECT_EQ(Release(b.ino, hb), 0);
  ExpectReplayEqual();
}

TEST_F(QuarantineTest, HoldAfterRestartStopsEveryAllocationUntilItEnds) {
  const InodeId a = WrittenFile("a", 4);
  // What MetaService::Open does after recovery.
  const int64_t until = clock_ms_ + kQuarantine;
  ns_->HoldAllocationsUntil(until);
  // The hold delays allocation; it does not consume space, and statfs says so.
  EXPECT_EQ(Statfs().free_blocks, 12u);
  EXPECT_EQ(Allocate(a, 4 * kBlock, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, 0);
  wait_limit_ms_ = until;
  EXPECT_EQ(Allocate(a, 4 * kBlock, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, until);
  // Everything else works meanwhile, frees included.
  ASSERT_EQ(Truncate(a, kBlock), 0);
  EXPECT_EQ(ns_->quarantined_bytes(), 3u * kBlock);
  clock_ms_ = until - 1;
  EXPECT_EQ(Allocate(a, 4 * kBlock, kBlock), ENOSPC);
  EXPECT_EQ(last_retry_at_ms_, until);
  clock_ms_ = until;
  EXPECT_EQ(Allocate(a, 4 * kBlock, kBlock), 0);
  ExpectReplayEqual();
}

// scrub_freed: a block leaves the quarantine into the scrub queue, and only a finished
// scrub (its data server zeroed it) returns it to the allocator. Statfs counts it free
// all the while it waits; an allocation that needs it is told to come back shortly.
class ScrubTest : public QuarantineTest {
 protected:
  void SetUp() override {
    Configure(16, 4);
    config_.scrub_freed = true;
    NamespaceTest::SetUp();
  }
};

TEST_F(ScrubTest, FreedBlocksAreAllocatedOnlyOnceScrubbed) {
  const InodeId a = WrittenFile("a", 16);
  ASSERT_EQ(Truncate(a, 4 * kBlock), 0);
  clock_ms_ += kQuarantine + 1;
  ns_->ReleaseQuarantine();
  EXPECT_EQ(ns_->quarantined_bytes(), 0u);
  EXPECT_EQ(ns_->scrub_queued_bytes(), 12u * kBlock);
  EXPECT_EQ(Statfs().free_blocks, 12u) << "space waiting for its scrub is free space";
  InodeAttr b;
  uint64_t hb = 0;
  ASSERT_EQ(Create(kRootInode, "b", &b, &hb), 0);
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC) << "handed out a block nobody zeroed";
  EXPECT_EQ(last_retry_at_ms_, 0) << "no waiting allowed (limit 0): an answer";
  wait_limit_ms_ = clock_ms_ + 1000;
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  EXPECT_GT(last_retry_at_ms_, clock_ms_) << "not told to come back once it is scrubbed";
  wait_limit_ms_ = 0;
  // The scrubber takes the work in pieces of at most 5 blocks, fails on one, succeeds
  // on the others: only the zeroed ones become allocatable.
  std::vector<PoolRange> work;
  ASSERT_TRUE(ns_->TakeScrubWork(0, ~uint64_t{0}, 5 * kBlock, &work));
  ASSERT_GE(work.size(), 3u);
  uint64_t taken = 0;
  for (const PoolRange& r : work) {
    EXPECT_LE(r.length, 5u * kBlock);
    taken += r.length;
  }
  EXPECT_EQ(taken, 12u * kBlock);
  EXPECT_FALSE(ns_->TakeScrubWork(0, ~uint64_t{0}, kBlock, &work)) << "taken twice";
  EXPECT_EQ(Statfs().free_blocks, 12u);
  ns_->FinishScrub({work.begin(), work.begin() + 1}, false);
  ns_->FinishScrub({work.begin() + 1, work.end()}, true);
  EXPECT_EQ(ns_->scrub_queued_bytes(), work[0].length);
  std::vector<Extent> got;
  ASSERT_EQ(Allocate(b.ino, 0, kBlock, &got), 0);
  for (const Extent& e : got) {
    EXPECT_FALSE(e.pool_offset < work[0].pool_offset + work[0].length &&
                 work[0].pool_offset < e.pool_offset + e.length)
        << "allocated a block whose scrub failed";
  }
  EXPECT_TRUE(ns_->CheckInvariants().ok()) << ns_->CheckInvariants().ToString();
}

TEST_F(ScrubTest, AfterRecoveryEveryFreeBlockIsScrubbedFirst) {
  WrittenFile("a", 4);
  ns_->ScrubAllFree();
  // With the restart hold on as well (dpmfs-meta after a restart): the allocation is
  // told to come back, never refused outright (it was: ENOSPC after every kill -9).
  ns_->HoldAllocationsUntil(clock_ms_ + kQuarantine);
  wait_limit_ms_ = clock_ms_ + 10 * kQuarantine;
  {
    InodeAttr w;
    uint64_t hw = 0;
    ASSERT_EQ(Create(kRootInode, "w", &w, &hw), 0);
    EXPECT_EQ(Allocate(w.ino, 0, kBlock), ENOSPC);
    EXPECT_GE(last_retry_at_ms_, clock_ms_) << "refused instead of waiting for the scrub";
    EXPECT_EQ(Release(w.ino, hw), 0);
  }
  std::vector<PoolRange> early;
  EXPECT_FALSE(ns_->TakeScrubWork(0, ~uint64_t{0}, ~uint64_t{0}, &early))
      << "scrubbed during the restart hold, when a stale client write can still land";
  wait_limit_ms_ = 0;
  ns_->HoldAllocationsUntil(0);
  EXPECT_EQ(ns_->scrub_queued_bytes(), 12u * kBlock);
  EXPECT_EQ(Statfs().free_blocks, 12u);
  InodeAttr b;
  uint64_t hb = 0;
  ASSERT_EQ(Create(kRootInode, "b", &b, &hb), 0);
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), ENOSPC);
  std::vector<PoolRange> work;
  ASSERT_TRUE(ns_->TakeScrubWork(0, ~uint64_t{0}, ~uint64_t{0}, &work));
  ns_->FinishScrub(work, true);
  EXPECT_EQ(Allocate(b.ino, 0, kBlock), 0);
  EXPECT_TRUE(ns_->CheckInvariants().ok()) << ns_->CheckInvariants().ToString();
}

TEST_F(QuarantineTest, ReplayOfAWorkloadUnderQuarantinePressure) {
  // Four small pools (so frees and allocations compete for the same blocks), a clock
  // that moves 7 ms per mutation against a 200 ms quarantine, and the seeded workload:
  // live placement avoids quarantined blocks, replay re-applies what the journal says
  // and must land on exactly the same state.
  config_ = MakeConfig(8 * kUnit, 4);
  config_.free_quarantine_ms = kQuarantine;
  config_.clock_ms = [this] { return clock_ms_; };
  ns_ = std::make_unique<Namespace>(config_);
  clock_step_ms_ = 7;
  // Part of the time the caller would wait (those ENOSPCs are not journaled).
  wait_limit_ms_ = 0;
  RandomWorkloadReplaysExactly(7);
}

// Found by journal_record_fuzz (tests/fuzz): a record whose errno is no errno (Linux's
// MAX_ERRNO is 4095) decoded, and replay cached an error reply the protocol cannot carry
// (EncodeErrorReply logged an error and substituted EIO, so a retry after the restart got
// another answer than the one journaled). The decoder refuses it as Corruption.
TEST(MutationRecordTest, RefusesAnErrnoOutsideTheLinuxRange) {
  MutationRecord rec;
  rec.op = static_cast<uint16_t>(Opcode::kMkdir);
  rec.session = 7;
  rec.seq = 1;
  std::vector<uint8_t> bytes;
  MutationRecord out;
  std::vector<PoolRange> ranges;
  for (int32_t err : {4096, 553648128}) {
    rec.err = err;
    EncodeMutation(rec, &bytes);
    Status st = DecodeMutation(bytes, &out, &ranges);
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << err << ": " << st.ToString();
    EXPECT_NE(st.message().find("err"), std::string::npos) << st.ToString();
  }
  rec.err = 4095;
  EncodeMutation(rec, &bytes);
  Status st = DecodeMutation(bytes, &out, &ranges);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(out.err, 4095);
}

// The caller in a journal record: kept across encode and decode, its group count capped
// and checked against the record's bytes before the groups are read (the pool may be
// damaged), and a first-version record ("DMR1", no caller) decoding as root.
TEST(MutationRecordTest, CallerRoundTripsAndItsGroupCountIsCapped) {
  MutationRecord rec;
  rec.op = static_cast<uint16_t>(Opcode::kMkdir);
  rec.session = 7;
  rec.seq = 1;
  rec.caller.uid = 1000;
  rec.caller.gid = 100;
  for (uint32_t g = 0; g < 20; ++g) rec.caller.groups.push_back(g);
  const std::vector<uint8_t> request = {1, 2, 3};
  rec.request = request;
  std::vector<uint8_t> bytes;
  EncodeMutation(rec, &bytes);
  MutationRecord out;
  std::vector<PoolRange> ranges;
  ASSERT_TRUE(DecodeMutation(bytes, &out, &ranges).ok());
  EXPECT_EQ(out.caller, rec.caller);
  ASSERT_EQ(out.request.size(), 3u);

  // The group count sits after magic, op, session, seq, now, err, uid and gid.
  constexpr size_t kGroupsAt = 4 + 2 + 8 + 8 + 8 + 4 + 4 + 4 + 4;
  for (uint32_t n : {kMaxCallerGroups + 1, 0xFFFFFFFFu, 200u}) {  // 200: past the bytes
    std::vector<uint8_t> bad = bytes;
    if (n == kMaxCallerGroups + 1) bad.resize(bad.size() + 4 * kMaxCallerGroups);  // room
    std::memcpy(bad.data() + kGroupsAt, &n, 4);  // little-endian host
    Status st = DecodeMutation(bad, &out, &ranges);
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << n << ": " << st.ToString();
    EXPECT_NE(st.message().find("caller.groups"), std::string::npos) << st.ToString();
  }

  // DMR1: the same record without the caller field.
  MutationRecord root_rec = rec;
  root_rec.caller = Credentials{};
  EncodeMutation(root_rec, &bytes);
  bytes.erase(bytes.begin() + kGroupsAt - 8, bytes.begin() + kGroupsAt + 4);
  const uint32_t v1 = 0x31524d44;
  std::memcpy(bytes.data(), &v1, 4);
  ASSERT_TRUE(DecodeMutation(bytes, &out, &ranges).ok());
  EXPECT_EQ(out.caller, Credentials{});
  EXPECT_EQ(out.request.size(), 3u);
}


// ---- The cluster map (cluster_map.h) through the journal ----

class ClusterMapNamespaceTest : public NamespaceTest {
 protected:
  void SetUp() override {
    config_ = MakeConfig(64ull << 20, 3);
    config_.cluster.replicas = 2;
    NamespaceTest::SetUp();
  }
  int SetState(uint32_t server, DataServerState to, bool full = false, uint64_t instance = 0) {
    session_ = 0;  // the server's own records carry no session
    int e = MutRaw(kOpSetServerState, EncodeSetServerState(server, to, full, instance),
                   static_cast<EmptyReply*>(nullptr));
    session_ = 0x5e55;
    return e;
  }
  int SetPoolInstance(uint32_t server, uint64_t instance) {
    session_ = 0;
    int e = MutRaw(kOpSetPoolInstance, EncodeSetPoolInstance(server, instance),
                   static_cast<EmptyReply*>(nullptr));
    session_ = 0x5e55;
    return e;
  }
  int Progress(uint32_t server, const std::vector<DirtyUnit>& units) {
    session_ = 0;
    int e = MutRaw(kOpResyncProgress, EncodeResyncProgress(server, units),
                   static_cast<EmptyReply*>(nullptr));
    session_ = 0x5e55;
    return e;
  }
  int MarkDegraded(uint64_t epoch, std::vector<PrimaryRange> ranges) {
    EmptyReply rep;
    return Mut(Opcode::kMarkDegraded, MarkDegradedRequest{epoch, std::move(ranges)}, &rep);
  }
  ClusterMapReply Map() {
    ClusterMapReply rep;
    EXPECT_EQ(Rd(Opcode::kGetClusterMap, GetClusterMapRequest{}, &rep), 0);
    return rep;
  }
};

TEST_F(ClusterMapNamespaceTest, MapChangesReplayExactlyAndSurviveACheckpoint) {
  EXPECT_EQ(Map().epoch, 1u);
  ASSERT_EQ(SetState(1, DataServerState::kDown), 0);
  EXPECT_EQ(Map().epoch, 2u);
  // A move the map does not allow changes nothing.
  EXPECT_EQ(SetState(1, DataServerState::kUp), EINVAL);
  EXPECT_EQ(Map().epoch, 2u);
  // A client marks units of primary 0 (copy on 1) and primary 2 (copies on 2, 0).
  EXPECT_EQ(MarkDegraded(2, {PrimaryRange{0, 0, 2 * kUnit}, PrimaryRange{2, 0, kUnit}}), 0);
  EXPECT_EQ(Map().servers[1].dirty_bytes, 2 * kUnit);
  // An old epoch is refused (the client must fetch the map), a bad range too.
  EXPECT_EQ(MarkDegraded(1, {PrimaryRange{1, 0, kUnit}}), ESTALE);
  EXPECT_EQ(MarkDegraded(2, {PrimaryRange{5, 0, kUnit}}), EINVAL);
  EXPECT_EQ(MarkDegraded(2, {PrimaryRange{1, 64ull << 20, kUnit}}), EINVAL);
  EXPECT_EQ(Map().servers[1].dirty_bytes, 2 * kUnit);
  // Blocks allocated while server 1 is down are recorded by the server itself.
  InodeId f = File(kRootInode, "f");
  std::vector<Extent> ex;
  ASSERT_EQ(Allocate(f, 0, 4 * kUnit, &ex), 0);
  const uint64_t after_alloc = Map().servers[1].dirty_bytes;
  EXPECT_GT(after_alloc, 2 * kUnit);
  const std::vector<uint8_t> checkpoint = ns_->Serialize();
  const size_t at_checkpoint = log_.size();
  ASSERT_EQ(SetState(1, DataServerState::kResyncing), 0);
  const ClusterMap& m = ns_->cluster_map();
  std::vector<DirtyUnit> batch = m.NextDirty(1, 2);
  ASSERT_EQ(Progress(1, batch), 0);
  EXPECT_EQ(Progress(1, batch), EINVAL);  // already done
  EXPECT_EQ(Progress(2, batch), EINVAL);  // not resyncing
  EXPECT_EQ(SetState(1, DataServerState::kUp), EINVAL);  // not caught up
  ASSERT_EQ(Progress(1, m.NextDirty(1, 1000)), 0);
  ClusterMapReply map = Map();
  EXPECT_EQ(map.servers[1].resync_done_bytes, after_alloc);
  EXPECT_EQ(map.servers[1].resync_total_bytes, after_alloc);
  ASSERT_EQ(SetState(1, DataServerState::kUp), 0);
  EXPECT_EQ(Map().epoch, 4u);  // down, resyncing, up
  ExpectReplayEqual();
  ExpectReplayEqual(&checkpoint, at_checkpoint);
  ExpectCheckpointRoundTrip();
}

TEST_F(ClusterMapNamespaceTest, PoolInstancesAndAFullRebuildReplayExactlyAndSurviveACheckpoint) {
  // The pools first seen: recorded, no epoch.
  for (uint32_t s = 0; s < 3; ++s) ASSERT_EQ(SetPoolInstance(s, 100 + s), 0);
  EXPECT_EQ(SetPoolInstance(3, 1), EINVAL);
  EXPECT_EQ(SetPoolInstance(0, 0), EINVAL);
  EXPECT_EQ(Map().epoch, 1u);
  ASSERT_EQ(SetState(1, DataServerState::kDown), 0);
  EXPECT_EQ(MarkDegraded(2, {PrimaryRange{0, 0, kUnit}}), 0);
  const std::vector<uint8_t> checkpoint = ns_->Serialize();
  const size_t at_checkpoint = log_.size();
  // Server 1 returns with a new pool: every unit it holds copies of, and its new pool,
  // in one record.
  ASSERT_EQ(SetState(1, DataServerState::kResyncing, true, 201), 0);
  const ClusterMap& m = ns_->cluster_map();
  EXPECT_EQ(m.pool_instance(1), 201u);
  EXPECT_EQ(m.pool_instance(0), 100u);
  const uint64_t all = m.dirty(1).size();
  EXPECT_GT(all, 1u);
  EXPECT_EQ(Map().servers[1].resync_total_bytes, all * kUnit);
  for (const DirtyUnit& u : m.dirty(1)) EXPECT_TRUE(u.primary == 1 || u.primary == 0);
  ASSERT_EQ(Progress(1, m.NextDirty(1, 3)), 0);
  ExpectReplayEqual();
  ExpectReplayEqual(&checkpoint, at_checkpoint);
  ExpectCheckpointRoundTrip();
  // Across a checkpoint taken mid-rebuild too.
  const std::vector<uint8_t> mid = ns_->Serialize();
  Namespace b(config_);
  ASSERT_TRUE(b.Load(mid).ok());
  EXPECT_EQ(b.cluster_map().pool_instance(1), 201u);
  EXPECT_EQ(b.cluster_map().dirty(1).size(), all - 3);
  EXPECT_EQ(b.cluster_map().state(1), DataServerState::kResyncing);
}

TEST_F(ClusterMapNamespaceTest, ASetServerStateRecordFromBeforePoolInstancesStillReplays) {
  ASSERT_EQ(SetPoolInstance(1, 100), 0);
  std::vector<uint8_t> old = EncodeSetServerState(1, DataServerState::kDown, false, 0);
  old.resize(6);  // u32 server, u8 state, u8 full rebuild: the record's first form
  OpContext ctx;
  int err = -1;
  ASSERT_TRUE(ns_->Mutate(kOpSetServerState, old, ctx, &err).ok());
  EXPECT_EQ(err, 0);
  EXPECT_EQ(ns_->cluster_map().state(1), DataServerState::kDown);
  EXPECT_EQ(ns_->cluster_map().pool_instance(1), 100u);  // unchanged
  // A cut instance is refused.
  std::vector<uint8_t> cut = EncodeSetServerState(1, DataServerState::kResyncing, true, 5);
  cut.resize(10);
  EXPECT_FALSE(ns_->Mutate(kOpSetServerState, cut, ctx).ok());
  EXPECT_FALSE(ns_->Mutate(kOpSetPoolInstance, std::vector<uint8_t>{1, 0, 0, 0, 5}, ctx).ok());
  EXPECT_EQ(ns_->cluster_map().state(1), DataServerState::kDown);
}

TEST_F(ClusterMapNamespaceTest, InternalRecordsThatDoNotDecodeAreRefused) {
  OpContext ctx;
  EXPECT_FALSE(ns_->Mutate(kOpSetServerState, std::vector<uint8_t>{1, 0, 0}, ctx).ok());
  std::vector<uint8_t> bad_state = EncodeSetServerState(0, DataServerState::kDown, false);
  bad_state[4] = 9;
  EXPECT_FALSE(ns_->Mutate(kOpSetServerState, bad_state, ctx).ok());
  std::vector<uint8_t> too_many = EncodeResyncProgress(0, {});
  too_many[4] = 0xFF;  // count says 255 units, none follow
  EXPECT_FALSE(ns_->Mutate(kOpResyncProgress, too_many, ctx).ok());
  EXPECT_EQ(ns_->cluster_map().epoch(), 1u);
}

TEST_F(NamespaceTest, AVersionOneCheckpointLoadsWithAFreshMap) {
  // Version 1 (before the map): the same blob without the map's bytes at its end.
  std::vector<uint8_t> blob = ns_->Serialize();
  const size_t map_bytes = 8 + 4 + config_.pools.size() * (1 + 8 + 8 + 8 + 8);
  blob.resize(blob.size() - map_bytes);
  blob[8] = 1;  // version, after the 8-byte magic
  Namespace b(config_);
  Status st = b.Load(blob);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(b.cluster_map().epoch(), 1u);
  EXPECT_TRUE(b.cluster_map().all_up());
}

TEST_F(NamespaceTest, AVersionTwoCheckpointLoadsWithNoPoolInstancesSeen) {
  // Version 2: the map without each server's pool instance (after its state byte).
  std::vector<uint8_t> blob = ns_->Serialize();
  const size_t per_server = 1 + 8 + 8 + 8 + 8;
  const size_t map_at = blob.size() - (8 + 4 + config_.pools.size() * per_server);
  for (size_t s = config_.pools.size(); s-- > 0;) {
    const size_t at = map_at + 12 + s * per_server + 1;
    blob.erase(blob.begin() + at, blob.begin() + at + 8);
  }
  blob[8] = 2;  // version, after the 8-byte magic
  Namespace b(config_);
  Status st = b.Load(blob);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(b.cluster_map().pool_instance(0), 0u);
  EXPECT_TRUE(b.cluster_map().all_up());
}

}  // namespace
}  // namespace dpmfs::meta
