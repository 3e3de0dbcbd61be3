#include "metadata/cluster_map.h"

#include <algorithm>
#include <cerrno>

namespace dpmfs::meta {

ClusterMap::ClusterMap(uint32_t servers, uint32_t replicas, uint64_t unit_bytes,
                       uint64_t primary_capacity)
    : replicas_(std::max<uint32_t>(1, replicas)),
      unit_bytes_(std::max<uint64_t>(1, unit_bytes)),
      primary_capacity_(primary_capacity),
      states_(servers) {}

void ClusterMap::Reset() {
  epoch_ = 1;
  states_.assign(states_.size(), Server{});
}

bool ClusterMap::all_up() const {
  return std::all_of(states_.begin(), states_.end(),
                     [](const Server& s) { return s.state == DataServerState::kUp; });
}

int ClusterMap::CheckTransition(uint32_t server, DataServerState to) const {
  if (server >= servers()) return EINVAL;
  const Server& s = states_[server];
  switch (s.state) {
    case DataServerState::kUp:
      return to == DataServerState::kDown ? 0 : EINVAL;
    case DataServerState::kDown:
      return to == DataServerState::kResyncing ? 0 : EINVAL;
    case DataServerState::kResyncing:
      if (to == DataServerState::kDown) return 0;
      // Up only once caught up: it joins the read set with nothing stale left.
      return to == DataServerState::kUp && s.dirty.empty() ? 0 : EINVAL;
  }
  return EINVAL;
}

void ClusterMap::SetState(uint32_t server, DataServerState to, bool full_rebuild,
                          uint64_t pool_instance) {
  Server& s = states_[server];
  s.state = to;
  if (pool_instance != 0) s.pool_instance = pool_instance;
  ++epoch_;
  if (to != DataServerState::kResyncing) return;
  if (full_rebuild) {
    // Every copy this server holds: copy k of server (server - k)'s primaries.
    const uint32_t n = servers();
    for (uint32_t k = 0; k < replicas_; ++k) {
      const uint32_t primary = (server + n - k) % n;
      for (uint64_t u = 0; u < units_per_region(); ++u) s.dirty.insert(DirtyUnit{primary, u});
    }
  }
  s.resync_done_units = 0;
  s.resync_total_units = s.dirty.size();
}

int ClusterMap::CheckSetPoolInstance(uint32_t server, uint64_t pool_instance) const {
  return server < servers() && pool_instance != 0 ? 0 : EINVAL;
}

void ClusterMap::SetPoolInstance(uint32_t server, uint64_t pool_instance) {
  states_[server].pool_instance = pool_instance;
}

bool ClusterMap::ValidPrimaryRange(uint32_t primary, uint64_t pool_offset, uint64_t length) const {
  return primary < servers() && length != 0 && pool_offset < primary_capacity_ &&
         length <= primary_capacity_ - pool_offset;
}

size_t ClusterMap::NoteWrite(uint32_t primary, uint64_t pool_offset, uint64_t length) {
  if (replicas_ == 1 || !ValidPrimaryRange(primary, pool_offset, length)) return 0;
  size_t added = 0;
  const uint32_t n = servers();
  const uint64_t first = pool_offset / unit_bytes_;
  const uint64_t last = (pool_offset + length - 1) / unit_bytes_;
  for (uint32_t k = 0; k < replicas_; ++k) {
    Server& s = states_[(primary + k) % n];
    if (s.state != DataServerState::kDown) continue;
    for (uint64_t u = first; u <= last; ++u) added += s.dirty.insert(DirtyUnit{primary, u}).second;
  }
  return added;
}

std::vector<DirtyUnit> ClusterMap::NextDirty(uint32_t server, size_t max) const {
  std::vector<DirtyUnit> out;
  for (const DirtyUnit& u : states_[server].dirty) {
    if (out.size() >= max) break;
    out.push_back(u);
  }
  return out;
}

int ClusterMap::CheckResyncDone(uint32_t server, std::span<const DirtyUnit> units) const {
  if (server >= servers() || states_[server].state != DataServerState::kResyncing) return EINVAL;
  for (const DirtyUnit& u : units) {
    if (!states_[server].dirty.count(u)) return EINVAL;
  }
  return 0;
}

void ClusterMap::ResyncDone(uint32_t server, std::span<const DirtyUnit> units) {
  Server& s = states_[server];
  for (const DirtyUnit& u : units) s.resync_done_units += s.dirty.erase(u);
}

uint32_t ClusterMap::CopyIndex(uint32_t server, const DirtyUnit& u) const {
  return (server + servers() - u.primary) % servers();
}

uint64_t ClusterMap::CopyOffset(uint32_t server, const DirtyUnit& u) const {
  // Placement::Replica: copy k of primary offset o lies at k * region + o, and a
  // primary region is exactly `primary_capacity_` bytes when R > 1.
  const uint64_t region = replicas_ == 1 ? 0 : primary_capacity_;
  return CopyIndex(server, u) * region + u.unit * unit_bytes_;
}

uint64_t ClusterMap::UnitLength(const DirtyUnit& u) const {
  const uint64_t start = u.unit * unit_bytes_;
  return start >= primary_capacity_ ? 0 : std::min(unit_bytes_, primary_capacity_ - start);
}

ClusterMapReply ClusterMap::Snapshot() const {
  ClusterMapReply r;
  r.epoch = epoch_;
  for (const Server& s : states_) {
    DataServerStatus st;
    st.state = s.state;
    st.dirty_bytes = s.dirty.size() * unit_bytes_;
    st.resync_done_bytes = s.resync_done_units * unit_bytes_;
    st.resync_total_bytes = s.resync_total_units * unit_bytes_;
    r.servers.push_back(st);
  }
  return r;
}

void ClusterMap::ReadFrom(codec::ByteReader& r, bool with_instances) {
  uint64_t epoch = 0;
  uint32_t n = 0;
  r.U64("map epoch", epoch);
  r.U32("map servers", n);
  r.Require(n == servers(), "map servers", "is not the number of data pools");
  r.Require(epoch != 0, "map epoch", "is 0");
  if (!r.ok()) return;
  std::vector<Server> states(n);
  for (Server& s : states) {
    uint8_t state = 0;
    uint64_t count = 0;
    r.U8("map state", state);
    r.Require(state <= static_cast<uint8_t>(DataServerState::kResyncing), "map state",
              "is not up, down or resyncing");
    s.state = static_cast<DataServerState>(state);
    if (with_instances) r.U64("map pool instance", s.pool_instance);
    r.U64("map resync done", s.resync_done_units);
    r.U64("map resync total", s.resync_total_units);
    r.U64("map dirty count", count);
    r.Require(count <= r.left() / 12, "map dirty count", "is more units than bytes");
    for (uint64_t i = 0; i < count && r.ok(); ++i) {
      DirtyUnit u;
      r.U32("map dirty primary", u.primary);
      r.U64("map dirty unit", u.unit);
      r.Require(u.primary < n && u.unit < units_per_region(), "map dirty unit",
                "lies outside the primary regions");
      r.Require(s.dirty.empty() || *s.dirty.rbegin() < u, "map dirty unit",
                "is out of order or repeated");
      if (r.ok()) s.dirty.insert(s.dirty.end(), u);
    }
    if (!r.ok()) return;
  }
  epoch_ = epoch;
  states_ = std::move(states);
}

}  // namespace dpmfs::meta
