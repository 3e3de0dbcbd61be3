// mkfs.dpmfs: formats dpmfs pools and shows their headers.
//
//   mkfs.dpmfs data PATH --size 1G [--block-size 4096] [--index N] [--cluster UUID]
//                        [--force] [--no-zero]
//   mkfs.dpmfs meta PATH --size 256M --data-pool DATA_POOL [--data-pool ...]
//                        [--stripe-unit 1M] [--force]
//   mkfs.dpmfs cluster CLUSTER_FILE [--force]
//   mkfs.dpmfs show PATH
//
// Each subcommand is a small struct that registers its flags and runs once parsing
// succeeded. `meta` takes the cluster UUID and the data pools' geometry from the data
// pools' headers, so the metadata pool can only describe pools that exist; `cluster`
// formats every pool a cluster file names (common/cluster_file.h), data pools first.
//
// Exit codes: 0 success, 1 runtime failure ("mkfs.dpmfs: error: ..."), 2 usage error
// (bad flags, a bad cluster file, or a geometry FormatPool rejects as invalid).
// Thread-safety: single-threaded program.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/cli.h"
#include "common/cluster_file.h"
#include "mkfs/check_command.h"
#include "mkfs/key_command.h"
#include "common/pool.h"
#include "common/pool_lock.h"
#include "common/status.h"
#include "metadata/meta_protocol.h"
#include "metadata/meta_store.h"
#include "mkfs/cluster_selection.h"

namespace dpmfs::mkfs {
namespace {

static_assert(kMaxClusterReplicas == meta::kMaxReplicas);
static_assert(kMaxClusterDataServers == meta::kMaxDataServers,
              "a cluster file must not name more data pools than a superblock describes");

constexpr char kProgram[] = "mkfs.dpmfs";
// The metadata pool's allocation unit: it only holds the journal and checkpoints.
constexpr uint32_t kMetaBlockSize = 4096;
constexpr uint64_t kProgressThreshold = 256ull << 20;

// Prints the error; returns 2 when it was the user's input that was invalid (asked for by
// the caller: an invalid geometry is a usage error, a file that is not a pool is not).
int Fail(const Status& st, bool invalid_argument_is_usage = false) {
  std::cerr << kProgram << ": error: " << st.message() << "\n";
  return invalid_argument_is_usage && st.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

// A CLI11 check that accepts what pool::ParseSize accepts, so a bad size is a usage error
// reported by CLI11 with the flag's name.
CLI::Validator SizeValidator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        Result<uint64_t> r = pool::ParseSize(text);
        return r.ok() ? std::string() : r.status().message();
      },
      "SIZE", "size");
}

CLI::Validator UuidValidator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        Result<pool::ClusterUuid> r = pool::ClusterUuid::Parse(text);
        return r.ok() ? std::string() : r.status().message();
      },
      "UUID", "uuid");
}

