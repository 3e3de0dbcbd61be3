#include "tools/bench/meta_bench.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "common/cluster_key.h"
#include "common/daemon_process.h"
#include "common/endpoint.h"
#include "common/pool.h"
#include "transport/transport.h"
#include "metadata/meta_client.h"
#include "metadata/meta_store.h"
#include "tools/bench/latency_histogram.h"
#include "tools/bench/measure_window.h"
#include "tools/bench/process_cpu.h"
#include "tools/bench/report.h"

namespace dpmfs::bench {
namespace {

using meta::InodeId;
using meta::MetaClient;
using std::chrono::milliseconds;

// Files each thread renames round-robin (their names change, their number does not).
constexpr uint32_t kRenameFiles = 64;
// The mkdir phase spreads a thread's directories over parents "m<k>" of this many each:
// one directory holds at most kMaxLinks - 2 subdirectories (EMLINK), and a pipelined
// thread makes more than that in a second. Made before the phase; a thread that filled
// them all (a million directories) stops early.
constexpr uint64_t kDirsPerParent = 50000;
constexpr uint32_t kMkdirParents = 20;
// A benchmark does not ride through server restarts: a lost server (or Ctrl-C, which
// kills a started one) ends the run within a second instead of after ~20 s of retries.
constexpr uint32_t kReconnectAttempts = 3;

enum class Op { kCreate, kStat, kUnlink, kMkdir, kRename };
constexpr Op kAllOps[] = {Op::kCreate, Op::kStat, Op::kUnlink, Op::kMkdir, Op::kRename};

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kCreate:
      return "create";
    case Op::kStat:
      return "stat";
    case Op::kUnlink:
      return "unlink";
    case Op::kMkdir:
      return "mkdir";
    case Op::kRename:
      return "rename";
  }
  return "?";
}

std::string UtcNow() {
  time_t t = time(nullptr);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string JsonNum(double v) { return std::isfinite(v) ? fmt::format("{:.3f}", v) : "null"; }

// The latencies of one phase: every thread records into its own counts (no sharing, no
// allocation per operation), merged after the phase. The buckets are LatencyHistogram's
// (log-linear, < 0.4% error), which has no merge of its own.
class LatencyCounts {
 public:
  LatencyCounts() : counts_(LatencyHistogram::kBuckets, 0) {}
  void Record(uint64_t ns) {
    ++counts_[LatencyHistogram::BucketOf(ns)];
    ++n_;
    sum_ += ns;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
  }
  void Merge(const LatencyCounts& o) {
    for (size_t b = 0; b < counts_.size(); ++b) counts_[b] += o.counts_[b];
    n_ += o.n_;
    sum_ += o.sum_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
  // Nearest rank, the bucket's midpoint clamped to [min, max] (as LatencyHistogram).
  double Percentile(double q) const {
    if (n_ == 0) return 0;
    uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * n_)));
    uint64_t seen = 0;
    for (size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen >= rank) {
        double lower = static_cast<double>(LatencyHistogram::BucketLower(b));
        uint64_t width = LatencyHistogram::BucketWidth(b);
        double mid = width == 1 ? lower : lower + width / 2.0;
        return std::clamp(mid, static_cast<double>(min_), static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }
  uint64_t count() const { return n_; }
  double mean() const { return n_ ? static_cast<double>(sum_) / n_ : 0; }
  uint64_t max() const { return max_; }

 private:
  std::vector<uint64_t> counts_;
  uint64_t n_ = 0, sum_ = 0, min_ = UINT64_MAX, max_ = 0;
};

struct Plan {
  std::vector<Op> ops;
  std::vector<uint32_t> threads;
  std::vector<bool> per_thread;  // client modes, in order
  std::vector<uint32_t> windows;
  transport::DeviceOptions device;
  uint64_t pool_size = 0;
};

Result<Plan> MakePlan(const MetaBenchOptions& o) {
  Plan p;
  for (const std::string& name : o.ops) {
    if (name == "none") continue;
    if (name == "all") {
      p.ops.assign(std::begin(kAllOps), std::end(kAllOps));
      continue;
    }
    auto it = std::find_if(std::begin(kAllOps), std::end(kAllOps),
                           [&](Op op) { return OpName(op) == name; });
    if (it == std::end(kAllOps)) {
      return Status::InvalidArgument("--ops: unknown op '" + name +
                                     "' (create, stat, unlink, mkdir, rename, all or none)");
    }
    if (std::find(p.ops.begin(), p.ops.end(), *it) == p.ops.end()) p.ops.push_back(*it);
  }
  if (p.ops.empty() && o.recovery_ops == 0) {
    return Status::InvalidArgument("--ops: nothing to measure");
  }
  if (o.recovery_ops > 0 && !o.meta.empty()) {
    return Status::InvalidArgument(
        "--recovery-ops kills and restarts the server: it needs one the benchmark starts "
        "(drop --meta)");
  }
  std::sort(p.ops.begin(), p.ops.end());  // the phases run in this order (stat needs files)
  for (uint32_t t : o.threads) {
    if (t == 0 || t > 256) return Status::InvalidArgument("--threads: 1..256 each");
    if (std::find(p.threads.begin(), p.threads.end(), t) == p.threads.end()) {
      p.threads.push_back(t);
    }
  }
  if (p.threads.empty()) return Status::InvalidArgument("--threads: nothing to measure");
  for (const std::string& c : o.clients) {
    if (c != "shared" && c != "per-thread") {
      return Status::InvalidArgument("--clients: 'shared' or 'per-thread', not '" + c + "'");
    }
    bool per_thread = c == "per-thread";
    if (std::find(p.per_thread.begin(), p.per_thread.end(), per_thread) == p.per_thread.end()) {
      p.per_thread.push_back(per_thread);
    }
  }
  if (p.per_thread.empty()) return Status::InvalidArgument("--clients: nothing to measure");
  for (uint32_t win : o.windows) {
    // Renames in flight must rename different files of a thread's rename set.
    if (win == 0 || win > kRenameFiles) {
      return Status::InvalidArgument(fmt::format("--window: 1..{} each", kRenameFiles));
    }
    if (std::find(p.windows.begin(), p.windows.end(), win) == p.windows.end()) {
      p.windows.push_back(win);
    }
  }
  if (p.windows.empty()) return Status::InvalidArgument("--window: nothing to measure");
  if (!(o.seconds > 0) || o.warmup_seconds < 0) {
    return Status::InvalidArgument("--seconds must be > 0 and --warmup-seconds >= 0");
  }
  DPMFS_ASSIGN_OR_RETURN(p.device.backend, transport::ParseBackend(o.transport));
  DPMFS_ASSIGN_OR_RETURN(p.pool_size, pool::ParseSize(o.pool_size));
  return p;
}

// ---- A dpmfs-meta of our own, on a scratch pool ----

class SpawnedServer {
 public:
  static Result<std::unique_ptr<SpawnedServer>> Start(const MetaBenchOptions& o, const Plan& plan) {
    std::string bin = o.meta_bin;
    if (bin.empty()) {
      // dpmfs-bench lives in BUILD/tools/bench, dpmfs-meta in BUILD/metadata.
      std::error_code ec;
      auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!ec) bin = (self.parent_path() / "../../metadata/dpmfs-meta").lexically_normal();
    }
    if (bin.empty() || ::access(bin.c_str(), X_OK) != 0) {
      return Status::NotFound("no dpmfs-meta at '" + bin +
                              "': pass --meta HOST:PORT (a running server) or --meta-bin PATH");
    }
    auto s = std::unique_ptr<SpawnedServer>(new SpawnedServer);
    std::string tmpl = o.scratch_dir + "/dpmfs-bench-meta-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return Status::FromErrno(errno, "creating a scratch directory in " + o.scratch_dir);
    }
    s->dir_ = tmpl;
    s->pool_ = s->dir_ + "/meta.pool";
    s->key_file_ = s->dir_ + "/cluster.key";
    DPMFS_RETURN_IF_ERROR(CreateKeyFile(s->key_file_, /*replace=*/false));

    pool::FormatOptions fo;
    fo.geometry.role = pool::Role::kMetadata;
    fo.geometry.cluster = pool::ClusterUuid::Generate();
    fo.geometry.block_size = 4096;
    fo.geometry.pool_size = plan.pool_size;
    fo.zero_data = false;
    auto made = pool::FormatPool(s->pool_, fo);
    if (!made.ok()) return made.status();
    {
      DPMFS_ASSIGN_OR_RETURN(auto mapped, pool::MappedPool::Open(s->pool_, {}));
      // Two data pools that do not exist: the metadata server never talks to data
      // servers, it only hands their addresses to clients (and allocates their blocks).
      meta::MetaFormatOptions mo;
      for (uint32_t i = 0; i < 2; ++i) mo.data_pools.push_back({i, 4096, 1ull << 30});
      DPMFS_RETURN_IF_ERROR(meta::MetaStore::Format(mapped, mo));
    }
    DaemonOptions d;
    d.name = "metadata server";
    d.log_prefix = "meta";
    d.log_dir = s->dir_;
    d.argv = {bin,           "--pool", s->pool_,      "--listen",    "127.0.0.1:0", "--data",
              "127.0.0.1:1", "--data", "127.0.0.1:2", "--transport", o.transport,
              "--key-file",  s->key_file_};
    if (o.workers != 0) {
      d.argv.push_back("--workers");
      d.argv.push_back(std::to_string(o.workers));
    }
    if (o.msync) d.argv.push_back("--msync");
    DPMFS_ASSIGN_OR_RETURN(s->proc_, DaemonProcess::Start(d, 1));
    s->command_ = s->proc_->command();
    s->options_ = d;
    return s;
  }

  // kill -9, then starts the server again on the same pool and address (so that it is
  // the same server to anyone who knew it) and waits up to `timeout` for its READY line.
  // `killed_at` gets when the old process was gone (reaped).
  Status CrashAndRestart(std::chrono::milliseconds timeout, Clock::time_point* killed_at) {
    const Endpoint ep = proc_->endpoint();
    proc_->SendKill();
    DPMFS_RETURN_IF_ERROR(proc_->Wait(std::chrono::seconds(60)).status());
    proc_.reset();
    *killed_at = Clock::now();
    DaemonOptions d = options_;
    for (size_t i = 0; i + 1 < d.argv.size(); ++i) {
      if (d.argv[i] == "--listen") d.argv[i + 1] = ep.ToString();
    }
    d.start_timeout = timeout;
    DPMFS_ASSIGN_OR_RETURN(proc_, DaemonProcess::Start(d, ++generation_));
    return Status::OK();
  }
  std::string StderrTail(size_t max_bytes) const { return proc_->StderrTail(max_bytes); }

  ~SpawnedServer() {
    proc_.reset();  // SIGKILL and reap: the pool is deleted next, nothing to keep
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  Endpoint endpoint() const { return proc_->endpoint(); }
  pid_t pid() const { return proc_->pid(); }
  const std::string& command() const { return command_; }
  const std::string& key_file() const { return key_file_; }

 private:
  SpawnedServer() = default;
  std::string dir_, pool_, command_, key_file_;
  DaemonOptions options_;
  uint64_t generation_ = 1;
  std::unique_ptr<DaemonProcess> proc_;
};

