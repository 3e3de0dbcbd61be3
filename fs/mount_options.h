// The command line of dpmfs-mount, in both shapes it is invoked with:
//   dpmfs-mount MDS_HOST:PORT MOUNTPOINT [-f] [-d] [-s] [-o opt,opt,...]   (a user)
//   PROG SOURCE MOUNTPOINT -o opt,...                                      (mount.fuse3)
// Options are ours (persist=, transport=, attr_timeout=, ...), FUSE/VFS mount options
// handed to libfuse (ro, nosuid, allow_other, default_permissions, fsname=, ...), or
// mount(8)/fstab words that mean nothing to a FUSE daemon (defaults, _netdev, auto,
// nofail, x-systemd.*, ...) and are dropped so that an fstab line never makes the
// mount fail. Anything else is an error naming the option.
//
// Thread-safety: values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"
#include "fs/atime_policy.h"

namespace dpmfs::fs {

// Request worker threads unless -o max_threads= says otherwise: 2 per CPU, 4..64.
// libfuse's 10 is more than 2 CPUs use: on 2 vCPUs, 4 threads measured 4-6% more
// 4 KiB random-read and 4-job fdatasync-write IOPS than 10 (metadata unchanged).
uint32_t DefaultMaxThreads();

// -o poll_us= unless given: see fs/README.md ("The request loop") for the measurement.
inline constexpr uint32_t kDefaultPollUs = 200;

struct MountOptions {
  std::string meta_server;  // "host:port" of dpmfs-meta, as given
  std::string mountpoint;

  bool foreground = false;     // -f (and -d): do not daemonize
  bool debug = false;          // -d or -o debug: libfuse prints every request
  bool single_thread = false;  // -s: one request thread (max_threads=1)
  bool show_help = false;
  bool show_version = false;

  datapath::PersistMethod persist = datapath::PersistMethod::kRead;
  transport::Backend transport = transport::Backend::kSoft;
  double attr_timeout = 1.0;      // seconds the kernel may cache attributes
  double entry_timeout = 1.0;     // seconds the kernel may cache name -> inode
  uint32_t max_threads = DefaultMaxThreads();  // worker threads of the multithreaded loop
  uint32_t statahead = 8;         // lookups in a row in one directory before it is listed
                                  // (fs/stat_ahead.h); 0: never
  // lookupcache=all (default): a statahead listing also answers "absent" for
  // entry_timeout. lookupcache=positive: absent names are always asked of the server
  // (as NFS's option), so another client's new file is found at once.
  bool lookupcache_negative = true;
  // When reads update the access time (fs/atime_policy.h): relatime (default),
  // strictatime, noatime; the last of them given wins, as with mount(8). Always
  // noatime on a read-only mount.
  AtimePolicy atime = AtimePolicy::kRelatime;
  bool read_only = false;  // -o ro (the last of ro and rw wins)
  // odirect=kernel (default): O_DIRECT opens use the kernel's O_DIRECT path for FUSE
  // (mappable, set-ID bits cleared by direct writes). odirect=direct_io: FUSE's
  // direct_io for them, one FUSE round trip less per write, but mmap of such a
  // descriptor fails (ENODEV) and direct writes keep set-user-ID/set-group-ID.
  bool odirect_direct_io = false;
  // acl (default): POSIX ACLs (system.posix_acl_access/default) are stored by the
  // metadata server, enforced by the kernel, inherited by new inodes, and the umask is
  // applied by the server unless the parent has a default ACL (FUSE_CAP_POSIX_ACL and
  // FUSE_CAP_DONT_MASK). noacl: modes only, as a file system without ACLs.
  bool posix_acl = true;
  // Microseconds the thread reading /dev/fuse keeps polling it after a request before
  // it sleeps (fs/session_loop.h); 0: sleep at once.
  uint32_t poll_us = kDefaultPollUs;
  uint32_t max_write = 1u << 20;  // largest WRITE request the kernel sends
  std::string log_level;          // -o log_level=debug; empty: $DPMFS_LOG_LEVEL or info
  // -o key_file=PATH: the cluster key; empty: $DPMFS_KEY_FILE, else /etc/dpmfs/cluster.key
  std::string key_file;
  // -o log=syslog|stderr|/PATH: where a mount's log goes. Empty (default): stderr in the
  // foreground; once a background mount detaches, syslog, unless stderr was redirected
  // to a file (`2>mount.log`), which keeps it. A /PATH file is created mode 0600.
  std::string log;

  // Options for libfuse's fuse_session_new ("-o" list, already validated), in order.
  std::vector<std::string> fuse_options;
};

// Parses argv (argv[0] is the program). InvalidArgument with a message naming the bad
// argument or option; a lone --help/-h or --version/-V returns with show_help /
// show_version set and the positional arguments not required.
Result<MountOptions> ParseMountArgs(int argc, const char* const* argv);

// Splits one "-o" value at commas (a backslash escapes a comma, as mount(8) allows).
std::vector<std::string> SplitOptionList(std::string_view list);

// The --help text.
std::string MountUsage(std::string_view program);

}  // namespace dpmfs::fs