std::string FormatTime(uint64_t unix_ns) {
  std::time_t secs = static_cast<std::time_t>(unix_ns / 1000000000ull);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

void PrintInfo(const std::string& path, const pool::PoolInfo& info) {
  auto sized = [](uint64_t v) { return std::to_string(v) + " (" + pool::FormatSize(v) + ")"; };
  std::cout << "path:           " << path << "\n"
            << "role:           " << pool::RoleName(info.role) << "\n"
            << "cluster:        " << info.cluster.ToString() << "\n"
            << "index:          " << info.index << "\n"
            << "format version: " << info.version << "\n"
            << "block size:     " << info.block_size << "\n"
            << "pool size:      " << sized(info.pool_size) << "\n"
            << "data offset:    " << info.data_offset << "\n"
            << "data size:      " << sized(info.data_size) << ", "
            << info.data_size / info.block_size << " blocks\n"
            << "created:        " << FormatTime(info.created_unix_ns) << "\n";
}

void PrintSuperblock(const meta::Superblock& sb) {
  auto sized = [](uint64_t v) { return std::to_string(v) + " (" + pool::FormatSize(v) + ")"; };
  std::cout << "metadata superblock:\n"
            << "  version:      " << sb.version << "\n"
            << "  stripe unit:  " << sized(sb.stripe_unit) << "\n"
            << "  replicas:     " << sb.replicas << "\n"
            << "  journal:      " << sized(sb.journal_size) << " at offset " << sb.journal_offset
            << "\n"
            << "  checkpoints:  2 slots of " << sized(sb.checkpoint_slot_size) << " at offsets "
            << sb.checkpoint_offset[0] << " and " << sb.checkpoint_offset[1] << "\n"
            << "  data pools:   " << sb.data_pools.size() << "\n";
  for (const meta::DataPoolGeometry& g : sb.data_pools) {
    std::cout << "    index " << g.index << ": block size " << g.block_size << ", data size "
              << sized(g.data_size) << ", " << g.data_size / g.block_size << " blocks\n";
  }
}

// The data area FormatPool will give a pool of `pool_size` bytes with `block_size` blocks
// (0 when the pool is too small, which FormatPool reports with the minimum).
uint64_t DataSizeFor(uint64_t pool_size, uint32_t block_size) {
  uint64_t offset = pool::DataOffsetFor(block_size);
  return pool_size > offset ? (pool_size - offset) / block_size * block_size : 0;
}

// True when `path` starts with the dpmfs pool magic (a valid pool or a damaged one): the
// files (and device-DAX devices) mkfs refuses to overwrite without --force.
bool HoldsPool(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) &&
      !std::filesystem::is_character_file(path, ec)) {
    return false;
  }
  Result<pool::PoolInfo> info = pool::ReadPoolHeader(path);
  return info.ok() || info.status().code() == StatusCode::kCorruption ||
         info.status().code() == StatusCode::kNotSupported;
}

// A non-empty regular file without the dpmfs magic: someone's data (FormatPool refuses
// it without --force; the cluster command says so before touching any pool).
bool HoldsOtherData(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && std::filesystem::file_size(path, ec) > 0 &&
         !HoldsPool(path);
}

std::string DescribePool(const std::string& path) {
  Result<pool::PoolInfo> info = pool::ReadPoolHeader(path);
  if (!info.ok()) return "a damaged dpmfs pool (" + info.status().message() + ")";
  return "a dpmfs " + std::string(pool::RoleName(info->role)) + " pool (cluster " +
         info->cluster.ToString() + ", index " + std::to_string(info->index) + ")";
}

// Percentage on stderr, only when the wait is long enough to wonder about (large pools)
// or when someone is watching a terminal. A terminal gets one line rewritten in place; a
// log file gets a line per 10% instead of a hundred carriage returns.
class Progress {
 public:
  Progress(std::string path, uint64_t total)
      : path_(std::move(path)),
        tty_(::isatty(STDERR_FILENO) == 1),
        enabled_(total >= kProgressThreshold || tty_) {}
  ~Progress() {
    if (tty_ && shown_ >= 0) std::cerr << "\n";
  }
  void Update(uint64_t done, uint64_t total) {
    if (!enabled_ || total == 0) return;
    int pct = static_cast<int>(done * 100 / total);
    if (pct == shown_ || (!tty_ && pct % 10 != 0)) return;
    shown_ = pct;
    std::cerr << (tty_ ? "\r" : "") << kProgram << ": allocating and zeroing " << path_ << ": "
              << pct << "%" << (tty_ ? "" : "\n") << std::flush;
  }

 private:
  std::string path_;
  bool tty_;
  bool enabled_;
  int shown_ = -1;
};

// `mkfs.dpmfs data PATH ...`
struct DataCommand {
  CLI::App* cmd = nullptr;
  std::string path;
  std::string size;
  std::string block_size = "4096";
  uint32_t index = 0;
  std::string cluster;
  bool force = false;
  bool no_zero = false;

