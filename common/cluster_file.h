// The cluster file: which metadata server and which data servers make up a cluster, where
// their pools live and how large they are. mkfs.dpmfs cluster formats every pool it
// names; dpmfs-meta --cluster-file reads the data servers' addresses from it; tools/dpmfs
// writes one for a single-host cluster.
//
//   # comment lines and blank lines are ignored; a word starting with '#' starts a comment
//   cluster_uuid 1b4e28ba-2fa1-41d2-883f-0016d3cca427   (optional; else mkfs makes one)
//   block_size 4K            (optional, default 4096: data pools' block size)
//   stripe_unit 1M           (optional, default 1M: a multiple of block_size)
//   replicas 2               (optional, default 1: copies of each block, 1..3, at most
//                             the number of data lines; docs/replication.md)
//   meta  127.0.0.1:7000  /dev/shm/dpmfs/meta.pool   256M
//   data  127.0.0.1:7001  /dev/shm/dpmfs/data0.pool  1G     (index = order of data lines)
//   data  127.0.0.1:7002  /dev/shm/dpmfs/data1.pool  1G
//
// A relative pool path is taken relative to the directory of the cluster file, so the
// file means the same thing from any working directory. Sizes take the suffixes of
// pool::ParseSize (4K, 256M, 1G, 2GiB).
//
// Thread-safety: a value type and a free function that only reads the named file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.h"
#include "common/pool.h"
#include "common/status.h"

namespace dpmfs {

// The most data lines a cluster file may have (== meta::kMaxDataServers, which the
// metadata pool's superblock can describe; checked where both are visible).
inline constexpr size_t kMaxClusterDataServers = 256;
// The most copies of a block a cluster may keep (== meta::kMaxReplicas).
inline constexpr uint32_t kMaxClusterReplicas = 3;

struct ClusterFile {
  struct Daemon {
    Endpoint endpoint;
    std::string pool_path;   // as written; a relative one joined to the file's directory
    uint64_t pool_size = 0;  // bytes, the whole pool file
    int line = 0;            // where it was declared, for messages ("file:line")
  };

  std::string path;  // the file parsed
  std::optional<pool::ClusterUuid> cluster;
  uint32_t block_size = 4096;
  uint32_t stripe_unit = 1u << 20;
  uint32_t replicas = 1;  // each block on this many distinct data servers
  Daemon meta;
  std::vector<Daemon> data;  // data[i] is data pool index i

  // "FILE:LINE", for messages about one daemon's entry.
  std::string Where(const Daemon& d) const { return path + ":" + std::to_string(d.line); }
};

// Reads and validates the cluster file at `path`. NotFound / IOError when it cannot be
// read; InvalidArgument "FILE:LINE: what is wrong" for: an unknown keyword, a wrong
// number of words, a bad UUID, endpoint (port 0 included) or size, a block size that is
// not a power of two in [512, 1 MiB], a stripe unit that is not a multiple of it, a
// repeated setting or meta line, replicas outside 1..3 or above the number of data lines, more than kMaxClusterDataServers data lines, a pool
// path or endpoint used twice, a pool smaller than a pool of that block size can be;
// "FILE: ..." for a missing meta line or no data line.
Result<ClusterFile> ParseClusterFile(const std::string& path);

}  // namespace dpmfs
