// libFuzzer target for the cluster file parser (common/cluster_file.h): a text file
// every daemon, mkfs and the launcher read, edited by hand. The input is the file's
// text, handed to ParseClusterFile through a memfd (/proc/self/fd/N), the parser's only
// entry point. Properties:
//   - an accepted file obeys the rules the header states: a meta line and 1..256 data
//     lines, ports not 0, a power-of-two block size in [512, 1 MiB], a stripe unit that
//     is a multiple of it, no pool path or address used twice, pools no smaller than
//     the minimum;
//   - what was parsed, written back as a cluster file, parses to the same cluster;
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read.
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <set>
#include <string>

#include "common/cluster_file.h"
#include "fuzz_check.h"

namespace {

using namespace dpmfs;

int MakeMemfd(const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0, "memfd_create");
  return fd;
}

Result<ClusterFile> ParseText(int fd, std::string_view text) {
  FUZZ_CHECK(::ftruncate(fd, 0) == 0, "ftruncate");
  FUZZ_CHECK(::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()),
             "pwrite");
  return ParseClusterFile("/proc/self/fd/" + std::to_string(fd));
}

std::string Render(const ClusterFile& cf) {
  std::string out;
  if (cf.cluster) out += "cluster_uuid " + cf.cluster->ToString() + "\n";
  out += "block_size " + std::to_string(cf.block_size) + "\n";
  out += "stripe_unit " + std::to_string(cf.stripe_unit) + "\n";
  auto daemon = [&](const char* kind, const ClusterFile::Daemon& d) {
    out += std::string(kind) + " " + d.endpoint.ToString() + " " + d.pool_path + " " +
           std::to_string(d.pool_size) + "\n";
  };
  daemon("meta", cf.meta);
  for (const ClusterFile::Daemon& d : cf.data) daemon("data", d);
  return out;
}

bool SameDaemon(const ClusterFile::Daemon& a, const ClusterFile::Daemon& b) {
  return a.endpoint.host == b.endpoint.host && a.endpoint.port == b.endpoint.port &&
         a.pool_path == b.pool_path && a.pool_size == b.pool_size;
}

void CheckAccepted(const ClusterFile& cf) {
  FUZZ_CHECK(!cf.data.empty() && cf.data.size() <= kMaxClusterDataServers, "data line count");
  FUZZ_CHECK(cf.block_size >= pool::kMinBlockSize && cf.block_size <= pool::kMaxBlockSize &&
                 std::has_single_bit(cf.block_size),
             "block size");
  FUZZ_CHECK(cf.stripe_unit != 0 && cf.stripe_unit % cf.block_size == 0, "stripe unit");
  FUZZ_CHECK(!cf.cluster || !cf.cluster->IsNil(), "nil cluster UUID");
  std::set<std::string> paths, endpoints;
  auto check = [&](const ClusterFile::Daemon& d, uint32_t bs) {
    FUZZ_CHECK(d.endpoint.port != 0 && !d.endpoint.host.empty(), "address");
    FUZZ_CHECK(paths.insert(d.pool_path).second, "pool path used twice");
    FUZZ_CHECK(endpoints.insert(d.endpoint.ToString()).second, "address used twice");
    FUZZ_CHECK(d.pool_size >= pool::MinPoolSize(bs), "pool under the minimum size");
  };
  check(cf.meta, 4096);
  for (const ClusterFile::Daemon& d : cf.data) check(d, cf.block_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int input_fd = MakeMemfd("cluster-file-fuzz");
  static const int again_fd = MakeMemfd("cluster-file-fuzz-again");
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<ClusterFile> cf = ParseText(input_fd, text);
  if (!cf.ok()) {
    fuzz::CheckRefusal(cf.status(), "ParseClusterFile");
    return 0;
  }
  CheckAccepted(*cf);
  const std::string rendered = Render(*cf);
  Result<ClusterFile> again = ParseText(again_fd, rendered);
  if (!again.ok()) {
    std::fprintf(stderr, "re-parse of:\n%s\nfailed: %s\n", rendered.c_str(),
                 again.status().ToString().c_str());
  }
  FUZZ_CHECK(again.ok(), "a parsed cluster file, written back, does not parse");
  bool same = again->cluster == cf->cluster && again->block_size == cf->block_size &&
              again->stripe_unit == cf->stripe_unit && SameDaemon(again->meta, cf->meta) &&
              again->data.size() == cf->data.size();
  for (size_t i = 0; same && i < cf->data.size(); ++i) same = SameDaemon(again->data[i], cf->data[i]);
  if (!same) std::fprintf(stderr, "written back as:\n%s\n", rendered.c_str());
  FUZZ_CHECK(same, "a parsed cluster file, written back, parses to another cluster");
  return 0;
}
