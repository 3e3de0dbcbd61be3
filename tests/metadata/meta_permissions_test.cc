// The metadata server enforces the file modes itself: a real dpmfs-meta process, driven
// by MetaClients that skip every kernel check and state their caller outright (as a
// hostile client holding the cluster key could). Root (uid 0) sets up files and
// directories; an unprivileged uid then gets EACCES / EPERM from the server for every
// operation the modes forbid, and succeeds where they allow. Also: --root-squash,
// --allow-uids (and refused option values), set-ID clearing that survives a kill -9
// and replay (the journal carries the caller).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <filesystem>
#include <fstream>

#include "common/daemon_process.h"
#include "tests/support/test_cluster_key.h"
#include "metadata/meta_client.h"
#include "tests/metadata/meta_test_pool.h"
#include "transport/transport.h"

namespace dpmfs::meta {
namespace {

constexpr uint32_t kUser = 1000, kUserGroup = 1000, kOther = 1001, kShared = 500;

Credentials Caller(uint32_t uid, uint32_t gid, std::initializer_list<uint32_t> groups = {}) {
  Credentials c;
  c.uid = uid;
  c.gid = gid;
  for (uint32_t g : groups) c.groups.push_back(g);
  return c;
}

class MetaPermissionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("meta-perm-test");
    pool_ = dir_ + "/meta.pool";
    ASSERT_NO_FATAL_FAILURE(FormatTestMetaPool(pool_, TestMetaPool{}));
    transport::DeviceOptions dev;
    dev.cluster_key = test_support::TestClusterKey();  // the spawned dpmfs-meta's key
    auto device = transport::OpenSoftDevice(dev);
    ASSERT_TRUE(device.ok()) << device.status().ToString();
    device_ = std::move(*device);
  }
  void TearDown() override {
    clients_.clear();
    server_.reset();
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  Status StartServer(std::vector<std::string> extra = {}) {
    DaemonOptions o;
    o.name = "metadata server";
    o.log_prefix = "meta";
    o.log_dir = dir_;
    o.keep_logs = true;
    o.argv = {DPMFS_META_BIN, "--pool",   pool_,           "--listen",  listen_,
              "--data",       "127.0.0.1:1", "--data",     "127.0.0.1:2", "--no-scrub",
              "--free-quarantine-ms", "0"};
    o.argv.insert(o.argv.end(), extra.begin(), extra.end());
    auto started = DaemonProcess::Start(o, ++generation_);
    if (!started.ok()) return started.status();
    server_ = std::move(*started);
    listen_ = server_->endpoint().ToString();
    return Status::OK();
  }
  // A client acting for `caller` in every call (no CallerScope needed).
  MetaClient* As(const Credentials& caller) {
    MetaClientOptions o;
    o.client_name = "meta_permissions_test";
    o.caller = caller;
    auto c = MetaClient::Connect(*device_, server_->endpoint(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (!c.ok()) return nullptr;
    clients_.push_back(std::move(*c));
    return clients_.back().get();
  }

  InodeId Mkdir(MetaClient& c, InodeId parent, const std::string& name, uint32_t mode) {
    InodeAttr a;
    EXPECT_EQ(c.Mkdir(MkdirRequest{parent, name, mode, 0, 0}, &a).ToErrno(), 0) << name;
    SetMode(c, a.ino, mode);  // exact bits (a mkdir of 01777 keeps them, but say so)
    return a.ino;
  }
  InodeAttr CreateFile(MetaClient& c, InodeId parent, const std::string& name, uint32_t mode,
                       uint32_t uid = 0, uint32_t gid = 0) {
    CreateReply r;
    EXPECT_EQ(c.Create(CreateRequest{parent, name, S_IFREG | mode, uid, gid, O_CREAT | O_EXCL},
                       &r)
                  .ToErrno(),
              0)
        << name;
    EXPECT_EQ(c.Release(r.attr.ino, r.handle).ToErrno(), 0);
    return r.attr;
  }
  void SetMode(MetaClient& c, InodeId ino, uint32_t mode) {
    SetattrRequest sa;
    sa.ino = ino;
    sa.valid = SetattrRequest::kMode;
    sa.mode = mode;
    InodeAttr a;
    ASSERT_EQ(c.Setattr(sa, &a).ToErrno(), 0);
  }
  InodeAttr Stat(MetaClient& c, InodeId ino) {
    InodeAttr a;
    EXPECT_EQ(c.Getattr(ino, &a).ToErrno(), 0);
    return a;
  }

  std::string dir_, pool_, listen_ = "127.0.0.1:0";
  uint64_t generation_ = 0;
  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<DaemonProcess> server_;
  std::vector<std::unique_ptr<MetaClient>> clients_;
};

// Every operation the modes forbid an unprivileged caller, answered by the server.
TEST_F(MetaPermissionsTest, UnprivilegedCallerIsRefusedByTheServer) {
  ASSERT_TRUE(StartServer().ok());
  MetaClient& root = *As(Caller(0, 0));
  MetaClient& user = *As(Caller(kUser, kUserGroup));
  // Root's world: a private file, a readable file, a closed directory, a sticky one.
  const InodeAttr secret = CreateFile(root, kRootInode, "secret", 0600);
  const InodeAttr readable = CreateFile(root, kRootInode, "readable", 0644);
  const InodeId closed = Mkdir(root, kRootInode, "closed", 0700);
  CreateFile(root, closed, "inside", 0644);
  const InodeId tmp = Mkdir(root, kRootInode, "tmp", 01777);
  const InodeAttr roots_in_tmp = CreateFile(root, tmp, "roots", 0666);
  // Positive control: what the modes allow works for the same caller.
  InodeAttr a;
  OpenReply open;
  ASSERT_EQ(user.Lookup(kRootInode, "readable", &a).ToErrno(), 0);
  ASSERT_EQ(user.Open(readable.ino, O_RDONLY, &open).ToErrno(), 0);
  ASSERT_EQ(user.Release(readable.ino, open.handle).ToErrno(), 0);
  const InodeAttr mine = CreateFile(user, tmp, "mine", 0644);
  EXPECT_EQ(mine.uid, kUser);
  EXPECT_EQ(mine.gid, kUserGroup);

  // Reading and writing others' files.
  EXPECT_EQ(user.Open(secret.ino, O_RDONLY, &open).ToErrno(), EACCES);
  EXPECT_EQ(user.Open(readable.ino, O_WRONLY, &open).ToErrno(), EACCES);
  EXPECT_EQ(user.Open(readable.ino, O_RDONLY | O_TRUNC, &open).ToErrno(), EACCES);
  CreateReply cr;
  EXPECT_EQ(user.Create(CreateRequest{kRootInode, "readable", 0644, kUser, kUserGroup, O_RDWR},
                        &cr)
                .ToErrno(),
            EACCES);
  LayoutReply lr;
  EXPECT_EQ(user.Layout(LayoutRequest{secret.ino, 0, 0}, &lr).ToErrno(), EACCES);
  AllocateReply ar;
  EXPECT_EQ(user.Allocate(AllocateRequest{readable.ino, 0, 4096}, &ar).ToErrno(), EACCES);
  CommitRequest commit;
  commit.ino = readable.ino;
  EXPECT_EQ(user.Commit(commit, &a).ToErrno(), EACCES);
  EXPECT_EQ(user.Fallocate(FallocateRequest{readable.ino, 0, 0, 4096}, &a).ToErrno(), EACCES);
  SetattrRequest trunc;
  trunc.ino = readable.ino;
  trunc.valid = SetattrRequest::kSize;
  EXPECT_EQ(user.Setattr(trunc, &a).ToErrno(), EACCES);
  // Names in directories it may not write or search.
  EXPECT_EQ(user.Create(CreateRequest{kRootInode, "new", 0644, kUser, kUserGroup, O_CREAT}, &cr)
                .ToErrno(),
            EACCES);
  EXPECT_EQ(user.Mkdir(MkdirRequest{kRootInode, "newdir", 0755, kUser, kUserGroup}, &a).ToErrno(),
            EACCES);
  EXPECT_EQ(user.Symlink(SymlinkRequest{kRootInode, "ln", "x", kUser, kUserGroup}, &a).ToErrno(),
            EACCES);
  EXPECT_EQ(user.Mknod(MknodRequest{kRootInode, "fifo", S_IFIFO | 0644, 0, kUser, kUserGroup}, &a)
                .ToErrno(),
            EACCES);
  EXPECT_EQ(user.Mknod(MknodRequest{tmp, "dev", S_IFCHR | 0644, 0x0101, kUser, kUserGroup}, &a)
                .ToErrno(),
            EPERM);
  EXPECT_EQ(user.Link(readable.ino, kRootInode, "hard", &a).ToErrno(), EACCES);
  EXPECT_EQ(user.Unlink(kRootInode, "readable").ToErrno(), EACCES);
  EXPECT_EQ(user.Rmdir(kRootInode, "closed").ToErrno(), EACCES);
  RenameRequest rn{kRootInode, "readable", tmp, "stolen", 0};
  EXPECT_EQ(user.Rename(rn).ToErrno(), EACCES);
  EXPECT_EQ(user.Lookup(closed, "inside", &a).ToErrno(), EACCES);
  ReaddirReply rd;
  EXPECT_EQ(user.Readdir(ReaddirRequest{closed, 0, 100, false}, &rd).ToErrno(), EACCES);
  // The sticky directory: it may write there, but not remove or rename root's entry.
  EXPECT_EQ(user.Unlink(tmp, "roots").ToErrno(), EPERM);
  EXPECT_EQ(user.Rename(RenameRequest{tmp, "roots", tmp, "renamed", 0}).ToErrno(), EPERM);
  EXPECT_EQ(user.Rename(RenameRequest{tmp, "mine", tmp, "roots", 0}).ToErrno(), EPERM);
  // Attributes of others' files.
  SetattrRequest chmod;
  chmod.ino = readable.ino;
  chmod.valid = SetattrRequest::kMode;
  chmod.mode = 0666;
  EXPECT_EQ(user.Setattr(chmod, &a).ToErrno(), EPERM);
  SetattrRequest chown;
  chown.ino = readable.ino;
  chown.valid = SetattrRequest::kUid;
  chown.uid = kUser;
  EXPECT_EQ(user.Setattr(chown, &a).ToErrno(), EPERM);
  chown.ino = mine.ino;  // giving its own file away: root only
  chown.uid = kOther;
  EXPECT_EQ(user.Setattr(chown, &a).ToErrno(), EPERM);
  SetattrRequest chgrp;
  chgrp.ino = mine.ino;
  chgrp.valid = SetattrRequest::kGid;
  chgrp.gid = 4242;  // not one of its groups
  EXPECT_EQ(user.Setattr(chgrp, &a).ToErrno(), EPERM);
  SetattrRequest times;
  times.ino = readable.ino;
  times.valid = SetattrRequest::kMtime;
  times.mtime = Timespec{1, 0};
  EXPECT_EQ(user.Setattr(times, &a).ToErrno(), EPERM);
  times.valid = SetattrRequest::kAtime | SetattrRequest::kAtimeNow | SetattrRequest::kMtime |
                SetattrRequest::kMtimeNow;
  EXPECT_EQ(user.Setattr(times, &a).ToErrno(), EACCES);
  times.ino = roots_in_tmp.ino;  // 0666: writable, so "now" is allowed, explicit is not
  EXPECT_EQ(user.Setattr(times, &a).ToErrno(), 0);
  // Extended attributes.
  EXPECT_EQ(user.Setxattr(SetxattrRequest{readable.ino, "user.k", "v", 0}).ToErrno(), EACCES);
  EXPECT_EQ(user.Setxattr(SetxattrRequest{mine.ino, "trusted.k", "v", 0}).ToErrno(), EPERM);
  EXPECT_EQ(user.Setxattr(SetxattrRequest{mine.ino, "security.k", "v", 0}).ToErrno(), EPERM);
  ASSERT_EQ(root.Setxattr(SetxattrRequest{secret.ino, "user.k", "v", 0}).ToErrno(), 0);
  ASSERT_EQ(root.Setxattr(SetxattrRequest{readable.ino, "trusted.k", "v", 0}).ToErrno(), 0);
  std::string value;
  EXPECT_EQ(user.Getxattr(secret.ino, "user.k", &value).ToErrno(), EACCES);
  EXPECT_EQ(user.Getxattr(readable.ino, "trusted.k", &value).ToErrno(), ENODATA);
  std::vector<std::string> names;
  ASSERT_EQ(user.Listxattr(readable.ino, &names).ToErrno(), 0);
  EXPECT_TRUE(names.empty());  // trusted.* hidden from non-root
  EXPECT_EQ(user.Removexattr(secret.ino, "user.k").ToErrno(), EACCES);

  // Nothing of root's changed.
  EXPECT_EQ(Stat(root, readable.ino).mode, S_IFREG | 0644u);
  EXPECT_EQ(Stat(root, readable.ino).uid, 0u);
  EXPECT_EQ(root.Lookup(kRootInode, "new", &a).ToErrno(), ENOENT);
  EXPECT_EQ(root.Lookup(tmp, "roots", &a).ToErrno(), 0);
}

// A non-root caller cannot make a file owned by root, or a set-user-ID file of root's:
// new inodes belong to their caller, whatever the request says.
TEST_F(MetaPermissionsTest, NewInodesBelongToTheirCaller) {
  ASSERT_TRUE(StartServer().ok());
  MetaClient& root = *As(Caller(0, 0));
  MetaClient& user = *As(Caller(kUser, kUserGroup));
  const InodeId tmp = Mkdir(root, kRootInode, "tmp", 01777);
  const InodeAttr f = CreateFile(user, tmp, "suid", 04755, /*uid=*/0, /*gid=*/0);
  EXPECT_EQ(f.uid, kUser);
  EXPECT_EQ(f.gid, kUserGroup);
  InodeAttr a;
  ASSERT_EQ(user.Mkdir(MkdirRequest{tmp, "d", 0755, 0, 0}, &a).ToErrno(), 0);
  EXPECT_EQ(a.uid, kUser);
  // Root may name the owner (the kernel's FUSE requests say who asked).
  const InodeAttr g = CreateFile(root, tmp, "given", 0644, kOther, kShared);
  EXPECT_EQ(g.uid, kOther);
  EXPECT_EQ(g.gid, kShared);
}

// Set-ID clearing decided with the caller's groups, journaled with its caller: the
// same result after kill -9 and replay.
TEST_F(MetaPermissionsTest, SetIdClearingSurvivesReplay) {
  ASSERT_TRUE(StartServer().ok());
  MetaClient* root = As(Caller(0, 0));
  MetaClient* user = As(Caller(kUser, kUserGroup));
  MetaClient* member = As(Caller(kOther, kOther, {kShared}));
  const InodeId tmp = Mkdir(*root, kRootInode, "tmp", 01777);
  // The user's file in a group it is not in (root gave it): its chmod g+s is dropped.
  InodeAttr f = CreateFile(*root, tmp, "f", 0644, kUser, kShared);
  SetMode(*user, f.ino, 02755);
  EXPECT_EQ(Stat(*root, f.ino).mode, S_IFREG | 0755u);
  // A set-ID file a group member may write: its write (commit) clears both bits.
  const InodeAttr g = CreateFile(*root, tmp, "g", 06775, kUser, kShared);
  CommitRequest c;
  c.ino = g.ino;
  InodeAttr a;
  ASSERT_EQ(member->Commit(c, &a).ToErrno(), 0);
  EXPECT_EQ(a.mode, S_IFREG | 0775u);
  server_->SendKill();
  ASSERT_TRUE(server_->Wait(std::chrono::seconds(10)).ok());
  clients_.clear();
  ASSERT_TRUE(StartServer().ok());
  root = As(Caller(0, 0));
  EXPECT_EQ(Stat(*root, f.ino).mode, S_IFREG | 0755u);
  EXPECT_EQ(Stat(*root, g.ino).mode, S_IFREG | 0775u);
}

TEST_F(MetaPermissionsTest, RootSquash) {
  ASSERT_TRUE(StartServer().ok());
  MetaClient* root = As(Caller(0, 0));
  const InodeAttr secret = CreateFile(*root, kRootInode, "secret", 0600);
  const InodeAttr open_file = CreateFile(*root, kRootInode, "open", 0644);
  server_->SendKill();
  ASSERT_TRUE(server_->Wait(std::chrono::seconds(10)).ok());
  clients_.clear();
  ASSERT_TRUE(StartServer({"--root-squash"}).ok());
  root = As(Caller(0, 0, {0}));
  OpenReply o;
  EXPECT_EQ(root->Open(secret.ino, O_RDONLY, &o).ToErrno(), EACCES);
  EXPECT_EQ(root->Unlink(kRootInode, "open").ToErrno(), EACCES);
  SetattrRequest chmod;
  chmod.ino = open_file.ino;
  chmod.valid = SetattrRequest::kMode;
  chmod.mode = 0777;
  InodeAttr a;
  EXPECT_EQ(root->Setattr(chmod, &a).ToErrno(), EPERM);
  ASSERT_EQ(root->Open(open_file.ino, O_RDONLY, &o).ToErrno(), 0);  // others' bits still apply
}

TEST_F(MetaPermissionsTest, AllowedUidsPerHost) {
  ASSERT_TRUE(StartServer({"--allow-uids", "127.0.0.1=1000-1999"}).ok());
  MetaClient* inside = As(Caller(kUser, kUserGroup));
  InodeAttr a;
  EXPECT_EQ(inside->Getattr(kRootInode, &a).ToErrno(), 0);
  MetaClient* outside = As(Caller(2000, 2000));  // registers (session upkeep is not refused)
  ASSERT_NE(outside, nullptr);
  EXPECT_EQ(outside->Getattr(kRootInode, &a).ToErrno(), EPERM);
  EXPECT_EQ(outside->Mkdir(MkdirRequest{kRootInode, "x", 0755, 0, 0}, &a).ToErrno(), EPERM);
  MetaClient* root = As(Caller(0, 0));
  EXPECT_EQ(root->Getattr(kRootInode, &a).ToErrno(), EPERM);
  MetaClient* nobody = As(Caller(65534, 65534));
  EXPECT_EQ(nobody->Getattr(kRootInode, &a).ToErrno(), 0);
  // The server says why, once per host and uid.
  std::ifstream err(dir_ + "/meta-1.err");
  std::string log((std::istreambuf_iterator<char>(err)), {});
  EXPECT_NE(log.find("refused getattr for uid 2000 from 127.0.0.1"), std::string::npos) << log;
}

TEST_F(MetaPermissionsTest, BadOptionValuesAreRefusedWithAReason) {
  for (const char* bad : {"127.0.0.1", "127.0.0.1=9-1", "127.0.0.1=x"}) {
    Status st = StartServer({"--allow-uids", bad});
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("HOST=LO-HI"), std::string::npos) << st.ToString();
  }
  Status twice = StartServer({"--allow-uids", "h=1", "--allow-uids", "h=2"});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.message().find("twice"), std::string::npos) << twice.ToString();
}

}  // namespace
}  // namespace dpmfs::meta
