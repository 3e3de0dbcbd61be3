#include "common/cluster_file.h"

#include <bit>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace dpmfs {
namespace {

// Splits a line into whitespace-separated words; a word starting with '#' ends the line.
std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) {
    if (w[0] == '#') break;
    out.push_back(w);
  }
  return out;
}

}  // namespace

Result<ClusterFile> ParseClusterFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Status::NotFound("cluster file " + path + " does not exist");
  }
  if (std::filesystem::is_directory(path, ec)) {
    return Status::FromErrno(EISDIR, "cannot read cluster file " + path);
  }
  std::ifstream in(path);
  if (!in) return Status::FromErrno(errno, "cannot read cluster file " + path);

  ClusterFile cf;
  cf.path = path;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  auto error = [&](int line, const std::string& what) {
    return Status::InvalidArgument(path + ":" + std::to_string(line) + ": " + what);
  };
  int block_size_line = 0;
  int stripe_unit_line = 0;
  int uuid_line = 0;
  int replicas_line = 0;
  bool have_meta = false;
  std::map<std::string, int> paths;      // normalised pool path -> line
  std::map<std::string, int> endpoints;  // host:port -> line

  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    std::vector<std::string> w = Words(text);
    if (w.empty()) continue;
    const std::string& key = w[0];
    auto expect_words = [&](size_t n, const char* form) -> Status {
      if (w.size() == n) return Status::OK();
      return error(line, "'" + key + "' takes " + std::to_string(n - 1) + " value" +
                             (n == 2 ? "" : "s") + " (" + form + "), found " +
                             std::to_string(w.size() - 1));
    };
    auto once = [&](int* seen) -> Status {
      if (*seen == 0) {
        *seen = line;
        return Status::OK();
      }
      return error(line, "'" + key + "' repeats line " + std::to_string(*seen));
    };
    auto size_value = [&](const std::string& text, const char* what) -> Result<uint64_t> {
      Result<uint64_t> v = pool::ParseSize(text);
      if (!v.ok()) return error(line, std::string("bad ") + what + ": " + v.status().message());
      return v;
    };

    if (key == "cluster_uuid") {
      DPMFS_RETURN_IF_ERROR(expect_words(2, "a UUID"));
      DPMFS_RETURN_IF_ERROR(once(&uuid_line));
      Result<pool::ClusterUuid> u = pool::ClusterUuid::Parse(w[1]);
      if (!u.ok()) return error(line, u.status().message());
      if (u->IsNil()) return error(line, "the nil UUID cannot name a cluster");
      cf.cluster = *u;
    } else if (key == "block_size" || key == "stripe_unit") {
      DPMFS_RETURN_IF_ERROR(expect_words(2, "a size"));
      bool is_block = key == "block_size";
      DPMFS_RETURN_IF_ERROR(once(is_block ? &block_size_line : &stripe_unit_line));
      DPMFS_ASSIGN_OR_RETURN(uint64_t v, size_value(w[1], is_block ? "block size" : "stripe unit"));
      if (is_block) {
        if (v < pool::kMinBlockSize || v > pool::kMaxBlockSize || !std::has_single_bit(v)) {
          return error(line, "block size " + w[1] + " is not a power of two from 512 to 1M");
        }
        cf.block_size = static_cast<uint32_t>(v);
      } else {
        if (v == 0 || v > (1ull << 31)) {
          return error(line, "stripe unit " + w[1] + " is not between 1 byte and 2G");
        }
        cf.stripe_unit = static_cast<uint32_t>(v);
      }
    } else if (key == "replicas") {
      DPMFS_RETURN_IF_ERROR(expect_words(2, "a number 1 to 3"));
      DPMFS_RETURN_IF_ERROR(once(&replicas_line));
      if (w[1].size() != 1 || w[1][0] < '1' || w[1][0] > '0' + char(kMaxClusterReplicas)) {
        return error(line, "replicas " + w[1] + " is not a number from 1 to " +
                               std::to_string(kMaxClusterReplicas));
      }
      cf.replicas = static_cast<uint32_t>(w[1][0] - '0');
    } else if (key == "meta" || key == "data") {
      DPMFS_RETURN_IF_ERROR(expect_words(4, "HOST:PORT POOL_PATH POOL_SIZE"));
      ClusterFile::Daemon d;
      d.line = line;
      Result<Endpoint> ep = Endpoint::Parse(w[1]);
      if (!ep.ok()) return error(line, ep.status().message());
      if (ep->port == 0) {
        return error(line, "bad address '" + w[1] + "': port 0 cannot be connected to");
      }
      d.endpoint = *ep;
      std::filesystem::path p(w[2]);
      if (p.is_relative() && !dir.empty()) p = dir / p;
      d.pool_path = p.lexically_normal().string();
      DPMFS_ASSIGN_OR_RETURN(d.pool_size, size_value(w[3], "pool size"));
      if (key == "meta") {
        if (have_meta) {
          return error(line, "a second 'meta' line (the first is line " +
                                 std::to_string(cf.meta.line) +
                                 "); a cluster has one "
                                 "metadata server");
        }
        have_meta = true;
      } else if (cf.data.size() == kMaxClusterDataServers) {
        return error(line, "more than " + std::to_string(kMaxClusterDataServers) +
                               " data lines; a cluster has at most that many data servers");
      }
      std::string abs_path = std::filesystem::absolute(d.pool_path, ec).lexically_normal();
      if (abs_path.empty()) abs_path = d.pool_path;
      if (auto [it, fresh] = paths.emplace(abs_path, line); !fresh) {
        return error(line, "pool path " + d.pool_path + " is already used on line " +
                               std::to_string(it->second));
      }
      if (auto [it, fresh] = endpoints.emplace(d.endpoint.ToString(), line); !fresh) {
        return error(line, "address " + d.endpoint.ToString() + " is already used on line " +
                               std::to_string(it->second));
      }
      if (key == "meta") {
        cf.meta = std::move(d);
      } else {
        cf.data.push_back(std::move(d));
      }
    } else {
      return error(line, "unknown keyword '" + key +
                             "' (expected cluster_uuid, block_size, stripe_unit, replicas, meta or data)");
    }
  }
  if (in.bad()) return Status::FromErrno(errno, "cannot read cluster file " + path);

  if (!have_meta) {
    return Status::InvalidArgument(path +
                                   ": no 'meta HOST:PORT POOL_PATH POOL_SIZE' line: a "
                                   "cluster needs its metadata server");
  }
  if (cf.data.empty()) {
    return Status::InvalidArgument(path +
                                   ": no 'data HOST:PORT POOL_PATH POOL_SIZE' line: a "
                                   "cluster needs at least one data server");
  }
  if (cf.replicas > cf.data.size()) {
    return error(replicas_line, "replicas " + std::to_string(cf.replicas) + " needs at least " +
                                    std::to_string(cf.replicas) + " data servers, the file has " +
                                    std::to_string(cf.data.size()) +
                                    " (each copy of a block lives on a different one)");
  }
  if (cf.stripe_unit % cf.block_size != 0) {
    return error(stripe_unit_line != 0 ? stripe_unit_line : block_size_line,
                 "stripe unit " + std::to_string(cf.stripe_unit) +
                     " is not a multiple of the block size " + std::to_string(cf.block_size));
  }
  // Sizes against the block size, which may be set after the pool lines.
  auto check_size = [&](const ClusterFile::Daemon& d, uint32_t bs, const char* what) -> Status {
    uint64_t min = pool::MinPoolSize(bs);
    if (d.pool_size >= min) return Status::OK();
    return error(d.line, std::string(what) + " pool size " + std::to_string(d.pool_size) + " (" +
                             pool::FormatSize(d.pool_size) + ") is too small: the minimum is " +
                             std::to_string(min) + " bytes (" + pool::FormatSize(min) + ")");
  };
  // The metadata pool always has 4 KiB blocks (mkfs.dpmfs checks its exact minimum).
  DPMFS_RETURN_IF_ERROR(check_size(cf.meta, 4096, "metadata"));
  for (const ClusterFile::Daemon& d : cf.data) {
    DPMFS_RETURN_IF_ERROR(check_size(d, cf.block_size, "data"));
  }
  return cf;
}

}  // namespace dpmfs
