#include "mkfs/cluster_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>

#include "common/pool.h"
#include "common/pool_lock.h"
#include "metadata/meta_store.h"
#include "metadata/mutation.h"
#include "metadata/namespace.h"
#include "metadata/placement.h"
#include "mkfs/private_mapping.h"

namespace dpmfs::mkfs {
namespace {

using meta::Extent;
using meta::InodeId;
using meta::Namespace;

std::string PoolName(int index, const std::string& path) {
  if (index < 0) return "metadata pool " + path;
  return "data pool " + std::to_string(index) + " (" + path + ")";
}

// "bytes [a, b) = blocks x-y" of a data area.
std::string RangeText(uint64_t offset, uint64_t length, uint32_t block_size) {
  std::string s = "bytes [" + std::to_string(offset) + ", " + std::to_string(offset + length) + ")";
  if (block_size != 0 && length != 0) {
    s += " = blocks " + std::to_string(offset / block_size) + "-" +
         std::to_string((offset + length - 1) / block_size);
  }
  return s;
}

// One copy of one extent where it lies in a data pool.
struct Piece {
  uint64_t start = 0;
  uint64_t end = 0;
  InodeId ino = 0;
  uint64_t file_offset = 0;
  uint32_t copy = 0;  // 0 = the primary
};

// Calls `progress` at most about once a second.
class Ticker {
 public:
  explicit Ticker(const std::function<void(const std::string&)>& progress) : progress_(progress) {}
  void Say(const std::string& what) {
    if (progress_) progress_(what);
    last_ = std::chrono::steady_clock::now();
  }
  bool Due() const {
    return progress_ && std::chrono::steady_clock::now() - last_ >= std::chrono::seconds(1);
  }

 private:
  const std::function<void(const std::string&)>& progress_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

class Checker {
 public:
  Checker(const ClusterFile& cluster, const CheckOptions& options)
      : cf_(cluster), ticker_(options.progress) {}

  Result<CheckReport> Run();

 private:
  Status LockPools();
  Status OpenMetaStore();
  void CheckDataPoolHeaders();
  void Recover();
  void CheckTree();
  void CheckExtents();
  void CheckOverlaps(uint32_t pool, std::vector<Piece>& pieces);
  void CheckAllocator(uint32_t pool, const std::vector<Piece>& pieces);

  void Problem(std::string kind, std::string message, int pool = -2, InodeId ino = 0,
               uint64_t offset = 0, uint64_t length = 0) {
    CheckProblem p;
    p.kind = std::move(kind);
    p.message = std::move(message);
    p.pool = pool;
    p.ino = ino;
    if (ino != 0) {
      auto it = paths_.find(ino);
      if (it != paths_.end()) p.path = it->second;
    }
    p.offset = offset;
    p.length = length;
    report_.problems.push_back(std::move(p));
  }
  // "inode 12 (/a/b)" or "inode 12 (no path)".
  std::string InodeText(InodeId ino) const {
    auto it = paths_.find(ino);
    return "inode " + std::to_string(ino) + " (" + (it == paths_.end() ? "no path" : it->second) +
           ")";
  }
  std::string DataPoolName(uint32_t i) const {
    return PoolName(static_cast<int>(i), i < cf_.data.size() ? cf_.data[i].pool_path : "?");
  }

  const ClusterFile& cf_;
  Ticker ticker_;
  CheckReport report_;
  std::vector<pool::PoolLock> locks_;
  std::unique_ptr<meta::MetaStore> store_;
  meta::Superblock sb_;
  uint32_t block_size_ = 0;
  std::optional<meta::Placement> placement_;
  std::unique_ptr<Namespace> ns_;
  uint64_t refused_extents_ = 0;

