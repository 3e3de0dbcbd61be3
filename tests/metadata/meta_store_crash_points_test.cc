// Crash-point enumeration of the metadata store, in process (issue 16, step 2): a
// metadata workload (creates, mkdirs, extents allocated and committed, renames, unlinks,
// releases, xattrs, checkpoints) runs on a MetaStore over pmem::FaultInjectingMemory. For
// EVERY persist point of the run (journal appends, the durable-LSN word, the reserve mark,
// every step of WriteCheckpoint) the power fails there, once forgetting every unpersisted
// byte and once tearing them (each unpersisted 8-byte word kept or lost, seeded). A fresh
// MetaStore then recovers a fresh Namespace from the durable image, and the test checks:
//   - recovery succeeds and the namespace's invariants hold;
//   - the recovered state is exactly the state after some prefix of the operations: the
//     one its last LSN names (each operation is one journal record);
//   - that prefix holds every operation acknowledged before the crash (Append returned),
//     and at most the one in flight besides: nothing acknowledged lost, nothing
//     half-applied;
//   - the recovered store takes the next record, and a second recovery finds it.
// The kill -9 tests (meta_crash_test) do the same with real processes, far fewer times.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <type_traits>

#include "common/fault_injecting_memory.h"
#include "meta_test_pool.h"
#include "metadata/meta_protocol.h"
#include "metadata/meta_store.h"
#include "metadata/mutation.h"
#include "metadata/namespace.h"

