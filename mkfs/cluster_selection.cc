#include "mkfs/cluster_selection.h"

#include <algorithm>
#include <charconv>
#include <string_view>

#include "common/local_address.h"

namespace dpmfs::mkfs {

bool ClusterSelection::all() const {
  return meta && std::all_of(data.begin(), data.end(), [](bool b) { return b; });
}

Result<ClusterSelection> SelectPools(const ClusterFile& cf, const std::vector<std::string>& only) {
  ClusterSelection sel;
  sel.data.assign(cf.data.size(), false);
  auto describe = [&](const ClusterFile::Daemon& d, const std::string& what) {
    return what + " (" + d.endpoint.ToString() + ", " + cf.Where(d) + ")";
  };
  if (!only.empty()) {
    for (const std::string& o : only) {
      if (o == "meta") {
        sel.meta = true;
        continue;
      }
      // The prefix first: for a value shorter than "data:" the digits would start past
      // its end, and from_chars over such a range is undefined.
      constexpr std::string_view kData = "data:";
      size_t n = 0;
      const char* end = o.data() + o.size();
      std::from_chars_result parsed{o.data(), std::errc::invalid_argument};
      if (o.size() > kData.size() && o.starts_with(kData)) {
        parsed = std::from_chars(o.data() + kData.size(), end, n);
      }
      if (parsed.ec != std::errc() || parsed.ptr != end) {
        return Status::InvalidArgument("--only " + o + ": expected 'meta' or 'data:N'");
      }
      if (n >= cf.data.size()) {
        return Status::InvalidArgument("--only " + o + ": " + cf.path + " has data pools 0 to " +
                                       std::to_string(cf.data.size() - 1));
      }
      sel.data[n] = true;
    }
    for (size_t i = 0; i < cf.data.size(); ++i) {
      if (!sel.data[i]) sel.skipped.push_back(describe(cf.data[i], "data " + std::to_string(i)) +
                                              ": not named by --only");
    }
    if (!sel.meta) sel.skipped.push_back(describe(cf.meta, "metadata") + ": not named by --only");
    return sel;
  }
  auto local = [&](const ClusterFile::Daemon& d) -> Result<bool> {
    Result<bool> r = IsLocalHost(d.endpoint.host);
    if (!r.ok()) return r.status().WithContext(cf.Where(d));
    return r;
  };
  DPMFS_ASSIGN_OR_RETURN(sel.meta, local(cf.meta));
  if (!sel.meta) sel.skipped.push_back(describe(cf.meta, "metadata") + ": another host's");
  bool any = sel.meta;
  for (size_t i = 0; i < cf.data.size(); ++i) {
    DPMFS_ASSIGN_OR_RETURN(bool mine, local(cf.data[i]));
    sel.data[i] = mine;
    any = any || mine;
    if (!mine) sel.skipped.push_back(describe(cf.data[i], "data " + std::to_string(i)) +
                                     ": another host's");
  }
  if (!any) {
    std::string addrs;
    for (const std::string& a : LocalAddresses()) addrs += (addrs.empty() ? "" : ", ") + a;
    return Status::NotFound("no line of " + cf.path +
                            " has an address of this host (its addresses: " + addrs +
                            "); run mkfs.dpmfs on the hosts the file names, or choose pools "
                            "with --only meta|data:N");
  }
  return sel;
}

}  // namespace dpmfs::mkfs
