// POSIX ACLs (metadata/posix_acl.*): the xattr format, validation, the access check,
// chmod and inheritance, checked case by case and then against the kernel itself: random
// ACLs are set on a file of a tmpfs (which implements them), and every decision of the
// module is compared with what Linux decided for the same ACL (accepted or refused, the
// bytes it stores, the mode it derives, access(2) for random callers, chmod, and what a
// new file or directory inherits).
#include "metadata/posix_acl.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "metadata/permissions.h"

namespace dpmfs::meta::acl {
namespace {

using perm::kExec;
using perm::kRead;
using perm::kWrite;

Entry E(Tag t, uint16_t perm, uint32_t id = kUndefinedId) { return Entry{t, perm, id}; }

InodeAttr Attr(uint32_t mode, uint32_t uid, uint32_t gid) {
  InodeAttr a;
  a.mode = mode;
  a.uid = uid;
  a.gid = gid;
  return a;
}

Credentials Caller(uint32_t uid, uint32_t gid, std::vector<uint32_t> groups = {}) {
  Credentials c;
  c.uid = uid;
  c.gid = gid;
  c.groups.assign(groups.begin(), groups.end());
  return c;
}

// user::rw- user:1001:rwx group::r-- group:2001:-w- mask::rw- other::---
PosixAcl Sample() {
  return PosixAcl{{E(Tag::kUserObj, 6), E(Tag::kUser, 7, 1001), E(Tag::kGroupObj, 4),
                   E(Tag::kGroup, 2, 2001), E(Tag::kMask, 6), E(Tag::kOther, 0)}};
}

TEST(PosixAclTest, EncodesTheKernelsLayoutAndDecodesItBack) {
  std::vector<uint8_t> bytes = Encode(Sample());
  ASSERT_EQ(bytes.size(), 4u + 6 * 8);
  EXPECT_EQ(bytes[0], 2);  // version 2, little-endian
  EXPECT_EQ(bytes[4], 0x01);  // first entry: USER_OBJ
  EXPECT_EQ(bytes[8], 0xff);  // its id: ACL_UNDEFINED_ID
  EXPECT_EQ(bytes[12], 0x02);  // USER
  EXPECT_EQ(bytes[16] | bytes[17] << 8, 1001);
  Result<PosixAcl> back = Decode(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, Sample());
}

TEST(PosixAclTest, RefusesWhatTheKernelRefuses) {
  auto refused = [](PosixAcl acl, const char* why) {
    Result<PosixAcl> r = Decode(Encode(acl));
    EXPECT_FALSE(r.ok()) << why;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << why;
    }
  };
  refused({{E(Tag::kUserObj, 6), E(Tag::kUser, 7, 1001), E(Tag::kGroupObj, 4), E(Tag::kOther, 0)}},
          "a named entry without a mask");
  refused({{E(Tag::kGroupObj, 4), E(Tag::kUserObj, 6), E(Tag::kOther, 0)}}, "out of order");
  refused({{E(Tag::kUserObj, 6), E(Tag::kGroupObj, 4)}}, "no other entry");
  refused({{E(Tag::kUserObj, 8), E(Tag::kGroupObj, 4), E(Tag::kOther, 0)}}, "perm beyond rwx");
  refused({{E(Tag::kUserObj, 6), E(Tag::kGroupObj, 4), E(Tag::kOther, 0), E(Tag::kOther, 0)}},
          "an entry after other");
  refused({{E(Tag::kUserObj, 6), E(Tag::kUser, 7, kUndefinedId), E(Tag::kGroupObj, 4),
            E(Tag::kMask, 7), E(Tag::kOther, 0)}},
          "a named user without an id");
  refused({{E(Tag::kUserObj, 6), E(static_cast<Tag>(0x40), 4), E(Tag::kGroupObj, 4),
            E(Tag::kOther, 0)}},
          "an unknown tag");
  std::vector<uint8_t> bytes = Encode(Sample());
  bytes[0] = 1;
  EXPECT_FALSE(Decode(bytes).ok()) << "version 1";
  bytes = Encode(Sample());
  bytes.pop_back();
  EXPECT_FALSE(Decode(bytes).ok()) << "a truncated entry";
  EXPECT_FALSE(Decode({}).ok()) << "an empty value";
  EXPECT_FALSE(Decode(std::vector<uint8_t>{2, 0, 0, 0}).ok()) << "a header alone";
  // A mask without named entries is valid (the kernel accepts it, setfacl writes it).
  EXPECT_TRUE(
      Decode(Encode({{E(Tag::kUserObj, 6), E(Tag::kGroupObj, 4), E(Tag::kMask, 4), E(Tag::kOther, 0)}}))
          .ok());
}

TEST(PosixAclTest, AccessFollowsTheEntryThatMatchesLimitedByTheMask) {
  const PosixAcl acl = Sample();
  const InodeAttr a = Attr(S_IFREG | 0660, 1000, 2000);
  EXPECT_EQ(Permission(acl, Caller(1000, 9), a, kRead | kWrite), 0) << "owner: user::rw-";
  EXPECT_EQ(Permission(acl, Caller(1000, 9), a, kExec), EACCES) << "the owner's entry is not masked";
  EXPECT_EQ(Permission(acl, Caller(1001, 9), a, kRead | kWrite), 0) << "user:1001 within the mask";
  EXPECT_EQ(Permission(acl, Caller(1001, 9), a, kExec), EACCES) << "x of user:1001 is masked";
  EXPECT_EQ(Permission(acl, Caller(1005, 2000), a, kRead), 0) << "owning group r--";
  EXPECT_EQ(Permission(acl, Caller(1005, 2000), a, kWrite), EACCES);
  EXPECT_EQ(Permission(acl, Caller(1005, 9, {2001}), a, kWrite), 0) << "group:2001 -w-";
  EXPECT_EQ(Permission(acl, Caller(1005, 2000, {2001}), a, kWrite), 0)
      << "any of the caller's group entries that grants, grants";
  EXPECT_EQ(Permission(acl, Caller(1005, 2000, {2001}), a, kRead | kWrite), EACCES)
      << "but entries are not combined";
  EXPECT_EQ(Permission(acl, Caller(1005, 9), a, kRead), EACCES) << "other ---";
  PosixAcl open_other = acl;
  open_other.entries.back().perm = 4;
  EXPECT_EQ(Permission(open_other, Caller(1005, 9), a, kRead), 0) << "other r--";
  EXPECT_EQ(Permission(open_other, Caller(1005, 2000), a, kWrite), EACCES)
      << "a matching group entry that does not grant denies, whatever other says";
}

TEST(PosixAclTest, ChmodRewritesTheClassEntriesAndModeOfReadsThemBack) {
  PosixAcl acl = Sample();
  Chmod(&acl, 0750);
  EXPECT_EQ(acl.entries[0], E(Tag::kUserObj, 7));
  EXPECT_EQ(acl.entries[1], E(Tag::kUser, 7, 1001)) << "named entries keep their bits";
  EXPECT_EQ(acl.entries[2], E(Tag::kGroupObj, 4)) << "with a mask, chmod's group bits go to it";
  EXPECT_EQ(acl.entries[4], E(Tag::kMask, 5));
  EXPECT_EQ(acl.entries[5], E(Tag::kOther, 0));
  EXPECT_EQ(ModeOf(acl).bits, 0750u);
  EXPECT_FALSE(ModeOf(acl).equivalent);
  PosixAcl plain = FromMode(0640);
  EXPECT_TRUE(ModeOf(plain).equivalent);
  Chmod(&plain, 0604);
  EXPECT_EQ(ModeOf(plain).bits, 0604u);
}

TEST(PosixAclTest, NewInodesInheritTheDefaultAclInsteadOfTheUmask) {
  NewInodeAcl none = ForNewInode(nullptr, S_IFREG | 0666, 022);
  EXPECT_EQ(none.mode, S_IFREG | 0644u) << "no default ACL: the umask";
  EXPECT_FALSE(none.access.has_value());
  const PosixAcl def = Sample();
  NewInodeAcl file = ForNewInode(&def, S_IFREG | 0666, 077);
  EXPECT_EQ(file.mode, S_IFREG | 0660u) << "default ACL: no umask; user rw, mask rw, other ---";
  ASSERT_TRUE(file.access.has_value());
  EXPECT_EQ(file.access->entries[1], E(Tag::kUser, 7, 1001)) << "named entries are copied as is";
  EXPECT_FALSE(file.default_acl.has_value()) << "only directories take a default ACL";
  NewInodeAcl dir = ForNewInode(&def, S_IFDIR | 0700, 0);
  EXPECT_EQ(dir.mode, S_IFDIR | 0600u) << "user::rw- limits the owner's bits, the mask the group's";
  ASSERT_TRUE(dir.default_acl.has_value());
  EXPECT_EQ(*dir.default_acl, def);
  const PosixAcl plain = FromMode(0755);
  NewInodeAcl eq = ForNewInode(&plain, S_IFREG | 0666, 0);
  EXPECT_EQ(eq.mode, S_IFREG | 0644u);
  EXPECT_FALSE(eq.access.has_value()) << "an ACL the mode says entirely is not stored";
  NewInodeAcl link = ForNewInode(&def, S_IFLNK | 0777, 077);
  EXPECT_EQ(link.mode, S_IFLNK | 0777u);
  EXPECT_FALSE(link.access.has_value());
}

std::string Describe(const PosixAcl& acl) {
  std::string s;
  for (const Entry& e : acl.entries) {
    s += std::to_string(static_cast<int>(e.tag)) + ":" +
         (e.id == kUndefinedId ? std::string("-") : std::to_string(e.id)) + ":" +
         std::to_string(e.perm) + " ";
  }
  return s;
}

// ---- against the kernel --------------------------------------------------------------

// Per-thread credentials through the raw system calls (glibc's wrappers would change
// every thread of the test): effective ids only, so the thread can become root again.
class ActAs {
 public:
  explicit ActAs(const Credentials& c) {
    std::vector<gid_t> groups(c.groups.begin(), c.groups.end());
    ok_ = syscall(SYS_setgroups, groups.size(), groups.data()) == 0 &&
          syscall(SYS_setresgid, -1, c.gid, -1) == 0 && syscall(SYS_setresuid, -1, c.uid, -1) == 0;
  }
  ~ActAs() {
    (void)!syscall(SYS_setresuid, -1, 0, -1);
    (void)!syscall(SYS_setresgid, -1, 0, -1);
    (void)!syscall(SYS_setgroups, 0, nullptr);
  }
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

class PosixAclKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (to act as other users)";
    char tmpl[] = "/dev/shm/dpmfs-acl-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    std::string probe = dir_ + "/probe";
    ASSERT_EQ(Create(probe, 0644), 0);
    std::vector<uint8_t> v = Encode(FromMode(0644));
    if (::setxattr(probe.c_str(), kAccessXattr.data(), v.data(), v.size(), 0) != 0 &&
        (errno == EOPNOTSUPP || errno == ENOTSUP)) {
      GTEST_SKIP() << "/dev/shm's tmpfs has no POSIX ACLs on this kernel "
                      "(CONFIG_TMPFS_POSIX_ACL): nothing to compare with";
    }
  }
  void TearDown() override {
    if (!dir_.empty()) (void)!std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  static int Create(const std::string& path, mode_t mode) {
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, mode);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  }
  static std::optional<std::vector<uint8_t>> GetXattr(const std::string& path, std::string_view name) {
    std::vector<uint8_t> v(kMaxXattrValueLength);
    ssize_t n = ::getxattr(path.c_str(), name.data(), v.data(), v.size());
    if (n < 0) return std::nullopt;
    v.resize(static_cast<size_t>(n));
    return v;
  }
  std::string dir_;
};

