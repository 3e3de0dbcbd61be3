#include "common/pool.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/crc32c.h"
#include "common/byte_codec.h"
#include "common/persistent_memory.h"
#include "common/pool_lock.h"
#include "common/unique_fd.h"

namespace dpmfs::pool {
namespace {

static_assert(kMagic.size() == 8);
static_assert(layout::kVersionOffset == layout::kMagicOffset + 8);
static_assert(layout::kRoleOffset == layout::kVersionOffset + 4);
static_assert(layout::kClusterOffset == layout::kRoleOffset + 4);
static_assert(layout::kIndexOffset == layout::kClusterOffset + 16);
static_assert(layout::kBlockSizeOffset == layout::kIndexOffset + 4);
static_assert(layout::kPoolSizeOffset == layout::kBlockSizeOffset + 4);
static_assert(layout::kDataOffsetOffset == layout::kPoolSizeOffset + 8);
static_assert(layout::kDataSizeOffset == layout::kDataOffsetOffset + 8);
static_assert(layout::kCreatedOffset == layout::kDataSizeOffset + 8);
static_assert(layout::kHeaderCrcOffset == layout::kCreatedOffset + 8);
static_assert(layout::kUsedBytes == layout::kHeaderCrcOffset + 4);
static_assert(layout::kUsedBytes <= kHeaderSize);
static_assert(kDataAlignment % kHeaderSize == 0);

using Header = std::array<uint8_t, kHeaderSize>;

// The header's used bytes (layout:: offsets; the rest of the 4 KiB is zero), described once
// for common/byte_codec.h: little-endian whatever the host.
struct RawHeader {
  std::array<uint8_t, 8> magic{};
  uint32_t version = 0;
  uint32_t role = 0;
  std::array<uint8_t, 16> cluster{};
  uint32_t index = 0;
  uint32_t block_size = 0;
  uint64_t pool_size = 0;
  uint64_t data_offset = 0;
  uint64_t data_size = 0;
  uint64_t created_unix_ns = 0;
  uint32_t header_crc = 0;
};

template <class IO>
void HeaderFields(IO& io, RawHeader& h) {
  io.Fixed("magic", h.magic);
  io.U32("version", h.version);
  io.U32("role", h.role);
  io.Fixed("cluster", h.cluster);
  io.U32("index", h.index);
  io.U32("block_size", h.block_size);
  io.U64("pool_size", h.pool_size);
  io.U64("data_offset", h.data_offset);
  io.U64("data_size", h.data_size);
  io.U64("created_unix_ns", h.created_unix_ns);
  io.U32("header_crc", h.header_crc);
}

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, v);
  return buf;
}

bool HasMagic(const uint8_t* p, size_t n) {
  return n >= kMagic.size() && std::memcmp(p, kMagic.data(), kMagic.size()) == 0;
}

bool ValidBlockSize(uint64_t bs) {
  return bs >= kMinBlockSize && bs <= kMaxBlockSize && std::has_single_bit(bs);
}

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t NowUnixNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}


