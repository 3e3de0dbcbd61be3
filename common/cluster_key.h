// The cluster key: 256 random bits every host of a cluster holds (docs/security.md).
// Connections prove they hold it (transport/connection_auth.h); nothing else in dpmfs
// sees its bytes.
//
// The key file is text: 64 hex digits and a newline, mode 0600. LoadKeyFile refuses a
// file that is missing, unreadable, of the wrong size or content, or that group or
// others may read, each with a message naming the file and what to do.
//
// Thread-safety: ClusterKey is an immutable value once made; the functions touch only
// the files they are given.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace dpmfs {

inline constexpr size_t kClusterKeySize = 32;
// Where daemons and clients look when neither --key-file (key_file=) nor
// $DPMFS_KEY_FILE nor a cluster file says otherwise.
inline constexpr const char* kDefaultKeyFile = "/etc/dpmfs/cluster.key";

// The help text of every binary's --key-file.
inline constexpr const char* kKeyFileHelp =
    "The cluster key file (docs/security.md). Default: $DPMFS_KEY_FILE, else cluster.key "
    "beside the cluster file when one is given, else /etc/dpmfs/cluster.key";

class ClusterKey {
 public:
  using Bytes = std::array<uint8_t, kClusterKeySize>;
  static ClusterKey Generate();  // from libsodium's randombytes_buf
  explicit ClusterKey(const Bytes& bytes) : bytes_(bytes) {}
  ClusterKey(const ClusterKey&) = default;
  ClusterKey& operator=(const ClusterKey&) = default;
  ~ClusterKey();  // wipes the bytes (sodium_memzero)

  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_{};
};

// Initialises libsodium once (thread-safe, idempotent); aborts the process if it cannot,
// since no key or nonce could be trusted then.
void InitCrypto();

// Writes a new random key to `path`, mode 0600. Refuses an existing file
// (AlreadyExists) unless `replace`; a replacement is written to a temporary file and
// renamed over the old one, so readers see the old key or the new one, never half.
Status CreateKeyFile(const std::string& path, bool replace);

Result<ClusterKey> LoadKeyFile(const std::string& path);

// "DIR/cluster.key" for the cluster file "DIR/NAME": the key that mkfs.dpmfs cluster
// writes beside it.
std::string KeyFileBesideClusterFile(const std::string& cluster_file);

// The key file to use: `flag` if given, else $DPMFS_KEY_FILE, else the one beside
// `cluster_file` if given, else kDefaultKeyFile.
std::string ResolveKeyFile(const std::string& flag, const std::string& cluster_file);

// ResolveKeyFile, then LoadKeyFile: what a daemon or client does at start.
Result<std::shared_ptr<const ClusterKey>> LoadClusterKey(const std::string& flag,
                                                         const std::string& cluster_file);

}  // namespace dpmfs