// A random ACL the way a user or a hostile client might write one: usually valid,
// sometimes with named ids repeated or unordered (valid for the kernel too), sometimes
// broken (a missing mask, an entry out of place, perm bits beyond rwx).
PosixAcl RandomAcl(std::mt19937& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto perm = [&] { return static_cast<uint16_t>(pick(8)); };
  PosixAcl acl;
  acl.entries.push_back(E(Tag::kUserObj, perm()));
  int users = pick(4), groups = pick(4);
  for (int i = 0; i < users; ++i) acl.entries.push_back(E(Tag::kUser, perm(), 1000 + pick(4)));
  acl.entries.push_back(E(Tag::kGroupObj, perm()));
  for (int i = 0; i < groups; ++i) acl.entries.push_back(E(Tag::kGroup, perm(), 2000 + pick(4)));
  if (users + groups > 0 || pick(4) == 0) acl.entries.push_back(E(Tag::kMask, perm()));
  acl.entries.push_back(E(Tag::kOther, perm()));
  switch (pick(12)) {
    case 0:  // drop the mask (invalid when a named entry exists)
      for (size_t i = 0; i < acl.entries.size(); ++i) {
        if (acl.entries[i].tag == Tag::kMask) acl.entries.erase(acl.entries.begin() + i);
      }
      break;
    case 1: std::swap(acl.entries.front(), acl.entries.back()); break;
    case 2: acl.entries[static_cast<size_t>(pick(static_cast<int>(acl.entries.size())))].perm = 9; break;
    default: break;
  }
  return acl;
}