  void Register(CLI::App& app) {
    cmd = app.add_subcommand("data", "Format one data pool (a file the data server maps)");
    cmd->add_option("PATH", path,
                    "Pool file to create, on tmpfs (e.g. /dev/shm/dpmfs-data0) or on a "
                    "DAX-mounted persistent-memory file system, or a device-DAX device "
                    "(/dev/daxX.Y; --size must then be the device's size)")
        ->required();
    cmd->add_option("--size", size,
                    "Size of the whole pool file: bytes, or with a binary suffix K, M, G, T "
                    "(e.g. 1G = 1073741824). Includes the 2 MiB header area")
        ->required()
        ->check(SizeValidator());
    cmd->add_option("--block-size", block_size,
                    "Allocation unit of the data area: a power of two from 512 to 1M "
                    "(suffixes allowed)")
        ->capture_default_str()
        ->check(SizeValidator());
    cmd->add_option("--index", index,
                    "Which data pool of the cluster this is (0, 1, ...); the data server "
                    "checks it against the cluster file")
        ->capture_default_str();
    cmd->add_option("--cluster", cluster,
                    "Cluster UUID (8-4-4-4-12 hex). Omit for the first pool of a new cluster: "
                    "a fresh UUID is generated and printed; pass it to the other pools")
        ->check(UuidValidator());
    cmd->add_flag("--force", force,
                  "Overwrite a file that already holds a dpmfs pool (its contents are lost). "
                  "Without it mkfs.dpmfs refuses");
    cmd->add_flag("--no-zero", no_zero,
                  "Only size the file instead of discarding old contents and allocating "
                  "every block: instant, but a --force'd pool keeps old bytes (a new "
                  "metadata server takes the pool as zeroed, so they can show in the first "
                  "files) and a full file system shows up later instead of now");
  }

  int Run() {
    pool::FormatOptions options;
    pool::PoolGeometry& g = options.geometry;
    g.role = pool::Role::kData;
    g.index = index;
    // Validators already accepted these strings; parse again for the values.
    g.pool_size = *pool::ParseSize(size);
    uint64_t bs = *pool::ParseSize(block_size);
    if (bs > UINT32_MAX) {
      return Fail(Status::InvalidArgument("--block-size " + block_size + " is too large"),
                  /*invalid_argument_is_usage=*/true);
    }
    g.block_size = static_cast<uint32_t>(bs);
    bool generated = cluster.empty();
    g.cluster = generated ? pool::ClusterUuid::Generate() : *pool::ClusterUuid::Parse(cluster);
    options.force = force;
    options.zero_data = !no_zero;
    Progress progress(path, g.pool_size);
    if (options.zero_data) {
      options.progress = [&progress](uint64_t done, uint64_t total) {
        progress.Update(done, total);
      };
    }
    Result<pool::PoolInfo> info = pool::FormatPool(path, options);
    // FormatPool's InvalidArgument is always about the geometry the flags asked for.
    if (!info.ok()) return Fail(info.status(), /*invalid_argument_is_usage=*/true);
    std::cout << "formatted data pool " << path << "\n";
    PrintInfo(path, *info);
    if (generated) {
      std::cout << "new cluster " << info->cluster.ToString()
                << ": format the other pools of this cluster with --cluster "
                << info->cluster.ToString() << "\n";
    }
    return 0;
  }
};

// Formats one pool file with a progress report; InvalidArgument means the geometry.
Result<pool::PoolInfo> FormatWithProgress(const std::string& path, const pool::PoolGeometry& g,
                                          bool force) {
  pool::FormatOptions options;
  options.geometry = g;
  options.force = force;
  options.zero_data = true;
  Progress progress(path, g.pool_size);
  options.progress = [&progress](uint64_t done, uint64_t total) { progress.Update(done, total); };
  return pool::FormatPool(path, options);
}

