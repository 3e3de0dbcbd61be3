// MetaClient against an in-process fake metadata server: an rpc::RpcServer on the soft
// transport (loopback, port 0) whose handlers play dpmfs-meta for a few opcodes. Checks
// registration, errno propagation, local name checks, undecodable and RPC-level errors
// (EIO), timeouts (ETIMEDOUT), fast failure against a closed port, the heartbeat and
// re-registration, a dropped connection mid-call, and unregistering at destruction.
#include "metadata/meta_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "rpc/rpc_server.h"

namespace dpmfs::meta {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

// A request's operation bytes, after the caller every request starts with (the fake
// server remembers the last caller of a lookup).
Credentials g_last_lookup_caller;
std::span<const uint8_t> BodyOf(const rpc::RpcRequest& r, Credentials* caller = nullptr) {
  Credentials c;
  std::span<const uint8_t> body;
  if (!SplitCall(r.payload, &c, &body).ok()) return r.payload;  // Decode then refuses it
  if (caller != nullptr) *caller = c;
  return body;
}

// Inode numbers the fake Getattr handler treats specially.
constexpr InodeId kGarbageReply = 7;    // a reply that does not decode
constexpr InodeId kRpcError = 8;        // an RPC-level error status
constexpr InodeId kSlow = 9;            // answers after 400 ms
constexpr InodeId kVerySlow = 10;       // answers after 1.5 s
constexpr InodeId kErrorWithBody = 11;  // an errno reply that carries a body

InodeAttr AttrOf(InodeId ino) {
  InodeAttr a;
  a.ino = ino;
  a.generation = 1;
  a.mode = 0100644;
  a.nlink = 1;
  a.size = ino * 100;
  a.mtime = {1700000000, 5};
  return a;
}

class MetaClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = std::move(transport::OpenDevice(transport::DeviceOptions{})).value();
    cluster_.cluster_uuid[0] = 0x42;
    cluster_.block_size = 4096;
    cluster_.stripe_unit = 1 << 20;
    cluster_.servers = {DataServerInfo{0, "127.0.0.1:7001", 1 << 30},
                        DataServerInfo{1, "127.0.0.1:7002", 2u << 30}};
  }
  void TearDown() override {
    if (server_) server_->Stop();
    server_.reset();
    device_.reset();
  }

  void StartServer() {
    std::map<uint16_t, rpc::RpcHandler> h;
    h[static_cast<uint16_t>(Opcode::kRegister)] =
        [this](const rpc::RpcRequest& r) -> Result<Bytes> {
      RegisterRequest req;
      DPMFS_RETURN_IF_ERROR(Decode(BodyOf(r), &req));
      {
        std::lock_guard lock(mu_);
        client_name_ = req.client_name;
      }
      ++registers_;
      if (refuse_register_) return EncodeErrorReply(EACCES);
      RegisterReply reply;
      reply.lease_ms = lease_ms_;
      reply.cluster = cluster_;
      return EncodeReply(reply);
    };
    h[static_cast<uint16_t>(Opcode::kHeartbeat)] =
        [this](const rpc::RpcRequest& r) -> Result<Bytes> {
      HeartbeatRequest req;
      DPMFS_RETURN_IF_ERROR(Decode(BodyOf(r), &req));
      ++heartbeats_;
      return EncodeReply(HeartbeatReply{!forget_session_.exchange(false)});
    };
    h[static_cast<uint16_t>(Opcode::kUnregister)] =
        [this](const rpc::RpcRequest& r) -> Result<Bytes> {
      UnregisterRequest req;
      DPMFS_RETURN_IF_ERROR(Decode(BodyOf(r), &req));
      ++unregisters_;
      return EncodeReply(EmptyReply{});
    };
    h[static_cast<uint16_t>(Opcode::kLookup)] = [this](const rpc::RpcRequest& r) -> Result<Bytes> {
      LookupRequest req;
      Credentials caller;
      DPMFS_RETURN_IF_ERROR(Decode(BodyOf(r, &caller), &req));
      {
        std::lock_guard lock(mu_);
        g_last_lookup_caller = caller;
      }
      ++lookups_;
      if (int err = CheckName(req.name); err != 0) return EncodeErrorReply(err);
      if (req.name == "missing") return EncodeErrorReply(ENOENT);
      return EncodeReply(EntryReply{AttrOf(req.parent * 1000 + req.name.size())});
    };
    h[static_cast<uint16_t>(Opcode::kGetattr)] = [this](const rpc::RpcRequest& r) -> Result<Bytes> {
      GetattrRequest req;
      DPMFS_RETURN_IF_ERROR(Decode(BodyOf(r), &req));
      switch (req.ino) {
        case kGarbageReply:
          return Bytes{0, 0, 0, 0, 1, 2, 3};
        case kRpcError:
          return Status::Internal("fake server: inode 8 is cursed");
        case kErrorWithBody:
          return Bytes{ENOENT, 0, 0, 0, 1};
        case kSlow:
          ++slow_calls_;
          std::this_thread::sleep_for(400ms);
          break;
        case kVerySlow:
          std::this_thread::sleep_for(1500ms);
          break;
      }
      return EncodeReply(AttrReply{AttrOf(req.ino)});
    };
    h[static_cast<uint16_t>(Opcode::kReaddir)] = [](const rpc::RpcRequest& r) -> Result<Bytes> {
      ReaddirRequest req;
      DPMFS_RETURN_IF_ERROR(Decode(BodyOf(r), &req));
      ReaddirReply reply;
      for (uint32_t i = 0; i < 3; ++i)
        reply.entries.push_back({"e" + std::to_string(i), i + 2, 0, i + 1, {}});
      reply.eof = true;
      reply.last_cookie = 3;
      return EncodeReply(reply);
    };
    rpc::RpcServerOptions o;
    o.listen = Endpoint{"127.0.0.1", 0};
    o.worker_threads = 4;
    o.max_message = kMetaMaxMessage;
    auto s = rpc::RpcServer::Start(*device_, o, std::move(h));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }

  std::unique_ptr<MetaClient> Client(MetaClientOptions o = {}) {
    if (o.client_name.empty()) o.client_name = "test-client";
    auto c = MetaClient::Connect(*device_, server_->endpoint(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Waits up to `timeout` for `pred`.
  template <class Pred>
  static bool Eventually(Pred pred, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred();
  }

  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<rpc::RpcServer> server_;
  ClusterInfo cluster_;
  uint32_t lease_ms_ = 10000;
  bool refuse_register_ = false;
  std::mutex mu_;
  std::string client_name_;
  std::atomic<int> registers_{0}, heartbeats_{0}, unregisters_{0}, lookups_{0}, slow_calls_{0};
  std::atomic<bool> forget_session_{false};
};

TEST_F(MetaClientTest, ConnectRegistersAndLearnsTheCluster) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(registers_.load(), 1);
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(client_name_, "test-client");
  }
  EXPECT_EQ(c->lease_ms(), 10000u);
  EXPECT_EQ(c->cluster().cluster_uuid, cluster_.cluster_uuid);
  EXPECT_EQ(c->cluster().block_size, 4096u);
  EXPECT_EQ(c->cluster().stripe_unit, 1u << 20);
  ASSERT_EQ(c->cluster().servers.size(), 2u);
  EXPECT_EQ(c->cluster().servers[1].endpoint, "127.0.0.1:7002");
  EXPECT_EQ(c->cluster().servers[1].data_size, 2u << 30);
  EXPECT_NE(c->session(), 0u);
}

