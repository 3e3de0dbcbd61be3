#include "fs/cluster_view.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

namespace dpmfs::fs {

namespace {
uint64_t UnitKey(uint32_t server, uint64_t unit) { return (uint64_t{server} << 40) | unit; }
}  // namespace

ClusterView::ClusterView(uint32_t servers, uint64_t unit_bytes)
    : unit_bytes_(std::max<uint64_t>(1, unit_bytes)),
      states_(servers, meta::DataServerState::kUp) {}

uint64_t ClusterView::epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return epoch_;
}

void ClusterView::Update(const meta::ClusterMapReply& map) {
  std::lock_guard<std::mutex> lock(mu_);
  if (map.epoch <= epoch_ || map.servers.size() != states_.size()) return;
  if (map.epoch != epoch_) marked_.clear();  // records are per epoch
  epoch_ = map.epoch;
  for (size_t i = 0; i < states_.size(); ++i) states_[i] = map.servers[i].state;
}

bool ClusterView::IsUp(uint32_t server) const {
  std::lock_guard<std::mutex> lock(mu_);
  return server < states_.size() && states_[server] == meta::DataServerState::kUp;
}

bool ClusterView::IsDown(uint32_t server) const {
  std::lock_guard<std::mutex> lock(mu_);
  return server < states_.size() && states_[server] == meta::DataServerState::kDown;
}

template <class Piece>
void ClusterView::Keep(Piece& p, const std::vector<bool>& keep_server) {
  datapath::PieceLocation all[datapath::kMaxReplicas];
  uint32_t n = 0;
  all[n++] = p.where;
  for (uint32_t i = 0; i < p.more.count; ++i) all[n++] = p.more.at[i];
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (all[i].server < keep_server.size() && keep_server[all[i].server]) all[kept++] = all[i];
  }
  if (kept == 0) return;
  p.where = all[0];
  p.more.count = kept - 1;
  for (uint32_t i = 1; i < kept; ++i) p.more.at[i - 1] = all[i];
}

bool ClusterView::UnitsMarkedLocked(const meta::PrimaryRange& r) const {
  for (uint64_t u = r.pool_offset / unit_bytes_; u <= (r.pool_offset + r.length - 1) / unit_bytes_;
       ++u) {
    if (!marked_.count(UnitKey(r.server, u))) return false;
  }
  return true;
}

Status ClusterView::DropDownCopies(std::vector<datapath::WritePiece>& pieces,
                                   std::vector<meta::PrimaryRange>* to_mark,
                                   uint64_t* epoch) const {
  to_mark->clear();
  std::lock_guard<std::mutex> lock(mu_);
  *epoch = epoch_;
  std::vector<bool> writable(states_.size());
  bool all = true;
  for (size_t i = 0; i < states_.size(); ++i) {
    // Resyncing servers are in the write set: what they miss from now on would not be
    // recorded anywhere.
    writable[i] = states_[i] != meta::DataServerState::kDown;
    all &= writable[i];
  }
  if (all) return Status::OK();
  for (const datapath::WritePiece& p : pieces) {
    bool any = p.where.server < writable.size() && writable[p.where.server];
    for (uint32_t i = 0; i < p.more.count; ++i) any |= writable[p.more.at[i].server];
    if (!any) {
      return Status::Posix(EIO, fmt::format("every copy of the {} bytes at pool offset {} of data "
                                            "server {} is on a data server that is down "
                                            "(cluster map epoch {})",
                                            p.length, p.where.pool_offset, p.where.server, epoch_));
    }
  }
  for (datapath::WritePiece& p : pieces) {
    // The piece was built with its primary as `where` (file_io.cc AddCopies): the
    // metadata server records units of primary regions.
    const meta::PrimaryRange primary{p.where.server, p.where.pool_offset, p.length};
    const uint32_t copies = 1 + p.more.count;
    Keep(p, writable);
    if (1 + p.more.count == copies || p.length == 0) continue;
    if (!UnitsMarkedLocked(primary)) to_mark->push_back(primary);
  }
  return Status::OK();
}

void ClusterView::Marked(uint64_t epoch, const std::vector<meta::PrimaryRange>& ranges) {
  std::lock_guard<std::mutex> lock(mu_);
  if (epoch != epoch_) return;
  for (const meta::PrimaryRange& r : ranges) {
    for (uint64_t u = r.pool_offset / unit_bytes_;
         u <= (r.pool_offset + r.length - 1) / unit_bytes_; ++u) {
      marked_.insert(UnitKey(r.server, u));
    }
  }
}

Status ClusterView::KeepReadableCopies(std::vector<datapath::ReadPiece>& pieces) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<bool> readable(states_.size());
  bool all = true;
  for (size_t i = 0; i < states_.size(); ++i) {
    readable[i] = states_[i] == meta::DataServerState::kUp;
    all &= readable[i];
  }
  if (all) return Status::OK();
  // A piece with no up copy (both copies came back and are resyncing) is read from
  // the resyncing ones rather than failed: a resyncing copy is stale only in units
  // written while it was down, and those went to a copy that was up then.
  std::vector<bool> present(states_.size());
  for (size_t i = 0; i < states_.size(); ++i) {
    present[i] = states_[i] != meta::DataServerState::kDown;
  }
  for (datapath::ReadPiece& p : pieces) {
    bool any = p.where.server < readable.size() && readable[p.where.server];
    bool some = p.where.server < present.size() && present[p.where.server];
    for (uint32_t i = 0; i < p.more.count; ++i) {
      any |= readable[p.more.at[i].server];
      some |= present[p.more.at[i].server];
    }
    if (!some) {
      return Status::Posix(EIO, fmt::format("every copy of the {} bytes at pool offset {} of "
                                            "data server {} is on a data server that is down "
                                            "(cluster map epoch {})",
                                            p.length, p.where.pool_offset, p.where.server, epoch_));
    }
    Keep(p, any ? readable : present);
  }
  return Status::OK();
}

}  // namespace dpmfs::fs