  // The namespace as the checks see it.
  // What the namespace shows of each inode (its attributes and extents by pointer: the
  // namespace outlives the check).
  using Node = Namespace::InodeView;
  std::unordered_map<InodeId, Node> nodes_;
  std::unordered_map<InodeId, std::string> paths_;  // the first path found to each inode
};

Status Checker::LockPools() {
  // Every pool first, before reading anything: a cluster with any server still running
  // is not checked at all (its pools change under the reader).
  std::vector<std::pair<int, const ClusterFile::Daemon*>> pools = {{-1, &cf_.meta}};
  for (size_t i = 0; i < cf_.data.size(); ++i) pools.push_back({static_cast<int>(i), &cf_.data[i]});
  for (const auto& [index, d] : pools) {
    Result<pool::PoolLock> lock = pool::PoolLock::Acquire(d->pool_path);
    if (lock.ok()) {
      locks_.push_back(std::move(*lock));
      continue;
    }
    if (lock.status().code() == StatusCode::kFailedPrecondition) {
      return Status::FailedPrecondition(
          PoolName(index, d->pool_path) + " (" + cf_.Where(*d) + ") cannot be checked: " +
          lock.status().message() + "; mkfs.dpmfs check reads a stopped cluster");
    }
    if (index < 0) return lock.status().WithContext("metadata pool (" + cf_.Where(*d) + ")");
    // A missing or unreadable data pool: reported with its header below.
  }
  return Status::OK();
}

Status Checker::OpenMetaStore() {
  const std::string& path = cf_.meta.pool_path;
  ticker_.Say("reading the metadata pool " + path);
  Result<pool::PoolInfo> info = pool::ReadPoolHeader(path);
  if (!info.ok()) return info.status().WithContext("metadata pool (" + cf_.Where(cf_.meta) + ")");
  if (info->role != pool::Role::kMetadata) {
    return Status::InvalidArgument(path + " (" + cf_.Where(cf_.meta) + ") is a " +
                                   std::string(pool::RoleName(info->role)) +
                                   " pool, not a metadata pool");
  }
  if (cf_.cluster && info->cluster != *cf_.cluster) {
    return Status::InvalidArgument(
        "metadata pool " + path + " belongs to cluster " + info->cluster.ToString() + ", but " +
        cf_.path + " names cluster " + cf_.cluster->ToString() +
        " (a pool of another cluster, or the wrong cluster file?); not checked");
  }
  if (info->pool_size != cf_.meta.pool_size) {
    Problem("header",
            PoolName(-1, path) + " is " + std::to_string(info->pool_size) + " bytes, " +
                cf_.Where(cf_.meta) + " says " + std::to_string(cf_.meta.pool_size),
            -1);
  }
  Result<std::unique_ptr<pmem::PersistentMemory>> mem = MapPrivateCopy(path);
  if (!mem.ok()) return mem.status();
  pool::OpenExpectations expect;
  expect.role = pool::Role::kMetadata;
  Result<std::unique_ptr<meta::MetaStore>> store = meta::MetaStore::Open(std::move(*mem), expect);
  if (!store.ok()) return store.status().WithContext("metadata pool (" + cf_.Where(cf_.meta) + ")");
  store_ = std::move(*store);
  sb_ = store_->superblock();
  return Status::OK();
}

void Checker::CheckDataPoolHeaders() {
  const pool::ClusterUuid cluster = store_->pool_info().cluster;
  if (sb_.data_pools.size() != cf_.data.size()) {
    Problem("superblock", "the metadata pool's superblock describes " +
                              std::to_string(sb_.data_pools.size()) + " data pools, " + cf_.path +
                              " names " + std::to_string(cf_.data.size()),
            -1);
  }
  if (sb_.stripe_unit != cf_.stripe_unit) {
    Problem("superblock", "the metadata pool's stripe unit is " + std::to_string(sb_.stripe_unit) +
                              ", " + cf_.path + " says " + std::to_string(cf_.stripe_unit),
            -1);
  }
  if (sb_.replicas != cf_.replicas) {
    Problem("superblock", "the metadata pool keeps " + std::to_string(sb_.replicas) +
                              " copies of each block, " + cf_.path + " says replicas " +
                              std::to_string(cf_.replicas),
            -1);
  }
  for (size_t i = 0; i < cf_.data.size(); ++i) {
    const ClusterFile::Daemon& d = cf_.data[i];
    const int index = static_cast<int>(i);
    const std::string name = PoolName(index, d.pool_path);
    ticker_.Say("reading the header of " + name);
    Result<pool::PoolInfo> info = pool::ReadPoolHeader(d.pool_path);
    if (!info.ok()) {
      Problem("header", name + " (" + cf_.Where(d) + "): " + info.status().message(), index);
      continue;
    }
    if (info->role != pool::Role::kData) {
      Problem("header", name + " is a " + std::string(pool::RoleName(info->role)) +
                            " pool, not a data pool",
              index);
      continue;
    }
    // The identity rules of datapath/data_server_identity.h, offline: cluster, index,
    // block size and data-area size as the metadata pool records them.
    if (info->cluster != cluster) {
      Problem("header", name + " belongs to cluster " + info->cluster.ToString() +
                            ", the metadata pool to " + cluster.ToString() +
                            " (a pool of another cluster)",
              index);
    }
    if (info->index != i) {
      Problem("header", name + " is data pool index " + std::to_string(info->index) + ", " +
                            cf_.Where(d) + " makes it index " + std::to_string(i) +
                            " (data lines in another order?)",
              index);
    }
    if (info->block_size != cf_.block_size) {
      Problem("header", name + " has block size " + std::to_string(info->block_size) + ", " +
                            cf_.path + " says " + std::to_string(cf_.block_size),
              index);
    }
    if (i < sb_.data_pools.size()) {
      const meta::DataPoolGeometry& g = sb_.data_pools[i];
      if (info->block_size != g.block_size || info->data_size != g.data_size) {
        Problem("header", name + " has block size " + std::to_string(info->block_size) +
                              " and a data area of " + std::to_string(info->data_size) +
                              " bytes, the metadata pool records " +
                              std::to_string(g.block_size) + " and " +
                              std::to_string(g.data_size),
                index);
      }
    }
    if (info->pool_size != d.pool_size) {
      Problem("header", name + " is " + std::to_string(info->pool_size) + " bytes, " +
                            cf_.Where(d) + " says " + std::to_string(d.pool_size),
              index);
    }
  }
}

void Checker::Recover() {
  // The namespace configuration as MetaService::Open builds it.
  meta::NamespaceConfig cfg;
  block_size_ = sb_.data_pools.empty() ? cf_.block_size : sb_.data_pools[0].block_size;
  cfg.block_size = block_size_;
  cfg.stripe_unit = sb_.stripe_unit;
  for (const meta::DataPoolGeometry& p : sb_.data_pools) {
    if (p.block_size != block_size_) {
      Problem("superblock", "the metadata pool records data pools of block sizes " +
                                std::to_string(block_size_) + " and " +
                                std::to_string(p.block_size),
              -1);
    }
  }
  std::vector<uint64_t> data_sizes;
  for (const meta::DataPoolGeometry& p : sb_.data_pools) data_sizes.push_back(p.data_size);
  Result<meta::Placement> placement = meta::Placement::Make(sb_.replicas, block_size_, data_sizes);
  if (!placement.ok()) {
    Problem("superblock", "replica placement: " + placement.status().message() +
                              "; extents checked as if replicas were 1",
            -1);
    placement = meta::Placement::Make(1, block_size_, data_sizes);
  }
  if (placement.ok()) placement_ = *placement;
  cfg.pools = sb_.data_pools;
  if (placement_) {
    for (meta::DataPoolGeometry& p : cfg.pools) p.data_size = placement_->PrimaryCapacity(p.index);
  }
  const pool::PoolInfo& info = store_->pool_info();
  cfg.root_time = meta::Timespec{static_cast<int64_t>(info.created_unix_ns / 1000000000ull),
                                 static_cast<uint32_t>(info.created_unix_ns % 1000000000ull)};
  ns_ = std::make_unique<Namespace>(std::move(cfg));

  ticker_.Say("loading the metadata checkpoint");
  uint64_t replayed = 0;
  meta::RecoveryStats stats;
  Status st = store_->Recover(
      [this](std::span<const uint8_t> blob) {
        Status loaded = ns_->LoadForCheck(blob, &refused_extents_);
        ticker_.Say("checkpoint loaded (" + std::to_string(blob.size()) +
                    " bytes); replaying the journal");
        return loaded;
      },
      [this, &replayed](uint64_t lsn, std::span<const uint8_t> rec) {
        if (refused_extents_ != 0) {
          // Replay over extents the allocators refused could free a block twice; the
          // checkpoint's own state is what is checked then.
          return Status::Aborted("the journal after the checkpoint was not replayed, since the "
                                 "checkpoint holds extents the allocators refuse (below)");
        }
        if (ticker_.Due()) {
          ticker_.Say("replaying the journal: " + std::to_string(replayed) +
                      " records so far (LSN " + std::to_string(lsn) + ")");
        }
        ++replayed;
        return meta::ApplyRecord(*ns_, lsn, rec);
      },
      &stats);
  report_.checkpoint_lsn = stats.checkpoint_lsn;
  report_.records_replayed = replayed;
  if (!st.ok()) {
    Problem("recovery",
            "recovering the namespace as dpmfs-meta would: " + st.ToString() +
                (st.code() == StatusCode::kAborted
                     ? ""
                     : " (dpmfs-meta would refuse to start; the state checked below is "
                       "what was recovered up to there)"),
            -1);
  }
  if (stats.dropped_torn_tail) {
    report_.notes.push_back(
        "the journal ends in a torn, unacknowledged record (a crash while writing it); "
        "dpmfs-meta drops it at the next start");
  }
  ticker_.Say("recovered: checkpoint through LSN " + std::to_string(stats.checkpoint_lsn) + ", " +
              std::to_string(replayed) + " journal records replayed");
}

void Checker::CheckTree() {
  ns_->ForEachInode([this](const Namespace::InodeView& v) { nodes_.emplace(v.attr->ino, v); });
  report_.inodes = nodes_.size();
  ticker_.Say("walking the tree of " + std::to_string(nodes_.size()) + " inodes");

  auto root = nodes_.find(meta::kRootInode);
  if (root == nodes_.end() || !S_ISDIR(root->second.attr->mode)) {
    Problem("tree", "the root directory (inode 1) is missing or not a directory");
    return;
  }
  // Breadth first from the root: each inode's first path; directories named twice.
  std::unordered_map<InodeId, uint32_t> names;    // entries naming each inode (reached)
  std::unordered_map<InodeId, uint32_t> subdirs;  // subdirectories of each directory
  paths_[meta::kRootInode] = "/";
  std::deque<InodeId> queue = {meta::kRootInode};
  while (!queue.empty()) {
    const InodeId dir = queue.front();
    queue.pop_front();
    const Node& d = nodes_.at(dir);
    const std::string& dpath = paths_.at(dir);
    for (const Namespace::DirEntryView& e : d.entries) {
      const std::string path = (dpath == "/" ? "" : dpath) + "/" + e.name;
      auto child = nodes_.find(e.ino);
      if (child == nodes_.end()) {
        Problem("tree", "entry " + path + " names inode " + std::to_string(e.ino) +
                            ", which does not exist");
        continue;
      }
      ++names[e.ino];
      if (e.ino == meta::kRootInode) {
        Problem("tree", "entry " + path + " names the root directory");
        continue;
      }
      const bool first = paths_.emplace(e.ino, path).second;
      if (!S_ISDIR(child->second.attr->mode)) continue;
      ++subdirs[dir];
      if (!first) {
        Problem("tree", "directory " + InodeText(e.ino) + " is named again at " + path +
                            " (a directory has one name)",
                -2, e.ino);
        continue;
      }
      if (child->second.parent != dir) {
        Problem("tree", "directory " + path + " (inode " + std::to_string(e.ino) +
                            ") records parent " + std::to_string(child->second.parent) +
                            ", but it is named in inode " + std::to_string(dir),
                -2, e.ino);
      }
      queue.push_back(e.ino);
    }
  }
  for (const auto& [ino, n] : nodes_) {
    const bool dir = S_ISDIR(n.attr->mode);
    if (!dir && !S_ISREG(n.attr->mode) && !n.extents->empty()) {
      Problem("tree", InodeText(ino) + " is not a regular file but holds extents", -2, ino);
    }
    if (!paths_.count(ino)) {
      uint64_t bytes = n.extents->allocated_bytes();
      if (n.attr->nlink == 0 && n.open_count > 0) {
        report_.notes.push_back("inode " + std::to_string(ino) + " (" + std::to_string(bytes) +
                                " bytes) is unlinked but open by a recorded client session; "
                                "it is freed when that session ends after the next start");
        continue;
      }
      Problem("unreachable",
              "inode " + std::to_string(ino) + " (nlink " + std::to_string(n.attr->nlink) + ", " +
                  std::to_string(n.open_count) +
                  " open handles) is named by no directory reachable from the root: its " +
                  std::to_string(bytes) + " bytes in " +
                  std::to_string(n.extents->extent_count()) + " extents are leaked",
              -2, ino);
      continue;
    }
    const uint32_t named = names.count(ino) ? names[ino] : 0;
    if (dir) {
      const uint32_t want = 2 + (subdirs.count(ino) ? subdirs[ino] : 0);
      if (n.attr->nlink != want) {
        Problem("links", "directory " + InodeText(ino) + " has nlink " +
                             std::to_string(n.attr->nlink) + ", expected " +
                             std::to_string(want) + " (2 + its subdirectories)",
                -2, ino);
      }
    } else if (n.attr->nlink != named) {
      Problem("links", InodeText(ino) + " has nlink " + std::to_string(n.attr->nlink) + " but " +
                           std::to_string(named) + " names",
              -2, ino);
    }
  }
}

void Checker::CheckExtents() {
  const uint32_t pools = static_cast<uint32_t>(sb_.data_pools.size());
  std::vector<std::vector<Piece>> pieces(pools);
  uint64_t done = 0;
  for (const auto& [ino, n] : nodes_) {
    const InodeId this_ino = ino;  // clang < 16 cannot capture a structured binding
    n.extents->ForEach([&](const Extent& e) {
      ++report_.extents;
      if (ticker_.Due()) {
        ticker_.Say("checking extents: " + std::to_string(done) + " of " +
                    std::to_string(report_.inodes) + " inodes done");
      }
      if (e.server >= pools) {
        Problem("outside", InodeText(this_ino) + " file offset " + std::to_string(e.file_offset) +
                               ": extent on data pool " + std::to_string(e.server) +
                               ", the cluster has " + std::to_string(pools),
                static_cast<int>(e.server), this_ino, e.pool_offset, e.length);
        return;
      }
      report_.bytes_in_files += e.length;
      if (e.pool_offset % block_size_ != 0 || e.length % block_size_ != 0) {
        Problem("outside", InodeText(this_ino) + " file offset " + std::to_string(e.file_offset) +
                               ": extent at " + RangeText(e.pool_offset, e.length, 0) + " of " +
                               DataPoolName(e.server) + " is not block aligned",
                static_cast<int>(e.server), this_ino, e.pool_offset, e.length);
        return;
      }
      if (!placement_) return;
      if (!placement_->InPrimaryRegion(e.server, e.pool_offset, e.length)) {
        Problem("outside",
                InodeText(this_ino) + " file offset " + std::to_string(e.file_offset) + ": " +
                    RangeText(e.pool_offset, e.length, block_size_) + " of " +
                    DataPoolName(e.server) + " lies outside its " +
                    (placement_->replicas() > 1 ? "primary region" : "data area") + " (" +
                    std::to_string(placement_->PrimaryCapacity(e.server)) + " bytes)",
                static_cast<int>(e.server), this_ino, e.pool_offset, e.length);
        return;
      }
      for (uint32_t k = 0; k < placement_->replicas(); ++k) {
        meta::ReplicaLocation r = placement_->Replica(e.server, e.pool_offset, k);
        const uint64_t size = sb_.data_pools[r.server].data_size;
        if (r.pool_offset > size || e.length > size - r.pool_offset) {
          Problem("outside", InodeText(this_ino) + " file offset " +
                                 std::to_string(e.file_offset) + ": copy " + std::to_string(k) +
                                 " at " + RangeText(r.pool_offset, e.length, block_size_) +
                                 " lies outside " + DataPoolName(r.server) + "'s data area (" +
                                 std::to_string(size) + " bytes)",
                  static_cast<int>(r.server), this_ino, r.pool_offset, e.length);
          continue;
        }
        pieces[r.server].push_back(
            Piece{r.pool_offset, r.pool_offset + e.length, this_ino, e.file_offset, k});
      }
    });
    ++done;
  }
  for (uint32_t p = 0; p < pools; ++p) {
    ticker_.Say("checking the blocks of " + DataPoolName(p) + " (" +
                std::to_string(pieces[p].size()) + " extents)");
    CheckOverlaps(p, pieces[p]);
    CheckAllocator(p, pieces[p]);
  }
}

void Checker::CheckOverlaps(uint32_t pool, std::vector<Piece>& pieces) {
  std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
    return a.start != b.start ? a.start < b.start : a.end < b.end;
  });
  // Sweep: `reach` is the piece reaching furthest so far; anything starting before its
  // end shares blocks with it.
  const Piece* reach = nullptr;
  for (const Piece& p : pieces) {
    if (reach != nullptr && p.start < reach->end) {
      const uint64_t end = std::min(p.end, reach->end);
      auto who = [this](const Piece& x) {
        return InodeText(x.ino) + " file offset " + std::to_string(x.file_offset) +
               (x.copy ? " (copy " + std::to_string(x.copy) + ")" : "");
      };
      Problem("shared",
              RangeText(p.start, end - p.start, block_size_) + " of " + DataPoolName(pool) +
                  (p.ino == reach->ino ? " are allocated twice in one file: " : " are held by two files: ") +
                  who(*reach) + " and " + who(p),
              static_cast<int>(pool), p.ino, p.start, end - p.start);
    }
    if (reach == nullptr || p.end > reach->end) reach = &p;
  }
}

void Checker::CheckAllocator(uint32_t pool, const std::vector<Piece>& pieces) {
  if (!placement_) return;
  const meta::BlockAllocator& alloc = ns_->space().allocators().at(pool);
  std::vector<std::pair<uint64_t, uint64_t>> free;  // [start, end), sorted, disjoint
  alloc.ForEachFreeRange([&](uint64_t off, uint64_t len) { free.emplace_back(off, off + len); });
  // Primary pieces (the allocator hands out the primary region only), sorted by start.
  std::vector<const Piece*> primary;
  for (const Piece& p : pieces) {
    if (p.copy == 0) primary.push_back(&p);
  }
  // Owned but free.
  for (const Piece* p : primary) {
    auto it = std::upper_bound(free.begin(), free.end(), std::make_pair(p->start, UINT64_MAX));
    if (it != free.begin()) --it;
    for (; it != free.end() && it->first < p->end; ++it) {
      const uint64_t s = std::max(p->start, it->first), e = std::min(p->end, it->second);
      if (s >= e) continue;
      Problem("owned-free", RangeText(s, e - s, block_size_) + " of " + DataPoolName(pool) +
                                " belong to " + InodeText(p->ino) + " file offset " +
                                std::to_string(p->file_offset + (s - p->start)) +
                                " but are free in the allocator (the next file to grow "
                                "would be given them)",
              static_cast<int>(pool), p->ino, s, e - s);
    }
  }
  // In use in the allocator, owned by nobody: the gaps between free ranges, less the
  // union of the primaries.
  const uint64_t cap = placement_->PrimaryCapacity(pool);
  std::vector<std::pair<uint64_t, uint64_t>> owned;
  for (const Piece* p : primary) {
    if (!owned.empty() && p->start <= owned.back().second) {
      owned.back().second = std::max(owned.back().second, p->end);
    } else {
      owned.emplace_back(p->start, p->end);
    }
  }
  size_t oi = 0;
  uint64_t cursor = 0;
  auto in_use = [&](uint64_t s, uint64_t e) {  // [s, e) is in use in the allocator
    while (s < e) {
      while (oi < owned.size() && owned[oi].second <= s) ++oi;
      if (oi == owned.size() || owned[oi].first >= e) {
        Problem("leak", RangeText(s, e - s, block_size_) + " of " + DataPoolName(pool) +
                            " are in use in the allocator but owned by no file",
                static_cast<int>(pool), 0, s, e - s);
        return;
      }
      if (owned[oi].first > s) {
        Problem("leak", RangeText(s, owned[oi].first - s, block_size_) + " of " +
                            DataPoolName(pool) + " are in use in the allocator but owned by no file",
                static_cast<int>(pool), 0, s, owned[oi].first - s);
      }
      s = std::max(s, owned[oi].second);
    }
  };
  for (const auto& [s, e] : free) {
    if (s > cursor) in_use(cursor, s);
    cursor = e;
  }
  if (cursor < cap) in_use(cursor, cap);
}

Result<CheckReport> Checker::Run() {
  if (Status st = LockPools(); !st.ok()) return st;
  if (Status st = OpenMetaStore(); !st.ok()) return st;
  CheckDataPoolHeaders();
  Recover();
  const size_t before = report_.problems.size();
  CheckTree();
  CheckExtents();
  if (refused_extents_ == 0 && report_.problems.size() == before) {
    // What the checks above do not look at (open counts, handles, xattr accounting,
    // cookies): the server's own invariants.
    Status st = ns_->CheckInvariants();
    if (!st.ok()) Problem("invariant", "the recovered namespace does not add up: " + st.message());
  }
  ticker_.Say("done");
  return std::move(report_);
}

}  // namespace

Result<CheckReport> CheckCluster(const ClusterFile& cluster, const CheckOptions& options) {
  Checker checker(cluster, options);
  return checker.Run();
}

}  // namespace dpmfs::mkfs
