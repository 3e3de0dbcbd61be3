// The transfer API (datapath/transfer.h) against two in-process data servers on real
// pool files, for every persist method: pieces over both servers, pieces larger than
// one I/O, zero pieces, reads back; the retry of a connection whose server restarted;
// and that a call allocates nothing once warm: a counting operator new counts the
// calling thread outside the transport (the soft transport's queues are std::deques,
// which allocate a block now and then; verbs queues are the NIC's), by way of a device
// whose queue pairs pause the count while the transport runs.
#include "datapath/transfer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <random>
#include <set>

#include "common/pool.h"
#include "datapath/data_server.h"
#include "tests/support/allocation_counter.h"

// The replacement operator new/delete below pair malloc with free; GCC, seeing new
// and free meet after inlining, would call them mismatched.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

using dpmfs::test_support::NotCounted;
using dpmfs::test_support::t_allocations;
using dpmfs::test_support::t_counting;

namespace dpmfs::datapath {
namespace {

namespace fs = std::filesystem;


// What the calling thread did to which queue pair, while t_recording: 'P' posted a
// send chain, 'W' polled or waited for completions.
thread_local bool t_recording = false;
thread_local std::vector<std::pair<int, char>> t_events;
std::atomic<int> g_next_qp{0};

class UncountedQueuePair final : public transport::QueuePair {
 public:
  explicit UncountedQueuePair(std::unique_ptr<transport::QueuePair> real) : real_(std::move(real)) {}
  Status PostSend(std::span<const transport::WorkRequest> chain) override {
    NotCounted n;
    Record('P');
    return real_->PostSend(chain);
  }
  Status PostRecv(std::span<const transport::WorkRequest> recvs) override {
    NotCounted n;
    return real_->PostRecv(recvs);
  }
  size_t PollSend(std::span<transport::Completion> out) override {
    NotCounted n;
    Record('W');
    return real_->PollSend(out);
  }
  size_t PollRecv(std::span<transport::Completion> out) override {
    NotCounted n;
    Record('W');
    return real_->PollRecv(out);
  }
  size_t WaitSend(std::span<transport::Completion> out, transport::Duration t) override {
    NotCounted n;
    Record('W');
    return real_->WaitSend(out, t);
  }
  size_t WaitRecv(std::span<transport::Completion> out, transport::Duration t) override {
    NotCounted n;
    Record('W');
    return real_->WaitRecv(out, t);
  }
  transport::QpState state() const override { return real_->state(); }
  std::span<const uint8_t> peer_private_data() const override {
    return real_->peer_private_data();
  }
  std::string peer_description() const override { return real_->peer_description(); }
  void Disconnect() override { real_->Disconnect(); }

 private:
  void Record(char what) {
    if (t_recording) t_events.emplace_back(id_, what);
  }
  std::unique_ptr<transport::QueuePair> real_;
  const int id_ = g_next_qp++;
};

class UncountedDevice final : public transport::Device {
 public:
  explicit UncountedDevice(std::unique_ptr<transport::Device> real) : real_(std::move(real)) {}
  transport::Backend backend() const override { return real_->backend(); }
  Result<transport::MemoryRegion> RegisterMemory(void* addr, uint64_t length,
                                                 uint32_t access) override {
    return real_->RegisterMemory(addr, length, access);
  }
  Status DeregisterMemory(const transport::MemoryRegion& region) override {
    return real_->DeregisterMemory(region);
  }
  Result<std::unique_ptr<transport::Listener>> Listen(const Endpoint& local) override {
    return real_->Listen(local);
  }
  Result<std::unique_ptr<transport::QueuePair>> Connect(
      const Endpoint& peer, std::span<const uint8_t> private_data,
      const transport::QueuePairOptions& options, transport::Duration timeout) override {
    auto qp = real_->Connect(peer, private_data, options, timeout);
    if (!qp.ok()) return qp.status();
    return std::unique_ptr<transport::QueuePair>(
        std::make_unique<UncountedQueuePair>(std::move(qp).value()));
  }
  bool SupportsFlush() const override { return real_->SupportsFlush(); }