Credentials RandomCaller(std::mt19937& rng) {
  Credentials c;
  c.uid = 1000 + rng() % 5;
  c.gid = 2000 + rng() % 5;
  for (uint32_t g = 2000; g < 2005; ++g) {
    if (rng() % 3 == 0) c.groups.push_back(g);
  }
  return c;
}

TEST_F(PosixAclKernelTest, EveryDecisionMatchesLinuxOnRandomAcls) {
  std::mt19937 rng(20261205);
  int accepted = 0, refused = 0, checks = 0;
  for (int round = 0; round < 300; ++round) {
    const std::string path = dir_ + "/f" + std::to_string(round);
    ASSERT_EQ(Create(path, 0600), 0);
    ASSERT_EQ(::chown(path.c_str(), 1000, 2000), 0);
    const PosixAcl acl = RandomAcl(rng);
    const std::vector<uint8_t> bytes = Encode(acl);
    const bool linux_ok = ::setxattr(path.c_str(), kAccessXattr.data(), bytes.data(), bytes.size(), 0) == 0;
    const int linux_errno = linux_ok ? 0 : errno;
    Result<PosixAcl> ours = Decode(bytes);
    ASSERT_EQ(ours.ok(), linux_ok) << "round " << round << ": Linux says "
                                   << (linux_ok ? "valid" : std::strerror(linux_errno)) << ", we say "
                                   << (ours.ok() ? "valid" : ours.status().ToString());
    if (!linux_ok) {
      EXPECT_EQ(linux_errno, EINVAL);
      ++refused;
      continue;
    }
    ++accepted;
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    const ImpliedMode implied = ModeOf(*ours);
    EXPECT_EQ(st.st_mode & 0777, implied.bits) << "round " << round << ": the mode the ACL sets";
    // Linux keeps no xattr for an ACL the mode says entirely.
    std::optional<std::vector<uint8_t>> stored = GetXattr(path, kAccessXattr);
    EXPECT_EQ(stored.has_value(), !implied.equivalent) << "round " << round;
    if (stored) {
      EXPECT_EQ(*stored, bytes) << "round " << round << ": the bytes Linux stores";
    }
    const InodeAttr attr = Attr(st.st_mode, st.st_uid, st.st_gid);
    for (int k = 0; k < 6; ++k) {
      const Credentials caller = RandomCaller(rng);
      const uint32_t want = 1 + rng() % 7;
      int linux_says = -1;
      std::thread([&] {
        ActAs as(caller);
        if (!as.ok()) return;
        linux_says = ::faccessat(AT_FDCWD, path.c_str(), static_cast<int>(want), AT_EACCESS) == 0 ? 0 : errno;
      }).join();
      ASSERT_NE(linux_says, -1) << "could not act as uid " << caller.uid;
      const int we_say = implied.equivalent ? perm::MayAccess(caller, attr, want)
                                            : Permission(*ours, caller, attr, want);
      ASSERT_EQ(we_say, linux_says) << "round " << round << ": uid " << caller.uid << " gid "
                                    << caller.gid << " want " << want << " acl " << Describe(*ours);
      ++checks;
    }
    // chmod: Linux rewrites the class entries; so do we.
    const mode_t m = static_cast<mode_t>(rng() % 01000);
    ASSERT_EQ(::chmod(path.c_str(), m), 0);
    PosixAcl after = *ours;
    Chmod(&after, m);
    stored = GetXattr(path, kAccessXattr);
    ASSERT_EQ(stored.has_value(), !implied.equivalent);
    if (stored) {
      EXPECT_EQ(*stored, Encode(after)) << "round " << round << ": chmod " << std::oct << m;
    }
  }
  EXPECT_GT(accepted, 150);
  EXPECT_GT(refused, 20);
  EXPECT_GT(checks, 900);
}

