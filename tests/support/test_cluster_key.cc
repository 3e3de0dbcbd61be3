#include "tests/support/test_cluster_key.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace dpmfs::test_support {
namespace {

std::string& Dir() {
  static std::string dir;
  return dir;
}

void RemoveKey() {
  if (Dir().empty()) return;
  ::unlink((Dir() + "/cluster.key").c_str());
  ::rmdir(Dir().c_str());
}

}  // namespace

const std::string& TestClusterKeyFile() {
  static std::once_flag once;
  static std::string path;
  std::call_once(once, [] {
    char tmpl[] = "/tmp/dpmfs-test-key-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::perror("mkdtemp for the test cluster key");
      std::abort();
    }
    Dir() = tmpl;
    path = Dir() + "/cluster.key";
    Status st = CreateKeyFile(path, /*replace=*/false);
    if (!st.ok()) {
      std::fprintf(stderr, "test cluster key: %s\n", st.ToString().c_str());
      std::abort();
    }
    ::setenv("DPMFS_KEY_FILE", path.c_str(), 1);
    std::atexit(RemoveKey);
  });
  return path;
}

std::shared_ptr<const ClusterKey> TestClusterKey() {
  static std::shared_ptr<const ClusterKey> key = [] {
    auto k = LoadClusterKey(TestClusterKeyFile(), "");
    if (!k.ok()) {
      std::fprintf(stderr, "test cluster key: %s\n", k.status().ToString().c_str());
      std::abort();
    }
    return *k;
  }();
  return key;
}

namespace {
// Before main: so every daemon a test starts inherits $DPMFS_KEY_FILE, whichever helper
// starts it.
const bool kKeyMadeAtStart = (TestClusterKeyFile(), true);
}  // namespace

}  // namespace dpmfs::test_support
