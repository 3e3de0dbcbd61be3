#include "fs/mount_options.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <thread>

namespace dpmfs::fs {
namespace {

// Options libfuse 3.14's fuse_session_new understands (the FUSE and VFS mount options
// of mount.fuse(8)); passed on unchanged. Names ending in '=' take a value. (blkdev and
// blksize= are for fuseblk file systems on a block device: not ours, so unknown here.)
// clang-format off
constexpr std::array<std::string_view, 25> kFuseOptions = {
    "rw",          "ro",           "suid",          "nosuid",     "dev",
    "nodev",       "exec",         "noexec",        "async",      "sync",
    "dirsync",     "atime",        "noatime",       "allow_other", "allow_root",
    "auto_unmount", "default_permissions", "fsname=", "subtype=",  "max_read=",
    "context=",    "fscontext=",   "defcontext=",   "rootcontext=", "user=",
};

// Dropped: mount(8)/fstab words that are not mount options (defaults, _netdev, auto,
// nofail, user, ...), atime variants libfuse 3.14 refuses although mount(8) users
// write them and that say nothing to dpmfs (relatime, strictatime and noatime are
// parsed above: the client applies them itself), and FUSE-2 options. So an fstab line or an old habit never makes the mount fail.
constexpr std::array<std::string_view, 26> kIgnoredOptions = {
    "defaults", "_netdev", "auto",      "noauto",     "nofail",    "user",
    "nouser",   "users",   "owner",     "group",      "silent",    "loud",
    "relatime", "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime",
    "lazytime", "nolazytime", "iversion", "noiversion",
    "nonempty", "big_writes", "hard_remove", "use_ino",
};
// clang-format on

bool Matches(std::string_view option, std::string_view pattern) {
  if (pattern.ends_with('=')) return option.starts_with(pattern);
  return option == pattern;
}

Status ParseSeconds(std::string_view name, std::string_view value, double* out) {
  std::string s(value);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < 0 || v > 86400 * 365) {
    return Status::InvalidArgument("option " + std::string(name) + "=" + s +
                                   ": expected a number of seconds >= 0 (e.g. 1 or 0.5)");
  }
  *out = v;
  return Status::OK();
}

// An option with two values: *out = (value == when_true); anything else is an error
// naming both.
Status ParseEitherOr(std::string_view name, std::string_view value, std::string_view when_true,
                     std::string_view when_false, bool* out) {
  if (value != when_true && value != when_false) {
    return Status::InvalidArgument("option " + std::string(name) + "=" + std::string(value) +
                                   ": expected " + std::string(when_true) + " or " +
                                   std::string(when_false));
  }
  *out = value == when_true;
  return Status::OK();
}

Status ParseUnsigned(std::string_view name, std::string_view value, uint64_t min, uint64_t max,
                     uint64_t* out) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (value.empty() || ec != std::errc() || p != value.data() + value.size() || v < min ||
      v > max) {
    return Status::InvalidArgument("option " + std::string(name) + "=" + std::string(value) +
                                   ": expected an integer in " + std::to_string(min) + ".." +
                                   std::to_string(max));
  }
  *out = v;
  return Status::OK();
}

