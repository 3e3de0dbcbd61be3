// `dpmfs-bench fs`: the file system through its mount, beside the same work on a local
// FUSE passthrough (bindfs over tmpfs) and on tmpfs itself, all in one run so the noisy
// machine is the same for every column. fio runs the reference jobs of
// ../shared/bench/fio (4 KiB random write + fdatasync with 1 and 4 jobs, 4 KiB random
// write, 4 KiB random read, 1 MiB sequential write and read; files pre-written with
// 1 MiB writes so every measured write is an overwrite), and a metadata profile creates,
// stats and unlinks N empty files in one directory with plain syscalls.
//
// Thread-safety: one benchmark per process; RunFsBench is called from main.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/status.h"

namespace dpmfs::bench {

struct FsBenchOptions {
  std::string dpmfs_dir;        // a directory inside a dpmfs mount (required)
  bool reference = true;        // also measure bindfs-over-tmpfs and tmpfs
  std::string fio = "fio";
  std::string bindfs = "bindfs";
  double runtime_seconds = 15;  // per fio job (after a 2 s ramp)
  uint32_t files = 10000;       // metadata profile
  double stat_wait_seconds = 1.1;  // let attribute caches (1 s) expire before the stats
  std::vector<std::string> jobs = {"all"};
  uint32_t repeat = 1;
  bool direct = true;           // O_DIRECT, like the reference table
  std::string json_path = "dpmfs-bench-fs.json";
  bool quick = false;
};

CLI::App* AddFsCommand(CLI::App& app, FsBenchOptions* opts);

// Runs every job on every target, prints the table, writes the JSON. Missed targets are
// information (printed), not errors; a job that fails to run is an error.
Status RunFsBench(const FsBenchOptions& opts);

}  // namespace dpmfs::bench
