// When a read updates a file's access time: Linux's three rules, chosen at mount time
// (-o relatime, the default; -o strictatime; -o noatime). FUSE leaves atime to the file
// system (the kernel never updates it for us), so the client applies the rule itself,
// lazily: the new atime is shown at once and committed to the metadata server when the
// handle is released (fs/README.md, "Access times").
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "metadata/meta_protocol.h"

namespace dpmfs::fs {

enum class AtimePolicy {
  kRelatime,     // when the atime is not later than the mtime or ctime, or a day old
  kStrictatime,  // at every access
  kNoatime,      // never
};

// Whether an access at `now` updates `attr`'s atime under `policy`.
bool AtimeUpdateDue(AtimePolicy policy, const meta::InodeAttr& attr, const meta::Timespec& now);

std::string_view AtimePolicyName(AtimePolicy policy);

}  // namespace dpmfs::fs