// One option of a -o list.
Status ApplyOption(std::string_view opt, MountOptions* o) {
  if (opt.empty()) return Status::OK();
  std::string_view name = opt, value;
  bool has_value = false;
  if (size_t eq = opt.find('='); eq != std::string_view::npos) {
    name = opt.substr(0, eq);
    value = opt.substr(eq + 1);
    has_value = true;
  }
  auto need_value = [&]() -> Status {
    if (!has_value) {
      return Status::InvalidArgument("option " + std::string(name) + " needs a value (" +
                                     std::string(name) + "=...)");
    }
    return Status::OK();
  };
  if (name == "persist") {
    DPMFS_RETURN_IF_ERROR(need_value());
    auto m = datapath::ParsePersistMethod(value);
    if (!m.ok()) return m.status().WithContext("option persist");
    o->persist = *m;
    return Status::OK();
  }
  if (name == "key_file") {
    DPMFS_RETURN_IF_ERROR(need_value());
    o->key_file = std::string(value);
    return Status::OK();
  }
  if (name == "transport") {
    DPMFS_RETURN_IF_ERROR(need_value());
    auto b = transport::ParseBackend(value);
    if (!b.ok()) return b.status().WithContext("option transport");
    o->transport = *b;
    return Status::OK();
  }
  if (name == "attr_timeout") {
    DPMFS_RETURN_IF_ERROR(need_value());
    return ParseSeconds(name, value, &o->attr_timeout);
  }
  if (name == "entry_timeout") {
    DPMFS_RETURN_IF_ERROR(need_value());
    return ParseSeconds(name, value, &o->entry_timeout);
  }
  if (name == "max_threads") {
    DPMFS_RETURN_IF_ERROR(need_value());
    uint64_t v = 0;
    DPMFS_RETURN_IF_ERROR(ParseUnsigned(name, value, 1, 1024, &v));
    o->max_threads = static_cast<uint32_t>(v);
    return Status::OK();
  }
  if (name == "statahead") {
    DPMFS_RETURN_IF_ERROR(need_value());
    uint64_t v = 0;
    DPMFS_RETURN_IF_ERROR(ParseUnsigned(name, value, 0, 1000000, &v));
    o->statahead = static_cast<uint32_t>(v);
    return Status::OK();
  }
  // The access-time rule is ours to apply (FUSE leaves atime to the file system);
  // noatime and atime still go to libfuse too, so /proc/mounts shows them.
  if (name == "relatime" || name == "atime") {
    o->atime = AtimePolicy::kRelatime;
    if (name == "atime") o->fuse_options.emplace_back(name);
    return Status::OK();
  }
  if (name == "strictatime") {
    o->atime = AtimePolicy::kStrictatime;
    return Status::OK();
  }
  if (name == "noatime") {
    o->atime = AtimePolicy::kNoatime;
    o->fuse_options.emplace_back(name);
    return Status::OK();
  }
  // Still passed to libfuse (the kernel refuses writes); remembered for the atime.
  if (opt == "ro" || opt == "rw") {
    o->read_only = opt == "ro";
    o->fuse_options.emplace_back(opt);
    return Status::OK();
  }
  if (name == "odirect") {
    DPMFS_RETURN_IF_ERROR(need_value());
    return ParseEitherOr(name, value, "direct_io", "kernel", &o->odirect_direct_io);
  }
  if (name == "lookupcache") {
    DPMFS_RETURN_IF_ERROR(need_value());
    return ParseEitherOr(name, value, "all", "positive", &o->lookupcache_negative);
  }
  if (opt == "acl" || opt == "noacl") {
    o->posix_acl = opt == "acl";
    return Status::OK();
  }
  if (name == "max_write") {
    DPMFS_RETURN_IF_ERROR(need_value());
    uint64_t v = 0;
    DPMFS_RETURN_IF_ERROR(ParseUnsigned(name, value, 4096, 1u << 20, &v));
    o->max_write = static_cast<uint32_t>(v);
    return Status::OK();
  }
  if (name == "log") {
    DPMFS_RETURN_IF_ERROR(need_value());
    if (value != "syslog" && value != "stderr" && (value.empty() || value[0] != '/')) {
      return Status::InvalidArgument("log=" + std::string(value) +
                                     ": expected syslog, stderr or an absolute file path");
    }
    o->log = std::string(value);
    return Status::OK();
  }
  if (name == "log_level") {
    DPMFS_RETURN_IF_ERROR(need_value());
    o->log_level = std::string(value);
    return Status::OK();
  }
  if (opt == "debug") {
    o->debug = true;
    return Status::OK();
  }
  if (name == "poll_us") {
    DPMFS_RETURN_IF_ERROR(need_value());
    uint64_t v = 0;
    DPMFS_RETURN_IF_ERROR(ParseUnsigned(name, value, 0, 100000, &v));
    o->poll_us = static_cast<uint32_t>(v);
    return Status::OK();
  }
  if (opt == "clone_fd" || opt == "noclone_fd") {
    // Options of libfuse's loop, which dpmfs-mount no longer runs (one thread reads
    // /dev/fuse at a time): accepted so that existing fstab lines keep mounting.
    return Status::OK();
  }
  for (std::string_view p : kFuseOptions) {
    if (Matches(opt, p)) {
      o->fuse_options.emplace_back(opt);
      return Status::OK();
    }
  }
  for (std::string_view p : kIgnoredOptions) {
    if (Matches(opt, p)) return Status::OK();
  }
  // fstab's x-systemd.automount, x-gvfs-show, comment=...: for other programs.
  if (opt.starts_with("x-") || opt.starts_with("comment=")) return Status::OK();
  return Status::InvalidArgument("unknown mount option '" + std::string(opt) +
                                 "' (see dpmfs-mount --help)");
}

}  // namespace

