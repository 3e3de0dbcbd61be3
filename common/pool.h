// Persistent-memory pools: the on-media header every dpmfs pool starts with, formatting
// a pool (mkfs.dpmfs), and opening one with libpmem (the data and metadata servers).
//
// A pool is a file, usually on tmpfs or on a DAX-mounted PM file system. Its first 4 KiB
// hold a versioned, CRC32C-checksummed header (layout in mkfs/README.md); the data area
// starts at `data_offset`, aligned to 2 MiB (or the block size if larger) so that DAX
// mappings can use huge pages. Every consumer validates the header and refuses a pool
// that is missing, corrupt, of a newer format, of another role, cluster or index, with a
// message that says which and names the path.
//
// Thread-safety: free functions are safe to call concurrently on different paths;
// formatting a path while another thread/process opens it is the caller's problem.
// MappedPool: see the class comment.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/persistent_memory.h"
#include "common/status.h"

namespace dpmfs::pool {

enum class Role : uint32_t { kMetadata = 1, kData = 2 };
// "metadata" / "data" ("unknown" for values outside the enum, e.g. from a bad header).
std::string_view RoleName(Role role);

// The on-media format this build writes and the newest it reads.
inline constexpr uint32_t kFormatVersion = 1;

// --- On-media layout (also documented in mkfs/README.md; exposed for tests and fsck) ---
inline constexpr size_t kHeaderSize = 4096;
inline constexpr std::string_view kMagic = "DPMFSPL1";  // 8 bytes, no terminator on media
// Data areas start at a multiple of this (or of the block size, whichever is larger).
inline constexpr uint64_t kDataAlignment = 2ull << 20;
inline constexpr uint32_t kMinBlockSize = 512;
inline constexpr uint32_t kMaxBlockSize = 1u << 20;
namespace layout {
// Byte offsets of the little-endian header fields. Magic, version and the CRC keep their
// places in every future format version, so an old dpmfs can still say "newer version".
inline constexpr size_t kMagicOffset = 0;        // char[8]
inline constexpr size_t kVersionOffset = 8;      // u32
inline constexpr size_t kRoleOffset = 12;        // u32
inline constexpr size_t kClusterOffset = 16;     // u8[16]
inline constexpr size_t kIndexOffset = 32;       // u32
inline constexpr size_t kBlockSizeOffset = 36;   // u32
inline constexpr size_t kPoolSizeOffset = 40;    // u64
inline constexpr size_t kDataOffsetOffset = 48;  // u64
inline constexpr size_t kDataSizeOffset = 56;    // u64
inline constexpr size_t kCreatedOffset = 64;     // u64, ns since the Unix epoch
inline constexpr size_t kHeaderCrcOffset = 72;   // u32, CRC32C of all kHeaderSize bytes
                                                 // with these 4 bytes taken as zero
inline constexpr size_t kUsedBytes = 76;         // the rest (up to kHeaderSize) is zero
}  // namespace layout

// CRC32C of a kHeaderSize-byte header with its CRC field taken as zero.
uint32_t HeaderCrc(const uint8_t* header);

// A cluster's identity: every pool of a cluster carries the same one.
// Thread-safety: a value.
struct ClusterUuid {
  std::array<uint8_t, 16> bytes{};

