// CallerGroups: the supplementary groups of the processes behind FUSE requests, which
// the metadata server needs for its permission checks (metadata/permissions.h). The
// kernel does not send them: they are read from /proc/PID/status (fs/process_groups.h;
// not with libfuse's fuse_req_getgroups, which overreads its buffer), some 10 us a time. So they are kept per (pid, uid, gid)
// for `ttl` (1 s): a process that changes its uid or gid (setuid, setgid: how programs
// drop privileges, after setgroups) gets a new entry at once; one that only calls
// setgroups is seen with its old groups for up to `ttl`, as NFS clients cache
// credentials. A request whose groups cannot be read (the process is gone) is sent
// with none.
//
// Thread-safety: thread-safe (one mutex; FUSE worker threads share it).
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

class CallerGroups {
 public:
  using Clock = std::chrono::steady_clock;
  explicit CallerGroups(Clock::duration ttl = std::chrono::seconds(1)) : ttl_(ttl) {}

  // The credentials of `req`'s process: uid and gid from the request, the groups from
  // the cache or /proc.
  void Resolve(fuse_req_t req, meta::Credentials* out);

 private:
  struct Key {
    uint32_t pid, uid, gid;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return (uint64_t{k.pid} * 0x9E3779B97F4A7C15ull) ^ (uint64_t{k.uid} << 32) ^ k.gid;
    }
  };
  struct Entry {
    Clock::time_point expires;
    decltype(meta::Credentials::groups) groups;
  };
  // Bounds the cache (a busy host runs many short processes): cleared when full.
  static constexpr size_t kMaxEntries = 4096;

  const Clock::duration ttl_;
  std::mutex mu_;
  std::unordered_map<Key, Entry, KeyHash> entries_;  // guarded by mu_
};

}  // namespace dpmfs::fs
