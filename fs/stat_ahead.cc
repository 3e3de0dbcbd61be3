#include "fs/stat_ahead.h"

#include <sys/stat.h>

#include <algorithm>

namespace dpmfs::fs {

namespace {
// A file whose other names an unlink or a rename elsewhere can change the nlink of.
bool HasOtherNames(const meta::InodeAttr& a) { return a.nlink > 1 && !S_ISDIR(a.mode); }
}  // namespace

StatAhead::Answer StatAhead::Lookup(meta::InodeId dir, std::string_view name, Found* found) {
  MutexLock lock(mu_);
  auto it = listings_.find(dir);
  if (it == listings_.end()) return Answer::kUnknown;
  const Clock::time_point now = Clock::now();
  const Clock::time_point until = it->second.sent + options_.validity;
  if (now >= until) {
    listings_.erase(it);
    return Answer::kUnknown;
  }
  const Listing& l = it->second;
  auto e = l.entries.find(std::string(name));
  if (e == l.entries.end()) return options_.answer_absent ? Answer::kAbsent : Answer::kUnknown;
  if (l.stale.count(e->second.ino) != 0) return Answer::kUnknown;
  found->attr = e->second;
  found->seq_before = l.seq_before;
  found->as_of = l.sent;
  found->remaining = until - now;
  return Answer::kFound;
}

bool StatAhead::NoteLookupMiss(meta::InodeId dir) {
  if (options_.trigger == 0) return false;
  MutexLock lock(mu_);
  if (dir != run_dir_) {
    run_dir_ = dir;
    run_ = 0;
  }
  if (++run_ < options_.trigger) return false;
  if (fetching_.count(dir) != 0) return false;
  // Lookups miss while a listing exists when it cannot vouch for a name (stale
  // attributes) or the kernel asked just before it was stored: fetch only once it is gone.
  DropExpiredLocked(Clock::now());
  if (listings_.count(dir) != 0 || quiet_until_.count(dir) != 0) return false;
  fetching_[dir] = Fetch{};
  run_ = 0;
  return true;
}

void StatAhead::NoteAdded(meta::InodeId dir, const std::string& name,
                          const meta::InodeAttr& attr) {
  MutexLock lock(mu_);
  if (auto it = listings_.find(dir); it != listings_.end()) {
    it->second.entries[name] = attr;
    if (HasOtherNames(attr)) it->second.linked.insert(attr.ino);
  }
  if (auto f = fetching_.find(dir); f != fetching_.end()) {
    f->second.changes.push_back(Change{Change::kAdd, name, attr});
  }
}

void StatAhead::NoteRemoved(meta::InodeId dir, const std::string& name) {
  MutexLock lock(mu_);
  // The removed name's inode lost a link (and its ctime moved): its other names, in
  // this listing or another, must not answer with the old nlink. Which inode it was is
  // known only when a listing of `dir` holds the name.
  meta::InodeId unlinked = 0;
  if (auto it = listings_.find(dir); it != listings_.end()) {
    if (auto e = it->second.entries.find(name); e != it->second.entries.end()) {
      unlinked = e->second.ino;
      it->second.entries.erase(e);
    }
  }
  for (auto& [listed_dir, l] : listings_) {
    (void)listed_dir;
    LinkDroppedLocked(l, unlinked);
  }
  if (auto f = fetching_.find(dir); f != fetching_.end()) {
    f->second.changes.push_back(Change{Change::kRemove, name, {}});
  }
  // Other directories being fetched may hold another name of it, read before the unlink.
  meta::InodeAttr a;
  a.ino = unlinked;
  for (auto& [fetched_dir, f] : fetching_) {
    if (fetched_dir != dir) f.changes.push_back(Change{Change::kLinkDropped, {}, a});
  }
}

void StatAhead::NoteChanged(meta::InodeId dir) {
  MutexLock lock(mu_);
  listings_.erase(dir);
  if (auto f = fetching_.find(dir); f != fetching_.end()) f->second.dropped = true;
}

void StatAhead::NoteAttrChanged(meta::InodeId ino) {
  MutexLock lock(mu_);
  // Marked in every listing (at most max_listings): cheaper than an index of inodes.
  for (auto& [dir, l] : listings_) {
    (void)dir;
    l.stale.insert(ino);
  }
  meta::InodeAttr a;
  a.ino = ino;
  for (auto& [dir, f] : fetching_) {
    (void)dir;
    f.changes.push_back(Change{Change::kStale, {}, a});
  }
}

bool StatAhead::Store(meta::InodeId dir, std::vector<Entry> entries, uint64_t seq_before,
                      Clock::time_point sent) {
  MutexLock lock(mu_);
  auto f = fetching_.find(dir);
  if (f == fetching_.end()) return false;
  Fetch fetch = std::move(f->second);
  fetching_.erase(f);
  const Clock::time_point now = Clock::now();
  if (fetch.dropped) {
    quiet_until_[dir] = now + options_.validity;
    return false;
  }
  DropExpiredLocked(now);
  listings_.erase(dir);
  while (!listings_.empty() && listings_.size() >= options_.max_listings) {
    auto oldest = std::min_element(listings_.begin(), listings_.end(), [](const auto& a,
                                                                          const auto& b) {
      return a.second.sent < b.second.sent;
    });
    listings_.erase(oldest);
  }
  Listing& l = listings_[dir];
  l.entries.reserve(entries.size());
  for (Entry& e : entries) {
    if (HasOtherNames(e.attr)) l.linked.insert(e.attr.ino);
    l.entries.emplace(std::move(e.name), e.attr);
  }
  // This client's changes made while the listing was read: each is at least as new as
  // what the listing holds for its name, whichever side of the change the server's
  // answer fell on.
  for (Change& c : fetch.changes) {
    switch (c.kind) {
      case Change::kAdd:
        l.entries[c.name] = c.attr;
        if (HasOtherNames(c.attr)) l.linked.insert(c.attr.ino);
        break;
      case Change::kRemove: {
        meta::InodeId unlinked = 0;
        if (auto e = l.entries.find(c.name); e != l.entries.end()) {
          unlinked = e->second.ino;
          l.entries.erase(e);
        }
        LinkDroppedLocked(l, unlinked);
        break;
      }
      case Change::kLinkDropped:
        LinkDroppedLocked(l, c.attr.ino);
        break;
      case Change::kStale:
        l.stale.insert(c.attr.ino);
        break;
    }
  }
  l.seq_before = seq_before;
  l.sent = sent;
  ++stored_;
  return true;
}

void StatAhead::Abandon(meta::InodeId dir) {
  MutexLock lock(mu_);
  fetching_.erase(dir);
  // Too big, or the server failed: not again for a while.
  quiet_until_[dir] = Clock::now() + options_.validity;
}

void StatAhead::LinkDroppedLocked(Listing& l, meta::InodeId unlinked) {
  if (unlinked != 0) {
    l.stale.insert(unlinked);
    return;
  }
  // Not known which inode: any listed one with other names may have been it.
  l.stale.insert(l.linked.begin(), l.linked.end());
}

void StatAhead::DropExpiredLocked(Clock::time_point now) {
  for (auto it = listings_.begin(); it != listings_.end();) {
    it = now >= it->second.sent + options_.validity ? listings_.erase(it) : std::next(it);
  }
  for (auto it = quiet_until_.begin(); it != quiet_until_.end();) {
    it = now >= it->second ? quiet_until_.erase(it) : std::next(it);
  }
}

uint64_t StatAhead::listings_stored() const {
  MutexLock lock(mu_);
  return stored_;
}

}  // namespace dpmfs::fs
