#include "mkfs/key_command.h"

#include <filesystem>
#include <iostream>

#include "common/cluster_key.h"

namespace dpmfs::mkfs {

void KeyCommand::Register(CLI::App& app) {
  cmd = app.add_subcommand("key", "Create or rotate the cluster key (docs/security.md)");
  cmd->require_subcommand(1);
  create = cmd->add_subcommand("create",
                               "Write a new random 256-bit cluster key to FILE (mode 0600)");
  create->add_option("FILE", file, "Key file (default beside the cluster file: cluster.key)")
      ->required();
  create->add_flag("--force", force, "Replace an existing key file (as 'rotate')");
  rotate = cmd->add_subcommand(
      "rotate",
      "Replace the key in FILE with a new random one (atomically). Copy the new file to every "
      "host of the cluster, then restart the daemons and remount the clients");
  rotate->add_option("FILE", file, "Key file")->required();
}

int KeyCommand::Run() {
  const bool replace = rotate->parsed() || force;
  Status st = CreateKeyFile(file, replace);
  if (!st.ok()) {
    std::cerr << "mkfs.dpmfs: error: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << (replace ? "new cluster key in " : "created cluster key ") << file
            << " (mode 0600): copy it to every host of the cluster"
            << (replace ? ", then restart the daemons and remount the clients" : "") << "\n";
  return 0;
}

bool EnsureClusterKey(const std::string& cluster_file, bool may_create) {
  const std::string path = KeyFileBesideClusterFile(cluster_file);
  if (!may_create) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      std::cout << "cluster key " << path << " kept (it exists)\n";
    } else {
      std::cout << "no cluster key at " << path
                << ": copy the one the metadata host's mkfs.dpmfs cluster made (mode 0600) "
                   "here before starting the data servers (docs/deploy.md)\n";
    }
    return true;
  }
  Status st = CreateKeyFile(path, /*replace=*/false);
  if (st.code() == StatusCode::kAlreadyExists) {
    std::cout << "cluster key " << path << " kept (it exists)\n";
    return true;
  }
  if (!st.ok()) {
    std::cerr << "mkfs.dpmfs: error: " << st.ToString() << "\n";
    return false;
  }
  std::cout << "created cluster key " << path
            << " (mode 0600): every host of the cluster needs a copy\n";
  return true;
}

}  // namespace dpmfs::mkfs