  // A random (version 4) UUID.
  static ClusterUuid Generate();
  // The canonical form, "1b4e28ba-2fa1-41d2-883f-0016d3cca427" (hex in either case).
  static Result<ClusterUuid> Parse(std::string_view text);
  // Lower-case canonical form.
  std::string ToString() const;
  bool IsNil() const;
  bool operator==(const ClusterUuid&) const = default;
};

// What mkfs is asked to create.
struct PoolGeometry {
  Role role = Role::kData;
  ClusterUuid cluster;
  uint32_t index = 0;          // which data pool of the cluster (0 for the metadata pool)
  uint32_t block_size = 4096;  // power of two in [kMinBlockSize, kMaxBlockSize]
  uint64_t pool_size = 0;      // bytes, the whole file
};

// What a pool header says, after validation.
struct PoolInfo {
  Role role = Role::kData;
  ClusterUuid cluster;
  uint32_t index = 0;
  uint32_t block_size = 0;
  uint64_t pool_size = 0;    // == the file's size
  uint64_t data_offset = 0;  // where the data area starts
  uint64_t data_size = 0;    // a multiple of block_size; data_offset + data_size <= pool_size
  uint32_t version = 0;
  uint64_t created_unix_ns = 0;
};

// Where the data area of a pool with this block size starts.
uint64_t DataOffsetFor(uint32_t block_size);
// The smallest pool_size FormatPool accepts for this block size (header area + 1 block).
uint64_t MinPoolSize(uint32_t block_size);

struct FormatOptions {
  PoolGeometry geometry;
  // Overwrite a file that already holds a dpmfs pool header.
  bool force = false;
  // true: discard the old contents and allocate the whole file (posix_fallocate), so every
  // data byte reads as zero and a full file system fails here, not later as SIGBUS in a
  // server. false: only set the file's size (sparse; old bytes of a --force'd file stay).
  bool zero_data = true;
  // Called from the formatting thread while allocating, with bytes done so far.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// Creates (or, with force, overwrites) the pool file at `path`, sized pool_size, with a
// header and a data area, holding the pool lock (common/pool_lock.h) meanwhile.
// Errors: FailedPrecondition naming the holder when another process holds the pool's
// lock (a running server), even with force; AlreadyExists ("use --force") when the file
// already holds a dpmfs header (valid or merely with our magic), or other contents (a
// non-empty file without the magic, a device whose first 4 KiB are not zero), and
// !force; InvalidArgument for a
// bad geometry (too small: names the minimum; block size not a power of two in range;
// nil cluster); IOError with strerror and the path when the OS refuses.
// Crash safety: an existing header is invalidated first and the new header is written
// last, after the sized file is durable, so a crash mid-format leaves no valid header.
Result<PoolInfo> FormatPool(const std::string& path, const FormatOptions& options);

// Reads and validates the header at `path` without mapping the pool.
// Checks, in order: file missing (NotFound) / unreadable (IOError); shorter than a header;
// magic absent (InvalidArgument: "not a dpmfs pool"); CRC mismatch (Corruption); version
// newer than kFormatVersion (NotSupported); inconsistent fields (Corruption).
Result<PoolInfo> ReadPoolHeader(const std::string& path);

// What the opener expects the pool to be; unset fields are not checked.
struct OpenExpectations {
  std::optional<Role> role;
  std::optional<ClusterUuid> cluster;
  std::optional<uint32_t> index;
};

// InvalidArgument naming `path` and the mismatch when `info` does not meet `expect`.
Status CheckExpectations(const std::string& path, const PoolInfo& info,
                         const OpenExpectations& expect);

// A validated pool on the persistent-memory seam (common/persistent_memory.h): the pool
// header checked, the mapping owned. Move-only; unmaps in the destructor.
// Thread-safety: the accessors are const and safe from any thread; Persist and
// PersistAfterCrash may be called concurrently on any ranges (they only flush).
// Writes into the mapping are the caller's to coordinate.
class MappedPool {
 public:
  // Validates the header (as ReadPoolHeader) and `expect`, then maps the whole file or
  // device-DAX device with libpmem (pmem::MapPersistentMemory) and validates the mapped
  // header again.
  static Result<MappedPool> Open(const std::string& path, const OpenExpectations& expect);
  // The same validation of the header inside `memory` (already mapped: a test's
  // pmem::FaultInjectingMemory, for one); the pool's path is `memory->name()`.
  static Result<MappedPool> Attach(std::unique_ptr<pmem::PersistentMemory> memory,
                                   const OpenExpectations& expect);

  MappedPool(MappedPool&&) noexcept = default;
  MappedPool& operator=(MappedPool&&) noexcept = default;
  MappedPool(const MappedPool&) = delete;
  MappedPool& operator=(const MappedPool&) = delete;
  ~MappedPool() = default;

  const PoolInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  // nullptr / 0 / false after the pool was moved from.
  uint8_t* base() { return mem_ ? mem_->base() : nullptr; }
  uint8_t* data() { return mem_ ? mem_->base() + info_.data_offset : nullptr; }
  uint64_t data_size() const { return info_.data_size; }
  size_t mapped_size() const { return mem_ ? mem_->size() : 0; }
  // True when the mapping is real PM (pmem_is_pmem): CPU cache flushes make it durable.
  bool is_pmem() const { return mem_ && mem_->is_pmem(); }
  // The seam itself: every persist of this pool goes through it.
  pmem::PersistentMemory& memory() { return *mem_; }

  // Makes [addr, addr+len) (inside the mapping) durable against power loss:
  // PersistentMemory::Sync (pmem_persist on real PM, otherwise msync).
  // OutOfRange if the range leaves the mapping.
  Status Persist(const void* addr, size_t len);
  // Durable against a process crash only: PersistentMemory::Persist (on non-PM pools the
  // page cache already survives a crash of this process, so this only flushes CPU
  // caches; on PM it equals Persist). The range must lie inside the mapping (asserted).
  void PersistAfterCrash(const void* addr, size_t len);

 private:
  MappedPool() = default;

  std::string path_;
  PoolInfo info_;
  std::unique_ptr<pmem::PersistentMemory> mem_;
};

// Parses a byte count as written on command lines: "4096", "64K", "1G", "2GiB", "1T"
// (binary multiples: K = 1024; an optional "iB" or "B" after the suffix). Case-insensitive
// suffix, integers only. InvalidArgument with the accepted forms otherwise, or on overflow.
Result<uint64_t> ParseSize(std::string_view text);
// For humans, exact where possible: "1 GiB", "2046 MiB", "2052 KiB" (the largest binary
// unit that divides exactly), "4097 B" below 1 MiB, else two decimals ("1.50 GiB").
std::string FormatSize(uint64_t bytes);

}  // namespace dpmfs::pool
