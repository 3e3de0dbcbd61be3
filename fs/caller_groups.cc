#include "fs/caller_groups.h"

#include <sys/types.h>

#include <algorithm>
#include <vector>

namespace dpmfs::fs {

void CallerGroups::Resolve(fuse_req_t req, meta::Credentials* out) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  out->uid = ctx->uid;
  out->gid = ctx->gid;
  const Key key{static_cast<uint32_t>(ctx->pid), ctx->uid, ctx->gid};
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.expires > now) {
      out->groups = it->second.groups;
      return;
    }
  }
  // Outside the lock: reading /proc is the slow part. fuse_req_getgroups returns the
  // number of groups, which may exceed the room given: then ask again with room.
  out->groups.clear();
  constexpr int kInline = 64;
  gid_t inline_list[kInline];
  std::vector<gid_t> big;
  const gid_t* list = inline_list;
  int n = fuse_req_getgroups(req, kInline, inline_list);
  if (n > kInline) {
    big.resize(static_cast<size_t>(n));
    n = std::min(n, fuse_req_getgroups(req, n, big.data()));
    list = big.data();
  }
  // A process with more groups than a request may carry is sent with the first ones
  // (the server refuses more). That can only make a file's group bits apply less
  // often: rarely a difference, and logged nowhere (it is per request).
  const int keep = std::clamp(n, 0, static_cast<int>(meta::kMaxCallerGroups));
  for (int i = 0; i < keep; ++i) out->groups.push_back(list[i]);
  std::lock_guard lock(mu_);
  if (entries_.size() >= kMaxEntries) entries_.clear();
  entries_[key] = Entry{now + ttl_, out->groups};
}

}  // namespace dpmfs::fs
