#include "metadata/caller_scope.h"

namespace dpmfs::meta {

namespace {
thread_local CallerScope* t_innermost = nullptr;
}  // namespace

CallerScope::CallerScope(Resolver resolve, void* arg)
    : resolve_(resolve), arg_(arg), outer_(t_innermost) {
  t_innermost = this;
}

CallerScope::CallerScope(const Credentials& caller)
    : resolved_(true), caller_(caller), outer_(t_innermost) {
  t_innermost = this;
}

CallerScope::~CallerScope() { t_innermost = outer_; }

const Credentials* CallerScope::Current() {
  CallerScope* s = t_innermost;
  if (s == nullptr) return nullptr;
  if (!s->resolved_) {
    s->resolve_(s->arg_, &s->caller_);
    s->resolved_ = true;
  }
  return &s->caller_;
}

}  // namespace dpmfs::meta