uint32_t DefaultMaxThreads() {
  return std::clamp(2 * std::thread::hardware_concurrency(), 4u, 64u);
}

std::vector<std::string> SplitOptionList(std::string_view list) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < list.size(); ++i) {
    char c = list[i];
    if (c == '\\' && i + 1 < list.size()) {
      cur.push_back(list[++i]);
    } else if (c == ',') {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(std::move(cur));
  return out;
}

Result<MountOptions> ParseMountArgs(int argc, const char* const* argv) {
  MountOptions o;
  std::vector<std::string> positional;
  std::vector<std::string> option_lists;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") {
      o.show_help = true;
    } else if (a == "-V" || a == "--version") {
      o.show_version = true;
    } else if (a == "-f") {
      o.foreground = true;
    } else if (a == "-d" || a == "--debug") {
      o.debug = true;
      o.foreground = true;
    } else if (a == "-s") {
      o.single_thread = true;
    } else if (a == "-o") {
      if (i + 1 >= argc) return Status::InvalidArgument("-o needs an option list");
      option_lists.emplace_back(argv[++i]);
    } else if (a.starts_with("-o")) {
      option_lists.emplace_back(a.substr(2));
    } else if (a == "-n" || a == "-v") {
      // mount(8) helper flags (no mtab / verbose) that mount.fuse3 may pass on.
    } else if (a.size() > 1 && a[0] == '-') {
      return Status::InvalidArgument("unknown flag '" + std::string(a) +
                                     "' (see dpmfs-mount --help)");
    } else {
      positional.emplace_back(a);
    }
  }
  for (const std::string& list : option_lists) {
    for (const std::string& opt : SplitOptionList(list))
      DPMFS_RETURN_IF_ERROR(ApplyOption(opt, &o));
  }
  // A read-only mount never updates access times, whatever rule was asked for (as
  // Linux's touch_atime: xfstests generic/003 mounts "ro,strictatime"). FUSE leaves
  // atime to us, so the kernel's own check never runs.
  if (o.read_only) o.atime = AtimePolicy::kNoatime;
  if (o.show_help || o.show_version) return o;
  if (positional.size() != 2) {
    return Status::InvalidArgument(
        "expected two arguments, the metadata server (HOST:PORT) and the mount point; got " +
        std::to_string(positional.size()));
  }
  o.meta_server = positional[0];
  o.mountpoint = positional[1];
  // mount.fuse3 may hand us SOURCE as "dpmfs#HOST:PORT" (the FUSE-2 fstab spelling).
  if (size_t hash = o.meta_server.find('#'); hash != std::string::npos) {
    o.meta_server = o.meta_server.substr(hash + 1);
  }
  bool has_fsname = false, has_subtype = false;
  for (const std::string& f : o.fuse_options) {
    has_fsname |= f.starts_with("fsname=");
    has_subtype |= f.starts_with("subtype=");
  }
  // /proc/mounts then reads "HOST:PORT /mnt fuse.dpmfs", which is what mount -t
  // fuse.dpmfs and umount expect to see. An empty `subtype=` asks for none: the mount
  // shows as plain "fuse", as xfstests (FSTYP=fuse) checks with df.
  // Always default_permissions: the kernel checks every access against the modes
  // before it asks us, as for a local file system. The metadata server checks them
  // again (metadata/permissions.h), but it alone cannot protect a mount: the kernel's
  // dentry and attribute caches are shared by every user of the mount, so without the
  // kernel's own check a path another user already walked would be answered from the
  // cache, never reaching the server's search-permission check. It also saves the
  // ACCESS round trips the kernel would send us otherwise.
  if (std::find(o.fuse_options.begin(), o.fuse_options.end(), "default_permissions") ==
      o.fuse_options.end()) {
    o.fuse_options.push_back("default_permissions");
  }
  if (!has_fsname) o.fuse_options.push_back("fsname=" + o.meta_server);
  if (!has_subtype) o.fuse_options.push_back("subtype=dpmfs");
  std::erase(o.fuse_options, std::string("subtype="));
  return o;
}

