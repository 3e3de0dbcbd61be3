#include "metadata/sessions.h"

#include <algorithm>

namespace dpmfs::meta {

Session* Sessions::Find(uint64_t id) {
  auto it = table_.find(id);
  return it == table_.end() ? nullptr : it->second.get();
}

const Session* Sessions::Find(uint64_t id) const {
  auto it = table_.find(id);
  return it == table_.end() ? nullptr : it->second.get();
}

Session& Sessions::GetOrCreate(uint64_t id) {
  auto& s = table_[id];
  if (!s) s = std::make_unique<Session>();
  return *s;
}

void Sessions::Erase(uint64_t id) { table_.erase(id); }

std::vector<uint64_t> Sessions::Expired(int64_t now_ms) const {
  std::vector<uint64_t> out;
  for (const auto& [id, s] : table_) {
    if (s->lease_deadline_ms.load(std::memory_order_relaxed) <= now_ms) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void Sessions::RenewAll(int64_t deadline_ms) {
  for (auto& [id, s] : table_) s->lease_deadline_ms.store(deadline_ms);
}

void Sessions::ExtendAll(int64_t ms) {
  for (auto& [id, s] : table_) s->lease_deadline_ms.fetch_add(ms, std::memory_order_relaxed);
}

void Sessions::CacheReply(uint64_t session, uint64_t seq, std::vector<uint8_t> reply) {
  Session& s = GetOrCreate(session);
  s.replies[seq] = std::move(reply);
  while (s.replies.size() > reply_cache_entries_) {
    s.evicted_max = std::max(s.evicted_max, s.replies.begin()->first);
    s.replies.erase(s.replies.begin());
  }
}

std::optional<std::vector<uint8_t>> Sessions::CachedReply(uint64_t session, uint64_t seq,
                                                          bool* too_old) const {
  *too_old = false;
  const Session* s = Find(session);
  if (s == nullptr) return std::nullopt;
  auto it = s->replies.find(seq);
  if (it != s->replies.end()) return it->second;
  *too_old = seq <= s->evicted_max;
  return std::nullopt;
}

void Sessions::AddHandle(uint64_t session, uint64_t handle, InodeId ino) {
  GetOrCreate(session).handles.emplace(handle, ino);
  handle_session_.emplace(handle, session);
}

Session* Sessions::HolderOf(uint64_t handle) {
  auto hs = handle_session_.find(handle);
  return hs == handle_session_.end() ? nullptr : Find(hs->second);
}

InodeId Sessions::RemoveHandle(Session& s, uint64_t handle) {
  auto it = s.handles.find(handle);
  if (it == s.handles.end()) return 0;
  const InodeId ino = it->second;
  s.handles.erase(it);
  handle_session_.erase(handle);
  return ino;
}

Status Sessions::Check(uint64_t next_handle, std::unordered_map<InodeId, uint32_t>* opens) const {
  auto fail = [](std::string m) { return Status::Internal(std::move(m)); };
  size_t handles = 0;
  for (const auto& [sid, s] : table_) {
    for (const auto& [h, ino] : s->handles) {
      auto hs = handle_session_.find(h);
      if (hs == handle_session_.end() || hs->second != sid || h >= next_handle) {
        return fail("handle " + std::to_string(h) + " is not indexed to session " +
                    std::to_string(sid));
      }
      ++(*opens)[ino];
    }
    handles += s->handles.size();
  }
  if (handles != handle_session_.size()) return fail("the handle index has stale handles");
  return Status::OK();
}

}  // namespace dpmfs::meta
