#include "common/cluster_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include <sodium.h>

#include "common/unique_fd.h"

namespace dpmfs {

namespace {
constexpr size_t kHexDigits = 2 * kClusterKeySize;
// The file's largest valid size: the hex digits and one newline. Reading one byte more
// tells a longer file from a valid one without reading all of it.
constexpr size_t kMaxFileBytes = kHexDigits + 1;

std::string ModeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}
}  // namespace

void InitCrypto() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) std::abort();
  });
}

ClusterKey ClusterKey::Generate() {
  InitCrypto();
  Bytes b;
  randombytes_buf(b.data(), b.size());
  ClusterKey k(b);
  sodium_memzero(b.data(), b.size());
  return k;
}

ClusterKey::~ClusterKey() { sodium_memzero(bytes_.data(), bytes_.size()); }

Status CreateKeyFile(const std::string& path, bool replace) {
  ClusterKey key = ClusterKey::Generate();
  char hex[kHexDigits + 1];
  sodium_bin2hex(hex, sizeof hex, key.bytes().data(), key.bytes().size());
  std::string text(hex, kHexDigits);
  text += '\n';
  sodium_memzero(hex, sizeof hex);

  const std::string target = replace ? path + ".new" : path;
  if (replace) ::unlink(target.c_str());  // a leftover of an interrupted rotation
  UniqueFd fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    int err = errno;
    if (err == EEXIST) {
      return Status::AlreadyExists("key file " + path +
                                   " exists; keep it, or rotate it with 'mkfs.dpmfs key rotate " +
                                   path + "'");
    }
    return Status::FromErrno(err, "creating key file " + target);
  }
  // O_CREAT's mode is filtered by the umask; 0600 is what the file must have.
  if (::fchmod(fd.get(), 0600) != 0) return Status::FromErrno(errno, "chmod 600 " + target);
  ssize_t w = ::write(fd.get(), text.data(), text.size());
  int err = errno;
  sodium_memzero(text.data(), text.size());
  if (w != static_cast<ssize_t>(kMaxFileBytes)) {
    ::unlink(target.c_str());
    return Status::FromErrno(w < 0 ? err : EIO, "writing key file " + target);
  }
  if (::fsync(fd.get()) != 0) return Status::FromErrno(errno, "fsync of key file " + target);
  if (fd.Close() != 0) return Status::FromErrno(errno, "closing key file " + target);
  if (replace && ::rename(target.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(target.c_str());
    return Status::FromErrno(e, "replacing key file " + path);
  }
  return Status::OK();
}

Result<ClusterKey> LoadKeyFile(const std::string& path) {
  InitCrypto();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    int err = errno;
    if (err == ENOENT) {
      return Status::NotFound("cluster key file " + path +
                              " does not exist: create it with 'mkfs.dpmfs key create " + path +
                              "' (mkfs.dpmfs cluster makes one beside the cluster file), copy "
                              "the cluster's key there, or name another with --key-file");
    }
    if (err == EACCES || err == EPERM) {
      return Status::PermissionDenied("cluster key file " + path +
                                      " cannot be read by this user (it is readable by its owner "
                                      "only): run as the owner (root)");
    }
    return Status::FromErrno(err, "opening cluster key file " + path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat of key file " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("cluster key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 0077) != 0) {
    return Status::PermissionDenied("cluster key file " + path + " has mode " +
                                    ModeText(st.st_mode) +
                                    ": group or others may read it; run 'chmod 600 " + path +
                                    "' (and rotate the key if others may have read it)");
  }
  char buf[kMaxFileBytes + 1];
  size_t have = 0;
  while (have < sizeof buf) {
    ssize_t r = ::read(fd.get(), buf + have, sizeof buf - have);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "reading key file " + path);
    }
    if (r == 0) break;
    have += static_cast<size_t>(r);
  }
  size_t digits = have;
  if (digits == kMaxFileBytes && buf[kHexDigits] == '\n') digits = kHexDigits;
  if (digits != kHexDigits) {
    sodium_memzero(buf, sizeof buf);
    return Status::InvalidArgument(
        "cluster key file " + path + " holds " +
        (have > kMaxFileBytes ? "more than " + std::to_string(kMaxFileBytes)
                              : std::to_string(have)) +
        " bytes; a key file holds 64 hex digits and a newline (256 bits): recreate it with "
        "'mkfs.dpmfs key create --force " + path + "' and copy it to every host");
  }
  ClusterKey::Bytes bytes{};
  size_t len = 0;
  int rc = sodium_hex2bin(bytes.data(), bytes.size(), buf, kHexDigits, nullptr, &len, nullptr);
  sodium_memzero(buf, sizeof buf);
  if (rc != 0 || len != kClusterKeySize) {
    return Status::InvalidArgument("cluster key file " + path +
                                   " is not 64 hex digits: recreate it with 'mkfs.dpmfs key "
                                   "create --force " + path + "'");
  }
  ClusterKey key(bytes);
  sodium_memzero(bytes.data(), bytes.size());
  return key;
}

std::string KeyFileBesideClusterFile(const std::string& cluster_file) {
  size_t slash = cluster_file.rfind('/');
  std::string dir = slash == std::string::npos ? "." : cluster_file.substr(0, slash);
  if (dir.empty()) dir = "/";
  return (dir == "/" ? "" : dir) + "/cluster.key";
}

std::string ResolveKeyFile(const std::string& flag, const std::string& cluster_file) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("DPMFS_KEY_FILE"); env != nullptr && *env != '\0') return env;
  if (!cluster_file.empty()) return KeyFileBesideClusterFile(cluster_file);
  return kDefaultKeyFile;
}

Result<std::shared_ptr<const ClusterKey>> LoadClusterKey(const std::string& flag,
                                                         const std::string& cluster_file) {
  DPMFS_ASSIGN_OR_RETURN(ClusterKey key, LoadKeyFile(ResolveKeyFile(flag, cluster_file)));
  return std::shared_ptr<const ClusterKey>(std::make_shared<const ClusterKey>(key));
}

}  // namespace dpmfs