namespace dpmfs::meta {
namespace {

using pmem::FaultInjectingMemory;
using Mode = FaultInjectingMemory::CrashMode;

constexpr uint32_t kBlock = 4096;
constexpr uint32_t kUnit = 64 * 1024;
constexpr uint64_t kDataPoolBytes = 64ull << 20;

NamespaceConfig MakeConfig() {
  NamespaceConfig c;
  c.block_size = kBlock;
  c.stripe_unit = kUnit;
  for (uint32_t i = 0; i < 2; ++i) c.pools.push_back(DataPoolGeometry{i, kBlock, kDataPoolBytes});
  c.root_time = Timespec{1600000000, 5};
  c.max_inodes = 1u << 30;
  c.reply_cache_entries = 8;
  c.lease_ms = 1000;
  c.cluster.block_size = kBlock;
  c.cluster.stripe_unit = kUnit;
  // Two copies: the workload's cluster-map records (a server down, degraded writes,
  // resync) then have units to record.
  c.cluster.replicas = 2;
  for (uint32_t i = 0; i < 2; ++i) {
    c.cluster.servers.push_back(
        DataServerInfo{i, "127.0.0.1:" + std::to_string(7001 + i), kDataPoolBytes});
  }
  return c;
}

// What the store sees of the workload: journal appends, and checkpoints of the state
// as of the last record.
struct Step {
  bool checkpoint = false;
  std::vector<uint8_t> bytes;  // the record, or the checkpoint blob
};

struct Workload {
  std::vector<Step> steps;
  // states[k]: Namespace::Serialize() after the first k records (states[0]: empty).
  std::vector<std::vector<uint8_t>> states;
};

// Runs `ops` mutations on a live namespace like MetaService does and keeps the records
// and the state after each; a checkpoint every `checkpoint_every` records and whenever
// the journal passes half full (the service's rule), which `journal_capacity` decides.
Workload MakeWorkload(int ops, int checkpoint_every, uint64_t journal_capacity, uint64_t seed) {
  Workload w;
  Namespace ns(MakeConfig());
  w.states.push_back(ns.Serialize());
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  uint64_t tick = 0, seq = 0, journal_bytes = 0;
  int since_checkpoint = 0;
  std::vector<InodeId> dirs{kRootInode};
  std::vector<std::pair<InodeId, uint64_t>> open;

  // `op` is an Opcode or a server-internal record (namespace.h), which has no session.
  auto mutate = [&](auto op, const std::vector<uint8_t>& payload) -> std::vector<uint8_t> {
    OpContext ctx;
    ++tick;
    ctx.now = Timespec{1700000000 + static_cast<int64_t>(tick), static_cast<uint32_t>(tick)};
    const bool internal = std::is_same_v<decltype(op), uint16_t>;
    ctx.session = internal ? 0 : 0x5e55;
    ctx.seq = internal ? 0 : ++seq;
    ctx.lease_deadline_ms = 1;
    int err = -1;
    auto reply = ns.Mutate(static_cast<uint16_t>(op), payload, ctx, &err);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(ctx.retry_at_ms, 0);
    Step s;
    EncodeMutation(RecordOf(static_cast<uint16_t>(op), ctx, err, payload), &s.bytes);
    journal_bytes += 24 + (s.bytes.size() + 7) / 8 * 8;
    w.steps.push_back(std::move(s));
    w.states.push_back(ns.Serialize());
    if (++since_checkpoint >= checkpoint_every || journal_bytes * 2 > journal_capacity) {
      w.steps.push_back(Step{true, w.states.back()});
      since_checkpoint = 0;
      journal_bytes = 0;
    }
    std::vector<uint8_t> body;
    if (reply.ok() && err == 0) {
      int e = 0;
      std::span<const uint8_t> b;
      EXPECT_TRUE(SplitReply(*reply, &e, &b).ok());
      body.assign(b.begin(), b.end());
    }
    return body;
  };

  for (int i = 0; i < ops; ++i) {
    const InodeId d = dirs[pick(dirs.size())];
    const std::string name = "n" + std::to_string(pick(24));
    switch (pick(11)) {
      case 10: {
        // The cluster map: server 1 goes down, clients record degraded writes, it comes
        // back resyncing, a batch is copied, it is up again (one move per step).
        const ClusterMap& m = ns.cluster_map();
        switch (m.state(1)) {
          case DataServerState::kUp:
            mutate(kOpSetServerState, EncodeSetServerState(1, DataServerState::kDown, false));
            break;
          case DataServerState::kDown:
            if (pick(2) == 0) {
              mutate(Opcode::kMarkDegraded,
                     Encode(MarkDegradedRequest{
                         m.epoch(), {PrimaryRange{static_cast<uint32_t>(pick(2)),
                                                  pick(64) * kUnit, 1 + pick(3 * kUnit)}}}));
            } else {
              mutate(kOpSetServerState,
                     EncodeSetServerState(1, DataServerState::kResyncing, false));
            }
            break;
          case DataServerState::kResyncing: {
            std::vector<DirtyUnit> batch = m.NextDirty(1, 1 + pick(3));
            if (batch.empty()) {
              mutate(kOpSetServerState, EncodeSetServerState(1, DataServerState::kUp, false));
            } else {
              mutate(kOpResyncProgress, EncodeResyncProgress(1, batch));
            }
            break;
          }
        }
        break;
      }
      case 0: {
        auto body = mutate(Opcode::kMkdir, Encode(MkdirRequest{d, name, 0755, 0, 0}));
        EntryReply rep;
        if (!body.empty() && Decode(body, &rep).ok()) dirs.push_back(rep.attr.ino);
        break;
      }
      case 1:
      case 2: {
        auto body =
            mutate(Opcode::kCreate, Encode(CreateRequest{d, name, S_IFREG | 0644, 1000, 1000, 0}));
        CreateReply rep;
        if (!body.empty() && Decode(body, &rep).ok()) open.emplace_back(rep.attr.ino, rep.handle);
        break;
      }
      case 3:
      case 4:
        if (!open.empty()) {
          // A write past EOF: allocate, then commit what was written.
          const InodeId ino = open[pick(open.size())].first;
          const uint64_t off = pick(16) * kBlock;
          const uint64_t len = 1 + pick(2 * kUnit);
          auto body = mutate(Opcode::kAllocate, Encode(AllocateRequest{ino, off, len}));
          if (!body.empty()) {
            CommitRequest c;
            c.ino = ino;
            c.valid = CommitRequest::kSize;
            c.new_size = off + len;
            c.mtime = Timespec{1800000000, 7};
            c.written = {{off, (off + len + kBlock - 1) / kBlock * kBlock - off}};
            mutate(Opcode::kCommit, Encode(c));
          }
        }
        break;
      case 5:
        mutate(Opcode::kRename, Encode(RenameRequest{d, name, dirs[pick(dirs.size())],
                                                     "n" + std::to_string(pick(24)), 0}));
        break;
      case 6:
        mutate(Opcode::kUnlink, Encode(UnlinkRequest{d, name}));
        break;
      case 7:
        if (!open.empty()) {
          const size_t k = pick(open.size());
          mutate(Opcode::kRelease, Encode(ReleaseRequest{open[k].first, open[k].second}));
          open.erase(open.begin() + static_cast<long>(k));
        }
        break;
      case 8:
        mutate(Opcode::kSetxattr,
               Encode(SetxattrRequest{d, "user." + name, std::string(pick(200), 'v'), 0}));
        break;
      case 9:
        mutate(Opcode::kRmdir, Encode(UnlinkRequest{d, name}));
        break;
    }
  }
  return w;
}

// A PersistentMemory that forwards to a FaultInjectingMemory the test keeps, so that one
// recovery memory serves every crash state (MetaStore owns the memory it is opened on).
class Borrowed final : public pmem::PersistentMemory {
 public:
  explicit Borrowed(FaultInjectingMemory& m)
      : PersistentMemory(m.name(), m.base(), m.size(), m.is_pmem()), m_(m) {}
  void Persist(const void* a, size_t n) override { m_.Persist(a, n); }
  void Flush(const void* a, size_t n) override { m_.Flush(a, n); }
  void Drain() override { m_.Drain(); }
  void MemcpyPersist(void* d, const void* s, size_t n) override { m_.MemcpyPersist(d, s, n); }
  void MemsetPersist(void* d, int c, size_t n) override { m_.MemsetPersist(d, c, n); }
  Status Sync(const void* a, size_t n) override { return m_.Sync(a, n); }