// Reads up to n bytes at `off`, retrying short reads; returns the count read or -1.
ssize_t PreadFull(int fd, void* buf, size_t n, off_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t r =
        ::pread(fd, static_cast<uint8_t*>(buf) + done, n - done, off + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

Status PwriteFull(int fd, const void* buf, size_t n, off_t off, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pwrite(fd, static_cast<const uint8_t*>(buf) + done, n - done,
                         off + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno(errno, "cannot write pool " + path);
    done += static_cast<size_t>(r);
  }
  return Status::OK();
}

Status Fsync(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return Status::FromErrno(errno, "cannot sync pool " + path);
  return Status::OK();
}

Header EncodeHeader(const PoolInfo& info) {
  RawHeader r;
  std::memcpy(r.magic.data(), kMagic.data(), kMagic.size());
  r.version = info.version;
  r.role = static_cast<uint32_t>(info.role);
  r.cluster = info.cluster.bytes;
  r.index = info.index;
  r.block_size = info.block_size;
  r.pool_size = info.pool_size;
  r.data_offset = info.data_offset;
  r.data_size = info.data_size;
  r.created_unix_ns = info.created_unix_ns;
  Header h{};
  codec::ByteWriter w(h.data());
  HeaderFields(w, r);  // CRC field zero
  r.header_crc = HeaderCrc(h.data());
  codec::ByteWriter crc(h.data() + layout::kHeaderCrcOffset);
  crc.U32("header_crc", r.header_crc);
  return h;
}

// Validates a kHeaderSize-byte header of a file of `file_size` bytes (>= kHeaderSize).
Result<PoolInfo> DecodeHeader(const std::string& path, const uint8_t* h, uint64_t file_size) {
  if (!HasMagic(h, kHeaderSize)) {
    return Status::InvalidArgument(path +
                                   " is not a dpmfs pool (no dpmfs header); format it with "
                                   "mkfs.dpmfs");
  }
  RawHeader r;
  codec::ByteReader reader({h, layout::kUsedBytes}, "pool header");
  HeaderFields(reader, r);
  if (Status st = reader.Finish(); !st.ok()) return Status::Internal(st.message());
  uint32_t stored = r.header_crc;
  uint32_t computed = HeaderCrc(h);
  if (stored != computed) {
    return Status::Corruption(path + ": pool header checksum mismatch (stored " + Hex32(stored) +
                              ", computed " + Hex32(computed) + "): the header is corrupt");
  }
  PoolInfo info;
  info.version = r.version;
  if (info.version > kFormatVersion) {
    return Status::NotSupported(path + ": pool format version " + std::to_string(info.version) +
                                " is newer than this dpmfs supports (" +
                                std::to_string(kFormatVersion) + "); upgrade dpmfs");
  }
  auto corrupt = [&](const std::string& what) {
    return Status::Corruption(path + ": inconsistent pool header: " + what);
  };
  if (info.version == 0) return corrupt("format version 0 does not exist");
  uint32_t role = r.role;
  if (role != static_cast<uint32_t>(Role::kMetadata) &&
      role != static_cast<uint32_t>(Role::kData)) {
    return corrupt("unknown pool role " + std::to_string(role));
  }
  info.role = static_cast<Role>(role);
  info.cluster.bytes = r.cluster;
  if (info.cluster.IsNil()) return corrupt("nil cluster UUID");
  info.index = r.index;
  info.block_size = r.block_size;
  if (!ValidBlockSize(info.block_size)) {
    return corrupt("block size " + std::to_string(info.block_size) +
                   " is not a power of two in [512, 1 MiB]");
  }
  info.pool_size = r.pool_size;
  info.data_offset = r.data_offset;
  info.data_size = r.data_size;
  info.created_unix_ns = r.created_unix_ns;
  if (info.pool_size != file_size) {
    return corrupt("it records a pool size of " + std::to_string(info.pool_size) +
                   " bytes but the file is " + std::to_string(file_size) +
                   " bytes (truncated or resized?)");
  }
  if (info.data_offset < kHeaderSize || info.data_offset % info.block_size != 0) {
    return corrupt("data offset " + std::to_string(info.data_offset) +
                   " is inside the header or not a multiple of the block size");
  }
  if (info.data_offset >= info.pool_size) {
    return corrupt("data offset " + std::to_string(info.data_offset) +
                   " lies beyond the pool size " + std::to_string(info.pool_size));
  }
  if (info.data_size == 0 || info.data_size % info.block_size != 0 ||
      info.data_size > info.pool_size - info.data_offset) {
    return corrupt("data size " + std::to_string(info.data_size) +
                   " is zero, not a multiple of the block size, or runs past the end of "
                   "the pool");
  }
  return info;
}

std::string DescribeForRefusal(const std::string& path) {
  Result<PoolInfo> existing = ReadPoolHeader(path);
  if (!existing.ok()) {
    return "a damaged dpmfs pool header (" + existing.status().message() + ")";
  }
  return "a dpmfs " + std::string(RoleName(existing->role)) + " pool (cluster " +
         existing->cluster.ToString() + ", index " + std::to_string(existing->index) + ")";
}

Status ValidateGeometry(const PoolGeometry& g) {
  if (g.role != Role::kMetadata && g.role != Role::kData) {
    return Status::InvalidArgument("unknown pool role " +
                                   std::to_string(static_cast<uint32_t>(g.role)));
  }
  if (!ValidBlockSize(g.block_size)) {
    return Status::InvalidArgument("block size " + std::to_string(g.block_size) +
                                   " is not a power of two between 512 and 1048576 (1 MiB)");
  }
  if (g.cluster.IsNil()) {
    return Status::InvalidArgument("the cluster UUID is nil; generate one or pass a real one");
  }
  uint64_t min = MinPoolSize(g.block_size);
  if (g.pool_size < min) {
    return Status::InvalidArgument(
        "pool size " + std::to_string(g.pool_size) + " (" + FormatSize(g.pool_size) +
        ") is too small: the minimum with block size " + std::to_string(g.block_size) + " is " +
        std::to_string(min) + " bytes (" + FormatSize(min) +
        ": the aligned header area plus one block)");
  }
  if (g.pool_size > static_cast<uint64_t>(INT64_MAX)) {
    return Status::InvalidArgument("pool size " + std::to_string(g.pool_size) +
                                   " is larger than a file can be");
  }
  return Status::OK();
}

// Allocates [0, total) in chunks so progress can be reported and ENOSPC surfaces now.
Status Allocate(int fd, uint64_t total, const FormatOptions& options, const std::string& path) {
  constexpr uint64_t kChunk = 64ull << 20;
  if (options.progress) options.progress(0, total);
  for (uint64_t off = 0; off < total;) {
    uint64_t n = std::min(kChunk, total - off);
    int err = ::posix_fallocate(fd, static_cast<off_t>(off), static_cast<off_t>(n));
    if (err == ENOSPC) {
      return Status::IOError("cannot allocate " + std::to_string(total) + " bytes (" +
                             FormatSize(total) + ") for pool " + path + ": " + std::strerror(err) +
                             "; free space or choose a smaller pool size");
    }
    if (err != 0) return Status::FromErrno(err, "cannot allocate pool " + path);
    off += n;
    if (options.progress) options.progress(off, total);
  }
  return Status::OK();
}

void SyncParentDir(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // Not fatal: the pool itself is durable; only its directory entry might be lost by a
  // power failure right now, which the user would notice as a missing file.
  if (dir.get() < 0 || ::fsync(dir.get()) != 0) {
    spdlog::warn("could not sync directory {} of new pool {}: {}", parent.string(), path,
                 std::strerror(errno));
  }
}


// A path directly in /dev (not /dev/shm/...) names a device; when it does not exist the
// device is not there (a device-DAX namespace not created, a typo): never create a
// regular file in its place.
bool IsMissingDevice(const std::string& path) {
  return std::filesystem::path(path).lexically_normal().parent_path() == "/dev";
}

Status MissingDevice(const std::string& path) {
  return Status::NotFound(
      "device-DAX pool " + path +
      " does not exist: no such device (`ndctl list -N` lists the PM namespaces; `ndctl "
      "create-namespace -m devdax` makes a device-DAX one)");
}

Status NotAPoolFileType(const std::string& path) {
  return Status::NotSupported(path +
                              " is neither a regular file nor a device-DAX device; dpmfs "
                              "pools are files (on tmpfs or a DAX-mounted file system) or "
                              "device-DAX devices (/dev/daxX.Y)");
}

// An existing file (or device) with contents that are not a dpmfs pool: someone's data,
// overwritten only when asked to.
Status NotAPool(const std::string& path, const std::string& what) {
  return Status::AlreadyExists(path + " exists and is not a dpmfs pool (a " + what +
                               " with other contents); use --force to overwrite it");
}

// The header a pool of geometry `g` gets (both FormatPool paths write it).
PoolInfo InfoOfNewPool(const PoolGeometry& g) {
  PoolInfo info;
  info.role = g.role;
  info.cluster = g.cluster;
  info.index = g.index;
  info.block_size = g.block_size;
  info.pool_size = g.pool_size;
  info.data_offset = DataOffsetFor(g.block_size);
  info.data_size = (g.pool_size - info.data_offset) / g.block_size * g.block_size;
  info.version = kFormatVersion;
  return info;
}

// FormatPool on a device-DAX character device: the pool is the whole device, and
// everything goes through the mapping (a device-DAX device has no read/write/fallocate).
Result<PoolInfo> FormatDevice(const std::string& path, const FormatOptions& options) {
  const PoolGeometry& g = options.geometry;
  DPMFS_ASSIGN_OR_RETURN(std::unique_ptr<pmem::PersistentMemory> mem,
                         pmem::MapPersistentMemory(path));
  if (g.pool_size != mem->size()) {
    return Status::InvalidArgument(
        "cannot format " + path + ": a pool on a device-DAX device takes the whole device, " +
        std::to_string(mem->size()) + " bytes (" + FormatSize(mem->size()) + "), not " +
        std::to_string(g.pool_size) + "; use --size " + std::to_string(mem->size()));
  }
  uint8_t* base = mem->base();
  if (HasMagic(base, kHeaderSize)) {
    std::string what = DescribeForRefusal(path);
    if (!options.force) {
      return Status::AlreadyExists(path + " already holds " + what +
                                   "; use --force to overwrite it (destroys its contents)");
    }
    spdlog::warn("overwriting {} in {} (forced)", what, path);
    mem->MemsetPersist(base, 0, kHeaderSize);  // first: no server takes it for the old pool
  } else if (std::any_of(base, base + kHeaderSize, [](uint8_t b) { return b != 0; })) {
    // A new namespace reads as zeros; anything else was put there by someone.
    if (!options.force) return NotAPool(path, "device");
    spdlog::warn("{} holds data that is not a dpmfs pool; overwriting it (forced)", path);
  }
  PoolInfo info = InfoOfNewPool(g);
  // Zero the reserved area, and with zero_data everything else, before the header.
  const uint64_t end = options.zero_data ? g.pool_size : info.data_offset;
  constexpr uint64_t kChunk = 64ull << 20;
  if (options.zero_data && options.progress) options.progress(0, end);
  for (uint64_t off = kHeaderSize; off < end;) {
    const uint64_t n = std::min(kChunk, end - off);
    mem->MemsetPersist(base + off, 0, n);
    off += n;
    if (options.zero_data && options.progress) options.progress(off, end);
  }
  info.created_unix_ns = NowUnixNs();
  Header h = EncodeHeader(info);
  mem->MemcpyPersist(base, h.data(), h.size());
  mem.reset();
  Result<PoolInfo> check = ReadPoolHeader(path);
  if (!check.ok()) {
    return Status::Internal("the pool just written fails validation: " + check.status().ToString());
  }
  spdlog::debug("formatted {} pool on device {}: cluster {} index {} block size {} size {}",
                RoleName(info.role), path, info.cluster.ToString(), info.index, info.block_size,
                info.pool_size);
  return check;
}
}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kMetadata: return "metadata";
    case Role::kData: return "data";
  }
  return "unknown";
}