TEST_F(MetaClientTest, ErrnoFromTheServerReachesTheCaller) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  InodeAttr a;
  EXPECT_EQ(c->Lookup(kRootInode, "missing", &a).ToErrno(), ENOENT);
  ASSERT_EQ(c->Lookup(kRootInode, "present", &a).ToErrno(), 0);
  EXPECT_EQ(a, AttrOf(1000 + 7));
  ASSERT_EQ(c->Getattr(33, &a).ToErrno(), 0);
  EXPECT_EQ(a, AttrOf(33));
  ReaddirReply rd;
  ASSERT_EQ(c->Readdir(ReaddirRequest{1, 0, 100, false}, &rd).ToErrno(), 0);
  EXPECT_EQ(rd.entries.size(), 3u);
  EXPECT_TRUE(rd.eof);
  // More entries than asked for is a server bug the client refuses.
  EXPECT_EQ(c->Readdir(ReaddirRequest{1, 0, 2, false}, &rd).ToErrno(), EIO);
}

// Every request carries its caller: the client's default (this process, or the one
// given in the options) outside a CallerScope, the innermost scope's inside one.
TEST_F(MetaClientTest, RequestsCarryTheCallerOfTheirThread) {
  StartServer();
  MetaClientOptions o;
  Credentials fixed;
  fixed.uid = 4242;
  fixed.gid = 4343;
  fixed.groups = {7, 8, 9};
  o.caller = fixed;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  auto last = [&] {
    std::lock_guard lock(mu_);
    return g_last_lookup_caller;
  };
  InodeAttr a;
  ASSERT_EQ(c->Lookup(kRootInode, "x", &a).ToErrno(), 0);
  EXPECT_EQ(last(), fixed);
  Credentials alice;
  alice.uid = 1000;
  alice.gid = 100;
  {
    CallerScope scope(alice);
    ASSERT_EQ(c->Lookup(kRootInode, "x", &a).ToErrno(), 0);
    EXPECT_EQ(last(), alice);
    int resolved = 0;
    CallerScope lazy(
        [](void* n, Credentials* out) {
          ++*static_cast<int*>(n);
          out->uid = 7;
        },
        &resolved);
    EXPECT_EQ(resolved, 0);  // nothing asked yet
    ASSERT_EQ(c->Lookup(kRootInode, "x", &a).ToErrno(), 0);
    ASSERT_EQ(c->Lookup(kRootInode, "x", &a).ToErrno(), 0);
    EXPECT_EQ(resolved, 1);  // resolved once, at the first call
    EXPECT_EQ(last().uid, 7u);
  }
  ASSERT_EQ(c->Lookup(kRootInode, "x", &a).ToErrno(), 0);
  EXPECT_EQ(last(), fixed);
  auto own = Client();  // no caller given: this process's credentials
  ASSERT_NE(own, nullptr);
  ASSERT_EQ(own->Lookup(kRootInode, "x", &a).ToErrno(), 0);
  EXPECT_EQ(last(), ProcessCredentials());
}