 private:
  FaultInjectingMemory& m_;
};

const MetaStore::LoadFn kNoLoad = [](std::span<const uint8_t>) { return Status::OK(); };
const MetaStore::ReplayFn kNoReplay = [](uint64_t, std::span<const uint8_t>) {
  return Status::OK();
};

class CrashPointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Every torn tail and interrupted checkpoint is logged as a warning: thousands here.
    spdlog::set_level(spdlog::level::err);
    dir_ = new std::string(MakeTestDir("crashpoints"));
    const std::string path = *dir_ + "/meta.pool";
    TestMetaPool p;
    // The smallest pool: a 2 MiB header area and a 256 KiB data area (a 60 KiB record
    // area, two ~94 KiB checkpoint slots), so journal resets come often.
    p.pool_size = (2ull << 20) + (256 << 10);
    p.block_size = kBlock;
    p.stripe_unit = kUnit;
    p.data_pool_bytes = kDataPoolBytes;
    ASSERT_NO_FATAL_FAILURE(FormatTestMetaPool(path, p));
    std::ifstream in(path, std::ios::binary);
    image_ = new std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
    ASSERT_EQ(image_->size(), p.pool_size);
    std::filesystem::remove_all(*dir_);
  }
  static void TearDownTestSuite() {
    spdlog::set_level(spdlog::level::info);
    delete image_;
    delete dir_;
  }