 private:
  std::unique_ptr<transport::Device> real_;
};

constexpr uint32_t kMaxIo = 64 << 10;

class TransferTest : public ::testing::TestWithParam<PersistMethod> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-transfer-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(counter_++));
    fs::create_directories(dir_);
    auto sd = transport::OpenDevice(transport::DeviceOptions{});
    ASSERT_TRUE(sd.ok()) << sd.status().ToString();
    server_device_ = std::move(sd).value();
    auto cluster = pool::ClusterUuid::Generate();
    for (uint32_t i = 0; i < 2; ++i) {
      paths_[i] = (dir_ / ("data" + std::to_string(i) + ".pool")).string();
      pool::FormatOptions fo;
      fo.geometry = {pool::Role::kData, cluster, i, 4096, 16ull << 20};
      ASSERT_TRUE(pool::FormatPool(paths_[i], fo).ok());
      StartServer(i, 0);
    }
    auto cd = transport::OpenDevice(transport::DeviceOptions{});
    ASSERT_TRUE(cd.ok());
    client_device_ = std::make_unique<UncountedDevice>(std::move(cd).value());
    DataTransferOptions o;
    o.client.method = GetParam();
    o.client.queue_depth = 4;
    o.client.max_io_size = kMaxIo;
    o.client.timeout = std::chrono::seconds(2);
    transfer_ = std::make_unique<DataTransfer>(
        *client_device_, std::vector<Endpoint>{servers_[0]->endpoint(), servers_[1]->endpoint()},
        o);
  }

  void StartServer(uint32_t i, uint16_t port) {
    DataServerOptions so;
    so.pool_path = paths_[i];
    so.listen = Endpoint{"127.0.0.1", port};
    auto s = DataServer::Start(*server_device_, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    servers_[i] = std::move(s).value();
  }

  void TearDown() override {
    transfer_.reset();
    client_device_.reset();
    for (auto& s : servers_) s.reset();
    server_device_.reset();
    fs::remove_all(dir_);
  }

  static inline int counter_ = 0;
  fs::path dir_;
  std::string paths_[2];
  std::unique_ptr<transport::Device> server_device_, client_device_;
  std::unique_ptr<DataServer> servers_[2];
  std::unique_ptr<DataTransfer> transfer_;
};

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng() | 1);  // never zero
  return v;
}

TEST_P(TransferTest, PiecesOverBothServersReadBackAsWritten) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  // Interleaved servers, a piece of several I/Os, a piece of zeros over old data.
  auto a = Pattern(3 * kMaxIo + 100, 1), b = Pattern(5000, 2), c = Pattern(kMaxIo, 3);
  std::vector<uint8_t> z(8192, 0xAB);
  WritePiece first[] = {{{0, 8192}, a.size(), a.data()},
                        {{1, 0}, b.size(), b.data()},
                        {{0, 1 << 20}, c.size(), c.data()},
                        {{1, 1 << 20}, z.size(), z.data()}};
  Status st = transfer_->Write(first);
  ASSERT_TRUE(st.ok()) << st.ToString();
  WritePiece zeros[] = {{{1, 1 << 20}, 4096, nullptr}};
  st = transfer_->Write(zeros);
  ASSERT_TRUE(st.ok()) << st.ToString();

  std::vector<uint8_t> ra(a.size()), rb(b.size()), rc(c.size()), rz(z.size());
  ReadPiece reads[] = {{{1, 0}, rb.size(), rb.data()},
                       {{0, 8192}, ra.size(), ra.data()},
                       {{1, 1 << 20}, rz.size(), rz.data()},
                       {{0, 1 << 20}, rc.size(), rc.data()}};
  st = transfer_->Read(reads);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ra, a);
  EXPECT_EQ(rb, b);
  EXPECT_EQ(rc, c);
  std::vector<uint8_t> want_z(z);
  std::fill(want_z.begin(), want_z.begin() + 4096, 0);
  EXPECT_EQ(rz, want_z);
}

TEST_P(TransferTest, ErrorsNameTheServerAndAreNotRetriedForever) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  std::vector<uint8_t> x(4096, 7);
  WritePiece unknown[] = {{{2, 0}, x.size(), x.data()}};
  EXPECT_EQ(transfer_->Write(unknown).code(), StatusCode::kInvalidArgument);
  WritePiece outside[] = {{{1, 1ull << 40}, x.size(), x.data()}};
  Status st = transfer_->Write(outside);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange) << st.ToString();
  EXPECT_NE(st.message().find("data server 1"), std::string::npos) << st.ToString();
  // The transfer still works afterwards.
  WritePiece ok[] = {{{1, 0}, x.size(), x.data()}};
  EXPECT_TRUE(transfer_->Write(ok).ok());
}

