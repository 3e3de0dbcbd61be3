// Crash consistency of dpmfs-meta, tested by crashing it: a seeded random workload of
// namespace operations runs through one MetaClient while another thread kill -9s the
// server at random moments and restarts it on the same pool and port (>= 100 crash
// points per run). Every reply is checked against a model of the namespace that applies
// exactly the acknowledged operations; at the end the server's whole namespace is
// walked and compared with the model.
//
// What this proves:
//   - nothing acknowledged is lost across a kill -9 (a lost mkdir/create/rename shows up
//     as a wrong errno on a later operation or as a difference in the final walk);
//   - nothing is half-applied (a rename that moved only one side, a link count off by
//     one, a torn xattr value shows in the walk);
//   - the call in flight at the kill, re-sent by the client with the same session and
//     sequence number, executes exactly once: executing it twice would turn a create
//     O_EXCL into EEXIST, an unlink into ENOENT, which the model rejects, and a batch of
//     releases (ReleaseMany) into one that finds its handles closed;
//   - open handles survive the crash with their session: each released handle must
//     still be open on the server.
// Which errno a failing operation gets is the semantics suite's business; here a
// failure must be predicted as a failure and a success as a success, and the errno is
// compared only where Linux leaves no doubt (see ExpectResult).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/daemon_process.h"
#include "tests/support/test_cluster_key.h"
#include "common/pool.h"
#include "transport/transport.h"
#include "metadata/meta_client.h"
#include "metadata/meta_store.h"
#include "tests/metadata/meta_test_server.h"

namespace dpmfs::meta {
namespace {

constexpr uint32_t kBlock = 4096;

// ---- The model: exactly the acknowledged operations, applied in order ----
struct Node {
  uint32_t type = 0;  // S_IFDIR, S_IFREG, S_IFLNK
  uint32_t perm = 0;
  uint64_t size = 0;
  uint32_t nlink = 0;
  std::string target;
  std::map<std::string, std::string> xattrs;
  std::map<std::string, int> children;  // directories: name -> node id
  int parent = -1;                      // directories only
  InodeId ino = 0;                      // the server's inode number
  bool live = true;
};

class Model {
 public:
  Model() {
    Node root;
    root.type = S_IFDIR;
    root.perm = 0755;
    root.nlink = 2;
    root.ino = kRootInode;
    nodes_.push_back(root);
  }
  Node& at(int id) { return nodes_[id]; }
  int Add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }
  int Child(int dir, const std::string& name) const {
    auto it = nodes_[dir].children.find(name);
    return it == nodes_[dir].children.end() ? -1 : it->second;
  }
  std::vector<int> Dirs() const {
    std::vector<int> out;
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].live && nodes_[i].type == S_IFDIR) out.push_back(static_cast<int>(i));
    return out;
  }
  std::vector<int> Live() const {
    std::vector<int> out;
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].live) out.push_back(static_cast<int>(i));
    return out;
  }
  // Whether `dir` is `ancestor` or lies below it.
  bool Within(int dir, int ancestor) const {
    for (int d = dir; d >= 0; d = nodes_[d].parent)
      if (d == ancestor) return true;
    return false;
  }
  void DropLink(int id) {
    Node& n = nodes_[id];
    if (n.type == S_IFDIR) {
      n.live = false;
      nodes_[n.parent].nlink--;
      return;
    }
    if (--n.nlink == 0) n.live = false;
  }

 private:
  std::vector<Node> nodes_;
};

// The workload: one operation at a time, each predicted by the model and checked.
class Workload {
 public:
  Workload(MetaClient& client, uint32_t seed) : c_(client), rng_(seed) {}

  // Runs one random operation; returns false (with a gtest failure) on a mismatch.
  bool Step() {
    ++ops_;
    switch (Pick(13)) {
      case 0: return Mkdir();
      case 1: case 2: return Create();
      case 3: return Unlink();
      case 4: return Rmdir();
      case 5: case 6: return Rename();
      case 7: return Link();
      case 8: return Symlink();
      case 9: return Chmod();
      case 10: return Xattr();
      case 11: return ReleaseBatch();
      default: return Resize();
    }
  }
  // Releases every handle still open; each must still be open on the server.
  bool ReleaseAll() {
    std::vector<ReleaseRequest> all;
    all.swap(open_);
    return Released(all);
  }
  uint64_t ops() const { return ops_; }
  uint64_t errno_mismatches() const { return errno_mismatches_; }
  Model& model() { return m_; }