std::string MountUsage(std::string_view program) {
  std::string p(program);
  return "Usage: " + p +
         " MDS_HOST:PORT MOUNTPOINT [-f] [-d] [-s] [-o OPT[,OPT...]]\n"
         "\n"
         "Mounts the dpmfs file system served by the metadata server at MDS_HOST:PORT.\n"
         "File data goes straight to the data servers (one-sided RDMA READ/WRITE); a write\n"
         "returns only once its data is durable on the remote persistent memory.\n"
         "Also works as a mount.fuse3 helper: mount -t fuse.dpmfs HOST:PORT /mnt -o ...\n"
         "\n"
         "Flags:\n"
         "  -f                 stay in the foreground (default: daemonize once mounted)\n"
         "  -d                 FUSE debug output (implies -f)\n"
         "  -s                 single-threaded request loop\n"
         "  -h, --help         this text\n"
         "  -V, --version      version\n"
         "\n"
         "dpmfs options (-o):\n"
         "  persist=METHOD     how writes are made durable: read (default), read2, imm, rpc,\n"
         "                     flush, none (none is NOT durable; for comparison only)\n"
         "  transport=soft|verbs   RDMA transport (default soft: software NIC over TCP)\n"
         "  key_file=PATH      the cluster key (default $DPMFS_KEY_FILE, else\n"
         "                     /etc/dpmfs/cluster.key; docs/security.md)\n"
         "  attr_timeout=SEC   kernel attribute cache time (default 1)\n"
         "  entry_timeout=SEC  kernel name cache time (default 1)\n"
         "  max_threads=N      request worker threads (default 2 per CPU, 4..64)\n"
         "  statahead=N        after N lookups in a row in one directory, list it with\n"
         "                     attributes and answer its lookups from that for\n"
         "                     entry_timeout (default 8; 0 = off)\n"
         "  lookupcache=all|positive   all (default): a statahead listing also answers that\n"
         "                     a name is absent, for entry_timeout; positive: absent names\n"
         "                     are always asked of the metadata server\n"
         "  relatime|strictatime|noatime   when reads update the access time: when it\n"
         "                     is not later than the last change or a day old (relatime,\n"
         "                     default), at every read, or never; shown at once, committed\n"
         "                     to the metadata server when the file is closed\n"
         "  odirect=kernel|direct_io   O_DIRECT opens: the kernel's O_DIRECT path (default:\n"
         "                     such files can be mapped, direct writes clear set-ID bits) or\n"
         "                     FUSE direct_io (about 20% faster 4 KiB direct writes, but\n"
         "                     mmap of an O_DIRECT descriptor fails and set-ID bits stay)\n"
         "  acl|noacl          POSIX ACLs (setfacl, getfacl; default acl): enforced by the\n"
         "                     kernel, inherited from a directory's default ACL, which then\n"
         "                     replaces the umask; noacl: file modes only\n"
         "  max_write=BYTES    largest write request (4096..1048576, default 1048576)\n"
         "  poll_us=N          microseconds the thread reading /dev/fuse keeps polling it\n"
         "                     after a request before it sleeps: less latency for a CPU's\n"
         "                     worth of polling while busy (default 200; 0 = off)\n"
         "  log_level=LEVEL    trace|debug|info|warn|error (default $DPMFS_LOG_LEVEL or info)\n"
         "  log=syslog|stderr|/PATH   where the log goes (default: stderr in the foreground;\n"
         "                     syslog once a background mount (mount(8), fstab) detaches,\n"
         "                     unless stderr is a file); a /PATH file is made mode 0600\n"
         "  debug              as -d\n"
         "\n"
         "FUSE/VFS options passed to the kernel: allow_other, allow_root, default_permissions,\n"
         "auto_unmount, ro, rw, nosuid, suid, nodev, dev, noexec, exec, sync, async, dirsync,\n"
         "noatime, atime, relatime, fsname=, subtype= (default dpmfs; empty: none, the\n"
         "mount shows as plain fuse), max_read=, ...\n"
         "Ignored fstab words: defaults, _netdev, auto, noauto, nofail, user, users, x-*.\n";
}

}  // namespace dpmfs::fs
