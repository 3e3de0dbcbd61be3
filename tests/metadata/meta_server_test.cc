// The metadata server's semantics over real RPC: a dpmfs-meta process on loopback (soft
// transport), driven by MetaClient. An operation sweep with errnos; state surviving a
// clean stop (SIGTERM) and a kill -9; a retried mutation after a restart answered from
// the durable reply cache; lease expiry freeing an unlinked open file; the free
// quarantine flag; refused pools and flags. Also measures single-client create and stat
// rates (recorded as properties).
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/daemon_process.h"
#include "tests/support/test_cluster_key.h"
#include "common/pool.h"
#include "transport/transport.h"
#include "metadata/meta_client.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"
#include "rpc/rpc_client.h"
#include "tests/metadata/meta_test_pool.h"

namespace dpmfs::meta {
namespace {

constexpr uint32_t kBlock = 4096;
constexpr uint32_t kUnit = 64 * 1024;
constexpr uint64_t kDataPool = 64ull << 20;

// Runs a command to completion: exit status (or 128+signal) and its stderr.
int RunCommand(const std::vector<std::string>& argv, std::string* err_text,
               const std::string& dir) {
  const std::string err_path = dir + "/cmd.err";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = ::open("/dev/null", O_WRONLY);
    dup2(fd, 2);
    dup2(null, 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream in(err_path);
  err_text->assign(std::istreambuf_iterator<char>(in), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class MetaServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (getenv("DPMFS_LOG_LEVEL") != nullptr) {
      spdlog::set_level(spdlog::level::from_str(getenv("DPMFS_LOG_LEVEL")));
    }
    dir_ = MakeTestDir("meta-server-test");
    pool_ = dir_ + "/meta.pool";
    TestMetaPool p;
    p.block_size = kBlock;
    p.pool_size = 32ull << 20;
    p.stripe_unit = kUnit;
    p.data_pool_bytes = kDataPool;
    ASSERT_NO_FATAL_FAILURE(FormatTestMetaPool(pool_, p));
    transport::DeviceOptions dev;
    dev.cluster_key = test_support::TestClusterKey();
    auto device = transport::OpenSoftDevice(dev);
    ASSERT_TRUE(device.ok()) << device.status().ToString();
    device_ = std::move(*device);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  // quarantine_ms: --free-quarantine-ms. These tests are about other things and count
  // free blocks right after freeing them, so the quarantine is off unless asked for.
  void StartServer(uint32_t lease_ms = 10000, uint32_t quarantine_ms = 0) {
    DaemonOptions o;
    o.name = "metadata server";
    o.log_prefix = "meta";
    o.log_dir = dir_;
    o.keep_logs = true;
    o.argv = {DPMFS_META_BIN,          "--pool", pool_, "--listen", listen_, "--lease-ms",
              std::to_string(lease_ms)};
    o.argv.insert(o.argv.end(), {"--free-quarantine-ms", std::to_string(quarantine_ms)});
    o.argv.push_back("--no-scrub");  // the data servers named below do not exist
    if (cluster_file_.empty()) {
      o.argv.insert(o.argv.end(), {"--data", "127.0.0.1:7101", "--data", "127.0.0.1:7102"});
    } else {
      o.argv.insert(o.argv.end(), {"--cluster-file", cluster_file_});
    }
    auto started = DaemonProcess::Start(o, ++generation_);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    server_ = std::move(*started);
    listen_ = server_->endpoint().ToString();  // restarts keep the port
  }
  void KillServer() {
    server_->SendKill();
    auto r = server_->Wait(std::chrono::seconds(10));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  void StopServer() {
    ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
    auto r = server_->Wait(std::chrono::seconds(20));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, "exited with status 0") << server_->StderrTail();
  }
  std::unique_ptr<MetaClient> Connect(bool heartbeat = true) {
    MetaClientOptions o;
    o.client_name = "meta_server_test";
    o.heartbeat = heartbeat;
    o.call_timeout = std::chrono::milliseconds(10000);
    auto c = MetaClient::Connect(*device_, server_->endpoint(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Small typed helpers over MetaClient.
  InodeId Mkdir(MetaClient& c, InodeId parent, const std::string& name) {
    InodeAttr a;
    EXPECT_EQ(c.Mkdir(MkdirRequest{parent, name, 0755, 0, 0}, &a).ToErrno(), 0) << name;
    return a.ino;
  }
  CreateReply Create(MetaClient& c, InodeId parent, const std::string& name, uint32_t flags = 0) {
    CreateReply r;
    EXPECT_EQ(c.Create(CreateRequest{parent, name, S_IFREG | 0644, 1, 2, flags}, &r).ToErrno(), 0) << name;
    return r;
  }
  std::vector<DirEntry> ListAll(MetaClient& c, InodeId dir) {
    std::vector<DirEntry> out;
    uint64_t cookie = 0;
    for (;;) {
      ReaddirReply r;
      EXPECT_EQ(c.Readdir(ReaddirRequest{dir, cookie, kMaxReaddirEntries, true}, &r).ToErrno(), 0);
      for (auto& e : r.entries) {
        cookie = e.cookie;
        out.push_back(e);
      }
      if (r.eof || r.entries.empty()) break;
    }
    return out;
  }

  std::string dir_, pool_, listen_ = "127.0.0.1:0", cluster_file_;
  uint64_t generation_ = 0;
  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<DaemonProcess> server_;
  std::unique_ptr<MetaClient> client_;
};

TEST_F(MetaServerTest, OperationSweep) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  // Register told the client about the cluster.
  const ClusterInfo& ci = c->cluster();
  EXPECT_EQ(ci.block_size, kBlock);
  EXPECT_EQ(ci.stripe_unit, kUnit);
  ASSERT_EQ(ci.servers.size(), 2u);
  EXPECT_EQ(ci.servers[1].endpoint, "127.0.0.1:7102");
  EXPECT_EQ(ci.servers[0].data_size, kDataPool);
  EXPECT_EQ(c->lease_ms(), 10000u);

  InodeAttr a;
  ASSERT_EQ(c->Getattr(kRootInode, &a).ToErrno(), 0);
  EXPECT_TRUE(S_ISDIR(a.mode));
  const InodeId d = Mkdir(*c, kRootInode, "d");
  EXPECT_EQ(c->Mkdir(MkdirRequest{kRootInode, "d", 0755, 0, 0}, &a).ToErrno(), EEXIST);
  EXPECT_EQ(c->Mkdir(MkdirRequest{kRootInode, std::string(256, 'x'), 0755, 0, 0}, &a).ToErrno(),
            ENAMETOOLONG);
  CreateReply f = Create(*c, d, "f");
  EXPECT_TRUE(f.created);
  CreateReply r;
  EXPECT_EQ(c->Create(CreateRequest{d, "f", 0644, 0, 0, O_CREAT | O_EXCL}, &r).ToErrno(), EEXIST);
  EXPECT_EQ(c->Lookup(d, "f", &a).ToErrno(), 0);
  EXPECT_EQ(a.ino, f.attr.ino);
  EXPECT_EQ(c->Lookup(d, "nope", &a).ToErrno(), ENOENT);
  EXPECT_EQ(c->Lookup(f.attr.ino, "x", &a).ToErrno(), ENOTDIR);
  SetattrRequest sa;
  sa.ino = f.attr.ino;
  sa.valid = SetattrRequest::kMode | SetattrRequest::kMtime;
  sa.mode = 0600;
  sa.mtime = Timespec{1234, 5678};
  ASSERT_EQ(c->Setattr(sa, &a).ToErrno(), 0);
  EXPECT_EQ(a.mode, S_IFREG | 0600u);
  EXPECT_EQ(a.mtime, (Timespec{1234, 5678}));
  EXPECT_EQ(c->Mknod(MknodRequest{d, "fifo", S_IFIFO | 0644, 0, 0, 0}, &a).ToErrno(), 0);
  EXPECT_EQ(c->Mknod(MknodRequest{d, "chr", S_IFCHR | 0644, 0x0102, 0, 0}, &a).ToErrno(), 0);
  EXPECT_EQ(a.rdev, 0x0102u);
  EXPECT_EQ(c->Mknod(MknodRequest{d, "dir", S_IFDIR | 0755, 0, 0, 0}, &a).ToErrno(), EPERM);
  ASSERT_EQ(c->Symlink(SymlinkRequest{d, "l", "f", 0, 0}, &a).ToErrno(), 0);
  std::string target;
  ASSERT_EQ(c->Readlink(a.ino, &target).ToErrno(), 0);
  EXPECT_EQ(target, "f");
  EXPECT_EQ(c->Readlink(f.attr.ino, &target).ToErrno(), EINVAL);
  ASSERT_EQ(c->Link(f.attr.ino, kRootInode, "hard", &a).ToErrno(), 0);
  EXPECT_EQ(a.nlink, 2u);
  EXPECT_EQ(c->Link(d, kRootInode, "dirlink", &a).ToErrno(), EPERM);
  EXPECT_EQ(c->Unlink(kRootInode, "hard").ToErrno(), 0);
  EXPECT_EQ(c->Unlink(kRootInode, "hard").ToErrno(), ENOENT);
  EXPECT_EQ(c->Unlink(kRootInode, "d").ToErrno(), EISDIR);
  EXPECT_EQ(c->Rmdir(kRootInode, "d").ToErrno(), ENOTEMPTY);
  const InodeId e = Mkdir(*c, kRootInode, "e");
  EXPECT_EQ(c->Rename(RenameRequest{kRootInode, "d", d, "inside", 0}).ToErrno(), EINVAL);
  EXPECT_EQ(c->Rename(RenameRequest{kRootInode, "e", kRootInode, "d", 0}).ToErrno(), ENOTEMPTY);
  EXPECT_EQ(c->Rename(RenameRequest{kRootInode, "e", kRootInode, "d", 1}).ToErrno(), EEXIST);
  ASSERT_EQ(c->Rename(RenameRequest{kRootInode, "e", kRootInode, "d", 2}).ToErrno(), 0);  // exchange
  ASSERT_EQ(c->Lookup(kRootInode, "d", &a).ToErrno(), 0);
  EXPECT_EQ(a.ino, e);
  EXPECT_EQ(c->Rmdir(kRootInode, "d").ToErrno(), 0);  // the empty one, now named d
  auto entries = ListAll(*c, d);
  ASSERT_EQ(entries.size(), 4u);  // f fifo chr l
  EXPECT_EQ(entries[0].name, "f");
  EXPECT_EQ(entries[0].attr.ino, f.attr.ino);
  // Open / release.
  OpenReply o;
  ASSERT_EQ(c->Open(f.attr.ino, O_RDWR, &o).ToErrno(), 0);
  EXPECT_EQ(c->Release(f.attr.ino, o.handle).ToErrno(), 0);
  EXPECT_EQ(c->Release(f.attr.ino, o.handle).ToErrno(), EBADF);
  EXPECT_EQ(c->Open(999999, O_RDONLY, &o).ToErrno(), ENOENT);
  // Xattrs.
  ASSERT_EQ(c->Setxattr(SetxattrRequest{d, "user.k", "v", 0}).ToErrno(), 0);
  EXPECT_EQ(c->Setxattr(SetxattrRequest{d, "user.k", "v", XATTR_CREATE}).ToErrno(), EEXIST);
  EXPECT_EQ(
      c->Setxattr(SetxattrRequest{d, "user.big", std::string(kMaxXattrValueLength + 1, 'v'), 0}).ToErrno(),
      E2BIG);
  ASSERT_EQ(c->Setxattr(SetxattrRequest{d, "user.max", std::string(kMaxXattrValueLength, 'v'), 0}).ToErrno(),
            0);
  std::string v;
  ASSERT_EQ(c->Getxattr(d, "user.max", &v).ToErrno(), 0);
  EXPECT_EQ(v.size(), kMaxXattrValueLength);
  EXPECT_EQ(c->Getxattr(d, "user.none", &v).ToErrno(), ENODATA);
  std::vector<std::string> names;
  ASSERT_EQ(c->Listxattr(d, &names).ToErrno(), 0);
  EXPECT_EQ(names.size(), 2u);
  EXPECT_EQ(c->Removexattr(d, "user.k").ToErrno(), 0);
  EXPECT_EQ(c->Removexattr(d, "user.k").ToErrno(), ENODATA);
  // Data: allocate, commit, layout, fallocate, truncate; statfs sees the blocks.
  StatfsReply s0;
  ASSERT_EQ(c->Statfs(&s0).ToErrno(), 0);
  EXPECT_EQ(s0.total_blocks, 2 * kDataPool / kBlock);
  ASSERT_EQ(c->Open(f.attr.ino, O_RDWR, &o).ToErrno(), 0);
  AllocateReply al;
  ASSERT_EQ(c->Allocate(AllocateRequest{f.attr.ino, 0, 3 * kUnit}, &al).ToErrno(), 0);
  ASSERT_EQ(al.extents.size(), 3u);
  EXPECT_NE(al.extents[0].server, al.extents[1].server);
  CommitRequest cr;
  cr.ino = f.attr.ino;
  cr.valid = CommitRequest::kSize;
  cr.new_size = 3 * kUnit;
  cr.written = {{0, 3 * kUnit}};
  ASSERT_EQ(c->Commit(cr, &a).ToErrno(), 0);
  EXPECT_EQ(a.size, 3u * kUnit);
  EXPECT_EQ(a.blocks, 3u * kUnit / 512);
  LayoutReply lay;
  ASSERT_EQ(c->Layout(LayoutRequest{f.attr.ino, 0, 0}, &lay).ToErrno(), 0);
  EXPECT_EQ(lay.extents.size(), 3u);
  EXPECT_FALSE(lay.truncated);
  for (const Extent& x : lay.extents) EXPECT_EQ(x.flags, 0u);
  StatfsReply s1;
  ASSERT_EQ(c->Statfs(&s1).ToErrno(), 0);
  EXPECT_EQ(s0.free_blocks - s1.free_blocks, 3u * kUnit / kBlock);
  ASSERT_EQ(c->Fallocate(FallocateRequest{f.attr.ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                          kUnit, kUnit},
                         &a).ToErrno(),
            0);
  EXPECT_EQ(a.size, 3u * kUnit);
  EXPECT_EQ(a.blocks, 2u * kUnit / 512);
  EXPECT_EQ(c->Fallocate(FallocateRequest{f.attr.ino, FALLOC_FL_PUNCH_HOLE, 0, kUnit}, &a).ToErrno(),
            EOPNOTSUPP);
  sa.valid = SetattrRequest::kSize;
  sa.size = 10;
  ASSERT_EQ(c->Setattr(sa, &a).ToErrno(), 0);
  EXPECT_EQ(a.blocks, kBlock / 512u);
  EXPECT_EQ(c->Release(f.attr.ino, o.handle).ToErrno(), 0);
  EXPECT_EQ(c->Allocate(AllocateRequest{d, 0, 1}, &al).ToErrno(), EISDIR);
}

TEST_F(MetaServerTest, StatePersistsAcrossCleanStopAndKill) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const InodeId d = Mkdir(*c, kRootInode, "dir");
  for (int i = 0; i < 50; ++i) Create(*c, d, "f" + std::to_string(i));
  CreateReply big = Create(*c, kRootInode, "big");
  AllocateReply al;
  ASSERT_EQ(c->Allocate(AllocateRequest{big.attr.ino, 0, 2 * kUnit}, &al).ToErrno(), 0);
  CommitRequest cr;
  cr.ino = big.attr.ino;
  cr.valid = CommitRequest::kSize;
  cr.new_size = 2 * kUnit - 100;
  cr.written = {{0, 2 * kUnit}};
  InodeAttr big_attr;
  ASSERT_EQ(c->Commit(cr, &big_attr).ToErrno(), 0);
  ASSERT_EQ(c->Setxattr(SetxattrRequest{big.attr.ino, "user.x", "y", 0}).ToErrno(), 0);
  ASSERT_EQ(c->Getattr(big.attr.ino, &big_attr).ToErrno(), 0);  // setxattr moved ctime
  InodeAttr sym_attr;
  ASSERT_EQ(c->Symlink(SymlinkRequest{kRootInode, "sym", "dir/f1", 0, 0}, &sym_attr).ToErrno(), 0);
  LayoutReply lay0;
  ASSERT_EQ(c->Layout(LayoutRequest{big.attr.ino, 0, 0}, &lay0).ToErrno(), 0);
  auto list0 = ListAll(*c, d);
  StatfsReply s0;
  ASSERT_EQ(c->Statfs(&s0).ToErrno(), 0);
  c.reset();

  uint64_t freed_inodes = 0;
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    auto c2 = Connect();
    ASSERT_NE(c2, nullptr);
    auto list = ListAll(*c2, d);
    ASSERT_EQ(list.size(), list0.size());
    for (size_t i = 0; i < list.size(); ++i) {
      EXPECT_EQ(list[i].name, list0[i].name);
      EXPECT_EQ(list[i].cookie, list0[i].cookie);
      EXPECT_EQ(list[i].attr, list0[i].attr);
    }
    InodeAttr a;
    ASSERT_EQ(c2->Getattr(big.attr.ino, &a).ToErrno(), 0);
    EXPECT_EQ(a, big_attr);
    LayoutReply lay;
    ASSERT_EQ(c2->Layout(LayoutRequest{big.attr.ino, 0, 0}, &lay).ToErrno(), 0);
    EXPECT_EQ(lay.extents, lay0.extents);
    std::string v;
    ASSERT_EQ(c2->Getxattr(big.attr.ino, "user.x", &v).ToErrno(), 0);
    EXPECT_EQ(v, "y");
    InodeAttr l;
    ASSERT_EQ(c2->Lookup(kRootInode, "sym", &l).ToErrno(), 0);
    ASSERT_EQ(c2->Readlink(l.ino, &v).ToErrno(), 0);
    EXPECT_EQ(v, "dir/f1");
    StatfsReply s;
    ASSERT_EQ(c2->Statfs(&s).ToErrno(), 0);
    EXPECT_EQ(s.free_blocks, s0.free_blocks);
    EXPECT_EQ(s.free_inodes, s0.free_inodes + freed_inodes);
  };
  StopServer();
  StartServer();
  check("after SIGTERM");
  // More work, then kill -9 without a checkpoint: the journal carries it.
  {
    auto c3 = Connect();
    ASSERT_NE(c3, nullptr);
    ASSERT_EQ(c3->Unlink(d, "f0").ToErrno(), 0);
    ASSERT_EQ(c3->Rename(RenameRequest{d, "f1", kRootInode, "moved", 0}).ToErrno(), 0);
  }
  list0.erase(list0.begin(), list0.begin() + 2);
  freed_inodes = 1;
  KillServer();
  StartServer();
  check("after kill -9");
  auto c4 = Connect();
  InodeAttr a;
  EXPECT_EQ(c4->Lookup(d, "f0", &a).ToErrno(), ENOENT);
  EXPECT_EQ(c4->Lookup(kRootInode, "moved", &a).ToErrno(), 0);
  // Inode numbers are not reused after a restart.
  CreateReply n = Create(*c4, kRootInode, "new");
  EXPECT_GT(n.attr.ino, big.attr.ino);
}

// A client re-sends mutations after the server was killed and restarted: same session,
// same sequence numbers. They are answered from the durable reply cache, not executed
// again: the create still reports created (not EEXIST), the unlink succeeds (not ENOENT).
TEST_F(MetaServerTest, RetriedMutationsAfterRestartComeFromTheDurableCache) {
  StartServer();
  const uint64_t kSession = 0x0123456789abcdefull;
  rpc::RpcClientOptions ro;
  ro.session = kSession;
  ro.max_message = kMetaMaxMessage;
  ro.reconnect_attempts = 0;
  // Raw RPC: every payload starts with its caller (root here).
  auto as_root = [](const std::vector<uint8_t>& body) { return EncodeCall(Credentials{}, body); };
  std::vector<std::pair<Opcode, std::vector<uint8_t>>> calls = {
      {Opcode::kRegister, as_root(Encode(RegisterRequest{"raw"}))},
      {Opcode::kCreate,
       as_root(Encode(CreateRequest{kRootInode, "x", 0644, 0, 0, O_CREAT | O_EXCL}))},
      {Opcode::kMkdir, as_root(Encode(MkdirRequest{kRootInode, "y", 0755, 0, 0}))},
      {Opcode::kRmdir, as_root(Encode(UnlinkRequest{kRootInode, "y"}))},
      {Opcode::kCreate,
       as_root(Encode(CreateRequest{kRootInode, "x", 0644, 0, 0, O_CREAT | O_EXCL}))},
  };
  std::vector<std::vector<uint8_t>> first;
  {
    auto rc = rpc::RpcClient::Connect(*device_, server_->endpoint(), ro);
    ASSERT_TRUE(rc.ok()) << rc.status().ToString();
    for (auto& [op, payload] : calls) {
      auto r = (*rc)->Call(static_cast<uint16_t>(op), payload);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      first.push_back(*r);
    }
  }
  int err = -1;
  std::span<const uint8_t> body;
  ASSERT_TRUE(SplitReply(first[1], &err, &body).ok());
  EXPECT_EQ(err, 0);
  ASSERT_TRUE(SplitReply(first[3], &err, &body).ok());
  EXPECT_EQ(err, 0);
  ASSERT_TRUE(SplitReply(first[4], &err, &body).ok());
  EXPECT_EQ(err, EEXIST);
  KillServer();
  StartServer();
  // The same session and sequence numbers again (a new client starts at seq 1).
  auto rc = rpc::RpcClient::Connect(*device_, server_->endpoint(), ro);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  for (size_t i = 0; i < calls.size(); ++i) {
    auto r = (*rc)->Call(static_cast<uint16_t>(calls[i].first), calls[i].second);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, first[i]) << "call " << i << " (" << OpcodeName(calls[i].first)
                            << ") was not answered from the durable cache";
  }
  // A new sequence number executes for real.
  auto r =
      (*rc)->Call(static_cast<uint16_t>(Opcode::kRmdir), as_root(Encode(UnlinkRequest{kRootInode, "y"})));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(SplitReply(*r, &err, &body).ok());
  EXPECT_EQ(err, ENOENT);
}

// The same through MetaClient: a call in flight when the server dies is re-sent to the
// restarted server and answered once.
TEST_F(MetaServerTest, MetaClientRidesThroughARestart) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Create(*c, kRootInode, "before");
  KillServer();
  // Issued while the server is down: waits for the reconnect. (The server is restarted
  // from this thread: DaemonProcess's children die with the thread that forked them.)
  CreateReply r;
  int err = -1;
  std::thread call([&] {
    err = c->Create(CreateRequest{kRootInode, "during", 0644, 0, 0, O_CREAT | O_EXCL}, &r).ToErrno();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  StartServer();
  call.join();
  EXPECT_EQ(err, 0);
  EXPECT_TRUE(r.created);
  InodeAttr a;
  EXPECT_EQ(c->Lookup(kRootInode, "before", &a).ToErrno(), 0);
  EXPECT_EQ(c->Lookup(kRootInode, "during", &a).ToErrno(), 0);
}

TEST_F(MetaServerTest, LapsedLeaseReleasesOpenFiles) {
  StartServer(/*lease_ms=*/600);
  auto watcher = Connect(true);
  ASSERT_NE(watcher, nullptr);
  StatfsReply s0;
  ASSERT_EQ(watcher->Statfs(&s0).ToErrno(), 0);
  auto silent = Connect(/*heartbeat=*/false);
  ASSERT_NE(silent, nullptr);
  CreateReply f = Create(*silent, kRootInode, "orphan");
  AllocateReply al;
  ASSERT_EQ(silent->Allocate(AllocateRequest{f.attr.ino, 0, kBlock}, &al).ToErrno(), 0);
  ASSERT_EQ(silent->Unlink(kRootInode, "orphan").ToErrno(), 0);
  // The watcher keeps its lease; the file lives while the silent client's lease holds.
  InodeAttr a;
  ASSERT_EQ(watcher->Getattr(f.attr.ino, &a).ToErrno(), 0);
  EXPECT_EQ(a.nlink, 0u);
  StatfsReply s1;
  ASSERT_EQ(watcher->Statfs(&s1).ToErrno(), 0);
  EXPECT_LT(s1.free_blocks, s0.free_blocks);
  int err = 0;
  for (int i = 0; i < 60 && (err = watcher->Getattr(f.attr.ino, &a).ToErrno()) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(err, ENOENT) << "the lapsed session's handle was not released";
  ASSERT_EQ(watcher->Statfs(&s1).ToErrno(), 0);
  EXPECT_EQ(s1.free_blocks, s0.free_blocks);
  // A session that heartbeats survives several leases.
  CreateReply g = Create(*watcher, kRootInode, "kept-open");
  ASSERT_EQ(watcher->Unlink(kRootInode, "kept-open").ToErrno(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(watcher->Getattr(g.attr.ino, &a).ToErrno(), 0);
  EXPECT_EQ(watcher->Release(g.attr.ino, g.handle).ToErrno(), 0);
  EXPECT_EQ(watcher->Getattr(g.attr.ino, &a).ToErrno(), ENOENT);
}

// --free-quarantine-ms reaches the daemon: its first allocation after a restart waits out
// the hold, and blocks a truncate frees stay counted as used for a quarantine. (The details
// are in free_quarantine_test; bounds here are one-sided, so a slow machine passes.)
TEST_F(MetaServerTest, FreeQuarantineFlag) {
  constexpr uint32_t kQ = 800;
  using std::chrono::steady_clock;
  auto ms_since = [](steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t).count();
  };
  StartServer(10000, kQ);
  // Still registered when the server stops (a mounted client): it may hold layouts, so
  // the restart holds allocations (and the file system is no longer new).
  auto c0 = Connect();
  ASSERT_NE(c0, nullptr);
  Mkdir(*c0, kRootInode, "d");
  StopServer();
  const auto started = steady_clock::now();  // the daemon serves after this
  StartServer(10000, kQ);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  CreateReply f = Create(*c, kRootInode, "f");
  AllocateReply al;
  ASSERT_EQ(c->Allocate(AllocateRequest{f.attr.ino, 0, kBlock}, &al).ToErrno(), 0);
  EXPECT_GE(ms_since(started), kQ) << "allocated inside the hold after the start";
  CommitRequest cr;
  cr.ino = f.attr.ino;
  cr.valid = CommitRequest::kSize;
  cr.new_size = kUnit;
  cr.written = {{0, kUnit}};
  InodeAttr a;
  ASSERT_EQ(c->Commit(cr, &a).ToErrno(), 0);
  StatfsReply s0, s1;
  ASSERT_EQ(c->Statfs(&s0).ToErrno(), 0);
  const auto sent = steady_clock::now();  // the blocks are freed after this
  SetattrRequest tr;
  tr.ino = f.attr.ino;
  tr.valid = SetattrRequest::kSize;
  tr.size = 0;
  ASSERT_EQ(c->Setattr(tr, &a).ToErrno(), 0);
  ASSERT_EQ(c->Statfs(&s1).ToErrno(), 0);
  if (ms_since(sent) < kQ) {
    EXPECT_EQ(s1.free_blocks, s0.free_blocks) << "quarantined blocks must count as used";
  }
  for (int i = 0; i < 100 && s1.free_blocks != s0.free_blocks + kUnit / kBlock; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(c->Statfs(&s1).ToErrno(), 0);
  }
  EXPECT_EQ(s1.free_blocks, s0.free_blocks + kUnit / kBlock);
  EXPECT_GE(ms_since(sent), kQ);
}

TEST_F(MetaServerTest, RecoveredSessionsGetAGracePeriod) {
  StartServer(/*lease_ms=*/2000);
  auto c = Connect(/*heartbeat=*/false);
  ASSERT_NE(c, nullptr);
  CreateReply f = Create(*c, kRootInode, "open");
  ASSERT_EQ(c->Unlink(kRootInode, "open").ToErrno(), 0);
  KillServer();
  StartServer(2000);
  InodeAttr a;
  // Within the grace period the orphan is still open; afterwards it is gone.
  auto other = Connect();
  EXPECT_EQ(other->Getattr(f.attr.ino, &a).ToErrno(), 0);
  int err = 0;
  for (int i = 0; i < 80 && (err = other->Getattr(f.attr.ino, &a).ToErrno()) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(err, ENOENT);
}

TEST_F(MetaServerTest, ClusterFileNamesTheDataServers) {
  cluster_file_ = dir_ + "/cluster";
  std::ofstream(cluster_file_) << "# test cluster\n"
                                  "stripe_unit 64K\n"
                                  "meta 127.0.0.1:7200 meta.pool 32M\n"
                                  "data 10.0.0.1:7201 data0.pool 64M\n"
                                  "data 10.0.0.2:7202 data1.pool 64M\n";
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->cluster().servers.size(), 2u);
  EXPECT_EQ(c->cluster().servers[0].endpoint, "10.0.0.1:7201");
  EXPECT_EQ(c->cluster().servers[1].endpoint, "10.0.0.2:7202");
}

// A port nobody listens on right now (bound and released: another test could take it
// in between, which a retry of the test would survive).
uint16_t FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// `dpmfs-meta --cluster-file FILE` alone: the pool and the listen address come from the
// file's meta line, and a cluster_uuid line is checked against the pool.
TEST_F(MetaServerTest, ClusterFileAloneConfiguresTheServer) {
  cluster_file_ = dir_ + "/cluster";
  const std::string addr = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  std::ofstream(cluster_file_) << "meta " << addr << " meta.pool 32M\n"
                               << "data 10.0.0.1:7201 data0.pool 64M\n"
                               << "data 10.0.0.2:7202 data1.pool 64M\n";
  DaemonOptions o;
  o.name = "metadata server";
  o.log_prefix = "meta";
  o.log_dir = dir_;
  o.argv = {DPMFS_META_BIN, "--cluster-file", cluster_file_, "--no-scrub"};
  auto started = DaemonProcess::Start(o, ++generation_);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ(started.value()->endpoint().ToString(), addr);
  started.value().reset();

  std::ofstream(cluster_file_) << "cluster_uuid 2c5f39cb-3fb2-42e3-994f-1127e4ddb538\n"
                               << "meta " << addr << " meta.pool 32M\n"
                               << "data 10.0.0.1:7201 data0.pool 64M\n"
                               << "data 10.0.0.2:7202 data1.pool 64M\n";
  auto refused = DaemonProcess::Start(o, ++generation_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("belongs to cluster"), std::string::npos)
      << refused.status().ToString();
  std::string err;
  EXPECT_EQ(RunCommand({DPMFS_META_BIN, "--listen", "127.0.0.1:0"}, &err, dir_), 2);
  EXPECT_NE(err.find("--pool PATH (or --cluster-file FILE) is required"), std::string::npos)
      << err;
}

// Recovery tells its supervisor how far it got: PROGRESS lines on stdout (tools/dpmfs
// waits while they come) and, under systemd, sd_notify datagrams on $NOTIFY_SOCKET
// (EXTEND_TIMEOUT_USEC and STATUS while replaying, then READY=1), checked here on a socket
// of the test's own.
TEST_F(MetaServerTest, RecoveryReportsProgressToItsSupervisor) {
  StartServer();
  {
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < 20; ++i) Mkdir(*c, kRootInode, "d" + std::to_string(i));
  }
  KillServer();  // the mkdirs stay in the journal: the next start replays them

  const std::string sock_path = dir_ + "/notify.sock";
  int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path.c_str());
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);
  StartServer();
  ::unsetenv("NOTIFY_SOCKET");
  std::string notes;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(sock, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
    notes.append(buf, static_cast<size_t>(n)).append("|");
  }
  ::close(sock);
  EXPECT_NE(notes.find("EXTEND_TIMEOUT_USEC=30000000\nSTATUS=loading the metadata checkpoint"),
            std::string::npos)
      << notes;
  EXPECT_NE(notes.find("STATUS=journal replayed: "), std::string::npos) << notes;
  EXPECT_NE(notes.find("READY=1\nSTATUS=serving on " + listen_), std::string::npos) << notes;

  std::ifstream out(dir_ + "/meta-" + std::to_string(generation_) + ".out");
  std::string text((std::istreambuf_iterator<char>(out)), {});
  EXPECT_NE(text.find("PROGRESS journal replayed: "), std::string::npos) << text;
  EXPECT_LT(text.find("PROGRESS "), text.find("READY "));
}

// A record inside the acknowledged part of the journal is damaged: the server refuses to
// start and says where.
TEST_F(MetaServerTest, CorruptJournalRecordIsRefused) {
  StartServer();
  {
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    for (int i = 0; i < 5; ++i) Create(*c, kRootInode, "f" + std::to_string(i));
  }
  KillServer();
  auto info = pool::ReadPoolHeader(pool_);
  ASSERT_TRUE(info.ok());
  uint64_t journal_offset = 0;
  {
    std::fstream f(pool_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(info->data_offset + 16));  // superblock field
    uint8_t b[8];
    f.read(reinterpret_cast<char*>(b), 8);
    for (int i = 0; i < 8; ++i) journal_offset |= uint64_t{b[i]} << (8 * i);
    // Second record's payload (the first is the Register): flip one byte.
    const std::streamoff at = static_cast<std::streamoff>(journal_offset + 4096 + 24 + 4);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c ^= 0x10;
    f.seekp(at);
    f.write(&c, 1);
  }
  std::string err;
  EXPECT_EQ(RunCommand({DPMFS_META_BIN, "--pool", pool_, "--listen", "127.0.0.1:0", "--data",
                        "127.0.0.1:1", "--data", "127.0.0.1:2"},
                       &err, dir_),
            1);
  EXPECT_NE(err.find("Corruption"), std::string::npos) << err;
  EXPECT_NE(err.find("LSN"), std::string::npos) << err;
}

// The service in process on a tiny metadata pool: checkpoints keep the journal from
// filling; when the namespace outgrows a checkpoint slot, growth gets ENOSPC while
// removals still work; everything survives a reopen.
TEST_F(MetaServerTest, ServiceCheckpointsAndRunsOutOfMetadataSpace) {
  const std::string small = dir_ + "/small.pool";
  pool::FormatOptions fo;
  fo.geometry.role = pool::Role::kMetadata;
  fo.geometry.cluster = pool::ClusterUuid::Generate();
  fo.geometry.block_size = kBlock;
  fo.geometry.pool_size = (2ull << 20) + (1ull << 20);  // a 1 MiB data area
  ASSERT_TRUE(pool::FormatPool(small, fo).ok());
  {
    auto mapped = pool::MappedPool::Open(small, {});
    ASSERT_TRUE(mapped.ok());
    MetaFormatOptions mo;
    mo.stripe_unit = kUnit;
    for (uint32_t i = 0; i < 2; ++i)
      mo.data_pools.push_back(DataPoolGeometry{i, kBlock, kDataPool});
    ASSERT_TRUE(MetaStore::Format(*mapped, mo).ok());
  }
  MetaServiceOptions so;
  so.data_endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
  auto open = [&]() -> std::unique_ptr<MetaService> {
    pool::OpenExpectations ex;
    ex.role = pool::Role::kMetadata;
    auto store = MetaStore::Open(small, ex);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    RecoveryStats rs;
    auto svc = MetaService::Open(std::move(*store), so, &rs);
    EXPECT_TRUE(svc.ok()) << svc.status().ToString();
    return svc.ok() ? std::move(*svc) : nullptr;
  };
  uint64_t seq = 0;
  auto call = [&](MetaService& svc, Opcode op, const std::vector<uint8_t>& request) {
    const std::vector<uint8_t> payload = EncodeCall(Credentials{}, request);
    rpc::RpcRequest r;
    r.opcode = static_cast<uint16_t>(op);
    r.session = 42;
    r.seq = ++seq;
    r.payload = payload;
    auto reply = svc.Handle(r);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    int err = -1;
    std::span<const uint8_t> body;
    if (reply.ok()) {
      EXPECT_TRUE(SplitReply(*reply, &err, &body).ok());
    }
    return err;
  };
  auto svc = open();
  ASSERT_NE(svc, nullptr);
  ASSERT_EQ(call(*svc, Opcode::kRegister, Encode(RegisterRequest{"in-process"})), 0);
  int made = 0, err = 0;
  const std::string pad(40, 'p');
  while ((err = call(*svc, Opcode::kMknod,
                     Encode(MknodRequest{kRootInode, pad + std::to_string(made), S_IFREG | 0644, 0,
                                         0, 0}))) == 0) {
    ++made;
    ASSERT_LT(made, 100000);
  }
  EXPECT_EQ(err, ENOSPC);
  EXPECT_GT(made, 500);
  EXPECT_GE(svc->stats().checkpoints, 2u);  // the one at open, then at half a journal
  // Removals still work, and make room again.
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(
        call(*svc, Opcode::kUnlink, Encode(UnlinkRequest{kRootInode, pad + std::to_string(i)})), 0);
  }
  ASSERT_TRUE(svc->Checkpoint().ok());
  EXPECT_EQ(call(*svc, Opcode::kMknod,
                 Encode(MknodRequest{kRootInode, "again", S_IFREG | 0644, 0, 0, 0})),
            0);
  const size_t inodes = svc->stats().inodes;
  ASSERT_TRUE(svc->Stop().ok());
  svc.reset();
  svc = open();
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(svc->stats().inodes, inodes);
  EXPECT_EQ(call(*svc, Opcode::kLookup, Encode(LookupRequest{kRootInode, pad + "0"})), ENOENT);
  EXPECT_EQ(call(*svc, Opcode::kLookup,
                 Encode(LookupRequest{kRootInode, pad + std::to_string(made - 1)})),
            0);
  EXPECT_EQ(call(*svc, Opcode::kLookup, Encode(LookupRequest{kRootInode, "again"})), 0);
}

// Recovery time, measured in process: N creates journaled without a checkpoint are
// replayed at the next open; then the same state comes back from a checkpoint.
TEST_F(MetaServerTest, MeasureRecoveryTime) {
  const std::string big = dir_ + "/big.pool";
  pool::FormatOptions fo;
  fo.geometry.role = pool::Role::kMetadata;
  fo.geometry.cluster = pool::ClusterUuid::Generate();
  fo.geometry.block_size = kBlock;
  fo.geometry.pool_size = 256ull << 20;
  fo.zero_data = false;
  ASSERT_TRUE(pool::FormatPool(big, fo).ok());
  {
    auto mapped = pool::MappedPool::Open(big, {});
    ASSERT_TRUE(mapped.ok());
    MetaFormatOptions mo;
    mo.stripe_unit = kUnit;
    mo.journal_fraction = 0.5;
    for (uint32_t i = 0; i < 2; ++i)
      mo.data_pools.push_back(DataPoolGeometry{i, kBlock, kDataPool});
    ASSERT_TRUE(MetaStore::Format(*mapped, mo).ok());
  }
  MetaServiceOptions so;
  so.data_endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
  so.checkpoint_fill = 0.99;
  so.checkpoint_on_stop = false;
  auto open = [&](RecoveryStats* rs) -> std::unique_ptr<MetaService> {
    pool::OpenExpectations ex;
    ex.role = pool::Role::kMetadata;
    auto store = MetaStore::Open(big, ex);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    auto svc = MetaService::Open(std::move(*store), so, rs);
    EXPECT_TRUE(svc.ok()) << svc.status().ToString();
    return svc.ok() ? std::move(*svc) : nullptr;
  };
  constexpr int kN = 50000;
  RecoveryStats rs;
  auto svc = open(&rs);
  ASSERT_NE(svc, nullptr);
  uint64_t seq = 0;
  rpc::RpcRequest r;
  r.session = 9;
  r.opcode = static_cast<uint16_t>(Opcode::kMkdir);
  auto dir_payload = EncodeCall(Credentials{}, Encode(MkdirRequest{kRootInode, "d", 0755, 0, 0}));
  r.seq = ++seq;
  r.payload = dir_payload;
  ASSERT_TRUE(svc->Handle(r).ok());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) {
    auto payload = EncodeCall(
        Credentials{}, Encode(CreateRequest{kRootInode + 1, "file" + std::to_string(i), 0644, 0, 0, 0}));
    r.opcode = static_cast<uint16_t>(Opcode::kCreate);
    r.seq = ++seq;
    r.payload = payload;
    auto reply = svc->Handle(r);
    ASSERT_TRUE(reply.ok());
  }
  const double create_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(svc->Stop().ok());
  svc.reset();
  svc = open(&rs);  // replays the journal, then checkpoints
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(rs.records_replayed, uint64_t{kN} + 1);
  EXPECT_EQ(svc->stats().inodes, size_t{kN} + 2);
  const double replay_s = rs.seconds;
  svc.reset();
  svc = open(&rs);  // loads the checkpoint written after the replay
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(rs.records_replayed, 0u);
  EXPECT_EQ(svc->stats().inodes, size_t{kN} + 2);
  RecordProperty("service_creates_per_s", static_cast<int>(kN / create_s));
  RecordProperty("replay_seconds", std::to_string(replay_s));
  RecordProperty("checkpoint_load_seconds", std::to_string(rs.seconds));
  std::printf(
      "in-process service: %.0f creates/s (each durable); recovery of %d journaled "
      "creates: %.3f s; of the same state from a %llu-byte checkpoint: %.3f s\n",
      kN / create_s, kN, replay_s, static_cast<unsigned long long>(rs.checkpoint_bytes),
      rs.seconds);
}

TEST_F(MetaServerTest, RefusesBadPoolsAndFlags) {
  std::string err;
  const std::string bin = DPMFS_META_BIN;
  EXPECT_EQ(RunCommand({bin, "--help"}, &err, dir_), 0);
  EXPECT_EQ(RunCommand({bin, "--listen", "127.0.0.1:0"}, &err, dir_), 2);
  EXPECT_NE(err.find("--pool"), std::string::npos) << err;
  EXPECT_EQ(RunCommand({bin, "--pool", pool_, "--bogus"}, &err, dir_), 2);
  EXPECT_EQ(
      RunCommand({bin, "--pool", pool_, "--data", "127.0.0.1:1", "--lease-ms", "5"}, &err, dir_),
      2);
  // One --data for two data pools.
  EXPECT_EQ(RunCommand({bin, "--pool", pool_, "--listen", "127.0.0.1:0", "--data", "127.0.0.1:1"},
                       &err, dir_),
            1);
  EXPECT_NE(err.find("2 data pools"), std::string::npos) << err;
  EXPECT_EQ(RunCommand({bin, "--pool", dir_ + "/missing", "--listen", "127.0.0.1:0", "--data",
                        "127.0.0.1:1", "--data", "127.0.0.1:2"},
                       &err, dir_),
            1);
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  // A data pool is not a metadata pool.
  pool::FormatOptions fo;
  fo.geometry.role = pool::Role::kData;
  fo.geometry.cluster = pool::ClusterUuid::Generate();
  fo.geometry.pool_size = 4ull << 20;
  ASSERT_TRUE(pool::FormatPool(dir_ + "/data.pool", fo).ok());
  EXPECT_EQ(RunCommand({bin, "--pool", dir_ + "/data.pool", "--listen", "127.0.0.1:0", "--data",
                        "127.0.0.1:1", "--data", "127.0.0.1:2"},
                       &err, dir_),
            1);
  EXPECT_NE(err.find("data"), std::string::npos) << err;
  // A damaged metadata superblock: refused with a message, no crash.
  {
    auto info = pool::ReadPoolHeader(pool_);
    ASSERT_TRUE(info.ok());
    std::fstream f(pool_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(info->data_offset + 40));
    char b = 0;
    f.read(&b, 1);
    b ^= 0x55;
    f.seekp(static_cast<std::streamoff>(info->data_offset + 40));
    f.write(&b, 1);
  }
  EXPECT_EQ(RunCommand({bin, "--pool", pool_, "--listen", "127.0.0.1:0", "--data", "127.0.0.1:1",
                        "--data", "127.0.0.1:2"},
                       &err, dir_),
            1);
  EXPECT_NE(err.find("error"), std::string::npos) << err;
}

// Single-client latency-bound rates over soft loopback (reported, not judged).
TEST_F(MetaServerTest, MeasureSingleClientRates) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const InodeId d = Mkdir(*c, kRootInode, "bench");
  constexpr int kN = 2000;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<InodeId> inos;
  for (int i = 0; i < kN; ++i) {
    InodeAttr a;
    ASSERT_EQ(c->Mknod(MknodRequest{d, "f" + std::to_string(i), S_IFREG | 0644, 0, 0, 0}, &a).ToErrno(), 0);
    inos.push_back(a.ino);
  }
  const double create_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) {
    InodeAttr a;
    ASSERT_EQ(c->Getattr(inos[i], &a).ToErrno(), 0);
  }
  const double stat_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("creates_per_s", static_cast<int>(kN / create_s));
  RecordProperty("stats_per_s", static_cast<int>(kN / stat_s));
  std::printf("single client: %.0f creates/s, %.0f stats/s\n", kN / create_s, kN / stat_s);
}

