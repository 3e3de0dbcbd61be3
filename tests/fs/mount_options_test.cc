// dpmfs-mount's command line (fs/mount_options.h): both invocation shapes, our options,
// FUSE pass-through, fstab words that must not fail a mount, and clear errors.
#include "fs/atime_policy.h"
#include "fs/mount_options.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

namespace dpmfs::fs {
namespace {

Result<MountOptions> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "dpmfs-mount");
  return ParseMountArgs(static_cast<int>(args.size()), args.data());
}

bool HasFuseOption(const MountOptions& o, const std::string& opt) {
  return std::find(o.fuse_options.begin(), o.fuse_options.end(), opt) != o.fuse_options.end();
}

TEST(MountOptions, DefaultsAndPositionals) {
  auto o = Parse({"127.0.0.1:7000", "/mnt/x"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->meta_server, "127.0.0.1:7000");
  EXPECT_EQ(o->mountpoint, "/mnt/x");
  EXPECT_FALSE(o->foreground);
  EXPECT_EQ(o->persist, datapath::PersistMethod::kRead);
  EXPECT_EQ(o->transport, transport::Backend::kSoft);
  EXPECT_DOUBLE_EQ(o->attr_timeout, 1.0);
  EXPECT_DOUBLE_EQ(o->entry_timeout, 1.0);
  EXPECT_EQ(o->max_write, 1u << 20);
  EXPECT_EQ(o->poll_us, kDefaultPollUs);
  // Worker threads: 2 per CPU, at least 4, at most 64.
  const uint32_t cpus = std::thread::hardware_concurrency();
  EXPECT_EQ(o->max_threads, std::clamp(2 * cpus, 4u, 64u));
  // /proc/mounts shows the server and fuse.dpmfs.
  EXPECT_TRUE(HasFuseOption(*o, "fsname=127.0.0.1:7000"));
  EXPECT_TRUE(HasFuseOption(*o, "subtype=dpmfs"));
}

TEST(MountOptions, OurOptions) {
  auto o = Parse({"h:1", "/m", "-f", "-o",
                  "persist=imm,transport=verbs,attr_timeout=0.5,entry_timeout=0,max_threads=4",
                  "-omax_write=131072,noclone_fd,poll_us=0,log_level=debug"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->foreground);
  EXPECT_EQ(o->persist, datapath::PersistMethod::kImm);
  EXPECT_EQ(o->transport, transport::Backend::kVerbs);
  EXPECT_DOUBLE_EQ(o->attr_timeout, 0.5);
  EXPECT_DOUBLE_EQ(o->entry_timeout, 0.0);
  EXPECT_EQ(o->max_threads, 4u);
  EXPECT_EQ(o->max_write, 131072u);
  EXPECT_EQ(o->poll_us, 0u);
  EXPECT_EQ(o->log_level, "debug");
  for (const auto& f : o->fuse_options) {
    EXPECT_EQ(f.find("persist"), std::string::npos) << "ours must not reach libfuse: " << f;
  }
}

// Where a detached mount logs: syslog, stderr or an absolute file; anything else is a
// usage error naming the forms (a relative path would depend on the helper's cwd).
TEST(MountOptions, LogTarget) {
  EXPECT_EQ(Parse({"h:1", "/mnt/x"})->log, "");
  EXPECT_EQ(Parse({"h:1", "/mnt/x", "-o", "log=syslog"})->log, "syslog");
  EXPECT_EQ(Parse({"h:1", "/mnt/x", "-o", "log=stderr"})->log, "stderr");
  EXPECT_EQ(Parse({"h:1", "/mnt/x", "-o", "log=/var/log/dpmfs.log"})->log, "/var/log/dpmfs.log");
  auto bad = Parse({"h:1", "/mnt/x", "-o", "log=relative.log"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected syslog, stderr or an absolute file path"),
            std::string::npos);
  EXPECT_FALSE(Parse({"h:1", "/mnt/x", "-o", "log="}).ok());
}

TEST(MountOptions, DebugImpliesForeground) {
  auto o = Parse({"h:1", "/m", "-d"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->debug);
  EXPECT_TRUE(o->foreground);
  auto p = Parse({"h:1", "/m", "-o", "debug"});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->debug);
}

TEST(MountOptions, MountFuse3InvocationWithFstabOptions) {
  // What mount.fuse3 runs for an fstab line
  //   127.0.0.1:7000 /mnt/dpmfs fuse.dpmfs defaults,_netdev,allow_other,noatime,nofail 0 0
  auto o = Parse({"127.0.0.1:7000", "/mnt/dpmfs", "-o",
                  "rw,defaults,_netdev,allow_other,default_permissions,noatime,nosuid,nodev,"
                  "exec,suid,dev,atime,ro,nofail,auto,noauto,user,users,x-systemd.automount,"
                  "comment=x,persist=read2,dev,relatime,async,sync,dirsync,auto_unmount"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->persist, datapath::PersistMethod::kRead2);
  for (const char* kept : {"rw", "allow_other", "default_permissions", "noatime", "nosuid", "nodev",
                           "exec", "suid", "dev", "atime", "ro", "auto_unmount"}) {
    EXPECT_TRUE(HasFuseOption(*o, kept)) << kept;
  }
  for (const char* dropped : {"defaults", "_netdev", "nofail", "auto", "noauto", "user", "users",
                              "x-systemd.automount", "comment=x", "relatime"}) {
    EXPECT_FALSE(HasFuseOption(*o, dropped)) << dropped;
  }
  // The FUSE-2 "dpmfs#SOURCE" spelling.
  auto old = Parse({"dpmfs#127.0.0.1:7000", "/m"});
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->meta_server, "127.0.0.1:7000");
}

TEST(MountOptions, FsnameAndSubtypeCanBeOverridden) {
  auto o = Parse({"h:1", "/m", "-o", "fsname=mine,subtype=other"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(HasFuseOption(*o, "fsname=mine"));
  EXPECT_FALSE(HasFuseOption(*o, "fsname=h:1"));
  EXPECT_FALSE(HasFuseOption(*o, "subtype=dpmfs"));
}

TEST(MountOptions, EmptySubtypeMeansNone) {
  // xfstests (FSTYP=fuse) wants df to show plain "fuse", not "fuse.dpmfs".
  auto o = Parse({"h:1", "/m", "-o", "subtype="});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  for (const std::string& f : o->fuse_options) EXPECT_FALSE(f.starts_with("subtype=")) << f;
  EXPECT_TRUE(HasFuseOption(*o, "fsname=h:1"));
}

TEST(MountOptions, PosixAclsAreOnUnlessNoacl) {
  auto o = Parse({"h:1", "/m"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->posix_acl) << "the default is acl";
  o = Parse({"h:1", "/m", "-o", "noacl"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_FALSE(o->posix_acl);
  EXPECT_FALSE(HasFuseOption(*o, "noacl")) << "ours must not reach libfuse";
  o = Parse({"h:1", "/m", "-o", "noacl,acl"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->posix_acl) << "the last one wins";
}

TEST(MountOptions, Lookupcache) {
  auto o = Parse({"h:1", "/m"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->lookupcache_negative) << "the default is lookupcache=all";
  o = Parse({"h:1", "/m", "-o", "lookupcache=positive"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_FALSE(o->lookupcache_negative);
  EXPECT_FALSE(HasFuseOption(*o, "lookupcache=positive")) << "ours must not reach libfuse";
  o = Parse({"h:1", "/m", "-o", "lookupcache=positive,lookupcache=all"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->lookupcache_negative);
  o = Parse({"h:1", "/m", "-o", "lookupcache=none"});
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("lookupcache"), std::string::npos);
}

TEST(MountOptions, AtimeRules) {
  auto o = Parse({"h:1", "/m"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->atime, AtimePolicy::kRelatime) << "relatime is the default, as on Linux";
  o = Parse({"h:1", "/m", "-o", "strictatime"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->atime, AtimePolicy::kStrictatime);
  EXPECT_FALSE(HasFuseOption(*o, "strictatime")) << "libfuse 3.14 refuses it";
  o = Parse({"h:1", "/m", "-o", "noatime"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->atime, AtimePolicy::kNoatime);
  EXPECT_TRUE(HasFuseOption(*o, "noatime")) << "so that /proc/mounts shows it";
  o = Parse({"h:1", "/m", "-o", "noatime,relatime"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->atime, AtimePolicy::kRelatime) << "the last one given wins";
}

// A read-only mount never updates access times (xfstests generic/003: ro,strictatime).
TEST(MountOptions, ReadOnlyMeansNoatime) {
  auto o = Parse({"h:1", "/m", "-o", "ro,strictatime"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->read_only);
  EXPECT_EQ(o->atime, AtimePolicy::kNoatime);
  EXPECT_TRUE(HasFuseOption(*o, "ro")) << "the kernel refuses the writes";
  o = Parse({"h:1", "/m", "-o", "strictatime", "-o", "ro"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->atime, AtimePolicy::kNoatime);
  o = Parse({"h:1", "/m", "-o", "ro,rw,strictatime"});
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->read_only) << "the last of ro and rw wins";
  EXPECT_EQ(o->atime, AtimePolicy::kStrictatime);
}

TEST(MountOptions, OdirectPath) {
  auto o = Parse({"h:1", "/m"});
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->odirect_direct_io) << "the kernel's O_DIRECT path is the default";
  o = Parse({"h:1", "/m", "-o", "odirect=direct_io"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->odirect_direct_io);
  EXPECT_FALSE(HasFuseOption(*o, "odirect=direct_io")) << "ours must not reach libfuse";
  o = Parse({"h:1", "/m", "-o", "odirect=fast"});
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("odirect"), std::string::npos);
}

// The kernel's relatime_need_update, strictatime and noatime.
TEST(AtimePolicy, UpdateDue) {
  meta::InodeAttr a;
  a.mtime = {1000, 5};
  a.ctime = {1000, 5};
  const meta::Timespec now{5000, 0};
  a.atime = {1000, 5};  // not later than mtime
  EXPECT_TRUE(AtimeUpdateDue(AtimePolicy::kRelatime, a, now));
  a.atime = {1000, 6};  // later than both, less than a day old
  EXPECT_FALSE(AtimeUpdateDue(AtimePolicy::kRelatime, a, now));
  EXPECT_TRUE(AtimeUpdateDue(AtimePolicy::kStrictatime, a, now));
  a.ctime = {2000, 0};  // changed since (chmod, ...)
  EXPECT_TRUE(AtimeUpdateDue(AtimePolicy::kRelatime, a, now));
  a.ctime = {1000, 5};
  EXPECT_TRUE(AtimeUpdateDue(AtimePolicy::kRelatime, a, {1000 + 86400, 6})) << "a day old";
  EXPECT_FALSE(AtimeUpdateDue(AtimePolicy::kRelatime, a, {1000 + 86399, 0}));
  a.atime = {0, 0};
  EXPECT_FALSE(AtimeUpdateDue(AtimePolicy::kNoatime, a, now));
}

TEST(MountOptions, ErrorsNameWhatIsWrong) {
  auto expect_error = [](std::vector<const char*> args, const std::string& needle) {
    auto o = Parse(args);
    ASSERT_FALSE(o.ok()) << needle;
    EXPECT_NE(o.status().message().find(needle), std::string::npos) << o.status().ToString();
  };
  expect_error({"h:1"}, "two arguments");
  expect_error({"h:1", "/m", "/x"}, "two arguments");
  expect_error({"h:1", "/m", "-o", "bogus_option"}, "bogus_option");
  expect_error({"h:1", "/m", "-o", "persist=carrier-pigeon"}, "persist");
  expect_error({"h:1", "/m", "-o", "transport=tcp"}, "transport");
  expect_error({"h:1", "/m", "-o", "attr_timeout=abc"}, "attr_timeout");
  expect_error({"h:1", "/m", "-o", "attr_timeout=-1"}, "attr_timeout");
  expect_error({"h:1", "/m", "-o", "max_threads=0"}, "max_threads");
  expect_error({"h:1", "/m", "-o", "max_write=99999999"}, "max_write");
  expect_error({"h:1", "/m", "-o", "poll_us=100001"}, "poll_us");
  expect_error({"h:1", "/m", "-o", "poll_us"}, "needs a value");
  expect_error({"h:1", "/m", "-o", "persist"}, "needs a value");
  expect_error({"h:1", "/m", "-o"}, "-o");
  expect_error({"h:1", "/m", "--frobnicate"}, "--frobnicate");
  expect_error({"h:1", "/m", "-o", "blkdev"}, "blkdev");  // fuseblk only
}

TEST(MountOptions, HelpNeedsNoArguments) {
  auto o = Parse({"--help"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->show_help);
  std::string usage = MountUsage("dpmfs-mount");
  for (const char* word : {"persist=", "transport=", "attr_timeout=", "entry_timeout=",
                           "allow_other", "default_permissions", "max_threads="}) {
    EXPECT_NE(usage.find(word), std::string::npos) << word;
  }
}

TEST(MountOptions, SplitOptionListHonoursEscapedCommas) {
  EXPECT_EQ(SplitOptionList("a,b\\,c,d"), (std::vector<std::string>{"a", "b,c", "d"}));
  EXPECT_EQ(SplitOptionList(""), (std::vector<std::string>{""}));
}

}  // namespace
}  // namespace dpmfs::fs