TEST_P(TransferTest, AConnectionWhoseServerRestartedIsRetriedOnAFreshOne) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  auto x = Pattern(20000, 4);
  WritePiece w[] = {{{0, 0}, x.size(), x.data()}, {{1, 0}, x.size(), x.data()}};
  ASSERT_TRUE(transfer_->Write(w).ok());
  const uint64_t before = transfer_->connects();
  // Server 1 restarts on the same port: the idle connection to it is dead.
  const uint16_t port = servers_[1]->endpoint().port;
  servers_[1].reset();
  StartServer(1, port);
  auto y = Pattern(20000, 5);
  WritePiece w2[] = {{{0, 0}, y.size(), y.data()}, {{1, 0}, y.size(), y.data()}};
  Status st = transfer_->Write(w2);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_GT(transfer_->connects(), before);
  std::vector<uint8_t> back(y.size());
  ReadPiece r[] = {{{1, 0}, back.size(), back.data()}};
  ASSERT_TRUE(transfer_->Read(r).ok());
  EXPECT_EQ(back, y);
}

// Pieces on different servers are posted to every server before the call waits for
// any: one server after another would show a wait on the first before a post on the
// second.
TEST_P(TransferTest, EveryServerIsPostedToBeforeAnyIsWaitedOn) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  auto x = Pattern(3 * kMaxIo, 7);
  std::vector<uint8_t> back(x.size());
  WritePiece w[] = {{{0, 0}, x.size(), x.data()}, {{1, 0}, x.size(), x.data()}};
  ReadPiece r[] = {{{0, 0}, x.size(), back.data()}, {{1, 0}, x.size(), back.data()}};
  ASSERT_TRUE(transfer_->Write(w).ok());  // connections made
  for (bool write : {true, false}) {
    SCOPED_TRACE(write ? "write" : "read");
    t_events.clear();
    t_recording = true;
    Status st = write ? transfer_->Write(w) : transfer_->Read(r);
    t_recording = false;
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::set<int> posted;
    size_t first_wait = t_events.size();
    for (size_t i = 0; i < t_events.size(); ++i) {
      if (t_events[i].second == 'W') {
        first_wait = i;
        break;
      }
      posted.insert(t_events[i].first);
    }
    EXPECT_EQ(posted.size(), 2u) << "servers posted to before the first wait";
    std::set<int> all;
    for (const auto& e : t_events) all.insert(e.first);
    EXPECT_EQ(all.size(), 2u);
    EXPECT_LT(first_wait, t_events.size());
  }
}

// Replication (docs/replication.md): one piece, two copies, one on each server.
WritePiece Replicated(uint64_t at0, uint64_t at1, const std::vector<uint8_t>& data) {
  WritePiece w{{0, at0}, data.size(), data.data()};
  w.more.at[0] = {1, at1};
  w.more.count = 1;
  return w;
}

TEST_P(TransferTest, AReplicatedWriteIsPostedToEveryCopyBeforeAnyIsWaitedOn) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  auto x = Pattern(3 * kMaxIo + 512, 11);
  WritePiece w[] = {Replicated(4096, 1 << 20, x)};
  ASSERT_TRUE(transfer_->Write(w).ok());  // connections made
  t_events.clear();
  t_recording = true;
  Status st = transfer_->Write(w);
  t_recording = false;
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::set<int> posted;
  for (const auto& e : t_events) {
    if (e.second == 'W') break;
    posted.insert(e.first);
  }
  EXPECT_EQ(posted.size(), 2u) << "copies posted to before the first wait";
  // Each copy holds the data: read them one at a time, unreplicated.
  std::vector<uint8_t> c0(x.size()), c1(x.size());
  ReadPiece r0[] = {{{0, 4096}, c0.size(), c0.data()}};
  ReadPiece r1[] = {{{1, 1 << 20}, c1.size(), c1.data()}};
  ASSERT_TRUE(transfer_->Read(r0).ok());
  ASSERT_TRUE(transfer_->Read(r1).ok());
  EXPECT_EQ(c0, x);
  EXPECT_EQ(c1, x);
}