  static std::unique_ptr<MetaStore> OpenStore(std::unique_ptr<pmem::PersistentMemory> mem) {
    auto store = MetaStore::Open(std::move(mem), {});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Drives the workload's steps on `store` (whose memory is `mem`); stops once `mem`
  // crashed. `*acked`: records whose Append returned; `*in_append`: true while one runs.
  static void Drive(const Workload& w, MetaStore& store, FaultInjectingMemory& mem, uint64_t* acked,
                    bool* in_append) {
    *acked = 0;
    for (const Step& s : w.steps) {
      if (s.checkpoint) {
        Status st = store.WriteCheckpoint(store.last_lsn(), s.bytes);
        ASSERT_TRUE(st.ok()) << st.ToString();
      } else {
        *in_append = true;
        auto lsn = store.Append(s.bytes);
        *in_append = false;
        ASSERT_TRUE(lsn.ok()) << lsn.status().ToString();
        if (mem.crashed()) return;  // it returned after the power failed: not acknowledged
        ++*acked;
      }
      if (mem.crashed()) return;
    }
  }

  // Recovers a fresh namespace from `image` on `mem` (restarted with it); the store
  // stays open in `*store` for more appends.
  static Status Recover(std::span<const uint8_t> image, FaultInjectingMemory& mem, Namespace* ns,
                        uint64_t* lsn, std::unique_ptr<MetaStore>* store) {
    mem.Restart(image);
    *store = OpenStore(std::make_unique<Borrowed>(mem));
    if (*store == nullptr) return Status::Internal("open failed");
    RecoveryStats stats;
    DPMFS_RETURN_IF_ERROR((*store)->Recover(
        [&](std::span<const uint8_t> blob) { return ns->Load(blob); },
        [&](uint64_t l, std::span<const uint8_t> rec) { return ApplyRecord(*ns, l, rec); },
        &stats));
    *lsn = stats.last_lsn;
    return ns->CheckInvariants();
  }

  static std::string* dir_;
  static std::vector<uint8_t>* image_;
};

std::string* CrashPointTest::dir_ = nullptr;
std::vector<uint8_t>* CrashPointTest::image_ = nullptr;

TEST_F(CrashPointTest, EveryPersistPointRecoversAnAcknowledgedPrefix) {
  const auto t0 = std::chrono::steady_clock::now();
  FaultInjectingMemory recovery_mem(*image_, "meta.pool (recovered)");
  Workload w;
  {
    std::unique_ptr<MetaStore> probe = OpenStore(std::make_unique<Borrowed>(recovery_mem));
    ASSERT_NE(probe, nullptr);
    w = MakeWorkload(/*ops=*/500, /*checkpoint_every=*/70, probe->journal_capacity(), 42);
  }
  size_t checkpoints = 0;
  for (const Step& s : w.steps) checkpoints += s.checkpoint ? 1 : 0;
  ASSERT_GE(checkpoints, 6u);

  // One run of the workload; at every persist point the observer takes the crash image
  // of each mode (before that point's bytes are durable) and checks its recovery.
  auto run_mem = std::make_unique<FaultInjectingMemory>(*image_, "meta.pool (running)");
  FaultInjectingMemory& mem = *run_mem;
  std::unique_ptr<MetaStore> store = OpenStore(std::move(run_mem));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Recover(kNoLoad, kNoReplay, nullptr).ok());
  const uint64_t first = mem.persist_points() + 1;  // the workload's first persist point

