// mkfs.dpmfs: formats dpmfs pools and shows their headers.
//
//   mkfs.dpmfs data PATH --size 1G [--block-size 4096] [--index N] [--cluster UUID]
//                        [--force] [--no-zero]
//   mkfs.dpmfs show PATH
//
// Each subcommand is a small struct that registers its flags and runs once parsing
// succeeded; `meta` (the metadata pool) and `cluster CLUSTER_FILE` (every pool named by a
// cluster file) will be added the same way once the metadata server defines its layout.
//
// Exit codes: 0 success, 1 runtime failure ("mkfs.dpmfs: error: ..."), 2 usage error
// (bad flags, or a geometry FormatPool rejects as invalid).
// Thread-safety: single-threaded program.
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <ctime>
#include <iostream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli.h"
#include "common/pool.h"
#include "common/status.h"

namespace dpmfs::mkfs {
namespace {

constexpr char kProgram[] = "mkfs.dpmfs";
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
                    "DAX-mounted persistent-memory file system")
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
                  "every block: instant, but a --force'd pool keeps old bytes and a full "
                  "file system shows up later instead of now");
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

// `mkfs.dpmfs show PATH`
struct ShowCommand {
  CLI::App* cmd = nullptr;
  std::string path;

  void Register(CLI::App& app) {
    cmd = app.add_subcommand("show", "Validate a pool's header and print it");
    cmd->add_option("PATH", path, "Pool file")->required();
  }

  int Run() {
    Result<pool::PoolInfo> info = pool::ReadPoolHeader(path);
    if (!info.ok()) return Fail(info.status());
    PrintInfo(path, *info);
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
  show PATH               Validate a pool's header and print its fields.

mkfs.dpmfs never overwrites a dpmfs pool unless given --force. Sizes take binary
suffixes K, M, G, T. Exit status: 0 success, 1 failure, 2 usage error.

Examples:
  mkfs.dpmfs data /dev/shm/dpmfs-data0 --size 1G
  mkfs.dpmfs data /dev/shm/dpmfs-data1 --size 1G --index 1 --cluster <UUID printed above>
  mkfs.dpmfs show /dev/shm/dpmfs-data0)";

int Main(int argc, char** argv) {
  CLI::App app{"Format dpmfs persistent-memory pools and inspect their headers.", kProgram};
  CommonFlags common;
  AddCommonFlags(app, &common);
  app.require_subcommand(1);
  app.fallthrough();  // --log-level may follow the subcommand

  DataCommand data;
  ShowCommand show;
  data.Register(app);
  show.Register(app);
  app.footer(kFooter);  // after the subcommands, which would otherwise inherit it

  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;
  if (data.cmd->parsed()) return data.Run();
  if (show.cmd->parsed()) return show.Run();
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