// Formats the metadata pool at `path` (FormatPool, then the superblock and empty journal
// and checkpoints). The caller validated `options` with meta::ValidateFormatOptions.
Result<pool::PoolInfo> FormatMetaPool(const std::string& path, uint64_t pool_size,
                                      const pool::ClusterUuid& cluster,
                                      const meta::MetaFormatOptions& options, bool force) {
  DPMFS_ASSIGN_OR_RETURN(
      pool::PoolInfo info,
      FormatWithProgress(path, {pool::Role::kMetadata, cluster, 0, kMetaBlockSize, pool_size},
                         force));
  DPMFS_ASSIGN_OR_RETURN(pool::MappedPool mapped,
                         pool::MappedPool::Open(path, {pool::Role::kMetadata, cluster, 0u}));
  Status st = meta::MetaStore::Format(mapped, options);
  if (!st.ok()) {
    // The pool header is written but the superblock is not: every server refuses the
    // pool ("superblock missing"), and --force formats it again.
    return Status(st.code(), st.message() + " (the pool header of " + path +
                                 " was written; rerun with --force)");
  }
  return info;
}

// Checks the geometry a metadata pool of `pool_size` bytes needs, before anything is
// formatted. InvalidArgument (a usage error) when it cannot work.
Status PrecheckMetaPool(uint64_t pool_size, const meta::MetaFormatOptions& options) {
  uint64_t min = pool::MinPoolSize(kMetaBlockSize);
  if (pool_size < min) {
    return Status::InvalidArgument("metadata pool size " + std::to_string(pool_size) + " (" +
                                   pool::FormatSize(pool_size) + ") is too small: the minimum is " +
                                   std::to_string(min) + " bytes");
  }
  return meta::ValidateFormatOptions(DataSizeFor(pool_size, kMetaBlockSize), options);
}

// `mkfs.dpmfs meta PATH --size S --data-pool P [--data-pool P ...]`
struct MetaCommand {
  CLI::App* cmd = nullptr;
  std::string path;
  std::string size;
  std::vector<std::string> data_pools;
  std::string stripe_unit = "1M";
  uint32_t replicas = 1;
  bool force = false;

  void Register(CLI::App& app) {
    cmd = app.add_subcommand(
        "meta",
        "Format the metadata pool of a cluster whose data pools are formatted already: the "
        "cluster UUID and the data pools' geometry come from their headers");
    cmd->add_option("PATH", path, "Metadata pool file to create (e.g. /dev/shm/dpmfs-meta)")
        ->required();
    cmd->add_option("--size", size,
                    "Size of the whole pool file (binary suffixes K, M, G, T). A quarter of its "
                    "data area holds the journal, the rest two checkpoint slots")
        ->required()
        ->check(SizeValidator());
    cmd->add_option("--data-pool", data_pools,
                    "A data pool of the cluster (repeat for each; all of them, indexes 0..N-1, "
                    "one cluster UUID)")
        ->required();
    cmd->add_option("--stripe-unit", stripe_unit,
                    "Bytes of a file placed on one data pool before the next: a multiple of "
                    "every data pool's block size")
        ->capture_default_str()
        ->check(SizeValidator());
    cmd->add_option("--replicas", replicas,
                    "Copies of each block, on that many distinct data pools "
                    "(docs/replication.md)")
        ->capture_default_str()
        ->check(CLI::Range(1u, meta::kMaxReplicas));
    cmd->add_flag("--force", force,
                  "Overwrite a file that already holds a dpmfs pool (its contents are lost)");
  }

