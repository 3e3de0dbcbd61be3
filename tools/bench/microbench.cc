// dpmfs-microbench: Google Benchmark micro-benchmarks of the client's and the RPC
// server's in-memory tables on their hot paths (tools/bench/README.md). Fixed seeds;
// `--benchmark_format=json` for machine-readable output.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "fs/inode_table.h"
#include "fs/layout_cache.h"
#include "rpc/reply_cache.h"
#include "rpc/rpc_protocol.h"
#include "transport/soft/soft_wire.h"

namespace {

using dpmfs::fs::InodeTable;
using dpmfs::fs::LayoutCache;
using dpmfs::rpc::SessionReplyCache;

dpmfs::meta::InodeAttr AttrOf(uint64_t ino) {
  dpmfs::meta::InodeAttr a;
  a.ino = ino;
  a.generation = 1;
  a.size = 4096;
  return a;
}

// A table of state.range(0) inodes; each iteration learns a new inode (lookup) and the
// kernel forgets the oldest: one insert and one erase, the table's size steady.
void BM_InodeTableLookupForget(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  InodeTable table;
  uint64_t next = 2;
  for (; next < n + 2; ++next) table.AddLookup(AttrOf(next), 0);
  uint64_t oldest = 2;
  for (auto _ : state) {
    table.AddLookup(AttrOf(next++), 0);
    table.Forget(oldest++, 1);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InodeTableLookupForget)->Arg(1024)->Arg(65536);

// Lookups of inodes the table holds (getattr/read/write of a known inode), random order.
void BM_InodeTableFind(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  InodeTable table;
  for (uint64_t ino = 2; ino < n + 2; ++ino) table.AddLookup(AttrOf(ino), 0);
  std::mt19937_64 rng(42);
  std::vector<uint64_t> order(4096);
  for (auto& o : order) o = 2 + rng() % n;
  size_t i = 0;
  for (auto _ : state) {
    auto inode = table.Find(order[i++ & 4095]);
    benchmark::DoNotOptimize(inode);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InodeTableFind)->Arg(1024)->Arg(65536);

// An open and a close of a known inode (open count up and down, no erase).
void BM_InodeTableOpenClose(benchmark::State& state) {
  InodeTable table;
  auto inode = table.AddLookup(AttrOf(2), 0);
  for (auto _ : state) {
    table.Opened(inode);
    benchmark::DoNotOptimize(table.Closed(inode));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InodeTableOpenClose);

// The RPC server's at-most-once cache of one session at its bound: every request is
// started, finished (its reply stored) and the oldest reply evicted.
void BM_ReplyCacheInsertEvict(benchmark::State& state) {
  const size_t capacity = static_cast<size_t>(state.range(0));
  SessionReplyCache cache(capacity);
  auto owner = std::make_shared<int>(0);
  std::vector<uint8_t> reply(static_cast<size_t>(state.range(1)), 0xab);
  SessionReplyCache::Waiters waiters;
  int32_t status = 0;
  std::vector<uint8_t> cached;
  uint64_t seq = 1;
  for (auto _ : state) {
    (void)cache.Begin(seq, {owner, seq}, &status, &cached);
    waiters.clear();
    cache.Finish(seq, 0, reply, &waiters);
    ++seq;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReplyCacheInsertEvict)->Args({256, 64})->Args({256, 1024});

// Retries answered from the cache (a reconnecting client re-sending its window).
void BM_ReplyCacheHit(benchmark::State& state) {
  SessionReplyCache cache(256);
  auto owner = std::make_shared<int>(0);
  std::vector<uint8_t> reply(64, 0xab);
  SessionReplyCache::Waiters waiters;
  int32_t status = 0;
  std::vector<uint8_t> cached;
  for (uint64_t seq = 1; seq <= 256; ++seq) {
    (void)cache.Begin(seq, {owner, seq}, &status, &cached);
    waiters.clear();
    cache.Finish(seq, 0, reply, &waiters);
  }
  uint64_t seq = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.Begin(seq, {owner, seq}, &status, &cached));
    seq = seq % 256 + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReplyCacheHit);

// The layout cache of a file at open (close-to-open drops it) and its first I/O: clear,
// insert a 16-extent reply, map a 1 MiB range.
void BM_LayoutCacheRefillAndMap(benchmark::State& state) {
  LayoutCache cache;
  std::vector<dpmfs::meta::Extent> extents(16);
  for (size_t i = 0; i < extents.size(); ++i) {
    extents[i].file_offset = i * 65536;
    extents[i].length = 65536;
    extents[i].server = static_cast<uint32_t>(i % 2);
    extents[i].pool_offset = 1 << 20 | i * 65536;
  }
  std::vector<dpmfs::fs::Segment> segments;
  for (auto _ : state) {
    cache.Clear();
    cache.InsertFetched(cache.epoch(), extents, 0, 16 * 65536);
    segments.clear();
    benchmark::DoNotOptimize(cache.Map(0, 16 * 65536, &segments));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LayoutCacheRefillAndMap);

// The soft transport's frame header, encoded and decoded (once per frame on the wire).
void BM_SoftFrameHeaderRoundTrip(benchmark::State& state) {
  namespace soft = dpmfs::transport::soft;
  soft::FrameHeader h;
  h.type = soft::FrameType::kWrite;
  h.flags = soft::kFlagSignaled;
  h.payload_len = h.length = 4096;
  h.rkey = 7;
  uint8_t buf[soft::kHeaderSize];
  for (auto _ : state) {
    ++h.seq;
    h.remote_addr += 4096;
    soft::EncodeHeader(h, buf);
    benchmark::ClobberMemory();
    auto d = soft::DecodeHeader(std::span<const uint8_t, soft::kHeaderSize>(buf));
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SoftFrameHeaderRoundTrip);

// The RPC message header, encoded and decoded (once per request and per reply).
void BM_RpcHeaderRoundTrip(benchmark::State& state) {
  namespace rpc = dpmfs::rpc;
  rpc::MessageHeader h;
  h.kind = rpc::MessageKind::kRequest;
  h.opcode = 3;
  h.session = 42;
  h.payload_len = 64;
  std::vector<uint8_t> msg(rpc::kHeaderSize + 64, 0);
  rpc::MessageHeader out;
  bool readable = false;
  for (auto _ : state) {
    ++h.seq;
    h.request_id = h.seq;
    rpc::EncodeHeader(h, msg.data());
    benchmark::ClobberMemory();
    auto d = rpc::DecodeMessage(msg, 65536, &readable, &out);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RpcHeaderRoundTrip);

}  // namespace

BENCHMARK_MAIN();
