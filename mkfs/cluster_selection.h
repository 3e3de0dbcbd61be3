// Which lines of a cluster file `mkfs.dpmfs cluster` formats on this host: by default
// those whose address is one of this host's (common/local_address.h; loopback counts),
// or exactly the ones named with --only (meta, data:N).
//
// Thread-safety: free function over values.
#pragma once

#include <string>
#include <vector>

#include "common/cluster_file.h"
#include "common/status.h"

namespace dpmfs::mkfs {

struct ClusterSelection {
  bool meta = false;
  std::vector<bool> data;          // data[i]: format data pool i here
  std::vector<std::string> skipped;  // one line per pool left to another host, for output
  bool all() const;                // every pool of the file is selected
};

// `only` empty: the local lines; NotFound naming this host's addresses when none is.
// Otherwise each entry is "meta" or "data:N" (N an index of the file); InvalidArgument
// for anything else. A host that does not resolve is InvalidArgument with its line.
Result<ClusterSelection> SelectPools(const ClusterFile& cf, const std::vector<std::string>& only);

}  // namespace dpmfs::mkfs