  int Run() {
    uint64_t pool_size = *pool::ParseSize(size);
    uint64_t su = *pool::ParseSize(stripe_unit);
    if (su == 0 || su > (1ull << 31)) {
      return Fail(Status::InvalidArgument("--stripe-unit " + stripe_unit +
                                          " is not between 1 byte and 2G"),
                  true);
    }
    std::error_code ec;
    std::vector<std::pair<std::string, pool::PoolInfo>> pools;
    for (const std::string& p : data_pools) {
      if (std::filesystem::equivalent(p, path, ec)) {
        return Fail(Status::InvalidArgument("the metadata pool " + path +
                                            " cannot also be a --data-pool"),
                    true);
      }
      Result<pool::PoolInfo> info = pool::ReadPoolHeader(p);
      if (!info.ok()) return Fail(info.status().WithContext("--data-pool " + p));
      if (info->role != pool::Role::kData) {
        return Fail(Status::InvalidArgument("--data-pool " + p + " is a " +
                                            std::string(pool::RoleName(info->role)) +
                                            " pool, not a data pool"));
      }
      if (!pools.empty() && info->cluster != pools.front().second.cluster) {
        return Fail(Status::InvalidArgument(
            "the data pools belong to different clusters: " + pools.front().first + " to " +
            pools.front().second.cluster.ToString() + ", " + p + " to " +
            info->cluster.ToString() + "; format them with one --cluster UUID"));
      }
      pools.emplace_back(p, *info);
    }
    std::sort(pools.begin(), pools.end(),
              [](const auto& a, const auto& b) { return a.second.index < b.second.index; });
    meta::MetaFormatOptions options;
    options.stripe_unit = static_cast<uint32_t>(su);
    options.replicas = replicas;
    for (size_t i = 0; i < pools.size(); ++i) {
      const auto& [p, info] = pools[i];
      if (i > 0 && info.index == pools[i - 1].second.index) {
        return Fail(Status::InvalidArgument("--data-pool " + pools[i - 1].first + " and " + p +
                                            " are both data pool index " +
                                            std::to_string(info.index)));
      }
      if (info.index != i) {
        return Fail(Status::InvalidArgument(
            "--data-pool must name every data pool of the cluster, indexes 0 to N-1: data "
            "pool index " + std::to_string(i) + " is missing (" + p + " has index " +
            std::to_string(info.index) + ")"));
      }
      if (su % info.block_size != 0) {
        return Fail(Status::InvalidArgument("--stripe-unit " + stripe_unit + " (" +
                                            std::to_string(su) +
                                            ") is not a multiple of the block size " +
                                            std::to_string(info.block_size) + " of " + p),
                    true);
      }
      options.data_pools.push_back({info.index, info.block_size, info.data_size});
    }
    if (Status st = PrecheckMetaPool(pool_size, options); !st.ok()) {
      return Fail(st.WithContext("cannot format " + path), true);
    }
    const pool::ClusterUuid cluster = pools.front().second.cluster;
    Result<pool::PoolInfo> info = FormatMetaPool(path, pool_size, cluster, options, force);
    if (!info.ok()) return Fail(info.status(), true);
    Result<meta::Superblock> sb = meta::ReadSuperblock(path);
    if (!sb.ok()) return Fail(sb.status());
    std::cout << "formatted metadata pool " << path << "\n";
    PrintInfo(path, *info);
    PrintSuperblock(*sb);
    return 0;
  }
};

// `mkfs.dpmfs cluster CLUSTER_FILE [--only meta|data:N ...]`
struct ClusterCommand {
  CLI::App* cmd = nullptr;
  std::string file;
  std::vector<std::string> only;
  bool force = false;

  void Register(CLI::App& app) {
    cmd = app.add_subcommand("cluster",
                             "Format this host's pools of a cluster file: the lines whose "
                             "address is this host's (loopback counts), or those named by "
                             "--only; data pools (index = order of their lines) first, then "
                             "the metadata pool");
    cmd->add_option("CLUSTER_FILE", file,
                    "Cluster file (see 'Cluster file' below); mkfs.dpmfs never rewrites it")
        ->required();
    cmd->add_option("--only", only,
                    "Format only these pools, whatever their addresses: 'meta' or 'data:N' "
                    "(repeat, or separate with commas). The metadata pool needs only the "
                    "file's data lines, not the data pool files")
        ->delimiter(',');
    cmd->add_flag("--force", force,
                  "Overwrite pool files that already hold dpmfs pools or other contents. "
                  "Without it nothing is touched if any of them does. A pool a running "
                  "server holds is refused even with --force");
  }