TEST_F(MetaClientTest, BadNamesAreRefusedLocally) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  InodeAttr a;
  EXPECT_EQ(c->Lookup(kRootInode, std::string(256, 'x'), &a).ToErrno(), ENAMETOOLONG);
  EXPECT_EQ(c->Lookup(kRootInode, "a/b", &a).ToErrno(), EINVAL);
  EXPECT_EQ(c->Unlink(kRootInode, "..").ToErrno(), EINVAL);
  EXPECT_EQ(c->Rename(RenameRequest{1, "ok", 1, std::string(300, 'y'), 0}).ToErrno(), ENAMETOOLONG);
  EXPECT_EQ(lookups_.load(), 0);
  // The server gives the same answers when asked directly.
  std::vector<uint8_t> body;
  EXPECT_EQ(c->CallRaw(Opcode::kLookup, Encode(LookupRequest{1, std::string(300, 'x')}), &body),
            ENAMETOOLONG);
  EXPECT_EQ(lookups_.load(), 1);
}

TEST_F(MetaClientTest, UndecodableRepliesAndRpcErrorsAreEIO) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  InodeAttr a;
  EXPECT_EQ(c->Getattr(kGarbageReply, &a).ToErrno(), EIO);
  EXPECT_EQ(c->Getattr(kRpcError, &a).ToErrno(), EIO);
  EXPECT_EQ(c->Getattr(kErrorWithBody, &a).ToErrno(), EIO);
  // An opcode the server has no handler for (NotSupported at the RPC level).
  std::string target;
  EXPECT_EQ(c->Readlink(5, &target).ToErrno(), EIO);
  // A request the server cannot decode: the handler refuses it with InvalidArgument.
  std::vector<uint8_t> body;
  EXPECT_EQ(c->CallRaw(Opcode::kLookup, Bytes{1, 2, 3}, &body), EIO);
  // The connection is still fine.
  ASSERT_EQ(c->Getattr(5, &a).ToErrno(), 0);
  EXPECT_EQ(a.ino, 5u);
}