 private:
  static constexpr size_t kMaxOpen = 32;

  bool Released(const std::vector<ReleaseRequest>& batch) {
    if (batch.empty()) return true;
    uint32_t refused = 0;
    if (!ExpectResult("release many", c_.ReleaseMany(batch, &refused).ToErrno(), 0)) return false;
    if (refused != 0) {
      ADD_FAILURE() << "ReleaseMany of " << batch.size() << " open handles: " << refused
                    << " were not open on the server (lost in a crash, or the batch ran twice)";
      return false;
    }
    return true;
  }
  uint32_t Pick(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
  std::string Name() { return std::string(1, static_cast<char>('a' + Pick(6))); }
  int AnyDir() {
    auto dirs = m_.Dirs();
    return dirs[Pick(static_cast<uint32_t>(dirs.size()))];
  }
  // A live node (not the root) reached through some name, or -1.
  std::pair<int, std::string> AnyEntry() {
    for (int tries = 0; tries < 4; ++tries) {
      int d = AnyDir();
      std::string n = Name();
      if (m_.Child(d, n) >= 0) return {d, n};
    }
    return {AnyDir(), Name()};
  }

  // `expected` is 0 or the errno the model predicts; `loose` marks predictions whose
  // errno Linux decides by check order (compared as "some error" only).
  bool ExpectResult(const char* what, int got, int expected, bool loose = false) {
    if ((got == 0) != (expected == 0)) {
      ADD_FAILURE() << "op " << ops_ << " " << what << ": server said " << got << " ("
                    << (got ? strerror(got) : "ok") << "), the model of the acknowledged "
                    << "state predicts " << expected << " ("
                    << (expected ? strerror(expected) : "ok") << ")";
      return false;
    }
    if (got != expected) {
      if (!loose) {
        ADD_FAILURE() << "op " << ops_ << " " << what << ": errno " << got << " ("
                      << strerror(got) << "), expected " << expected << " ("
                      << strerror(expected) << ")";
        return false;
      }
      ++errno_mismatches_;
    }
    return true;
  }

  bool Mkdir() {
    int d = AnyDir();
    std::string n = Name();
    MkdirRequest r{m_.at(d).ino, n, 0755, 0, 0};
    InodeAttr a;
    int err = c_.Mkdir(r, &a).ToErrno();
    int expect = m_.Child(d, n) >= 0 ? EEXIST : 0;
    if (!ExpectResult(("mkdir " + n).c_str(), err, expect)) return false;
    if (err) return true;
    Node node;
    node.type = S_IFDIR;
    node.perm = 0755;
    node.nlink = 2;
    node.parent = d;
    node.ino = a.ino;
    m_.at(d).children[n] = m_.Add(node);
    m_.at(d).nlink++;
    return true;
  }

  bool Create() {
    int d = AnyDir();
    std::string n = Name();
    CreateRequest r;
    r.parent = m_.at(d).ino;
    r.name = n;
    r.mode = S_IFREG | 0644;
    r.flags = O_CREAT | O_EXCL | O_RDWR;
    CreateReply rep;
    int err = c_.Create(r, &rep).ToErrno();
    int expect = m_.Child(d, n) >= 0 ? EEXIST : 0;
    if (!ExpectResult(("create " + n).c_str(), err, expect)) return false;
    if (err) return true;
    Node node;
    node.type = S_IFREG;
    node.perm = 0644;
    node.nlink = 1;
    node.ino = rep.attr.ino;
    m_.at(d).children[n] = m_.Add(node);
    // Half of the files stay open for a while, to be released in a batch later.
    if (open_.size() < kMaxOpen && Pick(2) == 0) {
      open_.push_back({rep.attr.ino, rep.handle});
      return true;
    }
    return ExpectResult("release", c_.Release(rep.attr.ino, rep.handle).ToErrno(), 0);
  }

  // ReleaseMany of 1..8 of the handles this client holds (the FUSE client's batched
  // releases). Every one must still be open: handles survive a crash with their session,
  // and a batch re-sent after a crash is answered from the reply cache, not run again
  // (run twice, it would find its handles released already).
  bool ReleaseBatch() {
    if (open_.empty()) return Create();
    std::vector<ReleaseRequest> batch;
    const uint32_t k = 1 + Pick(static_cast<uint32_t>(std::min<size_t>(8, open_.size())));
    for (uint32_t i = 0; i < k; ++i) {
      size_t at = Pick(static_cast<uint32_t>(open_.size()));
      batch.push_back(open_[at]);
      open_[at] = open_.back();
      open_.pop_back();
    }
    return Released(batch);
  }

  bool Unlink() {
    auto [d, n] = AnyEntry();
    int err = c_.Unlink(m_.at(d).ino, n).ToErrno();
    int child = m_.Child(d, n);
    int expect = child < 0 ? ENOENT : (m_.at(child).type == S_IFDIR ? EISDIR : 0);
    if (!ExpectResult(("unlink " + n).c_str(), err, expect)) return false;
    if (err) return true;
    m_.at(d).children.erase(n);
    m_.DropLink(child);
    return true;
  }

  bool Rmdir() {
    auto [d, n] = AnyEntry();
    int err = c_.Rmdir(m_.at(d).ino, n).ToErrno();
    int child = m_.Child(d, n);
    int expect = child < 0                           ? ENOENT
                 : m_.at(child).type != S_IFDIR      ? ENOTDIR
                 : !m_.at(child).children.empty()    ? ENOTEMPTY
                                                     : 0;
    if (!ExpectResult(("rmdir " + n).c_str(), err, expect)) return false;
    if (err) return true;
    m_.at(d).children.erase(n);
    m_.DropLink(child);
    return true;
  }

  // Linux's order of checks (do_renameat2 / vfs_rename), as far as this workload can
  // reach them.
  int PredictRename(int d1, const std::string& n1, int d2, const std::string& n2,
                    uint32_t flags, bool* loose) {
    int s = m_.Child(d1, n1);
    int t = m_.Child(d2, n2);
    if (s < 0) return ENOENT;
    if ((flags & RENAME_EXCHANGE) && t < 0) return ENOENT;
    if ((flags & RENAME_NOREPLACE) && t >= 0) return EEXIST;
    bool s_dir = m_.at(s).type == S_IFDIR;
    bool t_dir = t >= 0 && m_.at(t).type == S_IFDIR;
    // Moving a directory below itself, or (exchange) the target below itself.
    if (s_dir && m_.Within(d2, s)) return EINVAL;
    if ((flags & RENAME_EXCHANGE) && t_dir && m_.Within(d1, t)) return EINVAL;
    if (s == t) return 0;  // same inode (also a hard link of it): nothing happens
    if (flags & RENAME_EXCHANGE) return 0;
    if (t >= 0) {
      // Target an ancestor of the source: Linux says ENOTEMPTY before the type checks.
      *loose = true;
      if (s_dir && !t_dir) return ENOTDIR;
      if (!s_dir && t_dir) return EISDIR;
      if (t_dir && !m_.at(t).children.empty()) return ENOTEMPTY;
      *loose = false;
    }
    return 0;
  }

  bool Rename() {
    auto [d1, n1] = AnyEntry();
    int d2 = AnyDir();
    std::string n2 = Name();
    uint32_t roll = Pick(10);
    uint32_t flags = roll < 6 ? 0 : roll < 8 ? RENAME_NOREPLACE : RENAME_EXCHANGE;
    RenameRequest r{m_.at(d1).ino, n1, m_.at(d2).ino, n2, flags};
    int err = c_.Rename(r).ToErrno();
    bool loose = false;
    int expect = PredictRename(d1, n1, d2, n2, flags, &loose);
    if (!ExpectResult(("rename " + n1 + " -> " + n2).c_str(), err, expect, loose)) return false;
    if (err) return true;
    int s = m_.Child(d1, n1);
    int t = m_.Child(d2, n2);
    if (s == t) return true;
    if (flags & RENAME_EXCHANGE) {
      m_.at(d1).children[n1] = t;
      m_.at(d2).children[n2] = s;
      for (auto [id, from, to] : {std::tuple{s, d1, d2}, std::tuple{t, d2, d1}}) {
        if (m_.at(id).type == S_IFDIR && from != to) {
          m_.at(id).parent = to;
          m_.at(from).nlink--;
          m_.at(to).nlink++;
        }
      }
      return true;
    }
    if (t >= 0) {
      m_.at(d2).children.erase(n2);
      m_.DropLink(t);
    }
    m_.at(d1).children.erase(n1);
    m_.at(d2).children[n2] = s;
    if (m_.at(s).type == S_IFDIR && d1 != d2) {
      m_.at(s).parent = d2;
      m_.at(d1).nlink--;
      m_.at(d2).nlink++;
    }
    return true;
  }

  bool Link() {
    std::vector<int> files;
    for (int id : m_.Live())
      if (m_.at(id).type == S_IFREG) files.push_back(id);
    if (files.empty()) return Create();
    int f = files[Pick(static_cast<uint32_t>(files.size()))];
    int d = AnyDir();
    std::string n = Name();
    InodeAttr a;
    int err = c_.Link(m_.at(f).ino, m_.at(d).ino, n, &a).ToErrno();
    int expect = m_.Child(d, n) >= 0 ? EEXIST : 0;
    if (!ExpectResult(("link " + n).c_str(), err, expect)) return false;
    if (err) return true;
    m_.at(d).children[n] = f;
    m_.at(f).nlink++;
    if (a.nlink != m_.at(f).nlink) {
      ADD_FAILURE() << "link: nlink " << a.nlink << ", model " << m_.at(f).nlink;
      return false;
    }
    return true;
  }

  bool Symlink() {
    int d = AnyDir();
    std::string n = Name();
    std::string target = "../t" + std::to_string(Pick(1000)) + std::string(Pick(200), 'x');
    SymlinkRequest r{m_.at(d).ino, n, target, 0, 0};
    InodeAttr a;
    int err = c_.Symlink(r, &a).ToErrno();
    int expect = m_.Child(d, n) >= 0 ? EEXIST : 0;
    if (!ExpectResult(("symlink " + n).c_str(), err, expect)) return false;
    if (err) return true;
    Node node;
    node.type = S_IFLNK;
    node.perm = 0777;
    node.nlink = 1;
    node.size = target.size();
    node.target = target;
    node.ino = a.ino;
    m_.at(d).children[n] = m_.Add(node);
    return true;
  }

  int AnyNode() {
    auto live = m_.Live();
    return live[Pick(static_cast<uint32_t>(live.size()))];
  }

  bool Chmod() {
    int id = AnyNode();
    if (m_.at(id).type == S_IFLNK) return true;  // chmod follows links in the kernel
    SetattrRequest r;
    r.ino = m_.at(id).ino;
    r.valid = SetattrRequest::kMode;
    r.mode = 0400 | Pick(0400);
    InodeAttr a;
    if (!ExpectResult("chmod", c_.Setattr(r, &a).ToErrno(), 0)) return false;
    m_.at(id).perm = r.mode;
    return true;
  }

  bool Xattr() {
    int id = AnyNode();
    if (m_.at(id).type == S_IFLNK) return true;  // user.* xattrs are refused on links
    std::string name = "user.k" + std::to_string(Pick(3));
    Node& node = m_.at(id);
    if (Pick(3) == 0) {
      int err = c_.Removexattr(node.ino, name).ToErrno();
      int expect = node.xattrs.count(name) ? 0 : ENODATA;
      if (!ExpectResult(("removexattr " + name).c_str(), err, expect)) return false;
      if (!err) node.xattrs.erase(name);
      return true;
    }
    std::string value(Pick(300), static_cast<char>('A' + Pick(26)));
    SetxattrRequest r{node.ino, name, value, 0};
    if (!ExpectResult(("setxattr " + name).c_str(), c_.Setxattr(r).ToErrno(), 0)) return false;
    node.xattrs[name] = value;
    return true;
  }

  // Grows a file through allocate + commit (the write path's metadata half) or shrinks
  // it with a truncate.
  bool Resize() {
    std::vector<int> files;
    for (int id : m_.Live())
      if (m_.at(id).type == S_IFREG) files.push_back(id);
    if (files.empty()) return Create();
    int f = files[Pick(static_cast<uint32_t>(files.size()))];
    Node& node = m_.at(f);
    if (Pick(3) == 0) {
      SetattrRequest r;
      r.ino = node.ino;
      r.valid = SetattrRequest::kSize;
      r.size = Pick(256) * 1000ull;
      InodeAttr a;
      if (!ExpectResult("truncate", c_.Setattr(r, &a).ToErrno(), 0)) return false;
      node.size = r.size;
      return true;
    }
    uint64_t off = node.size / kBlock * kBlock;
    uint64_t len = (1 + Pick(40)) * uint64_t{kBlock};
    AllocateRequest ar{node.ino, off, len};
    AllocateReply rep;
    if (!ExpectResult("allocate", c_.Allocate(ar, &rep).ToErrno(), 0)) return false;
    CommitRequest cr;
    cr.ino = node.ino;
    cr.valid = CommitRequest::kSize;
    cr.new_size = off + len - Pick(kBlock);
    cr.mtime = Timespec{1700000000, 5};
    cr.written.push_back(ByteRange{off, len});
    InodeAttr a;
    if (!ExpectResult("commit", c_.Commit(cr, &a).ToErrno(), 0)) return false;
    node.size = std::max(node.size, cr.new_size);
    return true;
  }

  MetaClient& c_;
  std::mt19937 rng_;
  Model m_;
  std::vector<ReleaseRequest> open_;  // handles of created files not released yet
  uint64_t ops_ = 0;
  uint64_t errno_mismatches_ = 0;
};

// Walks the server's namespace below `dir` and compares it with the model.
void CompareTree(MetaClient& c, Model& m, int dir, const std::string& path,
                 std::map<InodeId, int>* ino_to_node) {
  std::map<std::string, DirEntry> seen;
  uint64_t cookie = 0;
  while (true) {
    ReaddirRequest r{m.at(dir).ino, cookie, 256, true};
    ReaddirReply rep;
    int err = c.Readdir(r, &rep).ToErrno();
    ASSERT_EQ(err, 0) << "readdir " << path;
    for (auto& e : rep.entries) {
      EXPECT_TRUE(seen.emplace(e.name, e).second) << "readdir repeated " << path << e.name;
      cookie = e.cookie;
    }
    if (rep.eof || rep.entries.empty()) break;
  }
  const Node& d = m.at(dir);
  std::set<std::string> want;
  for (auto& [name, id] : d.children) want.insert(name);
  std::set<std::string> got;
  for (auto& [name, e] : seen) got.insert(name);
  ASSERT_EQ(got, want) << "entries of " << path;

  InodeAttr dattr;
  ASSERT_EQ(c.Getattr(d.ino, &dattr).ToErrno(), 0);
  EXPECT_EQ(dattr.nlink, d.nlink) << "nlink of directory " << path;

  for (auto& [name, id] : d.children) {
    const Node& n = m.at(id);
    const DirEntry& e = seen[name];
    std::string p = path + name;
    auto [it, fresh] = ino_to_node->emplace(e.ino, id);
    EXPECT_EQ(it->second, id) << p << ": inode " << e.ino << " also names another file";
    EXPECT_EQ(e.ino, n.ino) << p;
    EXPECT_EQ(e.attr.mode & S_IFMT, n.type) << p;
    if (n.type != S_IFLNK) {
      EXPECT_EQ(e.attr.mode & 07777, n.perm) << p;
    }
    if (n.type == S_IFREG) {
      EXPECT_EQ(e.attr.size, n.size) << p;
      EXPECT_EQ(e.attr.nlink, n.nlink) << p;
    }
    if (n.type == S_IFLNK) {
      std::string target;
      EXPECT_EQ(c.Readlink(n.ino, &target).ToErrno(), 0) << p;
      EXPECT_EQ(target, n.target) << p;
      continue;
    }
    if (fresh) {
      std::vector<std::string> names;
      EXPECT_EQ(c.Listxattr(n.ino, &names).ToErrno(), 0) << p;
      std::set<std::string> got_x(names.begin(), names.end()), want_x;
      for (auto& [k, v] : n.xattrs) {
        want_x.insert(k);
        std::string value;
        EXPECT_EQ(c.Getxattr(n.ino, k, &value).ToErrno(), 0) << p << " " << k;
        EXPECT_EQ(value, v) << p << " " << k;
      }
      EXPECT_EQ(got_x, want_x) << "xattrs of " << p;
    }
    if (n.type == S_IFDIR) CompareTree(c, m, id, p + "/", ino_to_node);
  }
}

struct CrashParam {
  uint32_t seed;
  uint32_t crash_points;
};

class MetaCrashTest : public ::testing::TestWithParam<CrashParam> {};

TEST_P(MetaCrashTest, KillNineAtRandomPointsLosesNothingAcknowledged) {
  const CrashParam p = GetParam();
  std::string dir = MakeTestDir("meta-crash");
  MetaServerFixture cluster(dir);
  ASSERT_NO_FATAL_FAILURE(cluster.Format());
  Status st = cluster.Start();
  ASSERT_TRUE(st.ok()) << st.ToString();

  transport::DeviceOptions dev;
  dev.backend = transport::Backend::kSoft;
  dev.cluster_key = test_support::TestClusterKey();
  auto device = transport::OpenDevice(dev);
  ASSERT_TRUE(device.ok()) << device.status().ToString();
  MetaClientOptions co;
  co.client_name = "meta_crash_test";
  co.call_timeout = std::chrono::seconds(60);
  co.reconnect_attempts = 200;
  auto client = MetaClient::Connect(**device, cluster.endpoint(), co);
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  Workload w(**client, p.seed);
  std::atomic<bool> done{false};  // the workload has stopped (main -> killer)
  std::atomic<bool> stop{false};  // enough crash points, or an error (killer -> main)
  std::atomic<uint32_t> kills{0};
  std::string killer_error;
  // The killer: once the workload has made a random number of operations of progress
  // since the last restart (so every crash lands in the middle of live traffic, not
  // while the client is still reconnecting), a random pause of up to 3 ms, kill -9, and
  // a restart on the same pool and port.
  std::atomic<uint64_t> progress{0};
  std::thread killer([&] {
    std::mt19937 rng(p.seed * 7919u + 1);
    while (!done.load() && kills.load() < p.crash_points) {
      const uint64_t target = progress.load() + std::uniform_int_distribution<int>(1, 25)(rng);
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (!done.load() && progress.load() < target) {
        if (std::chrono::steady_clock::now() > give_up) {
          killer_error = "the workload made no progress for 60 s after restart " +
                         std::to_string(kills.load());
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (done.load() || !killer_error.empty()) break;
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
      cluster.server()->SendKill();
      auto ended = cluster.server()->Wait(std::chrono::seconds(10));
      if (!ended.ok() || !cluster.server()->KilledBySigkill()) {
        killer_error = "server did not die of SIGKILL: " +
                       (ended.ok() ? *ended : ended.status().ToString()) + "\n" +
                       cluster.server()->StderrTail();
        break;
      }
      kills.fetch_add(1);
      Status restarted = cluster.Start();
      if (!restarted.ok()) {
        killer_error = "restart " + std::to_string(kills.load()) + " failed: " +
                       restarted.ToString();
        break;
      }
    }
    stop.store(true);
    // Stay alive until the workload has stopped: a daemon dies with the thread that
    // started it (PR_SET_PDEATHSIG follows the forking thread), and this thread started
    // the current one.
    while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  bool ok = true;
  while (ok && !stop.load()) {
    ok = w.Step();
    progress.fetch_add(1);
  }
  done.store(true);
  killer.join();
  // The killer thread is gone, and so (PR_SET_PDEATHSIG) is the daemon it started last;
  // the final comparison runs against one started here.
  ASSERT_TRUE(killer_error.empty()) << killer_error;
  ASSERT_TRUE(ok) << "after " << kills.load() << " crash points, op " << w.ops();
  EXPECT_GE(kills.load(), p.crash_points);

  // A last restart with nothing in flight, then the full comparison.
  (void)cluster.server()->Wait(std::chrono::seconds(10));
  st = cluster.Start();
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::map<InodeId, int> seen;
  CompareTree(**client, w.model(), 0, "/", &seen);
  EXPECT_TRUE(w.ReleaseAll());
  std::printf("seed %u: %llu operations, %u kill -9 crash points, %llu loose errno "
              "differences, final namespace %zu inodes: identical to the model\n",
              p.seed, static_cast<unsigned long long>(w.ops()), kills.load(),
              static_cast<unsigned long long>(w.errno_mismatches()), seen.size() + 1);
  client->reset();
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Seeds, MetaCrashTest,
                         ::testing::Values(CrashParam{1, 60}, CrashParam{2, 60}),
                         [](const auto& info) { return "seed" + std::to_string(info.param.seed); });

}  // namespace
}  // namespace dpmfs::meta
