#include "fs/caller_groups.h"

#include <sys/types.h>

#include <vector>

#include "fs/process_groups.h"

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
  // Outside the lock: reading /proc is the slow part (fs/process_groups.h: not with
  // fuse_req_getgroups, which overreads its buffer).
  out->groups.clear();
  std::vector<uint32_t> groups;
  size_t total = 0;
  // A process with more groups than a request may carry is sent with the first ones
  // (the server refuses more). That can only make a file's group bits apply less
  // often: rarely a difference, and logged nowhere (it is per request). A process that
  // is gone already is sent with none.
  if (ReadProcessGroups(static_cast<pid_t>(ctx->pid), meta::kMaxCallerGroups, &groups, &total)) {
    for (uint32_t g : groups) out->groups.push_back(g);
  }
  std::lock_guard lock(mu_);
  if (entries_.size() >= kMaxEntries) entries_.clear();
  entries_[key] = Entry{now + ttl_, out->groups};
}

}  // namespace dpmfs::fs