  int Run() {
    Result<ClusterFile> parsed = ParseClusterFile(file);
    if (!parsed.ok()) return Fail(parsed.status(), /*invalid_argument_is_usage=*/true);
    const ClusterFile& cf = *parsed;
    Result<ClusterSelection> selected = SelectPools(cf, only);
    if (!selected.ok()) return Fail(selected.status(), /*invalid_argument_is_usage=*/true);
    const ClusterSelection& sel = *selected;
    if (!sel.all() && !cf.cluster) {
      // Each host would otherwise make up a UUID of its own: pools of one cluster that
      // refuse each other.
      return Fail(Status::InvalidArgument(
                      file + " has no cluster_uuid line, and this host formats only part of "
                             "the cluster: the other hosts must give their pools the same "
                             "UUID. Add 'cluster_uuid " +
                      pool::ClusterUuid::Generate().ToString() +
                      "' (or any UUID) to the file on every host"),
                  true);
    }

    // Everything that can be checked is checked before the first pool is touched. The
    // metadata pool describes the data pools from the file's sizes, so their files need
    // not be on this host.
    meta::MetaFormatOptions options;
    options.stripe_unit = cf.stripe_unit;
    options.replicas = cf.replicas;
    for (size_t i = 0; i < cf.data.size(); ++i) {
      options.data_pools.push_back({static_cast<uint32_t>(i), cf.block_size,
                                    DataSizeFor(cf.data[i].pool_size, cf.block_size)});
    }
    if (Status st = PrecheckMetaPool(cf.meta.pool_size, options); !st.ok()) {
      return Fail(st.WithContext(cf.Where(cf.meta) + ": cannot format metadata pool " +
                                 cf.meta.pool_path),
                  true);
    }
    std::vector<const ClusterFile::Daemon*> mine;
    for (size_t i = 0; i < cf.data.size(); ++i) {
      if (sel.data[i]) mine.push_back(&cf.data[i]);
    }
    if (sel.meta) mine.push_back(&cf.meta);
    // A pool a running server holds is never formatted (FormatPool refuses it too, but
    // by then the pools before it would be formatted already).
    for (const ClusterFile::Daemon* d : mine) {
      if (Status st = pool::CheckPoolNotInUse(d->pool_path); !st.ok()) {
        return Fail(st.WithContext("refusing to format the cluster of " + file +
                                   " (nothing was changed)"));
      }
    }
    if (!force) {
      std::string existing;
      for (const ClusterFile::Daemon* d : mine) {
        if (HoldsPool(d->pool_path)) {
          existing += (existing.empty() ? "" : "; ") + d->pool_path + " already holds " +
                      DescribePool(d->pool_path);
        } else if (HoldsOtherData(d->pool_path)) {
          existing += (existing.empty() ? "" : "; ") + d->pool_path +
                      " exists and is not a dpmfs pool";
        }
      }
      if (!existing.empty()) {
        return Fail(Status::AlreadyExists("refusing to format the cluster of " + file + ": " +
                                          existing +
                                          ". Nothing was changed; use --force to overwrite "
                                          "(destroys their contents)"));
      }
    }
    for (const ClusterFile::Daemon* d : mine) {
      std::filesystem::path parent = std::filesystem::path(d->pool_path).parent_path();
      std::error_code ec;
      if (!parent.empty() && !std::filesystem::create_directories(parent, ec) && ec) {
        return Fail(Status::IOError("cannot create directory " + parent.string() + " for pool " +
                                    d->pool_path + " (" + cf.Where(*d) + "): " + ec.message()));
      }
    }

    const bool generated = !cf.cluster.has_value();
    const pool::ClusterUuid cluster = generated ? pool::ClusterUuid::Generate() : *cf.cluster;
    for (size_t i = 0; i < cf.data.size(); ++i) {
      if (!sel.data[i]) continue;
      const ClusterFile::Daemon& d = cf.data[i];
      Result<pool::PoolInfo> info = FormatWithProgress(
          d.pool_path,
          {pool::Role::kData, cluster, static_cast<uint32_t>(i), cf.block_size, d.pool_size},
          force);
      if (!info.ok()) {
        return Fail(info.status().WithContext(cf.Where(d) + ": data pool " + std::to_string(i)),
                    true);
      }
    }
    std::optional<meta::Superblock> sb;
    if (sel.meta) {
      Result<pool::PoolInfo> meta_info =
          FormatMetaPool(cf.meta.pool_path, cf.meta.pool_size, cluster, options, force);
      if (!meta_info.ok()) {
        return Fail(meta_info.status().WithContext(cf.Where(cf.meta) + ": metadata pool"), true);
      }
      Result<meta::Superblock> read = meta::ReadSuperblock(cf.meta.pool_path);
      if (!read.ok()) return Fail(read.status());
      sb = *read;
    }

    std::cout << "formatted cluster " << cluster.ToString() << " from " << file
              << (sel.all() ? "" : " (this host's pools)") << "\n";
    if (!EnsureClusterKey(file, /*may_create=*/sel.meta)) return 1;
    size_t width = 4;
    for (const ClusterFile::Daemon* d : mine) width = std::max(width, d->pool_path.size());
    auto row = [&](const std::string& role, const std::string& index, const std::string& path,
                   const std::string& pool_size, const std::string& endpoint) {
      std::cout << std::left << std::setw(10) << role << std::setw(7) << index
                << std::setw(static_cast<int>(width) + 2) << path << std::setw(12) << pool_size
                << endpoint << "\n";
    };
    row("ROLE", "INDEX", "PATH", "SIZE", "ENDPOINT");
    for (size_t i = 0; i < cf.data.size(); ++i) {
      if (!sel.data[i]) continue;
      const ClusterFile::Daemon& d = cf.data[i];
      row("data", std::to_string(i), d.pool_path, pool::FormatSize(d.pool_size),
          d.endpoint.ToString());
    }
    if (sel.meta) {
      row("metadata", "-", cf.meta.pool_path, pool::FormatSize(cf.meta.pool_size),
          cf.meta.endpoint.ToString());
    }
    for (const std::string& s : sel.skipped) std::cout << "not formatted here: " << s << "\n";
    std::cout << "block size " << cf.block_size << ", stripe unit "
              << pool::FormatSize(cf.stripe_unit);
    if (sb) {
      std::cout << ", journal " << pool::FormatSize(sb->journal_size) << ", checkpoint slots 2 x "
                << pool::FormatSize(sb->checkpoint_slot_size);
    }
    std::cout << "\n";
    if (generated) {
      std::cout << "new cluster UUID " << cluster.ToString() << " (" << file
                << " is left as it is; add 'cluster_uuid " << cluster.ToString()
                << "' to it to keep this UUID when formatting again)\n";
    }
    return 0;
  }
};