// ---- Workers and phases ----

// One client thread's state over the phases of one (threads, clients) configuration.
struct Worker {
  MetaClient* client = nullptr;
  InodeId dir = 0;
  std::vector<InodeId> files;     // created files "f<i>", in creation order
  std::vector<uint64_t> handles;  // their open handles (released after the create phase)
  size_t unlinked = 0;            // files[0, unlinked) are gone
  uint64_t dirs = 0;              // "m<i / kDirsPerParent>/d<i>" made by the mkdir phase
  std::vector<InodeId> mkdir_parents;  // m<k>, made before the mkdir phase
  uint64_t renames = 0;           // renames done over "r<k>.<generation>"
  uint64_t next = 0;              // the next name the current phase's Start hands out
  std::mt19937_64 rng;
  // Results of the current phase.
  LatencyCounts lat;
  uint64_t ops = 0;
  Clock::time_point last;
  int err = 0;
};

struct Ids {
  uint32_t uid = ::geteuid();
  uint32_t gid = ::getegid();
};

std::string FileName(uint64_t i) { return fmt::format("f{}", i); }
std::string DirName(uint64_t i) { return fmt::format("d{}", i); }
// File k of the rename set after `gen` renames.
std::string RenameName(uint64_t k, uint64_t gen) { return fmt::format("r{}.{}", k, gen); }
uint64_t RenameGeneration(uint64_t k, uint64_t renames) {
  return renames / kRenameFiles + (k < renames % kRenameFiles ? 1 : 0);
}

// Every op in two halves, so that a thread can keep --window of them in flight: Start
// picks the op's target and sends the request (nullopt: nothing left to do, e.g. unlink
// ran out of files), Finish collects the reply and does the op's bookkeeping. A thread
// finishes its calls in the order it started them, so names handed out in order by
// Start (f<i>, d<i>) are accounted in order by Finish. `w.next` is the next name Start
// hands out; RunPhase sets it from the op's done count (OpFns::first) at the start.
using Started = std::optional<MetaClient::Started>;

struct OpFns {
  uint64_t (*first)(const Worker& w);
  Started (*start)(Worker& w, const Ids& ids);
  int (*finish)(Worker& w, MetaClient::Started& call);
};

Started StartCreate(Worker& w, const Ids& ids) {
  meta::CreateRequest req;
  req.parent = w.dir;
  req.name = FileName(w.next++);
  req.mode = S_IFREG | 0644;
  req.uid = ids.uid;
  req.gid = ids.gid;
  req.flags = O_CREAT | O_EXCL | O_WRONLY;
  return w.client->Start(meta::Opcode::kCreate, req);
}

int FinishCreate(Worker& w, MetaClient::Started& call) {
  meta::CreateReply reply;
  int err = w.client->Finish(call, &reply);
  if (err != 0) return err;
  w.files.push_back(reply.attr.ino);
  w.handles.push_back(reply.handle);
  return 0;
}

Started StartStat(Worker& w, const Ids&) {
  if (w.files.size() == w.unlinked) return std::nullopt;
  InodeId ino = w.files[w.unlinked + w.rng() % (w.files.size() - w.unlinked)];
  return w.client->Start(meta::Opcode::kGetattr, meta::GetattrRequest{ino});
}

int FinishStat(Worker& w, MetaClient::Started& call) {
  meta::AttrReply reply;
  return w.client->Finish(call, &reply);
}

Started StartUnlink(Worker& w, const Ids&) {
  if (w.next == w.files.size()) return std::nullopt;
  return w.client->Start(meta::Opcode::kUnlink, meta::UnlinkRequest{w.dir, FileName(w.next++)});
}

int FinishUnlink(Worker& w, MetaClient::Started& call) {
  meta::DirsReply reply;
  int err = w.client->Finish(call, &reply);
  if (err == 0) ++w.unlinked;
  return err;
}