TEST_F(PosixAclKernelTest, InheritanceMatchesLinux) {
  std::mt19937 rng(7);
  int compared = 0;
  for (int round = 0; round < 120; ++round) {
    const std::string parent = dir_ + "/d" + std::to_string(round);
    ASSERT_EQ(::mkdir(parent.c_str(), 0777), 0);
    PosixAcl def = RandomAcl(rng);
    std::vector<uint8_t> bytes = Encode(def);
    if (::setxattr(parent.c_str(), kDefaultXattr.data(), bytes.data(), bytes.size(), 0) != 0) {
      continue;  // an invalid one: the first test compares refusals
    }
    def = *Decode(bytes);
    const bool make_dir = rng() % 2 == 0;
    const uint32_t asked = rng() % 01000;
    const mode_t old_umask = ::umask(static_cast<mode_t>(rng() % 01000));  // must not apply
    const std::string child = parent + "/c";
    ASSERT_EQ(make_dir ? (::mkdir(child.c_str(), asked) == 0 ? 0 : errno) : Create(child, asked), 0);
    ::umask(old_umask);
    const NewInodeAcl ours = ForNewInode(&def, (make_dir ? S_IFDIR : S_IFREG) | asked, 0777);
    struct stat st {};
    ASSERT_EQ(::stat(child.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, ours.mode & 07777) << "round " << round << " asked " << std::oct << asked;
    std::optional<std::vector<uint8_t>> access = GetXattr(child, kAccessXattr);
    ASSERT_EQ(access.has_value(), ours.access.has_value()) << "round " << round;
    if (access) {
      EXPECT_EQ(*access, Encode(*ours.access)) << "round " << round;
    }
    std::optional<std::vector<uint8_t>> inherited = GetXattr(child, kDefaultXattr);
    ASSERT_EQ(inherited.has_value(), ours.default_acl.has_value()) << "round " << round;
    if (inherited) {
      EXPECT_EQ(*inherited, Encode(*ours.default_acl)) << "round " << round;
    }
    ++compared;
  }
  EXPECT_GT(compared, 60);
}

}  // namespace
}  // namespace dpmfs::meta::acl
