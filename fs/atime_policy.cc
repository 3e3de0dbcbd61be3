#include "fs/atime_policy.h"

namespace dpmfs::fs {

namespace {
constexpr int64_t kDaySeconds = 24 * 60 * 60;
}  // namespace

bool AtimeUpdateDue(AtimePolicy policy, const meta::InodeAttr& attr, const meta::Timespec& now) {
  switch (policy) {
    case AtimePolicy::kNoatime:
      return false;
    case AtimePolicy::kStrictatime:
      return true;
    case AtimePolicy::kRelatime:
      // As the kernel's relatime_need_update: the atime says nothing about accesses
      // since the last change, or it is more than a day old.
      return attr.atime <= attr.mtime || attr.atime <= attr.ctime ||
             now.sec - attr.atime.sec >= kDaySeconds;
  }
  return false;
}

std::string_view AtimePolicyName(AtimePolicy policy) {
  switch (policy) {
    case AtimePolicy::kRelatime: return "relatime";
    case AtimePolicy::kStrictatime: return "strictatime";
    case AtimePolicy::kNoatime: return "noatime";
  }
  return "?";
}

}  // namespace dpmfs::fs
