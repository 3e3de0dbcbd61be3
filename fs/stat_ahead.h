// Statahead (Lustre's name for it): a program that looks up the names of one directory
// one after another (stat of a list of files, mdtest's stat phase, a build checking its
// inputs) costs one LOOKUP RPC per name once the kernel's entries have expired. After
// `trigger` lookups in a row in one directory that went to the server, with no change of
// that directory by this client in between, the client fetches the directory with its
// entries' attributes (READDIRPLUS RPCs of up to 1024 entries) and answers the following
// lookups in it from that listing: found (with attributes) or absent.
//
// Staleness: a listing answers for `validity` (the mount's entry_timeout) from the moment
// its first request was sent. That is how long the kernel itself caches an entry (or a
// negative one) it was given, so an answer from the listing is no older than one the
// kernel could have cached. It never hides this client's own changes: entries this
// client adds or removes are applied to it (NoteAdded, NoteRemoved; also to a listing
// being fetched, when it is stored), a rename drops it (NoteChanged), and an inode whose
// attributes this client changed is answered by the server again (NoteAttrChanged).
// A removed name (unlink, or a rename over it) takes its inode back to the server in
// every listing, so the file's other names show the new nlink and ctime (xfstests
// generic/002 saw the old ones); when no listing held the name, which inode it was is
// not known here and every listed file with more than one link goes back instead.
// Attributes in a listing may also be older than what this client learnt since the
// listing's first request: the caller keeps the fresher ones (Inode::UpdateAttrAsOf).
//
// Creates benefit too: the kernel looks a name up before it creates it, and a listing
// answers "absent" without an RPC (the create itself still goes to the server, which
// decides EEXIST).
//
// Bounds: only directories of at most `max_entries` entries are listed (a larger one, or
// one whose fetch failed, is not fetched again for `validity`); at most `max_listings`
// listings, the oldest dropped first.
//
// Thread-safety: thread-safe. The fetch itself (RPCs) is the caller's, outside the lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

class StatAhead {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    uint32_t trigger = 8;          // lookups in a row in one directory; 0 disables statahead
    uint32_t max_entries = 65536;  // larger directories are not listed
    uint32_t max_listings = 4;     // directories listed at once
    Clock::duration validity = std::chrono::seconds(1);
    // Whether a listing answers for names it does not hold (kAbsent). Off with
    // lookupcache=positive: a name another client just created is then found at once.
    bool answer_absent = true;
  };
  explicit StatAhead(const Options& options) : options_(options) {}

  enum class Answer { kUnknown, kFound, kAbsent };
  struct Found {
    meta::InodeAttr attr;
    uint64_t seq_before = 0;      // AttrSequence() before the listing's first request
    Clock::time_point as_of;      // when that request was sent
    Clock::duration remaining{};  // validity left
  };
  // kUnknown: no valid listing of `dir`, or it cannot vouch for this name (also every
  // absent name without Options::answer_absent); ask the server.
  Answer Lookup(meta::InodeId dir, std::string_view name, Found* found);

  // A lookup in `dir` went to the server. True when the caller is to fetch the listing
  // now and then call Store or Abandon (only one fetch per directory at a time).
  bool NoteLookupMiss(meta::InodeId dir);

  // This client's acknowledged changes (see the file comment).
  void NoteAdded(meta::InodeId dir, const std::string& name, const meta::InodeAttr& attr);
  // Also after a rename that replaced `name` (its inode lost a link).
  void NoteRemoved(meta::InodeId dir, const std::string& name);
  void NoteChanged(meta::InodeId dir);  // entries moved in ways not tracked (rename)
  void NoteAttrChanged(meta::InodeId ino);  // setattr, truncate, a write's commit, link...

  struct Entry {
    std::string name;
    meta::InodeAttr attr;
  };
  // The fetch NoteLookupMiss asked for is complete: every entry of `dir`. Returns false
  // when it was dropped (the directory was renamed into or out of meanwhile).
  bool Store(meta::InodeId dir, std::vector<Entry> entries, uint64_t seq_before,
             Clock::time_point sent);
  // The fetch failed, or the directory has more than max_entries entries.
  void Abandon(meta::InodeId dir);

  const Options& options() const { return options_; }
  uint64_t listings_stored() const;  // for tests

 private:
  struct Listing {
    std::unordered_map<std::string, meta::InodeAttr> entries;
    std::unordered_set<meta::InodeId> stale;  // attributes changed since: ask the server
    // Listed files with more than one link: the candidates when an unlinked name's
    // inode is not known (NoteRemoved).
    std::unordered_set<meta::InodeId> linked;
    uint64_t seq_before = 0;
    Clock::time_point sent;
  };
  // A change noted while a listing was being fetched, applied when it is stored.
  struct Change {
    // kLinkDropped: a name of attr.ino (0: not known which) was removed elsewhere.
    enum Kind { kAdd, kRemove, kStale, kLinkDropped } kind;
    std::string name;
    meta::InodeAttr attr;  // kAdd; attr.ino for kStale and kLinkDropped
  };
  struct Fetch {
    bool dropped = false;
    std::vector<Change> changes;
  };
  void DropExpiredLocked(Clock::time_point now) REQUIRES(mu_);
  // A name of `unlinked` (0: not known which inode) is gone: see NoteRemoved.
  void LinkDroppedLocked(Listing& l, meta::InodeId unlinked) REQUIRES(mu_);

  const Options options_;
  mutable Mutex mu_;
  std::map<meta::InodeId, Listing> listings_ GUARDED_BY(mu_);
  std::map<meta::InodeId, Fetch> fetching_ GUARDED_BY(mu_);
  std::map<meta::InodeId, Clock::time_point> quiet_until_ GUARDED_BY(mu_);  // not fetched again before
  meta::InodeId run_dir_ GUARDED_BY(mu_) = 0;  // the directory of the current run of lookups
  uint32_t run_ GUARDED_BY(mu_) = 0;
  uint64_t stored_ GUARDED_BY(mu_) = 0;
};

}  // namespace dpmfs::fs
