#include "rpc/reply_cache.h"

#include <algorithm>

namespace dpmfs::rpc {

namespace {
// A recycled entry keeps its reply buffer up to this size (larger ones are freed, so a
// rare big reply does not pin its memory for the session's life).
constexpr size_t kKeepReplyCapacity = 64 * 1024;
}  // namespace

SessionReplyCache::~SessionReplyCache() {
  // Unlink before storage_ destroys the entries (safe-mode hooks check this).
  index_.clear();
  free_.clear();
}

SessionReplyCache::Entry& SessionReplyCache::Insert(uint64_t seq) {
  Entry* e;
  if (!free_.empty()) {
    e = &free_.front();
    free_.pop_front();
  } else {
    e = &storage_.emplace_back();
  }
  e->seq = seq;
  e->done = false;
  e->status = 0;
  e->reply.clear();
  e->waiters.clear();
  index_.insert(*e);
  return *e;
}

SessionReplyCache::Start SessionReplyCache::Begin(uint64_t seq, Waiter waiter, int32_t* status,
                                                  std::vector<uint8_t>* reply) {
  auto it = index_.find(seq);
  if (it != index_.end()) {
    if (!it->done) {
      it->waiters.push_back(std::move(waiter));
      return Start::kJoined;
    }
    *status = it->status;
    *reply = it->reply;
    return Start::kCached;
  }
  if (seq <= evicted_max_) return Start::kTooOld;
  Insert(seq).waiters.push_back(std::move(waiter));
  return Start::kExecute;
}

void SessionReplyCache::Finish(uint64_t seq, int32_t status, std::span<const uint8_t> reply,
                               Waiters* waiters) {
  auto found = index_.find(seq);
  Entry& e = found != index_.end() ? *found : Insert(seq);
  if (!e.done) {
    ++done_;
  } else {
    bytes_ -= e.reply.size();
  }
  e.done = true;
  e.status = status;
  e.reply.assign(reply.begin(), reply.end());
  bytes_ += e.reply.size();
  waiters->clear();
  for (Waiter& w : e.waiters) waiters->push_back(std::move(w));
  e.waiters.clear();
  // Evict the oldest completed replies beyond the bound; executing ones stay.
  for (auto it = index_.begin(); (done_ > capacity_ || bytes_ > max_bytes_) && it != index_.end();) {
    // Over the count, the lowest seq goes even if it is the reply just stored (a late
    // finisher of an old seq); over the bytes only, the reply just stored stays.
    if (it->done && (&*it != &e || done_ > capacity_)) {
      evicted_max_ = std::max(evicted_max_, it->seq);
      Entry& old = *it;
      it = index_.erase(it);
      bytes_ -= old.reply.size();
      old.waiters.clear();
      if (old.reply.capacity() > kKeepReplyCapacity) std::vector<uint8_t>().swap(old.reply);
      free_.push_front(old);
      --done_;
    } else {
      ++it;
    }
  }
}

}  // namespace dpmfs::rpc
