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

// mkfs.dpmfs cluster: the key beside the cluster file. An existing key is kept (the
// cluster's hosts already hold it). A missing one is created only when `may_create`,
// i.e. when this run formats the metadata pool: the metadata host makes the cluster's one
// key, and a host that formats only data pools must receive a copy of it (a key of its
// own would refuse every client), which is what it prints instead. Returns false (after
// printing why) when the key could not be made.
bool EnsureClusterKey(const std::string& cluster_file, bool may_create);

}  // namespace dpmfs::mkfs