TEST_F(MetaClientTest, CallRawReturnsTheBody) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::vector<uint8_t> body;
  ASSERT_EQ(c->CallRaw(Opcode::kGetattr, Encode(GetattrRequest{12}), &body), 0);
  AttrReply r;
  ASSERT_TRUE(Decode(body, &r).ok());
  EXPECT_EQ(r.attr, AttrOf(12));
}

TEST_F(MetaClientTest, DeadlineGivesETIMEDOUT) {
  StartServer();
  MetaClientOptions o;
  o.call_timeout = 300ms;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  InodeAttr a;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(c->Getattr(kVerySlow, &a).ToErrno(), ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1200ms);
  EXPECT_EQ(c->Getattr(4, &a).ToErrno(), 0);
}

TEST_F(MetaClientTest, ClosedPortFailsFastNamingTheAddress) {
  StartServer();
  Endpoint ep = server_->endpoint();
  server_->Stop();
  server_.reset();
  MetaClientOptions o;
  auto start = std::chrono::steady_clock::now();
  auto c = MetaClient::Connect(*device_, ep, o);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
  EXPECT_NE(c.status().message().find(ep.ToString()), std::string::npos) << c.status().ToString();
  EXPECT_LT(took, 3s);
}

TEST_F(MetaClientTest, RefusedRegistrationFailsConnect) {
  refuse_register_ = true;
  StartServer();
  auto c = MetaClient::Connect(*device_, server_->endpoint(), MetaClientOptions{});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(server_->endpoint().ToString()), std::string::npos)
      << c.status().ToString();
  EXPECT_NE(c.status().message().find("registering"), std::string::npos) << c.status().ToString();
  EXPECT_EQ(unregisters_.load(), 0);  // never registered: nothing to undo
}

TEST_F(MetaClientTest, HeartbeatKeepsGoingAndReRegistersWhenForgotten) {
  lease_ms_ = 150;  // a heartbeat every 50 ms
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(Eventually([&] { return heartbeats_.load() >= 6; }, 3s)) << heartbeats_.load();
  EXPECT_EQ(registers_.load(), 1);
  forget_session_ = true;
  EXPECT_TRUE(Eventually([&] { return registers_.load() == 2; }, 3s));
  int before = heartbeats_.load();
  EXPECT_TRUE(Eventually([&] { return heartbeats_.load() >= before + 3; }, 3s));
  EXPECT_EQ(registers_.load(), 2);
  EXPECT_EQ(c->cluster().block_size, 4096u);
}

TEST_F(MetaClientTest, NoHeartbeatWhenDisabled) {
  lease_ms_ = 30;
  StartServer();
  MetaClientOptions o;
  o.heartbeat = false;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(heartbeats_.load(), 0);
}

TEST_F(MetaClientTest, DroppedConnectionMidCallStillCompletes) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  int err = -1;
  InodeAttr a;
  std::thread t([&] { err = c->Getattr(kSlow, &a).ToErrno(); });
  ASSERT_TRUE(Eventually([&] { return slow_calls_.load() == 1; }, 2s));
  c->DisconnectForTesting();
  t.join();
  EXPECT_EQ(err, 0);
  EXPECT_EQ(a, AttrOf(kSlow));
  EXPECT_EQ(slow_calls_.load(), 1);  // answered from the reply cache, not run twice
  EXPECT_EQ(c->Getattr(3, &a).ToErrno(), 0);
}

TEST_F(MetaClientTest, ManyThreadsShareOneClient) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        InodeAttr a;
        InodeId ino = 100 + t * 1000 + i;
        if (c->Getattr(ino, &a).ToErrno() != 0 || a != AttrOf(ino)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(MetaClientTest, DestructorUnregisters) {
  StartServer();
  auto c = Client();
  ASSERT_NE(c, nullptr);
  c.reset();
  EXPECT_EQ(unregisters_.load(), 1);
}

TEST_F(MetaClientTest, DestructorDoesNotHangWhenTheServerIsGone) {
  lease_ms_ = 300;
  StartServer();
  MetaClientOptions o;
  o.reconnect_attempts = 2;
  auto c = Client(o);
  ASSERT_NE(c, nullptr);
  server_->Stop();
  server_.reset();
  auto start = std::chrono::steady_clock::now();
  c.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
}

}  // namespace
}  // namespace dpmfs::meta
