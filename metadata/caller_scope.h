// CallerScope: which user the metadata calls made on this thread act for. The FUSE
// client opens one per FUSE request (fs/fuse_ops.cc) with the requesting process's
// uid, gid and groups; MetaClient puts the innermost scope's credentials in front of
// every request it sends from the thread (meta_protocol.h, "The caller"), and its
// own default credentials (MetaClientOptions::caller) when no scope is open.
//
// The credentials are resolved lazily, at the first call that needs them: a FUSE
// request that reaches no metadata server (most reads and overwrites) never pays for
// looking up the process's supplementary groups.
//
// Thread-safety: a scope belongs to the thread that opened it; scopes nest (the
// innermost wins) and must be closed in reverse order (RAII).
#pragma once

#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

class CallerScope {
 public:
  // Fills `*out` with the caller's credentials; called at most once per scope.
  using Resolver = void (*)(void* arg, Credentials* out);
  CallerScope(Resolver resolve, void* arg);
  // Credentials known up front (tests, tools).
  explicit CallerScope(const Credentials& caller);
  ~CallerScope();
  CallerScope(const CallerScope&) = delete;
  CallerScope& operator=(const CallerScope&) = delete;

  // The innermost open scope's credentials, or nullptr when none is open.
  static const Credentials* Current();

 private:
  Resolver resolve_ = nullptr;
  void* arg_ = nullptr;
  bool resolved_ = false;
  Credentials caller_;
  CallerScope* outer_ = nullptr;
};

}  // namespace dpmfs::meta