Started StartMkdir(Worker& w, const Ids& ids) {
  const uint64_t i = w.next;
  if (i / kDirsPerParent >= w.mkdir_parents.size()) return std::nullopt;
  ++w.next;
  return w.client->Start(meta::Opcode::kMkdir,
                         meta::MkdirRequest{w.mkdir_parents[i / kDirsPerParent], DirName(i), 0755,
                                            ids.uid, ids.gid});
}

int FinishMkdir(Worker& w, MetaClient::Started& call) {
  meta::EntryReply reply;
  int err = w.client->Finish(call, &reply);
  if (err == 0) ++w.dirs;
  return err;
}

// The calls in flight rename different files as long as the window is at most
// kRenameFiles (MakePlan checks).
Started StartRename(Worker& w, const Ids&) {
  uint64_t k = w.next % kRenameFiles;
  uint64_t gen = w.next / kRenameFiles;
  ++w.next;
  return w.client->Start(meta::Opcode::kRename, meta::RenameRequest{w.dir, RenameName(k, gen),
                                                                    w.dir, RenameName(k, gen + 1),
                                                                    0});
}

int FinishRename(Worker& w, MetaClient::Started& call) {
  meta::DirsReply reply;
  int err = w.client->Finish(call, &reply);
  if (err == 0) ++w.renames;
  return err;
}

OpFns FnsOf(Op op) {
  switch (op) {
    case Op::kCreate:
      return {[](const Worker& w) -> uint64_t { return w.files.size(); }, StartCreate,
              FinishCreate};
    case Op::kStat:
      return {[](const Worker&) -> uint64_t { return 0; }, StartStat, FinishStat};
    case Op::kUnlink:
      return {[](const Worker& w) -> uint64_t { return w.unlinked; }, StartUnlink, FinishUnlink};
    case Op::kMkdir:
      return {[](const Worker& w) -> uint64_t { return w.dirs; }, StartMkdir, FinishMkdir};
    case Op::kRename:
      return {[](const Worker& w) -> uint64_t { return w.renames; }, StartRename, FinishRename};
  }
  return {};
}

// One client thread's calls, `window` of them in flight: `start(now)` sends the next
// (nullopt: no more), `finish(call, started_at)` collects the oldest and returns its
// errno. Returns the first error (the calls still in flight are then abandoned), or 0
// once everything started was finished.
template <class StartFn, class FinishFn>
int RunPipelined(uint32_t window, StartFn start, FinishFn finish) {
  std::deque<std::pair<MetaClient::Started, Clock::time_point>> flight;  // oldest first
  bool starting = true;
  for (;;) {
    while (starting && flight.size() < window) {
      const Clock::time_point t0 = Clock::now();
      Started call = start(t0);
      if (!call) {
        starting = false;
        break;
      }
      flight.emplace_back(std::move(*call), t0);
    }
    if (flight.empty()) return 0;
    auto& [call, t0] = flight.front();
    if (int err = finish(call, t0); err != 0) return err;
    flight.pop_front();
  }
}

// The CPU clocks sampled around every measured window: the server's (when its pid is
// known: started by the benchmark, or --meta-pid) and this process's.
struct CpuClocks {
  std::optional<ProcessCpu> server;
  ProcessCpu self;
};

struct CpuSample {
  std::optional<uint64_t> server_ns, self_ns;
  Clock::time_point at;
};

CpuSample SampleCpu(const CpuClocks& cpu) {
  CpuSample s;
  s.at = Clock::now();
  if (cpu.server) {
    auto ns = cpu.server->ReadNanos();
    if (ns.ok()) {
      s.server_ns = *ns;
    } else {
      spdlog::warn("server CPU time: {}", ns.status().ToString());
    }
  }
  if (auto ns = cpu.self.ReadNanos(); ns.ok()) s.self_ns = *ns;
  return s;
}

// Runs `op` on every worker's own thread, all starting together, each thread keeping
// `window` calls in flight: warm-up (not recorded), then `seconds` measured. An
// operation counts when it started inside the window, and its latency runs from its
// start to its reply's collection (with a window, collected in the order started); the
// window ends when the last thread's last operation does.
//
// CPU per operation: the calling thread sleeps until warm_end and samples the CPU clocks
// of the server and of this process, and samples them again once every worker has
// joined. That window matches the measured one up to small edges, which are not
// corrected: it starts when the sleep returns (a wake-up latency after warm_end, usually
// well under a millisecond; operations in flight at warm_end are charged but not
// counted), and it ends after the join, so the last operations' completion (counted) and
// the threads' exit (not an operation) are inside it. At >= 1 s per window that is < 1%.
Result<Measurement> RunPhase(std::vector<Worker>& workers, const MetaBenchOptions& o,
                             uint32_t window, const CpuClocks& cpu, Op op, const Ids& ids) {
  const std::string_view what = OpName(op);
  const OpFns fns = FnsOf(op);
  const Clock::time_point start = Clock::now() + milliseconds(50);  // every thread is up
  const Clock::time_point warm_end = start + ToDuration(o.warmup_seconds);
  const Clock::time_point end = warm_end + ToDuration(o.seconds);
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (Worker& w : workers) {
    threads.emplace_back([&w, &fns, &ids, window, start, warm_end, end] {
      w.lat = LatencyCounts();
      w.ops = 0;
      w.err = 0;
      w.last = warm_end;
      w.next = fns.first(w);
      std::this_thread::sleep_until(start);
      w.err = RunPipelined(
          window,
          [&](Clock::time_point t0) -> Started {
            if (t0 >= end || InterruptSignal() != 0) return std::nullopt;
            return fns.start(w, ids);
          },
          [&](MetaClient::Started& call, Clock::time_point t0) {
            int err = fns.finish(w, call);
            Clock::time_point t1 = Clock::now();
            if (err == 0 && t0 >= warm_end) {
              w.lat.Record(Nanos(t1 - t0));
              ++w.ops;
              w.last = t1;
            }
            return err;
          });
    });
  }
  std::this_thread::sleep_until(warm_end);
  const CpuSample cpu_start = SampleCpu(cpu);
  for (std::thread& t : threads) t.join();
  const CpuSample cpu_end = SampleCpu(cpu);

  LatencyCounts all;
  uint64_t ops = 0;
  Clock::time_point last = warm_end;
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].err != 0) {
      return Status::IOError(fmt::format("{} failed in client thread {} of {}: {}", what, i,
                                         workers.size(), std::strerror(workers[i].err)));
    }
    all.Merge(workers[i].lat);
    ops += workers[i].ops;
    last = std::max(last, workers[i].last);
  }
  Measurement m;
  m.ops = ops;
  m.seconds = std::chrono::duration<double>(last - warm_end).count();
  m.p50_us = all.Percentile(0.50) / 1000.0;
  m.p99_us = all.Percentile(0.99) / 1000.0;
  m.mean_us = all.mean() / 1000.0;
  m.max_us = static_cast<double>(all.max()) / 1000.0;
  m.ops_per_sec = m.seconds > 0 ? static_cast<double>(ops) / m.seconds : 0;
  m.cpu_window_seconds = std::chrono::duration<double>(cpu_end.at - cpu_start.at).count();
  auto per_op_us = [ops](const std::optional<uint64_t>& a, const std::optional<uint64_t>& b) {
    if (!a || !b || ops == 0) return std::numeric_limits<double>::quiet_NaN();
    return static_cast<double>(*b - *a) / 1000.0 / static_cast<double>(ops);
  };
  m.server_cpu_us_per_op = per_op_us(cpu_start.server_ns, cpu_end.server_ns);
  m.client_cpu_us_per_op = per_op_us(cpu_start.self_ns, cpu_end.self_ns);
  return m;
}