// `mkfs.dpmfs show PATH`
struct ShowCommand {
  CLI::App* cmd = nullptr;
  std::string path;

  void Register(CLI::App& app) {
    cmd = app.add_subcommand("show",
                             "Validate a pool's header (and a metadata pool's superblock) and "
                             "print them");
    cmd->add_option("PATH", path, "Pool file")->required();
  }

  int Run() {
    Result<pool::PoolInfo> info = pool::ReadPoolHeader(path);
    if (!info.ok()) return Fail(info.status());
    PrintInfo(path, *info);
    if (info->role == pool::Role::kMetadata) {
      Result<meta::Superblock> sb = meta::ReadSuperblock(path);
      if (!sb.ok()) return Fail(sb.status());
      PrintSuperblock(*sb);
    }
    return 0;
  }
};

constexpr char kFooter[] = R"(
Subcommands:
  data PATH --size SIZE   Create a data pool file of SIZE bytes: a 4 KiB checksummed header
                          (magic, format version, role, cluster UUID, index, block size,
                          sizes), then the data area from offset 2 MiB. Prints what it made.
                          --force     overwrite a file that already holds a dpmfs pool
                          --no-zero   size the file only; skip discarding/allocating
                          --block-size, --index, --cluster: see 'mkfs.dpmfs data --help'
  meta PATH --size SIZE --data-pool P [--data-pool P ...] [--stripe-unit 1M] [--force]
                          Create the metadata pool of the cluster the data pools P belong
                          to (one cluster UUID, indexes 0..N-1, block sizes dividing the
                          stripe unit): header, superblock, empty journal and checkpoints.
  cluster CLUSTER_FILE [--force]
                          Create every pool the cluster file names, data pools first, with
                          one cluster UUID (the file's cluster_uuid, else a new one), and
                          print a table of them. Without --force nothing is touched if any
                          pool file already holds a dpmfs pool.
  key create|rotate FILE  Write a new random cluster key (mode 0600) to FILE; 'rotate'
                          replaces an existing one. 'cluster' makes one beside the cluster
                          file (cluster.key) when there is none and it formats the
                          metadata pool; data-only hosts need a copy of that one.
  show PATH               Validate a pool's header (and a metadata pool's superblock) and
                          print their fields.
  check CLUSTER_FILE [--json]
                          Check a stopped cluster: pool headers against the cluster file,
                          the namespace recovered as dpmfs-meta would (on a private copy),
                          every extent, shared and leaked blocks, the directory tree.
                          Read-only. Exit 0 clean, 1 problems found (one line each),
                          2 cannot check (a pool in use, not this cluster's metadata pool).

Cluster file (one line each; '#' starts a comment; relative paths are relative to the file):
  cluster_uuid 1b4e28ba-2fa1-41d2-883f-0016d3cca427   (optional)
  block_size 4K                                        (optional, default 4K)
  stripe_unit 1M                                       (optional, default 1M)
  meta  127.0.0.1:7000  /dev/shm/dpmfs/meta.pool   256M
  data  127.0.0.1:7001  /dev/shm/dpmfs/data0.pool  1G  (index = order of the data lines)

mkfs.dpmfs never overwrites a dpmfs pool unless given --force. Sizes take binary
suffixes K, M, G, T. Exit status: 0 success, 1 failure, 2 usage error (bad flags, bad
cluster file, impossible geometry).

Examples:
  mkfs.dpmfs data /dev/shm/dpmfs-data0 --size 1G
  mkfs.dpmfs data /dev/shm/dpmfs-data1 --size 1G --index 1 --cluster <UUID printed above>
  mkfs.dpmfs meta /dev/shm/dpmfs-meta --size 256M --data-pool /dev/shm/dpmfs-data0 \
             --data-pool /dev/shm/dpmfs-data1
  mkfs.dpmfs cluster /etc/dpmfs/cluster.conf
  mkfs.dpmfs show /dev/shm/dpmfs-meta)";

