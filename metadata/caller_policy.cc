#include "metadata/caller_policy.h"

#include <charconv>
#include <cerrno>

namespace dpmfs::meta {

namespace {

bool ParseId(std::string_view s, uint32_t* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Result<HostUidRanges> ParseAllowUids(std::string_view spec) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("--allow-uids '" + std::string(spec) + "': " + why +
                                   " (expected HOST=LO-HI[,LO-HI...], e.g. "
                                   "10.0.0.7=1000-1999,3000)");
  };
  const size_t eq = spec.find('=');
  if (eq == std::string_view::npos) return bad("no '=' between the host and the uid ranges");
  HostUidRanges out;
  out.host = std::string(spec.substr(0, eq));
  if (out.host.empty()) return bad("the host is empty");
  if (out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  std::string_view rest = spec.substr(eq + 1);
  if (rest.empty()) return bad("no uid range after '='");
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (comma != std::string_view::npos && rest.empty()) return bad("a trailing ','");
    UidRange r;
    const size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      if (!ParseId(item, &r.lo)) return bad("'" + std::string(item) + "' is not a uid");
      r.hi = r.lo;
    } else if (!ParseId(item.substr(0, dash), &r.lo) || !ParseId(item.substr(dash + 1), &r.hi)) {
      return bad("'" + std::string(item) + "' is not a range LO-HI of uids (0..4294967295)");
    }
    if (r.lo > r.hi) return bad("range '" + std::string(item) + "' ends before it starts");
    out.ranges.push_back(r);
  }
  return out;
}

Result<CallerPolicy> CallerPolicy::Create(CallerPolicyOptions options) {
  for (size_t i = 0; i < options.allow_uids.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (options.allow_uids[i].host == options.allow_uids[j].host) {
        return Status::InvalidArgument("--allow-uids names host " + options.allow_uids[i].host +
                                       " twice: give all of its ranges in one option "
                                       "(HOST=LO-HI,LO-HI)");
      }
    }
  }
  return CallerPolicy(std::move(options));
}

std::string_view PeerHost(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    const size_t close = peer.find(']');
    if (close != std::string_view::npos) return peer.substr(1, close - 1);
  }
  const size_t colon = peer.rfind(':');
  // More than one ':' without brackets: a bare IPv6 address, no port.
  if (colon == std::string_view::npos || peer.find(':') != colon) return peer;
  return peer.substr(0, colon);
}

int CallerPolicy::Map(std::string_view peer, Credentials* caller) const {
  if (options_.root_squash) {
    if (caller->uid == 0) caller->uid = kAnonymousId;
    if (caller->gid == 0) caller->gid = kAnonymousId;
    for (uint32_t& g : caller->groups) {
      if (g == 0) g = kAnonymousId;
    }
  }
  if (options_.allow_uids.empty() || caller->uid == kAnonymousId) return 0;
  const std::string_view host = PeerHost(peer);
  for (const HostUidRanges& h : options_.allow_uids) {
    if (h.host != host) continue;
    for (const UidRange& r : h.ranges) {
      if (caller->uid >= r.lo && caller->uid <= r.hi) return 0;
    }
    return EPERM;
  }
  return 0;  // a host without a rule
}

}  // namespace dpmfs::meta
