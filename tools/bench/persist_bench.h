// `dpmfs-bench persist`: latency and throughput of every persist method against a
// running data server, next to a raw-TCP baseline measured in the same run. See
// tools/bench/README.md for what is measured and what the columns mean.
//
// Thread-safety: one benchmark per process; RunPersistBench is called from main.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/status.h"

namespace dpmfs::bench {

struct PersistBenchOptions {
  std::string server;  // HOST:PORT of a dpmfs-data
  std::string transport = "soft";
  std::string key_file;  // the cluster key (default: common/cluster_key.h)
  bool no_auth = false;  // against a dpmfs-data --no-auth: measures what authentication costs
  uint32_t drain_delay_us = 100;  // the client's own soft device; irrelevant but harmless
  std::vector<std::string> methods = {"all"};
  std::vector<std::string> sizes = {"64", "256", "4096", "65536"};
  std::vector<uint32_t> qds = {1, 16};
  double seconds = 1.0;
  double warmup_seconds = 0.05;
  uint32_t repeat = 1;
  uint64_t seed = 1;
  std::string window = "64M";
  uint32_t tcp_depth = 16;
  std::string json_path = "dpmfs-bench-persist.json";
  bool quick = false;
  bool prefault = true;
};

// Adds the `persist` subcommand, filling `opts` when it is parsed (--quick is applied
// then, unless --sizes/--seconds were given explicitly).
CLI::App* AddPersistCommand(CLI::App& app, PersistBenchOptions* opts);

// Runs the matrix and the baselines, prints the table to stdout, writes the JSON.
// Missed targets are information, not errors.
Status RunPersistBench(const PersistBenchOptions& opts);

}  // namespace dpmfs::bench