TEST_P(TransferTest, AReplicatedReadFailsOverToTheOtherCopyAndEioWhenNoneIsLeft) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  // Pieces at different MiB so that the first copy tried differs between them.
  auto x = Pattern(20000, 12), y = Pattern(kMaxIo + 7, 13);
  WritePiece w[] = {Replicated(0, 4 << 20, x), Replicated(1 << 20, 5 << 20, y)};
  ASSERT_TRUE(transfer_->Write(w).ok());
  auto read_all = [&](std::vector<uint8_t>* rx, std::vector<uint8_t>* ry) {
    rx->assign(x.size(), 0);
    ry->assign(y.size(), 0);
    ReadPiece r[] = {{w[0].where, x.size(), rx->data(), w[0].more},
                     {w[1].where, y.size(), ry->data(), w[1].more}};
    return transfer_->Read(r);
  };
  std::vector<uint8_t> rx, ry;
  for (uint32_t dead : {0u, 1u}) {
    SCOPED_TRACE("server " + std::to_string(dead) + " stopped");
    const uint16_t port = servers_[dead]->endpoint().port;
    servers_[dead].reset();
    Status st = read_all(&rx, &ry);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(rx, x);
    EXPECT_EQ(ry, y);
    // A write needs every copy: it fails, naming the server that is gone.
    st = transfer_->Write(w);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("data server " + std::to_string(dead)), std::string::npos)
        << st.ToString();
    StartServer(dead, port);
  }
  // Both copies gone: an error at once, not a hang.
  servers_[0].reset();
  servers_[1].reset();
  const auto start = std::chrono::steady_clock::now();
  Status st = read_all(&rx, &ry);
  EXPECT_FALSE(st.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_P(TransferTest, AReplicaSetNamingAServerTwiceIsRefused) {
  std::vector<uint8_t> x(4096, 1);
  WritePiece w{{1, 0}, x.size(), x.data()};
  w.more.at[0] = {1, 1 << 20};
  w.more.count = 1;
  Status st = transfer_->Write({&w, 1});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  w.more.count = kMaxReplicas;  // more copies than a piece may have
  EXPECT_EQ(transfer_->Write({&w, 1}).code(), StatusCode::kInvalidArgument);
}

TEST_P(TransferTest, WarmCallsAllocateNothing) {
  if (GetParam() == PersistMethod::kFlush && !client_device_->SupportsFlush()) {
    GTEST_SKIP() << "no RDMA FLUSH on this device";
  }
  auto x = Pattern(2 * kMaxIo + 4096, 6);
  std::vector<uint8_t> back(x.size());
  WritePiece w[] = {{{0, 0}, x.size(), x.data()}, {{1, 4096}, 4096, x.data()}};
  ReadPiece r[] = {{{0, 0}, x.size(), back.data()}, {{1, 4096}, 4096, back.data()}};
  WritePiece one[] = {{{1, 0}, 4096, x.data()}};
  // Replica sets: writes to both copies, reads from one (pieces at even and odd MiB:
  // one reads its first copy, the other its second).
  WritePiece rw[] = {Replicated(2 << 20, 4 << 20, x), Replicated(3 << 20, 5 << 20, x)};
  ReadPiece rr[] = {{rw[0].where, x.size(), back.data(), rw[0].more},
                    {rw[1].where, x.size(), back.data(), rw[1].more}};
  // Warm up: connections made, per-thread scratch sized.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(transfer_->Write(w).ok());
    ASSERT_TRUE(transfer_->Read(r).ok());
    ASSERT_TRUE(transfer_->Write(one).ok());
    ASSERT_TRUE(transfer_->Write(rw).ok());
    ASSERT_TRUE(transfer_->Read(rr).ok());
  }
  t_allocations = 0;
  t_counting = true;
  bool ok = true;
  for (int i = 0; i < 200; ++i) {
    ok &= transfer_->Write(w).ok();
    ok &= transfer_->Read(r).ok();
    ok &= transfer_->Write(one).ok();
    ok &= transfer_->Write(rw).ok();
    ok &= transfer_->Read(rr).ok();
  }
  t_counting = false;
  ASSERT_TRUE(ok);
  EXPECT_EQ(t_allocations, 0u) << "allocations in 1000 warm transfer calls";
}

INSTANTIATE_TEST_SUITE_P(Methods, TransferTest, ::testing::ValuesIn(AllPersistMethods()),
                         [](const auto& info) { return std::string(PersistMethodName(info.param)); });

}  // namespace
}  // namespace dpmfs::datapath
