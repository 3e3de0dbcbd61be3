// `mkfs.dpmfs key create|rotate FILE`: makes or replaces a cluster key file
// (common/cluster_key.h, docs/security.md). Kept apart from the pool formatting commands
// of mkfs_main.cc: a key is no pool.
//
// Thread-safety: used by mkfs's main thread only.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace dpmfs::mkfs {

struct KeyCommand {
  CLI::App* cmd = nullptr;
  CLI::App* create = nullptr;
  CLI::App* rotate = nullptr;
  std::string file;
  bool force = false;

  void Register(CLI::App& app);
  bool parsed() const { return cmd != nullptr && cmd->parsed(); }
  int Run();
};

// mkfs.dpmfs cluster: the key beside the cluster file, created if it is missing (an
// existing key is kept: the cluster's hosts already hold it). Prints what it did.
// Returns false (after printing why) when the key could not be made.
bool EnsureClusterKey(const std::string& cluster_file);

}  // namespace dpmfs::mkfs
