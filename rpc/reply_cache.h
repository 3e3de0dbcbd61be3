// SessionReplyCache: one client session's at-most-once reply cache (rpc/README.md).
// A request is started once per (session, seq): a retry of it either joins the
// execution still running (as a waiter) or is answered from the stored reply; a seq
// older than every reply still kept is refused (it may or may not have executed).
// At most `capacity` completed replies and `max_bytes` of their payloads are kept; the
// oldest (lowest seq) go first, executing requests never, the reply just stored not
// for the byte bound alone.
//
// Nothing is allocated per request once the cache is warm: entries are Boost.Intrusive
// nodes (an rbtree by seq) recycled through a free list with their reply buffers, and
// up to two waiters per entry live inline.
//
// Thread-safety: not thread-safe; RpcServer calls it under its sessions mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>
#include <boost/intrusive/set.hpp>
#include <boost/intrusive/slist.hpp>

namespace dpmfs::rpc {

class SessionReplyCache {
 public:
  // Who waits for a reply: (connection, request id).
  using Waiter = std::pair<std::weak_ptr<void>, uint64_t>;
  // A request has one waiter unless a retry arrived while it executed.
  using Waiters = boost::container::small_vector<Waiter, 2>;

  explicit SessionReplyCache(size_t capacity, uint64_t max_bytes = UINT64_MAX)
      : capacity_(capacity), max_bytes_(max_bytes) {}
  ~SessionReplyCache();
  SessionReplyCache(const SessionReplyCache&) = delete;
  SessionReplyCache& operator=(const SessionReplyCache&) = delete;

  enum class Start {
    kExecute,   // new: the caller executes it, then calls Finish
    kJoined,    // executing already: `waiter` gets the reply when it finishes
    kCached,    // done: *status and *reply are the stored result
    kTooOld,    // older than the cache: refuse
  };
  Start Begin(uint64_t seq, Waiter waiter, int32_t* status, std::vector<uint8_t>* reply);
  // Stores the result of `seq`, moves its waiters to *waiters (cleared first) and
  // evicts the oldest completed replies beyond the capacity.
  void Finish(uint64_t seq, int32_t status, std::span<const uint8_t> reply, Waiters* waiters);

  size_t size() const { return index_.size(); }  // completed and executing
  size_t done() const { return done_; }
  uint64_t bytes() const { return bytes_; }  // payload bytes of the completed replies
  uint64_t evicted_max() const { return evicted_max_; }

 private:
  struct Entry : boost::intrusive::set_base_hook<>, boost::intrusive::slist_base_hook<> {
    uint64_t seq = 0;
    bool done = false;
    int32_t status = 0;
    std::vector<uint8_t> reply;  // payload, or the error message for a non-zero status
    Waiters waiters;
  };
  struct SeqOf {
    using type = uint64_t;
    type operator()(const Entry& e) const { return e.seq; }
  };
  using Index = boost::intrusive::set<Entry, boost::intrusive::key_of_value<SeqOf>,
                                      boost::intrusive::constant_time_size<true>>;
  using FreeList = boost::intrusive::slist<Entry, boost::intrusive::constant_time_size<false>>;

  // A free entry for `seq` (recycled, or a new one), linked into the index.
  Entry& Insert(uint64_t seq);

  const size_t capacity_;
  const uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  std::deque<Entry> storage_;  // every entry ever made (stable addresses)
  Index index_;                // by seq
  FreeList free_;              // recycled entries, their reply buffers kept
  size_t done_ = 0;            // entries in index_ with done == true
  uint64_t evicted_max_ = 0;   // highest seq evicted
};

}  // namespace dpmfs::rpc
