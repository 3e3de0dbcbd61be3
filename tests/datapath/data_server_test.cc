// The data server never trusts its clients: malformed handshakes are refused, forged
// imm descriptors and rpc headers that point outside the pool are answered with an
// error and change nothing, and the server keeps serving well-behaved clients.
// Also: the pool checks at start (wrong role / cluster) surface as clear errors.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/data_protocol.h"
#include "datapath/data_server.h"

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;
using namespace transport;

class DataServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-ds-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    pool_path_ = (dir_ / "data0.pool").string();
    cluster_ = pool::ClusterUuid::Generate();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, cluster_, 3, 4096, 16ull << 20};
    ASSERT_TRUE(pool::FormatPool(pool_path_, fo).ok());
    device_ = std::move(OpenDevice(DeviceOptions{})).value();
    DataServerOptions so;
    so.pool_path = pool_path_;
    so.listen = Endpoint{"127.0.0.1", 0};
    auto s = DataServer::Start(*device_, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  void TearDown() override {
    server_.reset();
    device_.reset();
    fs::remove_all(dir_);
  }

  // A well-behaved client still gets durable writes through.
  void ExpectServing() {
    DataClientOptions o;
    o.method = PersistMethod::kImm;
    auto c = DataClient::Connect(*device_, server_->endpoint(), o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    uint8_t data[64];
    std::memset(data, 0x5A, sizeof data);
    EXPECT_TRUE((*c)->Write(4096, data, sizeof data).ok());
  }

  fs::path dir_;
  std::string pool_path_;
  pool::ClusterUuid cluster_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<DataServer> server_;
};

TEST_F(DataServerTest, HandshakeCarriesPoolIdentity) {
  DataClientOptions o;
  auto c = DataClient::Connect(*device_, server_->endpoint(), o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->server().cluster, cluster_.bytes);
  EXPECT_EQ((*c)->server().pool_index, 3u);
  EXPECT_EQ((*c)->server().block_size, 4096u);
  EXPECT_EQ((*c)->data_size(), server_->pool_info().data_size);
}

TEST_F(DataServerTest, MalformedConnectRequestsAreRefused) {
  QueuePairOptions qpo;
  std::vector<std::vector<uint8_t>> bad = {
      {},                                  // empty
      {1, 2, 3},                           // short
      std::vector<uint8_t>(16, 0xFF),      // bad magic
  };
  ConnectRequest huge_qd{PersistMethod::kImm, 1u << 30, 4096};
  bad.push_back(EncodeConnectRequest(huge_qd));
  ConnectRequest huge_io{PersistMethod::kRpc, 4, 1u << 31};
  bad.push_back(EncodeConnectRequest(huge_io));
  auto bad_method = EncodeConnectRequest(ConnectRequest{});
  bad_method[6] = 99;
  bad.push_back(bad_method);
  for (const auto& pd : bad) {
    auto qp = device_->Connect(server_->endpoint(), pd, qpo, std::chrono::seconds(5));
    ASSERT_FALSE(qp.ok());
    EXPECT_EQ(qp.status().code(), StatusCode::kPermissionDenied) << qp.status().ToString();
  }
  ExpectServing();
}

// Each field in range, the product not: an rpc connection's receive buffers are
// queue depth x max I/O size, and one CONNECT must not make the server allocate (and
// zero-fill) more than kMaxRpcReceiveBytes. 1024 x 16 MiB aborted the daemon once.
TEST_F(DataServerTest, ConnectAskingForTooMuchReceiveMemoryIsRefused) {
  QueuePairOptions qpo;
  auto pd = EncodeConnectRequest(ConnectRequest{PersistMethod::kRpc, 64, 2u << 20});
  auto qp = device_->Connect(server_->endpoint(), pd, qpo, std::chrono::seconds(5));
  ASSERT_FALSE(qp.ok()) << "a 128 MiB ring was accepted";
  EXPECT_EQ(qp.status().code(), StatusCode::kPermissionDenied) << qp.status().ToString();
  // What the clients ask for by default still works.
  DataClientOptions o;
  o.method = PersistMethod::kRpc;
  auto c = DataClient::Connect(*device_, server_->endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ExpectServing();
}

// Forges imm and rpc messages by hand on a raw QP and checks the replies.
TEST_F(DataServerTest, ForgedDescriptorsAreAnsweredWithErrorsAndChangeNothing) {
  for (PersistMethod method : {PersistMethod::kImm, PersistMethod::kRpc}) {
    SCOPED_TRACE(std::string(PersistMethodName(method)));
    constexpr uint32_t kQd = 4;
    std::vector<uint8_t> mem(64 * 1024);
    auto mr = device_->RegisterMemory(mem.data(), mem.size(), kLocalWrite);
    ASSERT_TRUE(mr.ok());
    uint8_t* reply_buf = mem.data() + 60 * 1024;
    QueuePairOptions qpo;
    qpo.prepare = [&](QueuePair& qp) {
      WorkRequest r;
      r.opcode = Opcode::kRecv;
      r.local_addr = reply_buf;
      r.length = 64;
      r.lkey = mr->lkey;
      return qp.PostRecv({&r, 1});
    };
    auto qp = device_->Connect(server_->endpoint(),
                               EncodeConnectRequest(ConnectRequest{method, kQd, 8192}), qpo,
                               std::chrono::seconds(5));
    ASSERT_TRUE(qp.ok()) << qp.status().ToString();
    auto info = DecodeServerInfo((*qp)->peer_private_data());
    ASSERT_TRUE(info.ok());

    // A descriptor whose range runs past the pool end by one byte.
    WriteDescriptor d{info->pool.length - 100, 101, 1};
    EncodeDescriptor(d, mem.data());
    WorkRequest wr;
    wr.lkey = mr->lkey;
    wr.local_addr = mem.data();
    if (method == PersistMethod::kImm) {
      wr.opcode = Opcode::kWriteWithImm;
      wr.length = kDescriptorSize;
      wr.remote_addr = info->ring.addr + 1 * kDescriptorSize;
      wr.rkey = info->ring.rkey;
      wr.imm = 1;
    } else {
      wr.opcode = Opcode::kSend;
      wr.length = kDescriptorSize + 101;
    }
    ASSERT_TRUE((*qp)->PostSend({&wr, 1}).ok());
    Completion c;
    ASSERT_EQ((*qp)->WaitRecv({&c, 1}, std::chrono::seconds(5)), 1u);
    ASSERT_TRUE(c.ok());
    auto reply = DecodeReply({reply_buf, c.byte_len});
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(reply->slot, 1u);
    EXPECT_EQ(reply->code, StatusCode::kOutOfRange);
    (*qp)->Disconnect();
    ASSERT_TRUE(device_->DeregisterMemory(*mr).ok());
  }
  EXPECT_EQ(server_->stats().refused, 2u);
  // Nothing was written: the pool's tail is still zero.
  auto c = DataClient::Connect(*device_, server_->endpoint(), DataClientOptions{});
  ASSERT_TRUE(c.ok());
  std::vector<uint8_t> tail(100, 0xEE);
  ASSERT_TRUE((*c)->Read((*c)->data_size() - 100, tail.data(), 100).ok());
  EXPECT_EQ(tail, std::vector<uint8_t>(100, 0));
  ExpectServing();
}

// The metadata server's scrub request: the server zeroes the range itself (whole pages
// become a hole, partial ones are overwritten), bounds-checked like a write.
TEST_F(DataServerTest, ZeroRequestsZeroExactlyTheirRangeAndAreBoundsChecked) {
  DataClientOptions o;
  o.method = PersistMethod::kRpc;
  auto c = DataClient::Connect(*device_, server_->endpoint(), o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<uint8_t> data(3 * 4096, 0xAB);
  ASSERT_TRUE((*c)->Write(8192, data.data(), static_cast<uint32_t>(data.size())).ok());
  // Ten bytes into a page, across the next whole page, ten bytes into the third.
  ASSERT_TRUE((*c)->Zero(8192 + 10, 8192).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE((*c)->Read(8192, back.data(), static_cast<uint32_t>(back.size())).ok());
  std::vector<uint8_t> want = data;
  std::fill(want.begin() + 10, want.begin() + 10 + 8192, 0);
  EXPECT_EQ(back, want);
  EXPECT_EQ(server_->stats().zeroed_bytes, 8192u);

  // Past the end of the data area: refused, nothing zeroed.
  Status past = (*c)->Zero((*c)->data_size() - 4096, 8192);
  EXPECT_EQ(past.code(), StatusCode::kOutOfRange) << past.ToString();
  EXPECT_EQ(server_->stats().zeroed_bytes, 8192u);
  // A method without server messages cannot ask for it.
  auto plain = DataClient::Connect(*device_, server_->endpoint(), DataClientOptions{});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->Zero(8192, 4096).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*plain)->Read(8192, back.data(), static_cast<uint32_t>(back.size())).ok());
  EXPECT_EQ(back, want);
}

TEST(DataServerStartTest, RefusesWrongRoleAndForeignCluster) {
  fs::path dir = fs::temp_directory_path() / ("dpmfs-ds-start-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string meta = (dir / "meta.pool").string();
  pool::FormatOptions fo;
  fo.geometry = {pool::Role::kMetadata, pool::ClusterUuid::Generate(), 0, 4096, 8ull << 20};
  ASSERT_TRUE(pool::FormatPool(meta, fo).ok());
  auto device = std::move(OpenDevice(DeviceOptions{})).value();
  DataServerOptions so;
  so.pool_path = meta;
  so.listen = Endpoint{"127.0.0.1", 0};
  auto s = DataServer::Start(*device, so);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("metadata"), std::string::npos) << s.status().ToString();

  std::string data = (dir / "data.pool").string();
  fo.geometry.role = pool::Role::kData;
  ASSERT_TRUE(pool::FormatPool(data, fo).ok());
  so.pool_path = data;
  so.expect.cluster = pool::ClusterUuid::Generate();
  s = DataServer::Start(*device, so);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cluster"), std::string::npos) << s.status().ToString();
  fs::remove_all(dir);
}

// The data protocol's messages go through the byte codec: the bytes are those of
// protocol version 1 (checked here byte for byte), and a truncated message's error
// names the field where it ended.
TEST(DataProtocolTest, BytesAreVersionOneAndTruncationNamesTheField) {
  auto req = EncodeConnectRequest(ConnectRequest{PersistMethod::kImm, 0x01020304, 0x0A0B0C0D});
  const std::vector<uint8_t> want_req = {0x44, 0x4D, 0x50, 0x44, 1, 0, 3, 0,
                                         4,    3,    2,    1,    0x0D, 0x0C, 0x0B, 0x0A};
  EXPECT_EQ(req, want_req);

  uint8_t d[kDescriptorSize];
  EncodeDescriptor(WriteDescriptor{0x1122334455667788, 0x99AABBCC, 7, kDescriptorZero}, d);
  const uint8_t want_d[kDescriptorSize] = {0x44, 0x4D, 0x50, 0x44, 7, 0, 0, 0,
                                           0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                                           0xCC, 0xBB, 0xAA, 0x99, 1, 0, 0, 0};
  EXPECT_EQ(std::memcmp(d, want_d, kDescriptorSize), 0);
  auto back = DecodeDescriptor({d, kDescriptorSize});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->offset, 0x1122334455667788u);
  EXPECT_EQ(back->length, 0x99AABBCCu);
  EXPECT_EQ(back->slot, 7u);

  uint8_t r[kReplySize];
  EncodeReply(Reply{9, StatusCode::kOutOfRange}, r);
  auto rep = DecodeReply({r, kReplySize});
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->slot, 9u);
  EXPECT_EQ(rep->code, StatusCode::kOutOfRange);
  r[8] = 0x7F;
  EXPECT_EQ(DecodeReply({r, kReplySize}).status().code(), StatusCode::kCorruption);

  ServerInfo info;
  info.pool = {0x1000, 0x2000, 5};
  info.pool_index = 3;
  info.block_size = 4096;
  info.is_pmem = true;
  info.pool_instance = 0x1122334455667788ull;
  auto bytes = EncodeServerInfo(info);
  ASSERT_EQ(bytes.size(), 80u);
  auto ok = DecodeServerInfo(bytes);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->pool.rkey, 5u);
  EXPECT_TRUE(ok->is_pmem);
  EXPECT_EQ(ok->pool_instance, 0x1122334455667788ull);
  {
    // A data server from before the pool instance: 72 bytes, flag 2 clear; read as 0
    // (not said), not refused.
    std::vector<uint8_t> old(bytes.begin(), bytes.begin() + 72);
    old[6] &= ~kServerInfoHasInstance;
    auto o = DecodeServerInfo(old);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    EXPECT_EQ(o->pool_instance, 0u);
    EXPECT_TRUE(o->is_pmem);
    // Announced but cut off: refused, naming the field.
    old[6] |= kServerInfoHasInstance;
    auto cut_instance = DecodeServerInfo(old);
    ASSERT_FALSE(cut_instance.ok());
    EXPECT_NE(cut_instance.status().message().find("pool_instance"), std::string::npos)
        << cut_instance.status().ToString();
  }
  auto cut = DecodeServerInfo(std::span<const uint8_t>(bytes).first(26));
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.status().code(), StatusCode::kCorruption);
  EXPECT_NE(cut.status().message().find("ServerInfo.pool.rkey"), std::string::npos)
      << cut.status().ToString();
  auto short_req = DecodeConnectRequest(std::span<const uint8_t>(req).first(9));
  ASSERT_FALSE(short_req.ok());
  EXPECT_NE(short_req.status().message().find("ConnectRequest.queue_depth"), std::string::npos)
      << short_req.status().ToString();
  // A method byte no strategy is registered for.
  req[6] = 99;
  EXPECT_EQ(DecodeConnectRequest(req).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dpmfs::datapath