// Untimed work on every worker's thread (setup and cleanup); the first errno wins.
template <class Fn>
Status ForEachWorker(std::vector<Worker>& workers, std::string_view what, Fn fn) {
  std::vector<int> errs(workers.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < workers.size(); ++i) {
    threads.emplace_back([&, i] { errs[i] = fn(workers[i]); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < errs.size(); ++i) {
    if (errs[i] != 0) {
      return Status::IOError(
          fmt::format("{} failed in client thread {}: {}", what, i, std::strerror(errs[i])));
    }
  }
  return Status::OK();
}

struct Cell {
  Op op;
  uint32_t threads = 0;
  bool per_thread = false;
  uint32_t window = 1;
  std::vector<Measurement> runs;
  Measurement median;
};

Cell* FindCell(std::vector<Cell>& cells, Op op, uint32_t threads, bool per_thread,
               uint32_t window) {
  for (Cell& c : cells) {
    if (c.op == op && c.threads == threads && c.per_thread == per_thread && c.window == window) {
      return &c;
    }
  }
  return nullptr;
}

std::string_view ModeName(bool per_thread) { return per_thread ? "per-thread" : "shared"; }

struct Context {
  const MetaBenchOptions& opts;
  const Plan& plan;
  transport::Device& device;
  Endpoint server;
  MetaClient& setup;  // makes and removes the directories the workers work in
  InodeId root = 0;   // the benchmark's directory
  Ids ids;
  const CpuClocks& cpu;
};

Result<std::unique_ptr<MetaClient>> ConnectClient(Context& ctx, uint32_t depth,
                                                  const std::string& name) {
  meta::MetaClientOptions mo;
  mo.client_name = name;
  // A client needs 2 x depth x 256 KiB of message buffers: it asks for what its threads
  // keep in flight, up to the 32 the server grants (more calls queue in the client).
  mo.depth = std::clamp<uint32_t>(depth, 2, 32);
  mo.reconnect_attempts = kReconnectAttempts;
  return MetaClient::Connect(ctx.device, ctx.server, mo);
}

// One configuration (threads x client mode x window) of one repetition: every selected op.
Status RunConfiguration(Context& ctx, uint32_t repetition, uint32_t nthreads, bool per_thread,
                        uint32_t window, std::vector<Cell>& cells) {
  const MetaBenchOptions& o = ctx.opts;
  std::vector<std::unique_ptr<MetaClient>> clients;
  std::string base = fmt::format("dpmfs-bench meta {}", ::getpid());
  if (per_thread) {
    for (uint32_t i = 0; i < nthreads; ++i) {
      DPMFS_ASSIGN_OR_RETURN(auto c,
                             ConnectClient(ctx, window, fmt::format("{} t{}", base, i)));
      clients.push_back(std::move(c));
    }
  } else {
    DPMFS_ASSIGN_OR_RETURN(auto c, ConnectClient(ctx, nthreads * window, base));
    clients.push_back(std::move(c));
  }

  std::vector<Worker> workers(nthreads);
  for (uint32_t i = 0; i < nthreads; ++i) {
    Worker& w = workers[i];
    w.client = clients[per_thread ? i : 0].get();
    w.rng.seed(o.seed * 1000003 + repetition * 1009 + nthreads * 31 + i);
    w.files.reserve(1 << 16);
    w.handles.reserve(1 << 16);
    std::string name =
        fmt::format("run{}.t{}.{}.w{}.{}", repetition, nthreads, ModeName(per_thread), window, i);
    meta::InodeAttr attr;
    int err =
        ctx.setup.Mkdir(meta::MkdirRequest{ctx.root, name, 0755, ctx.ids.uid, ctx.ids.gid}, &attr).ToErrno();
    if (err != 0) {
      return Status::IOError("mkdir of the worker directory " + name + ": " + std::strerror(err));
    }
    w.dir = attr.ino;
  }

  const Plan& plan = ctx.plan;
  auto selected = [&](Op op) {
    return std::find(plan.ops.begin(), plan.ops.end(), op) != plan.ops.end();
  };
  auto record = [&](Op op, const Measurement& m) {
    Cell* c = FindCell(cells, op, nthreads, per_thread, window);
    c->runs.push_back(m);
    spdlog::info(
        "{} x{} {} window {}: {:.0f} ops/s, p50 {:.1f} us, CPU/op server {:.1f} us, client "
        "{:.1f} us",
        OpName(op), nthreads, ModeName(per_thread), window, m.ops_per_sec, m.p50_us, m.server_cpu_us_per_op,
        m.client_cpu_us_per_op);
  };
  auto interrupted = [] {
    return InterruptSignal() != 0 ? Status::Aborted("interrupted") : Status::OK();
  };

  // create (also when only stat or unlink is measured: they need the files).
  if (selected(Op::kCreate) || selected(Op::kStat) || selected(Op::kUnlink)) {
    DPMFS_ASSIGN_OR_RETURN(Measurement m,
                           RunPhase(workers, o, window, ctx.cpu, Op::kCreate, ctx.ids));
    if (selected(Op::kCreate)) record(Op::kCreate, m);
    // Close them, as a create(2)+close(2) would: a file unlinked while open takes
    // another path through the server, which is not what unlink should measure.
    DPMFS_RETURN_IF_ERROR(ForEachWorker(workers, "releasing created files", [](Worker& w) {
      for (size_t i = 0; i < w.handles.size(); ++i) {
        if (int err = w.client->Release(w.files[i], w.handles[i]).ToErrno(); err != 0) return err;
      }
      w.handles.clear();
      return 0;
    }));
    DPMFS_RETURN_IF_ERROR(interrupted());
  }
  if (selected(Op::kStat)) {
    DPMFS_ASSIGN_OR_RETURN(Measurement m, RunPhase(workers, o, window, ctx.cpu, Op::kStat, ctx.ids));
    record(Op::kStat, m);
    DPMFS_RETURN_IF_ERROR(interrupted());
  }
  if (selected(Op::kUnlink)) {
    DPMFS_ASSIGN_OR_RETURN(Measurement m, RunPhase(workers, o, window, ctx.cpu, Op::kUnlink, ctx.ids));
    record(Op::kUnlink, m);
    DPMFS_RETURN_IF_ERROR(interrupted());
  }
  if (selected(Op::kMkdir)) {
    const Ids ids = ctx.ids;
    DPMFS_RETURN_IF_ERROR(ForEachWorker(workers, "making the mkdir parents", [&ids](Worker& w) {
      for (uint32_t k = 0; k < kMkdirParents; ++k) {
        meta::InodeAttr attr;
        meta::MkdirRequest req{w.dir, fmt::format("m{}", k), 0755, ids.uid, ids.gid};
        if (int err = w.client->Mkdir(req, &attr).ToErrno(); err != 0) return err;
        w.mkdir_parents.push_back(attr.ino);
      }
      return 0;
    }));
    DPMFS_ASSIGN_OR_RETURN(Measurement m,
                           RunPhase(workers, o, window, ctx.cpu, Op::kMkdir, ctx.ids));
    record(Op::kMkdir, m);
    DPMFS_RETURN_IF_ERROR(interrupted());
  }
  if (selected(Op::kRename)) {
    const Ids ids = ctx.ids;
    DPMFS_RETURN_IF_ERROR(ForEachWorker(workers, "creating the rename set", [&ids](Worker& w) {
      for (uint32_t k = 0; k < kRenameFiles; ++k) {
        meta::MknodRequest req{w.dir, RenameName(k, 0), S_IFREG | 0644, 0, ids.uid, ids.gid};
        meta::InodeAttr attr;
        if (int err = w.client->Mknod(req, &attr).ToErrno(); err != 0) return err;
      }
      return 0;
    }));
    DPMFS_ASSIGN_OR_RETURN(Measurement m, RunPhase(workers, o, window, ctx.cpu, Op::kRename, ctx.ids));
    record(Op::kRename, m);
  }

  // Leave nothing behind. (After an error the function returns early instead and the
  // benchmark's directory stays; the error's context names it.)
  DPMFS_RETURN_IF_ERROR(ForEachWorker(workers, "cleaning up", [&](Worker& w) {
    for (; w.unlinked < w.files.size(); ++w.unlinked) {
      if (int err = w.client->Unlink(w.dir, FileName(w.unlinked)).ToErrno(); err != 0) return err;
    }
    for (uint64_t i = 0; i < w.dirs; ++i) {
      InodeId parent = w.mkdir_parents[i / kDirsPerParent];
      if (int err = w.client->Rmdir(parent, DirName(i)).ToErrno(); err != 0) return err;
    }
    for (size_t k = 0; k < w.mkdir_parents.size(); ++k) {
      if (int err = w.client->Rmdir(w.dir, fmt::format("m{}", k)).ToErrno(); err != 0) return err;
    }
    if (selected(Op::kRename)) {
      for (uint64_t k = 0; k < kRenameFiles; ++k) {
        std::string name = RenameName(k, RenameGeneration(k, w.renames));
        if (int err = w.client->Unlink(w.dir, name).ToErrno(); err != 0) return err;
      }
    }
    return 0;
  }));
  for (uint32_t i = 0; i < nthreads; ++i) {
    std::string name =
        fmt::format("run{}.t{}.{}.w{}.{}", repetition, nthreads, ModeName(per_thread), window, i);
    if (int err = ctx.setup.Rmdir(ctx.root, name).ToErrno(); err != 0) {
      return Status::IOError("rmdir of the worker directory " + name + ": " + std::strerror(err));
    }
  }
  return Status::OK();
}

// ---- Recovery time after N logged operations ----

// Who logs the operations: enough threads and calls in flight to log a million in
// seconds rather than minutes (see the window columns for what they sustain).
constexpr uint32_t kRecoveryThreads = 16;
constexpr uint32_t kRecoveryWindow = 32;
// Names checked per thread after the restart, besides each thread's last one.
constexpr uint32_t kRecoveryChecksPerThread = 100;

struct RecoveryResult {
  uint64_t ops = 0;
  double log_seconds = 0;      // logging them
  double kill_seconds = 0;     // kill -9 until the old process was reaped
  double restart_seconds = 0;  // starting the new one until it printed READY
  std::string server_report;      // what the server logged about its recovery
  std::string server_checkpoint;  // ... and about the checkpoint it took before serving
  uint64_t names_checked = 0;
};

// The server's own account of its last recovery, from its log: the "recovered POOL: ..."
// line after the pool name into `report`, and the "checkpoint: ..." line logged before
// it (a recovery that replayed records checkpoints before it serves) into `checkpoint`;
// "" for a line the log does not hold.
void RecoveryReport(const std::string& log, std::string* report, std::string* checkpoint) {
  auto line_at = [&](size_t at) {
    size_t end = log.find('\n', at);
    return log.substr(at, end == std::string::npos ? std::string::npos : end - at);
  };
  report->clear();
  checkpoint->clear();
  size_t at = log.rfind("recovered ");
  if (at == std::string::npos) return;
  std::string line = line_at(at);
  size_t colon = line.find(": ");
  *report = colon == std::string::npos ? line : line.substr(colon + 2);
  size_t ck = log.rfind("checkpoint: ", at);
  if (ck != std::string::npos) *checkpoint = line_at(ck);
}

// Logs `n` mutations (mknod of empty files, each thread in its own directory under
// `root`), kill -9s the server, restarts it on the same pool, and times the restart until
// it serves again. Then checks that every thread's last file and a sample of the others
// are there: recovery must have kept every acknowledged operation.
Result<RecoveryResult> MeasureRecovery(const MetaBenchOptions& o, transport::Device& device,
                                       SpawnedServer& server, InodeId root, const Ids& ids) {
  RecoveryResult r;
  r.ops = o.recovery_ops;
  std::vector<std::unique_ptr<MetaClient>> clients;
  std::vector<InodeId> dirs;
  std::vector<uint64_t> share(kRecoveryThreads, o.recovery_ops / kRecoveryThreads);
  for (uint32_t i = 0; i < o.recovery_ops % kRecoveryThreads; ++i) ++share[i];
  for (uint32_t i = 0; i < kRecoveryThreads; ++i) {
    meta::MetaClientOptions mo;
    mo.client_name = fmt::format("dpmfs-bench meta {} recovery t{}", ::getpid(), i);
    mo.depth = kRecoveryWindow;
    mo.reconnect_attempts = kReconnectAttempts;
    DPMFS_ASSIGN_OR_RETURN(auto c, MetaClient::Connect(device, server.endpoint(), mo));
    meta::InodeAttr attr;
    std::string name = fmt::format("recovery.t{}", i);
    if (int err = c->Mkdir(meta::MkdirRequest{root, name, 0755, ids.uid, ids.gid}, &attr).ToErrno();
        err != 0) {
      return Status::IOError("mkdir " + name + ": " + std::strerror(err));
    }
    dirs.push_back(attr.ino);
    clients.push_back(std::move(c));
  }

  spdlog::info("recovery: logging {} operations ({} threads x {} in flight)", o.recovery_ops,
               kRecoveryThreads, kRecoveryWindow);
  std::atomic<uint64_t> done{0};
  std::atomic<uint32_t> running{kRecoveryThreads};
  std::vector<int> errs(kRecoveryThreads, 0);
  std::vector<std::thread> threads;
  const Clock::time_point t0 = Clock::now();
  for (uint32_t i = 0; i < kRecoveryThreads; ++i) {
    threads.emplace_back([&, i] {
      MetaClient& c = *clients[i];
      uint64_t started = 0;
      errs[i] = RunPipelined(
          kRecoveryWindow,
          [&](Clock::time_point) -> Started {
            if (started == share[i] || InterruptSignal() != 0) return std::nullopt;
            meta::MknodRequest req{dirs[i], FileName(started++), S_IFREG | 0644, 0, ids.uid,
                                   ids.gid};
            return c.Start(meta::Opcode::kMknod, req);
          },
          [&](MetaClient::Started& call, Clock::time_point) {
            meta::EntryReply reply;
            int err = c.Finish(call, &reply);
            if (err == 0) done.fetch_add(1, std::memory_order_relaxed);
            return err;
          });
      running.fetch_sub(1);
    });
  }
  Clock::time_point next_report = Clock::now() + std::chrono::seconds(2);
  while (running.load() > 0) {
    std::this_thread::sleep_for(milliseconds(20));
    if (Clock::now() >= next_report) {
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      spdlog::info("recovery: {} of {} operations logged ({:.0f}/s)", done.load(), o.recovery_ops,
                   done.load() / secs);
      next_report += std::chrono::seconds(2);
    }
  }
  for (std::thread& t : threads) t.join();
  r.log_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (InterruptSignal() != 0) return Status::Aborted("interrupted");
  for (uint32_t i = 0; i < kRecoveryThreads; ++i) {
    if (errs[i] != 0) {
      return Status::IOError(fmt::format(
          "logging operations failed in thread {} after {} of {}: {}{}", i, done.load(),
          o.recovery_ops, std::strerror(errs[i]),
          errs[i] == ENOSPC ? " (a larger --pool-size holds more: about 1 GiB per million files)"
                            : ""));
    }
  }
  clients.clear();  // they unregister: the crash below loses no client's session

  spdlog::info("recovery: {} operations logged in {:.1f} s; kill -9 and restart", o.recovery_ops,
               r.log_seconds);
  const Clock::time_point k0 = Clock::now();
  Clock::time_point k1;
  DPMFS_RETURN_IF_ERROR(server.CrashAndRestart(std::chrono::minutes(10), &k1));
  r.kill_seconds = std::chrono::duration<double>(k1 - k0).count();
  r.restart_seconds = std::chrono::duration<double>(Clock::now() - k1).count();
  RecoveryReport(server.StderrTail(16384), &r.server_report, &r.server_checkpoint);

  meta::MetaClientOptions mo;
  mo.client_name = fmt::format("dpmfs-bench meta {} recovery check", ::getpid());
  DPMFS_ASSIGN_OR_RETURN(auto check, MetaClient::Connect(device, server.endpoint(), mo));
  std::mt19937_64 rng(o.seed);
  for (uint32_t i = 0; i < kRecoveryThreads; ++i) {
    if (share[i] == 0) continue;
    std::vector<uint64_t> names = {share[i] - 1};
    for (uint32_t k = 0; k < kRecoveryChecksPerThread; ++k) names.push_back(rng() % share[i]);
    for (uint64_t k : names) {
      meta::InodeAttr attr;
      if (int err = check->Lookup(dirs[i], FileName(k), &attr).ToErrno(); err != 0) {
        return Status::Corruption(fmt::format(
            "after the restart, recovery.t{}/{} (acknowledged before the crash): {}", i,
            FileName(k), std::strerror(err)));
      }
      ++r.names_checked;
    }
    meta::InodeAttr attr;
    if (check->Lookup(dirs[i], FileName(share[i]), &attr).ToErrno() != ENOENT) {
      return Status::Corruption(fmt::format("after the restart, recovery.t{}/{} exists, but "
                                            "it was never created",
                                            i, FileName(share[i])));
    }
  }
  return r;
}

// ---- Output ----

// "-" for a value that was not measured (NaN).
std::string FormatOr(double v, int precision) {
  return std::isnan(v) ? std::string("-") : fmt::format("{:.{}f}", v, precision);
}

// What one server core would sustain if the clients ran elsewhere: 1e6 / server us/op.
double ServerOpsPerCore(double server_cpu_us_per_op) {
  return server_cpu_us_per_op > 0 ? 1e6 / server_cpu_us_per_op
                                  : std::numeric_limits<double>::quiet_NaN();
}

void PrintTable(const MetaBenchOptions& o, const std::string& server_desc,
                const std::string& cpu_desc, const MachineInfo& mi, const std::vector<Cell>& cells,
                std::FILE* out) {
  fmt::print(out, "dpmfs-bench meta: server {} ({}), {:.2f} s/op, repeat {}{}\n", server_desc,
             o.transport, o.seconds, o.repeat, o.repeat > 1 ? " (medians)" : "");
  fmt::print(out, "machine: {} CPUs, {} {} {}\n\n", mi.nproc, mi.sysname, mi.kernel_release,
             mi.machine);
  fmt::print(out, "{:<8}{:>8}  {:<11}{:>4}{:>11}{:>10}{:>10}{:>8}{:>11}{:>11}{:>10}\n", "op",
             "threads", "clients", "win", "ops/s", "p50 us", "p99 us", "x1", "srv us/op",
             "cli us/op", "srv/core");
  std::optional<Op> last;
  for (const Cell& c : cells) {
    if (c.runs.empty()) continue;
    if (last && *last != c.op) fmt::print(out, "\n");
    last = c.op;
    // Scaling: this cell's ops/s over the same op's single-thread ops/s (same client mode
    // and window).
    std::string scale = "-";
    for (const Cell& one : cells) {
      if (one.op == c.op && one.threads == 1 && one.per_thread == c.per_thread &&
          one.window == c.window && !one.runs.empty() && one.median.ops_per_sec > 0) {
        scale = fmt::format("{:.2f}", c.median.ops_per_sec / one.median.ops_per_sec);
      }
    }
    fmt::print(out, "{:<8}{:>8}  {:<11}{:>4}{:>11.0f}{:>10.1f}{:>10.1f}{:>8}{:>11}{:>11}{:>10}\n",
               OpName(c.op), c.threads, ModeName(c.per_thread), c.window, c.median.ops_per_sec,
               c.median.p50_us, c.median.p99_us, scale, FormatOr(c.median.server_cpu_us_per_op, 1),
               FormatOr(c.median.client_cpu_us_per_op, 1),
               FormatOr(ServerOpsPerCore(c.median.server_cpu_us_per_op), 0));
  }
  fmt::print(out,
             "\nwin: calls each client thread keeps in flight (--window); with more than 1 the\n"
             "latency runs from a call's start to its collection, in the order started.\n"
             "srv us/op, cli us/op: CPU time (user+system, all threads) of the server / of this\n"
             "benchmark process in the measured window, per operation ({}).\n"
             "srv/core = 1e6 / srv us/op: an EXTRAPOLATION, the ops/s one core would sustain\n"
             "for the server if the clients ran elsewhere; not a measurement.\n",
             cpu_desc);
  std::fflush(out);
}

void PrintRecovery(const RecoveryResult& r, std::FILE* out) {
  fmt::print(out,
             "\nrecovery: {} mutations logged (mknod; {} threads x {} in flight) in {:.1f} s "
             "({:.0f}/s)\n"
             "  restart until READY: {:.3f} s (after {:.3f} s for the killed process to go)\n"
             "  the server's account: {}\n"
             "  its checkpoint before serving: {}\n"
             "  {} names looked up after the restart, all there\n",
             r.ops, kRecoveryThreads, kRecoveryWindow, r.log_seconds,
             r.log_seconds > 0 ? r.ops / r.log_seconds : 0.0, r.restart_seconds, r.kill_seconds,
             r.server_report.empty() ? "(no 'recovered' line in its log)" : r.server_report,
             r.server_checkpoint.empty() ? "(none in its log)" : r.server_checkpoint,
             r.names_checked);
  std::fflush(out);
}

std::string MeasurementJson(const Measurement& m) {
  return fmt::format(
      "{{\"ops\": {}, \"seconds\": {}, \"ops_per_sec\": {}, \"p50_us\": {}, \"p99_us\": {}, "
      "\"mean_us\": {}, \"max_us\": {}, \"server_cpu_us_per_op\": {}, "
      "\"client_cpu_us_per_op\": {}, \"cpu_window_seconds\": {}}}",
      m.ops, JsonNum(m.seconds), JsonNum(m.ops_per_sec), JsonNum(m.p50_us), JsonNum(m.p99_us),
      JsonNum(m.mean_us), JsonNum(m.max_us), JsonNum(m.server_cpu_us_per_op),
      JsonNum(m.client_cpu_us_per_op), JsonNum(m.cpu_window_seconds));
}

Status WriteJson(const MetaBenchOptions& o, const Plan& plan, const std::string& started_at,
                 double wall_seconds, const std::string& server_desc, bool spawned,
                 const CpuClocks& cpu, const MachineInfo& mi, const std::vector<Cell>& cells,
                 const std::optional<RecoveryResult>& recovery) {
  std::string j = "{\n";
  j += "  \"benchmark\": \"dpmfs-bench meta\",\n";
  j += fmt::format("  \"version\": {},\n", JsonString(DPMFS_VERSION));
  j += fmt::format("  \"started_at\": {},\n", JsonString(started_at));
  j += fmt::format("  \"wall_seconds\": {},\n", JsonNum(wall_seconds));
  auto list = [](const auto& v, auto fmt_one) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + fmt_one(v[i]);
    return s + "]";
  };
  j += "  \"config\": {";
  j += fmt::format("\"server\": {}, \"spawned\": {}, \"transport\": {}, ", JsonString(server_desc),
                   spawned ? "true" : "false", JsonString(o.transport));
  j += fmt::format("\"ops\": {}, ", list(plan.ops, [](Op op) { return JsonString(OpName(op)); }));
  j += fmt::format("\"threads\": {}, ",
                   list(plan.threads, [](uint32_t t) { return std::to_string(t); }));
  j += fmt::format("\"clients\": {}, ",
                   list(plan.per_thread, [](bool p) { return JsonString(ModeName(p)); }));
  j += fmt::format("\"windows\": {}, ",
                   list(plan.windows, [](uint32_t w) { return std::to_string(w); }));
  j += fmt::format("\"seconds\": {}, \"warmup_seconds\": {}, \"repeat\": {}, \"seed\": {}",
                   JsonNum(o.seconds), JsonNum(o.warmup_seconds), o.repeat, o.seed);
  // Where the CPU columns come from: the server's pid (null: not measured) and the clock.
  j += fmt::format(", \"server_pid\": {}, \"server_cpu_source\": {}, \"client_cpu_source\": {}",
                   cpu.server ? std::to_string(cpu.server->pid()) : "null",
                   cpu.server ? JsonString(cpu.server->source()) : "null",
                   JsonString(cpu.self.source()));
  if (spawned) {
    j += fmt::format(", \"pool_size\": {}, \"workers\": {}, \"msync\": {}", JsonString(o.pool_size),
                     o.workers, o.msync ? "true" : "false");
  }
  j += "},\n";
  j += fmt::format(
      "  \"machine\": {{\"nproc\": {}, \"sysname\": {}, \"kernel\": {}, \"kernel_version\": {}, "
      "\"machine\": {}, \"hostname\": {}, \"cpu_model\": {}}},\n",
      mi.nproc, JsonString(mi.sysname), JsonString(mi.kernel_release),
      JsonString(mi.kernel_version), JsonString(mi.machine), JsonString(mi.hostname),
      JsonString(mi.cpu_model));
  j += "  \"cells\": [";
  bool first = true;
  for (const Cell& c : cells) {
    if (c.runs.empty()) continue;
    j += first ? "\n" : ",\n";
    first = false;
    j += fmt::format(
"    {{\"op\": {}, \"threads\": {}, \"clients\": {}, \"window\": {}, \"ops_per_sec\": {}, "
        "\"p50_us\": {}, \"p99_us\": {}, \"server_cpu_us_per_op\": {}, \"client_cpu_us_per_op\": {}, "
        "\"server_ops_per_core_extrapolated\": {},\n     \"median\": {},\n     \"runs\": {}}}",
        JsonString(OpName(c.op)), c.threads, JsonString(ModeName(c.per_thread)), c.window,
        JsonNum(c.median.ops_per_sec), JsonNum(c.median.p50_us), JsonNum(c.median.p99_us),
        JsonNum(c.median.server_cpu_us_per_op), JsonNum(c.median.client_cpu_us_per_op),
        JsonNum(ServerOpsPerCore(c.median.server_cpu_us_per_op)), MeasurementJson(c.median),
        list(c.runs, MeasurementJson));
  }
  j += "\n  ],\n";
  if (recovery) {
    j += fmt::format(
        "  \"recovery\": {{\"ops\": {}, \"threads\": {}, \"window\": {}, \"log_seconds\": {}, "
        "\"kill_seconds\": {}, \"restart_seconds\": {}, \"server_report\": {}, "
        "\"server_checkpoint\": {}, \"names_checked\": {}}}\n",
        recovery->ops, kRecoveryThreads, kRecoveryWindow, JsonNum(recovery->log_seconds),
        JsonNum(recovery->kill_seconds), JsonNum(recovery->restart_seconds),
        JsonString(recovery->server_report), JsonString(recovery->server_checkpoint),
        recovery->names_checked);
  } else {
    j += "  \"recovery\": null\n";
  }
  j += "}\n";
  std::ofstream out(o.json_path);
  out << j;
  out.close();
  if (!out) return Status::IOError("could not write the JSON report " + o.json_path);
  return Status::OK();
}

}  // namespace

