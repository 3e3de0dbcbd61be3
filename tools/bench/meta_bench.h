// `dpmfs-bench meta`: throughput and latency of the metadata server's namespace
// operations (create, stat, unlink, mkdir, rename) through MetaClient, with 1..N client
// threads that either share one MetaClient (one RPC connection) or have one each, each
// thread keeping 1..64 calls in flight (--window). Runs
// against a running dpmfs-meta (--meta HOST:PORT) or starts its own on a scratch pool.
// See tools/bench/README.md for what is measured and what the columns mean.
//
// Thread-safety: one benchmark per process; RunMetaBench is called from main.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace dpmfs::bench {

struct MetaBenchOptions {
  std::string meta;  // HOST:PORT of a running dpmfs-meta; empty: start one
  int meta_pid = 0;  // with `meta`: its pid on this host, for the server CPU columns; 0: unknown
  std::string meta_bin;                  // dpmfs-meta to start; empty: the one of this build tree
  std::string scratch_dir = "/dev/shm";  // where the started server's pool goes
  std::string pool_size = "256M";
  uint32_t workers = 0;  // started server's --workers; 0: its default
  bool msync = false;    // started server's --msync
  std::string transport = "soft";
  std::string key_file;  // with `meta`: the cluster key (default: common/cluster_key.h)
  std::vector<std::string> ops = {"create", "stat", "unlink", "mkdir", "rename"};
  std::vector<uint32_t> threads = {1, 4, 16};
  std::vector<std::string> clients = {"shared", "per-thread"};
  std::vector<uint32_t> windows = {1};  // calls in flight per client thread
  double seconds = 1.0;
  double warmup_seconds = 0.1;
  uint32_t repeat = 1;
  uint64_t seed = 1;
  std::string json_path = "dpmfs-bench-meta.json";
  bool quick = false;
  // > 0: after the matrix, log this many mutations, kill -9 the (started) server,
  // restart it and time its recovery.
  uint64_t recovery_ops = 0;
};

// Adds the `meta` subcommand, filling `opts` when it is parsed (--quick is applied then,
// unless --threads/--seconds were given explicitly).
CLI::App* AddMetaCommand(CLI::App& app, MetaBenchOptions* opts);

// Runs every op x threads x client mode, prints the table, writes the JSON. Every file
// and directory it made is removed at the end (a started server is stopped and its pool
// deleted).
Status RunMetaBench(const MetaBenchOptions& opts);

}  // namespace dpmfs::bench