uint32_t HeaderCrc(const uint8_t* header) {
  static constexpr uint8_t kZero[4] = {0, 0, 0, 0};
  uint32_t crc = Crc32cExtend(0, header, layout::kHeaderCrcOffset);
  crc = Crc32cExtend(crc, kZero, sizeof(kZero));
  size_t rest = layout::kHeaderCrcOffset + 4;
  return Crc32cExtend(crc, header + rest, kHeaderSize - rest);
}

// --- ClusterUuid ---

ClusterUuid ClusterUuid::Generate() {
  ClusterUuid u;
  size_t got = 0;
  while (got < u.bytes.size()) {
    ssize_t r = ::getrandom(u.bytes.data() + got, u.bytes.size() - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  if (got < u.bytes.size()) {
    // getrandom only fails on pre-3.17 kernels or seccomp sandboxes; still never hand out
    // a predictable UUID, which would make two clusters look like one.
    std::random_device rd;
    for (auto& b : u.bytes) b = static_cast<uint8_t>(rd());
  }
  u.bytes[6] = static_cast<uint8_t>((u.bytes[6] & 0x0f) | 0x40);  // version 4
  u.bytes[8] = static_cast<uint8_t>((u.bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return u;
}

Result<ClusterUuid> ClusterUuid::Parse(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument("invalid cluster UUID '" + std::string(text) +
                                   "': expected 32 hex digits as 8-4-4-4-12, e.g. "
                                   "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
  };
  if (text.size() != 36) return bad();
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  ClusterUuid u;
  size_t out = 0;
  for (size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return bad();
      ++i;
      continue;
    }
    int hi = nibble(text[i]);
    int lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return bad();
    u.bytes[out++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return u;
}

std::string ClusterUuid::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += kHex[bytes[i] >> 4];
    s += kHex[bytes[i] & 0xf];
  }
  return s;
}

bool ClusterUuid::IsNil() const {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

// --- Geometry ---

uint64_t DataOffsetFor(uint32_t block_size) {
  return AlignUp(kHeaderSize, std::max<uint64_t>(kDataAlignment, block_size));
}

uint64_t MinPoolSize(uint32_t block_size) { return DataOffsetFor(block_size) + block_size; }

// --- Format ---

Result<PoolInfo> FormatPool(const std::string& path, const FormatOptions& options) {
  const PoolGeometry& g = options.geometry;
  if (Status st = ValidateGeometry(g); !st.ok()) {
    return st.WithContext("cannot format " + path);
  }

  bool created = false;
  int raw = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (raw < 0 && errno == ENOENT && IsMissingDevice(path)) return MissingDevice(path);
  if (raw < 0 && errno == ENOENT) {
    raw = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    created = raw >= 0;
  }
  if (raw < 0) return Status::FromErrno(errno, "cannot open " + path + " for writing");
  UniqueFd fd(raw);
  // Held until the format is done: a server cannot open the pool half-made, and a pool a
  // server holds is never formatted under it, --force or not.
  DPMFS_RETURN_IF_ERROR(PoolLock::LockDescriptor(fd.get(), path));
  // A pool we created and failed to finish is removed again, so no half-made file stays.
  bool done = false;
  struct Cleanup {
    const std::string& path;
    const bool& created;
    const bool& done;
    ~Cleanup() {
      if (created && !done) ::unlink(path.c_str());
    }
  } cleanup{path, created, done};

  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "cannot stat " + path);
  if (S_ISCHR(st.st_mode)) return FormatDevice(path, options);
  if (!S_ISREG(st.st_mode)) return NotAPoolFileType(path);
  // A pool holds every file's bytes: its owner's only, also when an existing file
  // (made by truncate or an older mkfs, mode 0644) is formatted.
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0600) != 0) {
    return Status::FromErrno(errno,
                             "cannot make " + path + " readable by its owner only (chmod 600)");
  }

  if (!created && st.st_size > 0) {
    uint8_t head[kMagic.size()] = {};
    ssize_t n = PreadFull(fd.get(), head, sizeof(head), 0);
    if (n < 0) return Status::FromErrno(errno, "cannot read " + path);
    if (HasMagic(head, static_cast<size_t>(n))) {
      std::string what = DescribeForRefusal(path);
      if (!options.force) {
        return Status::AlreadyExists(path + " already holds " + what +
                                     "; use --force to overwrite it (destroys its contents)");
      }
      spdlog::warn("overwriting {} in {} (forced)", what, path);
      // Invalidate the old header before anything else, so a crash from here on leaves a
      // file no server mistakes for the old pool (or a half-made new one).
      std::vector<uint8_t> zeros(std::min<uint64_t>(kHeaderSize, st.st_size), 0);
      DPMFS_RETURN_IF_ERROR(PwriteFull(fd.get(), zeros.data(), zeros.size(), 0, path));
      DPMFS_RETURN_IF_ERROR(Fsync(fd.get(), path));
    } else {
      if (!options.force) return NotAPool(path, std::to_string(st.st_size) + "-byte file");
      spdlog::warn("{} holds {} bytes that are not a dpmfs pool; overwriting them (forced)",
                   path, static_cast<uint64_t>(st.st_size));
    }
  }

  // A pool holds every file's bytes (or the whole namespace): its owner's only, also
  // when an existing file is formatted over (any local user could otherwise read it).
  if (::fchmod(fd.get(), 0600) != 0) {
    return Status::FromErrno(errno, "cannot make " + path + " readable by its owner only");
  }

  PoolInfo info = InfoOfNewPool(g);

  if (options.zero_data) {
    // Truncating to zero discards every old byte at once; allocating then gives zeroed
    // blocks (tmpfs pages, or unwritten extents that DAX zeroes on first touch).
    if (::ftruncate(fd.get(), 0) != 0) return Status::FromErrno(errno, "cannot truncate " + path);
    DPMFS_RETURN_IF_ERROR(Allocate(fd.get(), g.pool_size, options, path));
  } else {
    if (::ftruncate(fd.get(), static_cast<off_t>(g.pool_size)) != 0) {
      return Status::FromErrno(
          errno, "cannot resize " + path + " to " + std::to_string(g.pool_size) + " bytes");
    }
    if (!created) {
      // The area between the header and the data is reserved for later formats; keep it
      // zero even when the data area keeps its old bytes.
      std::vector<uint8_t> zeros(info.data_offset, 0);
      DPMFS_RETURN_IF_ERROR(PwriteFull(fd.get(), zeros.data(), zeros.size(), 0, path));
    }
  }
  // The sized, allocated file must be durable before the header says it is a pool.
  DPMFS_RETURN_IF_ERROR(Fsync(fd.get(), path));

  info.created_unix_ns = NowUnixNs();
  Header h = EncodeHeader(info);
  DPMFS_RETURN_IF_ERROR(PwriteFull(fd.get(), h.data(), h.size(), 0, path));
  DPMFS_RETURN_IF_ERROR(Fsync(fd.get(), path));
  if (created) SyncParentDir(path);

  // Read back through the same validation every server uses.
  Result<PoolInfo> check = ReadPoolHeader(path);
  if (!check.ok()) {
    return Status::Internal("the pool just written fails validation: " + check.status().ToString());
  }
  done = true;
  spdlog::debug("formatted {} pool {}: cluster {} index {} block size {} size {}",
                RoleName(info.role), path, info.cluster.ToString(), info.index, info.block_size,
                info.pool_size);
  return check;
}

// --- Read / validate ---

Result<PoolInfo> ReadPoolHeader(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT && IsMissingDevice(path)) return MissingDevice(path);
    if (errno == ENOENT) return Status::NotFound("pool file " + path + " does not exist");
    return Status::FromErrno(errno, "cannot open pool " + path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "cannot stat pool " + path);
  if (S_ISDIR(st.st_mode)) return Status::FromErrno(EISDIR, "cannot read pool " + path);
  if (S_ISCHR(st.st_mode)) {
    // Device DAX: no read(2); the header is read through a mapping of the whole device,
    // whose length is the device's size.
    DPMFS_ASSIGN_OR_RETURN(std::unique_ptr<pmem::PersistentMemory> mem,
                           pmem::MapPersistentMemory(path));
    if (mem->size() < kHeaderSize) {
      return Status::InvalidArgument(path + " is too small to be a dpmfs pool (" +
                                     std::to_string(mem->size()) + " bytes)");
    }
    return DecodeHeader(path, mem->base(), mem->size());
  }
  if (!S_ISREG(st.st_mode)) return NotAPoolFileType(path);
  Header h{};
  ssize_t n = PreadFull(fd.get(), h.data(), h.size(), 0);
  if (n < 0) return Status::FromErrno(errno, "cannot read pool " + path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (static_cast<size_t>(n) < kHeaderSize || size < kHeaderSize) {
    std::string msg = path + " is too small to be a dpmfs pool (" + std::to_string(size) +
                      " bytes; the header alone takes " + std::to_string(kHeaderSize) + ")";
    // With our magic it was a pool once and got truncated; otherwise it never was one.
    if (HasMagic(h.data(), static_cast<size_t>(n))) {
      return Status::Corruption(msg + ": the pool was truncated");
    }
    return Status::InvalidArgument(msg);
  }
  return DecodeHeader(path, h.data(), size);
}

Status CheckExpectations(const std::string& path, const PoolInfo& info,
                         const OpenExpectations& expect) {
  if (expect.role && *expect.role != info.role) {
    return Status::InvalidArgument(path + " is a " + std::string(RoleName(info.role)) +
                                   " pool, expected a " + std::string(RoleName(*expect.role)) +
                                   " pool");
  }
  if (expect.cluster && *expect.cluster != info.cluster) {
    return Status::InvalidArgument(path + " belongs to cluster " + info.cluster.ToString() +
                                   ", expected " + expect.cluster->ToString() +
                                   " (a pool of another cluster)");
  }
  if (expect.index && *expect.index != info.index) {
    return Status::InvalidArgument(path + " is " + std::string(RoleName(info.role)) +
                                   " pool index " + std::to_string(info.index) +
                                   ", expected index " + std::to_string(*expect.index));
  }
  return Status::OK();
}

// --- MappedPool ---

Result<MappedPool> MappedPool::Open(const std::string& path, const OpenExpectations& expect) {
  // Validate from a plain read first: it gives precise messages without mapping anything.
  DPMFS_ASSIGN_OR_RETURN(PoolInfo info, ReadPoolHeader(path));
  DPMFS_RETURN_IF_ERROR(CheckExpectations(path, info, expect));
  DPMFS_ASSIGN_OR_RETURN(std::unique_ptr<pmem::PersistentMemory> mem,
                         pmem::MapPersistentMemory(path));
  // Validate again what is actually mapped: the file could have been reformatted or
  // resized between the read and the map.
  return Attach(std::move(mem), expect);
}

Result<MappedPool> MappedPool::Attach(std::unique_ptr<pmem::PersistentMemory> memory,
                                      const OpenExpectations& expect) {
  MappedPool pool;
  pool.path_ = memory->name();
  const std::string& path = pool.path_;
  const size_t len = memory->size();
  pool.mem_ = std::move(memory);
  if (len < kHeaderSize) {
    return Status::Corruption(path + " shrank to " + std::to_string(len) +
                              " bytes while being opened");
  }
  DPMFS_ASSIGN_OR_RETURN(pool.info_, DecodeHeader(path, pool.mem_->base(), len));
  DPMFS_RETURN_IF_ERROR(CheckExpectations(path, pool.info_, expect));
  spdlog::debug("mapped {} pool {} ({} bytes, {})", RoleName(pool.info_.role), path, len,
                pool.is_pmem() ? "persistent memory" : "not persistent memory");
  return pool;
}

Status MappedPool::Persist(const void* addr, size_t len) { return mem_->Sync(addr, len); }

void MappedPool::PersistAfterCrash(const void* addr, size_t len) {
  assert(mem_->Contains(addr, len));
  mem_->Persist(addr, len);
}

// --- Sizes ---

Result<uint64_t> ParseSize(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("invalid size '" + std::string(text) + "': " + std::string(why) +
                                   " (use a whole number of bytes with an optional binary "
                                   "suffix K, M, G or T, e.g. 4096, 64M, 1G, 2GiB)");
  };
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (__builtin_mul_overflow(value, 10u, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(text[i] - '0'), &value)) {
      return bad("too large");
    }
    ++i;
  }
  if (i == 0) return bad("no number");
  std::string suffix;
  for (char c : text.substr(i)) {
    suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  int shift = 0;
  if (!suffix.empty() && suffix != "b") {
    switch (suffix[0]) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      default: return bad("unknown suffix '" + std::string(text.substr(i)) + "'");
    }
    std::string_view rest = std::string_view(suffix).substr(1);
    if (!rest.empty() && rest != "b" && rest != "ib") {
      return bad("unknown suffix '" + std::string(text.substr(i)) + "'");
    }
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return bad("too large");
  return value << shift;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  char buf[64];
  for (int unit = 6; unit >= 1; --unit) {
    uint64_t scale = 1ull << (10 * unit);
    if (bytes >= scale && bytes % scale == 0) {
      std::snprintf(buf, sizeof(buf), "%" PRIu64 " %s", bytes / scale, kUnits[unit]);
      return buf;
    }
  }
  if (bytes < (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 " B", bytes);
    return buf;
  }
  int unit = 2;
  while (unit < 6 && bytes >= (1ull << (10 * (unit + 1)))) ++unit;
  std::snprintf(buf, sizeof(buf), "%.2f %s",
                static_cast<double>(bytes) / static_cast<double>(1ull << (10 * unit)),
                kUnits[unit]);
  return buf;
}

}  // namespace dpmfs::pool