CLI::App* AddMetaCommand(CLI::App& app, MetaBenchOptions* opts) {
  CLI::App* cmd = app.add_subcommand(
      "meta",
      "Throughput and latency of metadata operations (create, stat, unlink, mkdir, rename) "
      "through MetaClient with 1..N client threads sharing one client or having one each, "
      "against a running dpmfs-meta (--meta) or one started on a scratch pool.");
  cmd->fallthrough();  // --log-level may come after the subcommand
  cmd->add_option("--meta", opts->meta,
                  "A running metadata server, HOST:PORT (default: start one on a scratch pool)");
  cmd->add_option("--key-file", opts->key_file, std::string("With --meta: ") + kKeyFileHelp);
  cmd->add_option("--meta-pid", opts->meta_pid,
                  "With --meta: the server's pid on this host, to report its CPU time per "
                  "operation (without it those columns show '-')");
  cmd->add_option("--meta-bin", opts->meta_bin,
                  "The dpmfs-meta to start when --meta is not given (default: this build's)");
  cmd->add_option("--scratch-dir", opts->scratch_dir,
                  "Where the started server's pool and logs go (deleted at the end)")
      ->capture_default_str();
  cmd->add_option("--pool-size", opts->pool_size, "Size of the started server's metadata pool")
      ->capture_default_str();
  cmd->add_option("--workers", opts->workers, "The started server's --workers (0: its default)")
      ->capture_default_str();
  cmd->add_flag("--msync", opts->msync, "Start the server with --msync");
  cmd->add_option("--transport", opts->transport, "RDMA transport: soft or verbs")
      ->capture_default_str();
  cmd->add_option("--ops", opts->ops,
                  "Comma-separated: create, stat, unlink, mkdir, rename, all; none (with "
                  "--recovery-ops: only the recovery measurement)")
      ->delimiter(',')
      ->capture_default_str();
  auto* threads =
      cmd->add_option("--threads", opts->threads, "Comma-separated client thread counts")
          ->delimiter(',')
          ->capture_default_str();
  cmd->add_option("--window", opts->windows,
                  "Comma-separated: calls each client thread keeps in flight (1: one call at a "
                  "time, as the FUSE client's threads do; more loads the server the way many "
                  "clients would)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--clients", opts->clients,
                  "Comma-separated client modes: shared (one MetaClient for all threads), "
                  "per-thread (one each)")
      ->delimiter(',')
      ->capture_default_str();
  auto* seconds = cmd->add_option("--seconds", opts->seconds, "Measured seconds per op and cell")
                      ->capture_default_str();
  cmd->add_option("--warmup-seconds", opts->warmup_seconds,
                  "Unrecorded warm-up before each measurement")
      ->capture_default_str();
  cmd->add_option("--repeat", opts->repeat, "Run everything K times and report medians")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Seed of the stat targets")->capture_default_str();
  cmd->add_option("--json", opts->json_path, "Where to write the JSON report")
      ->capture_default_str();
  cmd->add_option("--recovery-ops", opts->recovery_ops,
                  "After the matrix, log N mutations (mknod), kill -9 the server the benchmark "
                  "started, restart it and report how long it took to serve again (about 1 GiB "
                  "of --pool-size per million)")
      ->capture_default_str();
  cmd->add_flag("--quick", opts->quick,
                "Smoke-test size: threads 1,4 and 0.3 s per op (unless --threads or --seconds "
                "are given)");
  cmd->callback([opts, threads, seconds] {
    if (!opts->quick) return;
    if (threads->count() == 0) opts->threads = {1, 4};
    if (seconds->count() == 0) opts->seconds = 0.3;
  });
  return cmd;
}

