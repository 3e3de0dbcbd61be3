// Sessions: the metadata server's client sessions as one component of the Namespace —
// each session's open handles, its durable reply cache (the last reply_cache_entries
// mutation replies by sequence number) and its lease deadline (memory only), plus the
// index from an open handle to the session holding it.
//
// What is durable here is durable because the Namespace's mutations change it (journal
// + checkpoint); the lease deadlines are not. Opening and closing a handle on an inode
// is the Namespace's business (open counts, freeing at the last close): this component
// only keeps who holds which handle.
//
// Thread-safety: none; guarded by the namespace lock like Namespace itself, except
// Session::lease_deadline_ms, which is atomic so that a heartbeat may renew it under
// the shared lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

// A client's session: registered with kRegister (or implicitly by its first mutation),
// kept alive by heartbeats, ended by kUnregister or lease expiry.
struct Session {
  std::string client_name;
  std::map<uint64_t, InodeId> handles;  // open handle -> inode
  // The last NamespaceConfig::reply_cache_entries mutation replies, by seq.
  std::map<uint64_t, std::vector<uint8_t>> replies;
  uint64_t evicted_max = 0;  // highest seq dropped from `replies`
  // Not durable: milliseconds on the steady clock when the lease lapses.
  std::atomic<int64_t> lease_deadline_ms{0};
};

class Sessions {
 public:
  using Table = std::unordered_map<uint64_t, std::unique_ptr<Session>>;
  using HandleIndex = std::unordered_map<uint64_t, uint64_t>;  // open handle -> session

  explicit Sessions(uint32_t reply_cache_entries) : reply_cache_entries_(reply_cache_entries) {}

  // ---- The table ----
  Session* Find(uint64_t id);
  const Session* Find(uint64_t id) const;
  // The session `id`, created (no name, no lease) when it does not exist.
  Session& GetOrCreate(uint64_t id);
  // Forgets session `id` (its handles must have been closed).
  void Erase(uint64_t id);
  size_t size() const { return table_.size(); }

  // ---- Leases (not durable) ----
  // Sessions whose lease deadline is at or before `now_ms`, in id order.
  std::vector<uint64_t> Expired(int64_t now_ms) const;
  // Gives every session a lease ending at `deadline_ms` (after recovery: a grace period).
  void RenewAll(int64_t deadline_ms);
  // Moves every lease deadline `ms` later.
  void ExtendAll(int64_t ms);

  // ---- The durable reply cache ----
  // Stores a reply of (session, seq), creating the session if needed, and drops the
  // oldest beyond reply_cache_entries.
  void CacheReply(uint64_t session, uint64_t seq, std::vector<uint8_t> reply);
  // The cached reply of (session, seq), or nullopt; `*too_old` is set when seq is at or
  // below what the cache already dropped (the request may or may not have executed).
  std::optional<std::vector<uint8_t>> CachedReply(uint64_t session, uint64_t seq,
                                                  bool* too_old) const;

  // ---- Open handles ----
  // Records that `session` holds `handle` on `ino` (creating the session if needed).
  void AddHandle(uint64_t session, uint64_t handle, InodeId ino);
  // The session holding `handle`, or nullptr.
  Session* HolderOf(uint64_t handle);
  // Drops `handle` from `s`: the inode it was open on, or 0 when `s` does not hold it.
  InodeId RemoveHandle(Session& s, uint64_t handle);
  // Handles in the index, over every session.
  size_t handle_count() const { return handle_session_.size(); }
  // The consistency check of CheckInvariants: every handle is indexed to its session
  // and below `next_handle`, and nothing else is indexed. Adds each session's handles
  // to `opens` (inode -> handles open on it). Internal error naming the first problem.
  Status Check(uint64_t next_handle, std::unordered_map<InodeId, uint32_t>* opens) const;

  // The raw containers, for the checkpoint codec (which serializes and rebuilds them).
  Table& table() { return table_; }
  const Table& table() const { return table_; }
  HandleIndex& handle_index() { return handle_session_; }

 private:
  uint32_t reply_cache_entries_;
  Table table_;
  HandleIndex handle_session_;
};

}  // namespace dpmfs::meta