// Several clients at once (each its own connection and session): rates reported.
TEST_F(MetaServerTest, MeasureConcurrentClients) {
  StartServer();
  constexpr int kThreads = 4, kPerThread = 1000;
  std::vector<std::unique_ptr<MetaClient>> clients;
  std::vector<InodeId> dirs;
  for (int t = 0; t < kThreads; ++t) {
    clients.push_back(Connect());
    ASSERT_NE(clients.back(), nullptr);
    dirs.push_back(Mkdir(*clients.back(), kRootInode, "t" + std::to_string(t)));
  }
  std::atomic<int> failures{0};
  auto run = [&](bool stat) {
    std::vector<std::thread> threads;
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          InodeAttr a;
          const std::string name = "f" + std::to_string(i);
          int e = stat
                      ? clients[t]->Lookup(dirs[t], name, &a).ToErrno()
                      : clients[t]->Mknod(MknodRequest{dirs[t], name, S_IFREG | 0644, 0, 0, 0}, &a).ToErrno();
          if (e != 0) failures.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    return kThreads * kPerThread /
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double creates = run(false);
  const double lookups = run(true);
  EXPECT_EQ(failures.load(), 0);
  RecordProperty("concurrent_creates_per_s", static_cast<int>(creates));
  RecordProperty("concurrent_lookups_per_s", static_cast<int>(lookups));
  std::printf("%d clients: %.0f creates/s, %.0f lookups/s\n", kThreads, creates, lookups);
}

}  // namespace
}  // namespace dpmfs::meta