Status RunMetaBench(const MetaBenchOptions& opts) {
  DPMFS_ASSIGN_OR_RETURN(Plan plan, MakePlan(opts));
  const Clock::time_point run_start = Clock::now();
  const std::string started_at = UtcNow();

  std::unique_ptr<SpawnedServer> spawned;
  Endpoint server;
  std::string server_desc;
  if (opts.meta_pid != 0 && opts.meta.empty()) {
    return Status::InvalidArgument(
        "--meta-pid goes with --meta (the pid of a server the benchmark starts is known)");
  }
  if (opts.meta_pid < 0) {
    return Status::InvalidArgument(fmt::format("--meta-pid {}: not a pid", opts.meta_pid));
  }
  DPMFS_ASSIGN_OR_RETURN(ProcessCpu self_cpu, ProcessCpu::Open(0));
  CpuClocks cpu{std::nullopt, self_cpu};
  if (!opts.meta.empty()) {
    DPMFS_ASSIGN_OR_RETURN(server, Endpoint::Parse(opts.meta));
    server_desc = server.ToString();
    if (opts.meta_pid != 0) {
      auto server_cpu = ProcessCpu::Open(opts.meta_pid);
      if (!server_cpu.ok()) {
        return server_cpu.status().WithContext(
            fmt::format("--meta-pid {} (the pid of the dpmfs-meta at {}, on this host)",
                        opts.meta_pid, opts.meta));
      }
      cpu.server = *server_cpu;
      // Only a hint: the pid could belong to a wrapper or a renamed binary.
      std::ifstream comm_file(fmt::format("/proc/{}/comm", opts.meta_pid));
      std::string comm;
      if (std::getline(comm_file, comm) && comm != "dpmfs-meta") {
        spdlog::warn(
            "--meta-pid {} is '{}', not dpmfs-meta: its CPU time is reported as the "
            "server's",
            opts.meta_pid, comm);
      }
    }
  } else {
    InstallSignalCleanup();
    DPMFS_ASSIGN_OR_RETURN(spawned, SpawnedServer::Start(opts, plan));
    server = spawned->endpoint();
    server_desc = server.ToString() + " started by the benchmark";
    spdlog::info("started {}", spawned->command());
    DPMFS_ASSIGN_OR_RETURN(cpu.server, ProcessCpu::Open(spawned->pid()));
  }
  std::string cpu_desc =
      cpu.server ? fmt::format("server pid {}, {}; client {}", cpu.server->pid(),
                               cpu.server->source(), cpu.self.source())
                 : fmt::format("server pid unknown: pass --meta-pid; client {}", cpu.self.source());

  DPMFS_ASSIGN_OR_RETURN(plan.device.cluster_key,
                         LoadClusterKey(spawned ? spawned->key_file() : opts.key_file, ""));
  DPMFS_ASSIGN_OR_RETURN(auto device, transport::OpenDevice(plan.device));
  Ids ids;
  DPMFS_ASSIGN_OR_RETURN(auto setup, [&]() -> Result<std::unique_ptr<MetaClient>> {
    meta::MetaClientOptions mo;
    mo.client_name = fmt::format("dpmfs-bench meta {} setup", ::getpid());
    mo.depth = 2;
    mo.reconnect_attempts = kReconnectAttempts;
    auto c = MetaClient::Connect(*device, server, mo);
    if (!c.ok()) return c.status().WithContext("dpmfs-bench meta");
    return c;
  }());

  // The benchmark's own directory under the root, so that a shared file system is not
  // disturbed and leftovers of an interrupted run are easy to find.
  std::string root_name = fmt::format("dpmfs-bench-meta.{}", ::getpid());
  meta::InodeAttr root_attr;
  int err = setup->Mkdir(meta::MkdirRequest{meta::kRootInode, root_name, 0755, ids.uid, ids.gid},
                         &root_attr).ToErrno();
  if (err != 0) {
    return Status::IOError("mkdir /" + root_name + " on " + server_desc + ": " +
                           std::strerror(err));
  }

  std::vector<Cell> cells;
  for (Op op : plan.ops) {
    for (uint32_t t : plan.threads) {
      for (bool per_thread : plan.per_thread) {
        for (uint32_t win : plan.windows) cells.push_back(Cell{op, t, per_thread, win, {}, {}});
      }
    }
  }
  Context ctx{opts, plan, *device, server, *setup, root_attr.ino, ids, cpu};
  for (uint32_t r = 0; r < opts.repeat && !plan.ops.empty(); ++r) {
    for (uint32_t t : plan.threads) {
      for (bool per_thread : plan.per_thread) {
        for (uint32_t win : plan.windows) {
          Status st = RunConfiguration(ctx, r, t, per_thread, win, cells);
          if (InterruptSignal() != 0) {
            return Status::Aborted(fmt::format("interrupted by signal {}", InterruptSignal()));
          }
          if (!st.ok()) {
            return st.WithContext(
                fmt::format("{} threads, {} clients, window {} (files may be left in /{})", t,
                            ModeName(per_thread), win, root_name));
          }
        }
      }
    }
  }
  std::optional<RecoveryResult> recovery;
  if (opts.recovery_ops > 0) {
    setup.reset();  // its session would only see the crash
    auto rec = MeasureRecovery(opts, *device, *spawned, root_attr.ino, ids);
    if (!rec.ok()) return rec.status().WithContext("recovery measurement");
    recovery = std::move(rec).value();
    // The files stay: the server's pool is deleted with it.
  } else if (int e = setup->Rmdir(meta::kRootInode, root_name).ToErrno(); e != 0) {
    spdlog::warn("rmdir /{}: {}", root_name, std::strerror(e));
  }

  for (Cell& c : cells) {
    CellResult tmp;
    tmp.runs = c.runs;
    ComputeMedian(&tmp);
    c.median = tmp.median;
  }
  MachineInfo mi = CollectMachineInfo();
  if (!plan.ops.empty()) PrintTable(opts, server_desc, cpu_desc, mi, cells, stdout);
  if (recovery) PrintRecovery(*recovery, stdout);
  double wall = std::chrono::duration<double>(Clock::now() - run_start).count();
  DPMFS_RETURN_IF_ERROR(
      WriteJson(opts, plan, started_at, wall, server_desc, spawned != nullptr, cpu, mi, cells,
                recovery));
  std::printf("\nJSON: %s\n", opts.json_path.c_str());
  return Status::OK();
}

}  // namespace dpmfs::bench
