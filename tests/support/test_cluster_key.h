// One cluster key per test process, for tests that start real daemons (dpmfs-data,
// dpmfs-meta, dpmfs-mount): before main, every test binary (linked with this object
// library) writes a key file (mode 0600) into a fresh temporary directory and sets
// $DPMFS_KEY_FILE, so every daemon the test starts finds it by the default lookup
// (common/cluster_key.h); in-process clients that talk to those daemons put
// TestClusterKey() in their DeviceOptions. The file is deleted at exit.
//
// Thread-safety: safe to call from any thread (made once).
#pragma once

#include <memory>
#include <string>

#include "common/cluster_key.h"

namespace dpmfs::test_support {

const std::string& TestClusterKeyFile();
std::shared_ptr<const ClusterKey> TestClusterKey();

}  // namespace dpmfs::test_support