int Main(int argc, char** argv) {
  CLI::App app{"Format dpmfs persistent-memory pools and inspect their headers.", kProgram};
  CommonFlags common;
  AddCommonFlags(app, &common);
  app.require_subcommand(1);
  app.fallthrough();  // --log-level may follow the subcommand

  DataCommand data;
  MetaCommand meta;
  ClusterCommand cluster;
  ShowCommand show;
  KeyCommand key;
  CheckCommand check;
  data.Register(app);
  meta.Register(app);
  cluster.Register(app);
  show.Register(app);
  key.Register(app);
  check.Register(app);
  app.footer(kFooter);  // after the subcommands, which would otherwise inherit it

  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;
  if (data.cmd->parsed()) return data.Run();
  if (meta.cmd->parsed()) return meta.Run();
  if (cluster.cmd->parsed()) return cluster.Run();
  if (show.cmd->parsed()) return show.Run();
  if (key.parsed()) return key.Run();
  if (check.parsed()) return check.Run();
  return 2;  // unreachable: require_subcommand(1)
}

}  // namespace
}  // namespace dpmfs::mkfs

int main(int argc, char** argv) {
  // CLI11 reports parse errors as exceptions (handled in ParseCommandLine); anything else
  // escaping (e.g. std::bad_alloc) still ends with a message and exit 1, not an abort.
  try {
    return dpmfs::mkfs::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mkfs.dpmfs: error: " << e.what() << "\n";
    return 1;
  }
}
