// The RPC server's limits (issue 17, "Resource limits"; rpc/README.md, "Limits"):
// connections in all and per peer address are refused clearly, connection buffers are
// budgeted, idempotent requests keep no reply cache, a session's cache is bounded in
// bytes, sessions without a connection are dropped, and idle connections are closed.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "transport/transport.h"

namespace dpmfs::rpc {
namespace {

using namespace std::chrono_literals;

constexpr uint16_t kRead = 1;   // idempotent: 64 KiB reply
constexpr uint16_t kWrite = 2;  // at-most-once: 64 KiB reply

class RpcLimitsTest : public ::testing::Test {
 protected:
  void Start(RpcServerOptions o) {
    device_ = std::move(transport::OpenDevice(transport::DeviceOptions{})).value();
    o.listen = Endpoint{"127.0.0.1", 0};
    o.max_message = 256 << 10;
    std::map<uint16_t, RpcHandler> h;
    auto big = [](const RpcRequest&) -> Result<std::vector<uint8_t>> {
      return std::vector<uint8_t>(64 << 10, 0x5A);
    };
    h[kRead] = big;
    h[kWrite] = big;
    auto s = RpcServer::Start(*device_, o, std::move(h));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  Result<std::unique_ptr<RpcClient>> Client(uint64_t session = 0) {
    RpcClientOptions o;
    o.session = session;
    o.max_message = 256 << 10;
    o.reconnect_attempts = 0;
    return RpcClient::Connect(*device_, server_->endpoint(), o);
  }
  template <typename Pred>
  bool WaitFor(Pred p, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (p()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return p();
  }

  std::unique_ptr<transport::Device> device_;
  std::unique_ptr<RpcServer> server_;
};

TEST_F(RpcLimitsTest, ConnectionsBeyondTheCapsAreRefusedClearly) {
  RpcServerOptions o;
  o.max_connections = 3;
  o.max_connections_per_peer = 2;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  auto a = Client();
  auto b = Client();
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = Client();
  ASSERT_FALSE(c.ok()) << "a third connection from one address was accepted";
  EXPECT_NE(c.status().message().find("--max-connections-per-peer"), std::string::npos)
      << c.status().ToString();
  a->reset();
  ASSERT_TRUE(WaitFor([&] { return server_->stats().open_connections == 1; }));
  auto d = Client();
  EXPECT_TRUE(d.ok()) << "the departed client's place did not come back: "
                      << d.status().ToString();
}

TEST_F(RpcLimitsTest, ConnectionBuffersAreBudgeted) {
  RpcServerOptions o;
  // A connection holds (32 + 32 + 8) x 256 KiB = 18 MiB of buffers.
  o.max_buffer_bytes = 30ull << 20;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  auto a = Client();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = Client();
  ASSERT_FALSE(b.ok()) << "buffers beyond the server's budget were given";
  EXPECT_NE(b.status().message().find("buffers at their limit"), std::string::npos)
      << b.status().ToString();
  EXPECT_LE(server_->stats().buffer_bytes, o.max_buffer_bytes);
}

// A session that only reads holds no reply cache (it once kept every 64 KiB reply, 256
// of them: +16 MiB a session); one that writes keeps at most its byte bound.
TEST_F(RpcLimitsTest, ReplyCachesAreBoundedAndSkipIdempotentRequests) {
  RpcServerOptions o;
  o.at_most_once = [](uint16_t op) { return op == kWrite; };
  o.reply_cache_bytes_per_session = 256 << 10;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  auto reader = Client();
  ASSERT_TRUE(reader.ok());
  for (int i = 0; i < 64; ++i) ASSERT_TRUE((*reader)->Call(kRead, {}).ok());
  EXPECT_EQ(server_->stats().sessions, 0u) << "reads created a reply cache";
  auto writer = Client();
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 64; ++i) ASSERT_TRUE((*writer)->Call(kWrite, {}).ok());
  EXPECT_EQ(server_->stats().sessions, 1u);
  // 64 replies of 64 KiB (4 MiB) were made; 4 fit the bound.
  EXPECT_EQ(server_->stats().reply_cache_bytes, o.reply_cache_bytes_per_session)
      << "the writer's reply cache is not held to its byte bound";
}

// Sessions whose client left are dropped with their caches after the linger time, and a
// connection that sends nothing is closed after the idle timeout.
TEST_F(RpcLimitsTest, LeftSessionsAndIdleConnectionsAreDropped) {
  RpcServerOptions o;
  o.session_linger_ms = 300;
  o.idle_timeout_ms = 600;
  ASSERT_NO_FATAL_FAILURE(Start(o));
  {
    auto w = Client();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Call(kWrite, {}).ok());
    EXPECT_EQ(server_->stats().sessions, 1u);
  }
  EXPECT_TRUE(WaitFor([&] { return server_->stats().sessions == 0; }))
      << "a departed client's session (and its reply cache) was kept";
  auto silent = Client();
  ASSERT_TRUE(silent.ok());
  EXPECT_TRUE(WaitFor([&] { return server_->stats().idle_closed == 1; }))
      << "a connection that sent nothing was kept";
  EXPECT_TRUE(WaitFor([&] { return server_->stats().open_connections == 0; }));
}

}  // namespace
}  // namespace dpmfs::rpc
