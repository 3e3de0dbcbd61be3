// `mkfs.dpmfs check CLUSTER_FILE [--json]`: the offline check of a stopped cluster
// (mkfs/cluster_check.h), its output and exit status. Kept apart from the formatting
// commands of mkfs_main.cc, which it shares only the program name and the cluster file
// with.
//
// Why in mkfs.dpmfs and not a dpmfs-fsck binary: mkfs is the one tool that already
// reads every pool of a cluster file offline, takes the pools' locks the servers take,
// and prints headers (`show`); an operator who formats with it checks with it, and
// packages, man page and completion stay one.
//
// Exit status: 0 clean; 1 problems found (one line each on stdout); 2 the check could
// not run (bad usage, unreadable cluster file, a pool in use, a metadata pool that is
// not this cluster's readable metadata pool).
//
// Thread-safety: used by mkfs's main thread only.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace dpmfs::mkfs {

struct CheckCommand {
  CLI::App* cmd = nullptr;
  std::string cluster_file;
  bool json = false;
  bool progress = false;  // progress lines on stderr even for a small pool off a terminal

  void Register(CLI::App& app);
  bool parsed() const { return cmd != nullptr && cmd->parsed(); }
  int Run();
};

}  // namespace dpmfs::mkfs