  uint64_t acked = 0, states = 0, in_flight_kept = 0, again_checked = 0;
  bool in_append = false;
  std::vector<uint8_t> crash_image, image2;
  std::vector<std::vector<uint8_t>> sampled;  // crash images at some points, see below
  bool failed = false;
  mem.SetObserver([&](uint64_t point) {
    if (failed) return;
    for (Mode mode : {Mode::kDropUnpersisted, Mode::kTearUnpersisted}) {
      const char* mode_name = mode == Mode::kDropUnpersisted ? "drop" : "tear";
      SCOPED_TRACE("power failure at persist point " + std::to_string(point) + " (" + mode_name +
                   "), " + std::to_string(acked) + " records acknowledged" +
                   (in_append ? ", one in flight" : ""));
      mem.CrashImage(mode, point, &crash_image);
      if (point % 97 == 0 && mode == Mode::kDropUnpersisted) sampled.push_back(crash_image);
      Namespace ns(MakeConfig());
      uint64_t lsn = 0;
      std::unique_ptr<MetaStore> recovered;
      Status st = Recover(crash_image, recovery_mem, &ns, &lsn, &recovered);
      failed = true;  // until every check below passed
      ASSERT_TRUE(st.ok()) << "recovery failed: " << st.ToString();
      ASSERT_GE(lsn, acked) << "acknowledged records were lost";
      ASSERT_LE(lsn, acked + (in_append ? 1 : 0)) << "records never written came back";
      ASSERT_TRUE(ns.Serialize() == w.states[lsn])
          << "the recovered state is not the state after the first " << lsn << " operations";
      in_flight_kept += lsn > acked ? 1 : 0;
      // The recovered store carries on: its next record is durable and a second
      // recovery finds it (every 4th crash state, to keep the run short).
      if (point % 4 == 0 && lsn + 1 < w.states.size()) {
        size_t k = 0, record = 0;
        for (; k < w.steps.size(); ++k) {
          if (!w.steps[k].checkpoint && ++record == lsn + 1) break;
        }
        ASSERT_LT(k, w.steps.size());
        auto next = recovered->Append(w.steps[k].bytes);
        ASSERT_TRUE(next.ok()) << next.status().ToString();
        ASSERT_EQ(*next, lsn + 1);
        recovered.reset();
        recovery_mem.CrashImage(mode, point, &image2);
        Namespace again(MakeConfig());
        uint64_t lsn2 = 0;
        st = Recover(image2, recovery_mem, &again, &lsn2, &recovered);
        ASSERT_TRUE(st.ok()) << "second recovery failed: " << st.ToString();
        ASSERT_EQ(lsn2, lsn + 1);
        ASSERT_TRUE(again.Serialize() == w.states[lsn + 1]);
        ++again_checked;
      }
      failed = false;
      ++states;
    }
  });
  Drive(w, *store, mem, &acked, &in_append);
  mem.SetObserver(nullptr);
  ASSERT_FALSE(failed);
  ASSERT_EQ(acked, w.states.size() - 1);
  const uint64_t points = mem.persist_points();

  // CrashAt on a second run agrees with the observer's crash images: the power really
  // fails there, and nothing persisted afterwards reaches the durable image.
  size_t sample = 0;
  for (uint64_t point = first; point <= points; ++point) {
    if (point % 97 != 0) continue;
    auto m2 = std::make_unique<FaultInjectingMemory>(*image_);
    FaultInjectingMemory& mem2 = *m2;
    std::unique_ptr<MetaStore> s2 = OpenStore(std::move(m2));
    ASSERT_TRUE(s2->Recover(kNoLoad, kNoReplay, nullptr).ok());
    mem2.CrashAt(point);
    uint64_t acked2 = 0;
    bool in2 = false;
    Drive(w, *s2, mem2, &acked2, &in2);
    ASSERT_TRUE(mem2.crashed());
    ASSERT_LT(sample, sampled.size());
    ASSERT_TRUE(mem2.DurableImage() == sampled[sample]) << "point " << point;
    ++sample;
  }
  EXPECT_EQ(sample, sampled.size());

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "%llu crash states (%llu persist points x 2 modes, %zu checkpoints, %llu "
      "records): %llu kept the record in flight, %llu recovered twice; %zu CrashAt "
      "runs agree; %.1f s\n",
      static_cast<unsigned long long>(states), static_cast<unsigned long long>(points - first + 1),
      checkpoints, static_cast<unsigned long long>(w.states.size() - 1),
      static_cast<unsigned long long>(in_flight_kept),
      static_cast<unsigned long long>(again_checked), sample, seconds);
  EXPECT_GE(states, 2000u);
  EXPECT_GT(in_flight_kept, 0u);  // both outcomes of an Append in flight were seen
}

}  // namespace
}  // namespace dpmfs::meta
