// The offline check of a stopped cluster (`mkfs.dpmfs check CLUSTER_FILE`): reads the
// metadata pool and the data pools a cluster file names and reports every inconsistency
// it finds, one CheckProblem each. Read-only: it holds every pool's lock
// (common/pool_lock.h) while it runs, so a pool a server holds is refused, and it
// recovers the namespace on a private copy-on-write mapping of the metadata pool
// (mkfs/private_mapping.h), so the server's own recovery code runs unchanged and
// nothing reaches the file.
//
// What it checks (mkfs/README.md, "check"):
//  - headers: the metadata pool's header and superblock and every data pool's header
//    agree with the cluster file and with each other (cluster UUID, index, block size,
//    data-area size: the rules of datapath/data_server_identity.h; pool file sizes,
//    stripe unit, replicas);
//  - recovery: the checkpoint and the journal replay as dpmfs-meta would (a damaged
//    journal or checkpoint is a problem, not a crash);
//  - extents: every copy (metadata/placement.h) of every extent inside its data pool's
//    data area and the primary inside the primary region; no block held twice (by two
//    files or twice by one); the allocators rebuilt from the extents against the extents
//    (blocks owned but free, blocks in use but owned by no file);
//  - the tree: the root, entries naming live inodes, directory parents, link counts,
//    every inode reachable from the root (an unreachable one leaks its blocks) unless
//    an open handle of a recorded session holds it (a note: freed when that session
//    ends after the next start).
//
// Thread-safety: a function of its arguments; the progress callback is called from the
// caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/cluster_file.h"
#include "common/status.h"

namespace dpmfs::mkfs {

struct CheckProblem {
  // A short word for scripts: header, superblock, recovery, outside, shared, owned-free,
  // leak, unreachable, tree, links, invariant.
  std::string kind;
  std::string message;     // the whole line: what, which inode/path, range and pool
  int pool = -2;           // data pool index; -1 the metadata pool; -2 none
  uint64_t ino = 0;        // 0: none
  std::string path;        // the inode's path when it has one
  uint64_t offset = 0;     // byte range in the pool's data area (length 0: none)
  uint64_t length = 0;
};

struct CheckReport {
  std::vector<CheckProblem> problems;
  std::vector<std::string> notes;  // worth knowing, not wrong
  uint64_t inodes = 0;
  uint64_t extents = 0;
  uint64_t bytes_in_files = 0;  // primary copies
  uint64_t checkpoint_lsn = 0;
  uint64_t records_replayed = 0;
};

struct CheckOptions {
  // Told what is being done, for long work (large pools, long journals): at each step
  // and about once a second inside one.
  std::function<void(const std::string&)> progress;
};

// Checks the cluster `cluster` describes. Returns a status (exit 2 in the command) only
// when the check cannot run: a pool in use ("... in use by pid N (prog); stop it
// first"), a metadata pool that cannot be read as this cluster's metadata pool (missing,
// not a dpmfs pool, a corrupt header or superblock, another cluster's). Everything else
// it finds is a problem in the report.
Result<CheckReport> CheckCluster(const ClusterFile& cluster, const CheckOptions& options);

}  // namespace dpmfs::mkfs
