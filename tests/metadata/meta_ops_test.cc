// The operation table (metadata/meta_ops.h) and everything derived from it: the wire
// numbers stay what they were, every row has a name, a kind, a server handler and a
// client stub, and a number that is no row is refused by the service and the namespace.
#include "metadata/meta_ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <type_traits>

#include "common/pool.h"
#include "metadata/meta_client.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"
#include "metadata/namespace.h"
#include "tests/metadata/meta_test_pool.h"

namespace dpmfs::meta {
namespace {

// The wire numbers, written out once more by hand: clients and servers of different
// versions must agree on them, so the table may only ever grow.
TEST(MetaOps, WireNumbersAreFrozen) {
  const std::pair<Opcode, uint16_t> frozen[] = {
      {Opcode::kRegister, 1},     {Opcode::kHeartbeat, 2},    {Opcode::kUnregister, 3},
      {Opcode::kLookup, 10},      {Opcode::kGetattr, 11},     {Opcode::kSetattr, 12},
      {Opcode::kCreate, 13},      {Opcode::kMkdir, 14},       {Opcode::kMknod, 15},
      {Opcode::kSymlink, 16},     {Opcode::kReadlink, 17},    {Opcode::kLink, 18},
      {Opcode::kUnlink, 19},      {Opcode::kRmdir, 20},       {Opcode::kRename, 21},
      {Opcode::kReaddir, 22},     {Opcode::kOpen, 23},        {Opcode::kRelease, 24},
      {Opcode::kStatfs, 25},      {Opcode::kGetxattr, 26},    {Opcode::kSetxattr, 27},
      {Opcode::kListxattr, 28},   {Opcode::kRemovexattr, 29}, {Opcode::kLayout, 30},
      {Opcode::kAllocate, 31},    {Opcode::kCommit, 32},      {Opcode::kFallocate, 33},
      {Opcode::kReleaseMany, 34}, {Opcode::kGetClusterMap, 40}, {Opcode::kReportDataServer, 41},
      {Opcode::kMarkDegraded, 42}, {Opcode::kStats, 48},       {Opcode::kPushStats, 49},
      {Opcode::kLogLevel, 50},
  };
  ASSERT_EQ(std::size(frozen), kMetaOps.size());
  for (const auto& [op, number] : frozen) {
    EXPECT_EQ(static_cast<uint16_t>(op), number) << OpcodeName(op);
    EXPECT_NE(FindOp(number), nullptr) << number;
  }
}

TEST(MetaOps, EveryRowHasANameAKindAndAFamily) {
  std::set<std::string_view> names;
  const std::set<std::string_view> families = {"session", "namespace", "files", "xattr",
                                                "cluster", "admin"};
  int mutations = 0, reads = 0;
  for (const OpInfo& i : kMetaOps) {
    EXPECT_FALSE(i.name.empty());
    EXPECT_NE(i.name, "unknown");
    EXPECT_TRUE(names.insert(i.name).second) << "duplicate name " << i.name;
    EXPECT_TRUE(families.count(i.family)) << i.name << " has family " << i.family;
    EXPECT_EQ(FindOp(i.op), &i);
    EXPECT_EQ(OpcodeName(i.op), i.name);
    EXPECT_EQ(IsMutation(i.op), i.kind == OpKind::kMutation) << i.name;
    EXPECT_EQ(IsJournaled(i.op), i.kind == OpKind::kMutation || i.kind == OpKind::kSession)
        << i.name;
    mutations += i.kind == OpKind::kMutation;
    reads += i.kind == OpKind::kRead;
  }
  EXPECT_EQ(mutations, 18);
  EXPECT_EQ(reads, 10);
  EXPECT_EQ(FindOp(Opcode::kHeartbeat)->kind, OpKind::kLease);
  EXPECT_EQ(FindOp(Opcode::kRegister)->kind, OpKind::kSession);
  EXPECT_EQ(FindOp(Opcode::kUnregister)->kind, OpKind::kSession);
}

TEST(MetaOps, NumbersThatAreNoRowAreUnknown) {
  for (uint16_t n : {0, 4, 9, 35, 63, 64, 999, 0x8001, 0xffff}) {
    EXPECT_EQ(FindOp(n), nullptr) << n;
    EXPECT_EQ(OpcodeName(static_cast<Opcode>(n)), "unknown") << n;
    EXPECT_FALSE(IsMutation(static_cast<Opcode>(n))) << n;
    EXPECT_FALSE(IsJournaled(static_cast<Opcode>(n))) << n;
  }
}

// Every row has a client stub with the row's request and reply types: taking the
// address instantiates MetaClient::Call<op> for each (a row whose messages have no
// codec does not compile).
TEST(MetaOps, EveryRowHasAClientStub) {
  size_t stubs = 0;
#define DPMFS_TEST_STUB(Name, number, str, kind, Req, Rep, family)                          \
  {                                                                                         \
    static_assert(std::is_same_v<OpTypes<Opcode::k##Name>::Request, Req>);                 \
    static_assert(std::is_same_v<OpTypes<Opcode::k##Name>::Reply, Rep>);                   \
    Status (MetaClient::*stub)(const Req&, Rep*) = &MetaClient::Call<Opcode::k##Name>;      \
    EXPECT_NE(stub, nullptr);                                                               \
    ++stubs;                                                                                \
  }
  DPMFS_META_OPS(DPMFS_TEST_STUB)
#undef DPMFS_TEST_STUB
  EXPECT_EQ(stubs, kMetaOps.size());
}

// ---- The server side, in process ----

class MetaOpsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("meta-ops-test");
    pool_ = dir_ + "/meta.pool";
    TestMetaPool p;
    p.block_size = 4096;
    p.pool_size = 8ull << 20;
    p.stripe_unit = 16 * 4096;
    p.data_pool_bytes = 64 * 4096;
    ASSERT_NO_FATAL_FAILURE(FormatTestMetaPool(pool_, p));
    pool::OpenExpectations ex;
    ex.role = pool::Role::kMetadata;
    auto store = MetaStore::Open(pool_, ex);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    MetaServiceOptions so;
    so.data_endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
    so.free_quarantine_ms = 0;
    auto svc = MetaService::Open(std::move(*store), so, nullptr);
    ASSERT_TRUE(svc.ok()) << svc.status().ToString();
    svc_ = std::move(*svc);
  }
  void TearDown() override {
    if (svc_ != nullptr) {
      EXPECT_TRUE(svc_->Stop().ok());
    }
    svc_.reset();
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }
  // `body` without its caller: sent as root (Credentials{}).
  Result<std::vector<uint8_t>> Send(uint16_t opcode, std::vector<uint8_t> body) {
    const std::vector<uint8_t> payload = EncodeCall(Credentials{}, body);
    rpc::RpcRequest r;
    r.opcode = opcode;
    r.session = 0x77;
    r.seq = ++seq_;
    r.payload = payload;
    return svc_->Handle(r);
  }

  std::string dir_, pool_;
  std::unique_ptr<MetaService> svc_;
  uint64_t seq_ = 0;
};

// The RPC server is given exactly the table's opcodes: it refuses every other number
// before a handler runs.
TEST_F(MetaOpsServiceTest, TheServiceRegistersEveryRowAndNothingElse) {
  auto handlers = svc_->Handlers();
  std::set<uint16_t> registered;
  for (const auto& [opcode, handler] : handlers) {
    registered.insert(opcode);
    EXPECT_TRUE(static_cast<bool>(handler)) << opcode;
  }
  std::set<uint16_t> rows;
  for (const OpInfo& i : kMetaOps) rows.insert(static_cast<uint16_t>(i.op));
  EXPECT_EQ(registered, rows);
}

// Every row reaches a handler: a well-formed (default) request of each gets a reply
// payload (possibly an errno such as ENOENT for inode 0), never an RPC-level refusal.
TEST_F(MetaOpsServiceTest, EveryRowIsAnsweredByItsHandler) {
  // Register first so the session exists; unregister last.
  std::vector<std::pair<Opcode, std::vector<uint8_t>>> requests;
#define DPMFS_TEST_REQ(Name, number, str, kind, Req, Rep, family) \
  requests.emplace_back(Opcode::k##Name, Encode(Req{}));
  DPMFS_META_OPS(DPMFS_TEST_REQ)
#undef DPMFS_TEST_REQ
  std::stable_partition(requests.begin(), requests.end(),
                        [](const auto& r) { return r.first != Opcode::kUnregister; });
  for (auto& [op, payload] : requests) {
    auto reply = Send(static_cast<uint16_t>(op), payload);
    ASSERT_TRUE(reply.ok()) << OpcodeName(op) << ": " << reply.status().ToString();
    int err = -1;
    std::span<const uint8_t> body;
    EXPECT_TRUE(SplitReply(*reply, &err, &body).ok()) << OpcodeName(op);
    EXPECT_GE(err, 0) << OpcodeName(op);
  }
}

TEST_F(MetaOpsServiceTest, UnknownOpcodesAreRefused) {
  for (uint16_t n : {0, 4, 9, 35, 999, 0x8001}) {
    auto reply = Send(n, {});
    ASSERT_FALSE(reply.ok()) << n;
    EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument) << n;
  }
}

// The namespace's two entry points split the table by kind: Mutate takes the journaled
// rows (and the server-internal expire-session), Read the reads; neither takes the
// other's, the heartbeat, or a number that is no row.
TEST(MetaOpsNamespace, MutateAndReadTakeTheirRowsOnly) {
  NamespaceConfig c;
  c.pools = {DataPoolGeometry{0, 4096, 1ull << 20}};
  c.cluster.block_size = 4096;
  c.cluster.stripe_unit = 1u << 20;
  Namespace ns(c);
  auto refused_as_wrong_kind = [](const Status& st) {
    return st.code() == StatusCode::kInvalidArgument &&
           (st.message().find("is not a mutation") != std::string::npos ||
            st.message().find("is not a read") != std::string::npos);
  };
  for (const OpInfo& i : kMetaOps) {
    const auto n = static_cast<uint16_t>(i.op);
    OpContext ctx;
    ctx.session = 0x99;
    ctx.seq = 1;
    // An empty payload: every request type with a field fails to decode, but the
    // refusal must come from the decoder of the right handler, not the dispatch.
    auto m = ns.Mutate(n, {}, ctx);
    auto r = ns.Read(n, {});
    const bool journaled = i.kind == OpKind::kMutation || i.kind == OpKind::kSession;
    EXPECT_EQ(!m.ok() && refused_as_wrong_kind(m.status()), !journaled) << i.name;
    EXPECT_EQ(!r.ok() && refused_as_wrong_kind(r.status()), i.kind != OpKind::kRead) << i.name;
  }
  for (uint16_t n : {0, 4, 35, 999}) {
    OpContext ctx;
    EXPECT_TRUE(refused_as_wrong_kind(ns.Mutate(n, {}, ctx).status())) << n;
    EXPECT_TRUE(refused_as_wrong_kind(ns.Read(n, {}).status())) << n;
  }
}

}  // namespace
}  // namespace dpmfs::meta
