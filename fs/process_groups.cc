#include "fs/process_groups.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/unique_fd.h"

namespace dpmfs::fs {

bool ParseStatusGroups(std::string_view status, size_t limit, std::vector<uint32_t>* out,
                       size_t* total) {
  constexpr std::string_view kKey = "Groups:";
  size_t at = 0;
  if (!status.starts_with(kKey)) {
    at = status.find("\nGroups:");
    if (at == std::string_view::npos) return false;
    at += 1;
  }
  std::string_view line = status.substr(at + kKey.size());
  line = line.substr(0, line.find('\n'));
  std::vector<uint32_t> found;
  size_t count = 0;
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) break;
    uint64_t v = 0;
    size_t digits = 0;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') {
      v = v * 10 + static_cast<uint64_t>(line[i] - '0');
      if (v > UINT32_MAX) return false;
      ++i;
      ++digits;
    }
    if (digits == 0) return false;  // not a number
    if (found.size() < limit) found.push_back(static_cast<uint32_t>(v));
    ++count;
  }
  out->insert(out->end(), found.begin(), found.end());
  *total = count;
  return true;
}

bool ReadProcessGroups(pid_t pid, size_t limit, std::vector<uint32_t>* out, size_t* total) {
  const std::string path = "/proc/" + std::to_string(pid) + "/status";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  // The whole file (a few KiB; bounded in case of a surprise), read until its end.
  constexpr size_t kMaxStatus = 1 << 20;
  std::string text;
  char buf[4096];
  while (text.size() < kMaxStatus) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return ParseStatusGroups(text, limit, out, total);
}

}  // namespace dpmfs::fs
