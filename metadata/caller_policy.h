// CallerPolicy: which users a client host may act for, applied by dpmfs-meta to the
// credentials every request carries (meta_protocol.h) before any permission check.
//
//   root_squash       uid 0 becomes the anonymous uid (65534, "nobody"), gid 0 and a
//                     supplementary group 0 the anonymous gid (as NFS's root_squash):
//                     root on a client host gets only what "others" get.
//   allowed uids      per client host (the address the connection comes from), the uid
//                     ranges it may send: `--allow-uids HOST=LO-HI[,LO-HI...]`, one
//                     option per host. A request for any other uid is refused with
//                     EPERM (session upkeep — register, heartbeat, unregister, release —
//                     is not refused: it acts for nobody). Hosts not named are not
//                     restricted; the anonymous uid is always allowed (it has only the
//                     others' bits). The ranges are checked after root_squash, so
//                     root_squash plus a range keeps root out without refusing it.
//
// Thread-safety: immutable after construction; Map is const and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "metadata/meta_protocol.h"

namespace dpmfs::meta {

inline constexpr uint32_t kAnonymousId = 65534;  // nobody / nogroup

struct UidRange {
  uint32_t lo = 0;
  uint32_t hi = 0;  // inclusive
};

struct HostUidRanges {
  std::string host;  // as the connection's peer address shows it: "10.0.0.7", "::1"
  std::vector<UidRange> ranges;
};

// Parses one `--allow-uids` value, "HOST=LO-HI[,LO-HI...]" (a single uid "N" is the
// range N-N). InvalidArgument saying what is wrong and how it should look.
Result<HostUidRanges> ParseAllowUids(std::string_view spec);

struct CallerPolicyOptions {
  bool root_squash = false;
  std::vector<HostUidRanges> allow_uids;  // at most one entry per host
};

class CallerPolicy {
 public:
  CallerPolicy() = default;
  // InvalidArgument when a host is named twice.
  static Result<CallerPolicy> Create(CallerPolicyOptions options);

  // Maps `caller` of a request from `peer` ("host:port" as rpc/ reports it) in place:
  // 0, or EPERM when the host may not act for that uid.
  int Map(std::string_view peer, Credentials* caller) const;
  // Whether Map changes or refuses anything (the server skips it otherwise).
  bool active() const { return options_.root_squash || !options_.allow_uids.empty(); }

 private:
  explicit CallerPolicy(CallerPolicyOptions options) : options_(std::move(options)) {}
  CallerPolicyOptions options_;
};

// The host part of "host:port" / "[v6]:port" (the whole string when it has no port).
std::string_view PeerHost(std::string_view peer);

}  // namespace dpmfs::meta
