#include "tools/bench/persist_bench.h"

#include "tools/bench/measure_window.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/cluster_key.h"
#include "common/endpoint.h"
#include "common/pool.h"
#include "datapath/data_client.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"
#include "tools/bench/latency_histogram.h"
#include "tools/bench/report.h"
#include "tools/bench/tcp_baseline.h"

namespace dpmfs::bench {
namespace {

using datapath::DataClient;
using datapath::PersistMethod;
using datapath::SlotResult;

constexpr uint32_t kPrefaultChunk = 64 * 1024;
constexpr uint32_t kPrefaultDepth = 16;

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Random block-aligned offsets such that [offset, offset + size) stays in the window.
// Seeded per (seed, size, qd), not per method, so every method writes the same sequence.
class OffsetGenerator {
 public:
  OffsetGenerator(uint64_t seed, uint32_t size, uint32_t qd, uint64_t window, uint32_t block)
      : block_(block), positions_((window - size) / block + 1) {
    state_ = seed;
    uint64_t mix = (uint64_t{size} << 32) | qd;
    state_ ^= SplitMix64(&mix);
  }
  uint64_t Next() { return (SplitMix64(&state_) % positions_) * block_; }

 private:
  uint64_t state_ = 0;
  uint64_t block_;
  uint64_t positions_;
};

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Everything the flags say, validated.
struct Plan {
  Endpoint server;
  transport::DeviceOptions device;
  std::vector<PersistMethod> methods;
  std::vector<uint32_t> sizes;
  std::vector<uint32_t> qds;
  CellTiming timing;
  uint32_t repeat = 1;
  uint64_t seed = 1;
  uint64_t window = 0;  // as asked; clamped to the pool once it is known
  uint32_t tcp_depth = 16;
  uint32_t max_size = 0;
};

Result<Plan> MakePlan(const PersistBenchOptions& o) {
  Plan p;
  DPMFS_ASSIGN_OR_RETURN(p.server, Endpoint::Parse(o.server));
  DPMFS_ASSIGN_OR_RETURN(p.device.backend, transport::ParseBackend(o.transport));
  p.device.soft_drain_delay_us = o.drain_delay_us;
  if (!o.no_auth) {
    DPMFS_ASSIGN_OR_RETURN(p.device.cluster_key, LoadClusterKey(o.key_file, ""));
  }
  for (const std::string& name : o.methods) {
    if (name == "all") {
      for (PersistMethod m : datapath::AllPersistMethods()) p.methods.push_back(m);
      continue;
    }
    auto m = datapath::ParsePersistMethod(name);
    if (!m.ok()) return m.status().WithContext("--methods");
    p.methods.push_back(*m);
  }
  if (p.methods.empty()) return Status::InvalidArgument("--methods names no method");
  for (const std::string& text : o.sizes) {
    auto s = pool::ParseSize(text);
    if (!s.ok()) return s.status().WithContext("--sizes");
    if (*s == 0 || *s > datapath::kMaxIoSize) {
      return Status::InvalidArgument("--sizes: " + text + " is outside 1.." +
                                     std::to_string(datapath::kMaxIoSize) + " bytes");
    }
    p.sizes.push_back(static_cast<uint32_t>(*s));
  }
  for (uint32_t qd : o.qds) {
    if (qd == 0 || qd > datapath::kMaxQueueDepth) {
      return Status::InvalidArgument("--qd " + std::to_string(qd) + " is outside 1.." +
                                     std::to_string(datapath::kMaxQueueDepth));
    }
    p.qds.push_back(qd);
  }
  auto dedupe = [](auto& v) {
    for (size_t i = 0; i < v.size(); ++i) {
      v.erase(std::remove(v.begin() + static_cast<long>(i) + 1, v.end(), v[i]), v.end());
    }
  };
  dedupe(p.methods);
  dedupe(p.sizes);
  dedupe(p.qds);
  if (p.sizes.empty() || p.qds.empty()) {
    return Status::InvalidArgument("--sizes and --qd need at least one value each");
  }
  if (o.seconds <= 0 || o.warmup_seconds < 0) {
    return Status::InvalidArgument("--seconds must be positive and --warmup-seconds not negative");
  }
  p.timing = CellTiming{o.warmup_seconds, o.seconds};
  p.repeat = std::max<uint32_t>(o.repeat, 1);
  p.seed = o.seed;
  DPMFS_ASSIGN_OR_RETURN(p.window, pool::ParseSize(o.window));
  p.tcp_depth = o.tcp_depth;
  if (p.tcp_depth == 0) return Status::InvalidArgument("--tcp-depth must be at least 1");
  p.max_size = *std::max_element(p.sizes.begin(), p.sizes.end());
  return p;
}

// Keeps client.queue_depth() writes of `size` bytes in flight (one at QD1) for the
// warm-up and then the measured window. Each write copies its payload into the slot
// buffer (what DataClient::Write does) and is timed from that copy to its Reap.
// Nothing here allocates per operation: `done` and `submitted` are sized by the caller.
Result<Measurement> RunPersistCell(DataClient& client, uint32_t size, OffsetGenerator gen,
                                   const CellTiming& timing, const uint8_t* payload,
                                   LatencyHistogram* hist, std::vector<SlotResult>* done,
                                   std::vector<Clock::time_point>* submitted) {
  const uint32_t qd = client.queue_depth();
  auto submit = [&](uint32_t slot) -> Status {
    (*submitted)[slot] = Clock::now();
    std::memcpy(client.slot_buffer(slot), payload, size);
    return client.Submit(slot, gen.Next(), size);
  };
  MeasureWindow window(timing, hist);
  for (uint32_t s = 0; s < qd; ++s) DPMFS_RETURN_IF_ERROR(submit(s));
  while (true) {
    done->clear();
    DPMFS_RETURN_IF_ERROR(client.Reap(done));
    Clock::time_point now = Clock::now();
    for (const SlotResult& r : *done) {
      if (!r.status.ok()) return r.status;
      window.Record(now - (*submitted)[r.slot]);
    }
    if (!window.Advance(now)) break;
    for (const SlotResult& r : *done) DPMFS_RETURN_IF_ERROR(submit(r.slot));
  }
  // Leave the client idle for the next cell; these completions are not counted.
  while (client.in_flight() > 0) {
    done->clear();
    DPMFS_RETURN_IF_ERROR(client.Reap(done));
  }
  return window.Finish(size);
}

// Writes the whole window once, so that no measured cell pays the data server's first
// touch of a pool page (page faults on a fresh mapping).
Status Prefault(transport::Device& device, const Endpoint& server, uint64_t window,
                const std::shared_ptr<datapath::SessionTokenSource>& token) {
  datapath::DataClientOptions o;
  o.token = token;
  o.method = PersistMethod::kRead;
  o.queue_depth = kPrefaultDepth;
  o.max_io_size = kPrefaultChunk;
  DPMFS_ASSIGN_OR_RETURN(std::unique_ptr<DataClient> c, DataClient::Connect(device, server, o));
  std::vector<SlotResult> done;
  done.reserve(2 * kPrefaultDepth);
  std::vector<uint32_t> free_slots;
  for (uint32_t s = 0; s < kPrefaultDepth; ++s) free_slots.push_back(s);
  uint64_t next = 0;
  while (next < window || c->in_flight() > 0) {
    while (next < window && !free_slots.empty()) {
      uint32_t slot = free_slots.back();
      free_slots.pop_back();
      auto len = static_cast<uint32_t>(std::min<uint64_t>(kPrefaultChunk, window - next));
      std::memset(c->slot_buffer(slot), 0, len);
      DPMFS_RETURN_IF_ERROR(c->Submit(slot, next, len));
      next += len;
    }
    done.clear();
    DPMFS_RETURN_IF_ERROR(c->Reap(&done));
    for (const SlotResult& r : done) {
      DPMFS_RETURN_IF_ERROR(r.status);
      free_slots.push_back(r.slot);
    }
  }
  return Status::OK();
}

}  // namespace

CLI::App* AddPersistCommand(CLI::App& app, PersistBenchOptions* opts) {
  CLI::App* cmd = app.add_subcommand(
      "persist",
      "Latency and throughput of each persist method (method x size x queue depth) against a "
      "running dpmfs-data, next to a raw-TCP loopback baseline measured in the same run. "
      "OVERWRITES the first --window bytes of the pool's data area: use a scratch pool.");
  cmd->fallthrough();  // --log-level may come after the subcommand
  cmd->add_option("--server", opts->server, "Data server to measure, HOST:PORT")->required();
  cmd->add_option("--transport", opts->transport, "RDMA transport: soft or verbs")
      ->capture_default_str();
  cmd->add_option("--key-file", opts->key_file, kKeyFileHelp);
  cmd->add_flag("--no-auth", opts->no_auth,
                "Connect without proving the cluster key, to a dpmfs-data started with "
                "--no-auth: only to measure what authentication costs");
  cmd->add_option("--drain-delay-us", opts->drain_delay_us,
                  "soft transport: drain delay of the client's own device (the server's is "
                  "set on dpmfs-data; harmless here)")
      ->capture_default_str();
  cmd->add_option("--methods", opts->methods,
                  "Comma-separated persist methods, or all: " +
                      std::string(datapath::PersistMethodHelp()))
      ->delimiter(',')
      ->capture_default_str();
  auto* sizes = cmd->add_option("--sizes", opts->sizes,
                                "Comma-separated write sizes in bytes (K/M suffixes allowed)")
                    ->delimiter(',')
                    ->capture_default_str();
  cmd->add_option("--qd", opts->qds, "Comma-separated queue depths (writes in flight)")
      ->delimiter(',')
      ->capture_default_str();
  auto* seconds = cmd->add_option("--seconds", opts->seconds, "Measured seconds per cell")
                      ->capture_default_str();
  cmd->add_option("--warmup-seconds", opts->warmup_seconds,
                  "Unrecorded warm-up before each cell's measurement")
      ->capture_default_str();
  cmd->add_option("--repeat", opts->repeat,
                  "Run the whole matrix K times and report medians (noisy machines)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Seed of the random write offsets")->capture_default_str();
  cmd->add_option("--window", opts->window,
                  "Writes go to random block-aligned offsets in the first SIZE bytes of the "
                  "pool's data area (clamped to the pool)")
      ->capture_default_str();
  cmd->add_option("--tcp-depth", opts->tcp_depth,
                  "Messages outstanding in the TCP stream baseline")
      ->capture_default_str();
  cmd->add_option("--json", opts->json_path, "Where to write the JSON report")
      ->capture_default_str();
  cmd->add_flag("--quick", opts->quick,
                "Smoke-test size: only 4096-byte writes and 0.3 s cells (unless --sizes or "
                "--seconds are given)");
  cmd->add_flag("!--no-prefault", opts->prefault,
                "Skip writing the window once before measuring");
  cmd->callback([opts, sizes, seconds] {
    if (!opts->quick) return;
    if (sizes->count() == 0) opts->sizes = {"4096"};
    if (seconds->count() == 0) opts->seconds = 0.3;
  });
  return cmd;
}

Status RunPersistBench(const PersistBenchOptions& opts) {
  DPMFS_ASSIGN_OR_RETURN(Plan plan, MakePlan(opts));
  Clock::time_point run_start = Clock::now();
  Report report;
  report.started_at = UtcNow();
  report.machine = CollectMachineInfo();

  auto device = transport::OpenDevice(plan.device);
  if (!device.ok()) return device.status().WithContext("opening the client's transport");
  DPMFS_ASSIGN_OR_RETURN(std::unique_ptr<TcpBaselineServer> tcp, TcpBaselineServer::Start());
  // A key holder vouches for itself: the data server checks the token as it would the
  // metadata server's (so connect times include issuing and checking it).
  std::shared_ptr<datapath::SessionTokenSource> token;
  if (plan.device.cluster_key != nullptr) {
    token = datapath::SessionTokenSource::SelfIssued(plan.device.cluster_key, "dpmfs-bench",
                                                     datapath::kSelfIssuedTokenLifetime);
  }

  // Learn the pool's geometry (and fail early if the server is not there).
  datapath::ServerInfo info;
  {
    datapath::DataClientOptions o;
    o.token = token;
    o.method = PersistMethod::kRead;
    o.queue_depth = 1;
    o.max_io_size = 4096;
    auto probe = DataClient::Connect(**device, plan.server, o);
    if (!probe.ok()) return probe.status();
    info = (*probe)->server();
    // Connection set-up, the handshake included (authenticated unless --no-auth): the
    // median of 21 connects, each torn down before the next.
    std::vector<double> connect_us;
    for (int i = 0; i < 21; ++i) {
      Clock::time_point t0 = Clock::now();
      auto c = DataClient::Connect(**device, plan.server, o);
      if (!c.ok()) return c.status().WithContext("measuring connect time");
      connect_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::nth_element(connect_us.begin(), connect_us.begin() + 10, connect_us.end());
    spdlog::info("connect ({}): median {:.0f} us over 21 connections",
                 plan.device.cluster_key ? "authenticated" : "not authenticated", connect_us[10]);
  }
  if (info.block_size == 0) return Status::Corruption("data server reported block size 0");
  uint64_t window = std::min(plan.window, info.pool.length);
  window -= window % info.block_size;
  if (window < plan.max_size) {
    return Status::InvalidArgument("the write window (" + std::to_string(window) +
                                   " bytes) is smaller than the largest size (" +
                                   std::to_string(plan.max_size) +
                                   "); raise --window or use a larger pool");
  }

  RunConfig& cfg = report.config;
  cfg.server = plan.server.ToString();
  cfg.transport = std::string(transport::BackendName(plan.device.backend));
  cfg.drain_delay_us = plan.device.soft_drain_delay_us;
  for (PersistMethod m : plan.methods) cfg.methods.emplace_back(datapath::PersistMethodName(m));
  cfg.sizes = plan.sizes;
  cfg.qds = plan.qds;
  cfg.seconds = plan.timing.seconds;
  cfg.warmup_seconds = plan.timing.warmup_seconds;
  cfg.repeat = plan.repeat;
  cfg.seed = plan.seed;
  cfg.window_bytes = window;
  cfg.tcp_depth = plan.tcp_depth;
  cfg.block_size = info.block_size;
  cfg.pool_data_bytes = info.pool.length;
  cfg.pool_is_pmem = info.is_pmem;

  // Cells in table order: method, size, queue depth.
  for (PersistMethod m : plan.methods) {
    for (uint32_t size : plan.sizes) {
      for (uint32_t qd : plan.qds) {
        report.cells.push_back(CellResult{std::string(datapath::PersistMethodName(m)), size, qd});
      }
    }
  }
  auto cell_index = [&](size_t method_i, size_t size_i, size_t qd_i) {
    return (method_i * plan.sizes.size() + size_i) * plan.qds.size() + qd_i;
  };
  for (uint32_t size : plan.sizes) {
    report.baselines.push_back(CellResult{"tcp-pingpong", size, 1});
    report.baselines.push_back(CellResult{"tcp-stream", size, plan.tcp_depth});
  }
  double per_cell = plan.timing.warmup_seconds + plan.timing.seconds;
  spdlog::info("measuring {} cells + {} baselines, x{} repeat(s): about {:.0f} s",
               report.cells.size(), report.baselines.size(), plan.repeat,
               per_cell * static_cast<double>(report.cells.size() + report.baselines.size()) *
                   plan.repeat);

  if (opts.prefault) {
    Status st = Prefault(**device, plan.server, window, token);
    if (!st.ok()) return st.WithContext("pre-writing the window");
  }

  // Per-run buffers, sized once for the largest cell.
  auto hist = std::make_unique<LatencyHistogram>();
  uint32_t max_qd = *std::max_element(plan.qds.begin(), plan.qds.end());
  std::vector<SlotResult> done;
  done.reserve(2 * size_t{max_qd});
  std::vector<Clock::time_point> submitted(max_qd);
  std::vector<uint8_t> payload(plan.max_size);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 131 + 7);

  bool flush_noted = false;
  for (uint32_t rep = 0; rep < plan.repeat; ++rep) {
    for (size_t si = 0; si < plan.sizes.size(); ++si) {
      uint32_t size = plan.sizes[si];
      DPMFS_ASSIGN_OR_RETURN(Measurement ping,
                             RunTcpPingPong(tcp->endpoint(), size, plan.timing, hist.get()));
      report.baselines[2 * si].runs.push_back(ping);
      DPMFS_ASSIGN_OR_RETURN(Measurement stream, RunTcpStream(tcp->endpoint(), size,
                                                              plan.tcp_depth, plan.timing,
                                                              hist.get()));
      report.baselines[2 * si + 1].runs.push_back(stream);
      spdlog::info("tcp {} B: ping-pong p50 {:.1f} us; stream x{} {:.0f} ops/s", size,
                   ping.p50_us, plan.tcp_depth, stream.ops_per_sec);
    }
    for (size_t mi = 0; mi < plan.methods.size(); ++mi) {
      PersistMethod method = plan.methods[mi];
      std::string_view name = datapath::PersistMethodName(method);
      if (method == PersistMethod::kFlush && !(*device)->SupportsFlush()) {
        if (!flush_noted) {
          report.notes.push_back(
              "flush skipped: this " +
              std::string(transport::BackendName(plan.device.backend)) +
              " device/library has no RDMA FLUSH (ibv_wr_flush needs rdma-core 45+ and a "
              "device that implements it)");
          spdlog::warn("{}", report.notes.back());
          flush_noted = true;
        }
        continue;
      }
      for (size_t qi = 0; qi < plan.qds.size(); ++qi) {
        uint32_t qd = plan.qds[qi];
        datapath::DataClientOptions o;
        o.token = token;
        o.method = method;
        o.queue_depth = qd;
        o.max_io_size = plan.max_size;
        auto client = DataClient::Connect(**device, plan.server, o);
        if (!client.ok()) {
          StatusCode code = client.status().code();
          if (method == PersistMethod::kFlush &&
              (code == StatusCode::kNotSupported || code == StatusCode::kPermissionDenied)) {
            if (!flush_noted) {
              report.notes.push_back("flush skipped: " + client.status().ToString());
              spdlog::warn("{}", report.notes.back());
              flush_noted = true;
            }
            break;
          }
          return client.status().WithContext(std::string(name) + " qd " + std::to_string(qd));
        }
        for (size_t si = 0; si < plan.sizes.size(); ++si) {
          uint32_t size = plan.sizes[si];
          OffsetGenerator gen(plan.seed, size, qd, window, info.block_size);
          auto m = RunPersistCell(**client, size, gen, plan.timing, payload.data(), hist.get(),
                                  &done, &submitted);
          if (!m.ok()) {
            return m.status().WithContext(fmt::format("{} {} B qd {}", name, size, qd));
          }
          report.cells[cell_index(mi, si, qi)].runs.push_back(*m);
          spdlog::info("{} {} B qd {}: p50 {:.1f} us, p99 {:.1f} us, {:.0f} ops/s", name, size,
                       qd, m->p50_us, m->p99_us, m->ops_per_sec);
        }
      }
    }
  }
  tcp->Stop();

  for (CellResult& c : report.cells) ComputeMedian(&c);
  for (CellResult& c : report.baselines) ComputeMedian(&c);
  report.ratios = ComputeTargetRatios(report);
  report.wall_seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  PrintTable(report, stdout);
  Status st = WriteJson(report, opts.json_path);
  if (!st.ok()) return st;
  spdlog::info("wrote {}", opts.json_path);
  return Status::OK();
}

}  // namespace dpmfs::bench
