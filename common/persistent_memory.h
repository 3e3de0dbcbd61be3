// The persistent-memory seam: where bytes become durable. Every pool mapping (data and
// metadata servers, mkfs) goes through `PersistentMemory`, and every store that must survive
// a crash is made durable through it. Two implementations:
//   - `MapPersistentMemory` (this file): libpmem. A pool file (tmpfs, FS-DAX) or a
//     device-DAX character device `/dev/daxX.Y`, mapped whole with pmem_map_file.
//   - `FaultInjectingMemory` (fault_injecting_memory.h), for tests: keeps the durable image
//     beside the working one and can "crash" at any persist point, forgetting every byte
//     not yet persisted, so crash states are enumerated in-process.
//
// Two levels of durability, because a pool on the page cache (tmpfs, an ordinary file)
// is not PM:
//   - Persist / Flush+Drain / MemcpyPersist / MemsetPersist: durable against a crash of
//     this process. On real PM (`is_pmem()`) that is power-loss durable too (CPU cache
//     flushes + fence); on the page cache it only flushes CPU caches, because the page
//     cache outlives the process (kill -9 loses nothing).
//   - Sync: durable against power loss everywhere (on PM as Persist; otherwise msync).
//
// Thread-safety: every method may be called from any thread on any ranges; writes into
// the mapping are the caller's to coordinate (as for any memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace dpmfs::pmem {

class PersistentMemory {
 public:
  virtual ~PersistentMemory() = default;
  PersistentMemory(const PersistentMemory&) = delete;
  PersistentMemory& operator=(const PersistentMemory&) = delete;

  uint8_t* base() const { return base_; }
  size_t size() const { return size_; }
  // True when CPU cache flushes make stores durable against power loss (libpmem's
  // pmem_is_pmem: device DAX, FS-DAX with MAP_SYNC, or PMEM_IS_PMEM_FORCE=1).
  bool is_pmem() const { return is_pmem_; }
  // The path mapped (or a test's name for its memory), for messages.
  const std::string& name() const { return name_; }
  // True when [addr, addr+len) lies inside the mapping.
  bool Contains(const void* addr, size_t len) const;

  // Makes [addr, addr+len) durable against a process crash (see the file comment).
  // The range must lie inside the mapping.
  virtual void Persist(const void* addr, size_t len) = 0;
  // Starts writing [addr, addr+len) back (no ordering, no wait): Drain waits for every
  // Flush of this thread. Flush + Drain == Persist.
  virtual void Flush(const void* addr, size_t len) = 0;
  virtual void Drain() = 0;
  // memcpy / memset, then Persist of the destination (libpmem uses non-temporal stores
  // where they are faster).
  virtual void MemcpyPersist(void* dst, const void* src, size_t len) = 0;
  virtual void MemsetPersist(void* dst, int c, size_t len) = 0;
  // Makes [addr, addr+len) durable against power loss also where the mapping is not PM
  // (msync of the page cache). IOError when msync fails, OutOfRange outside the mapping.
  virtual Status Sync(const void* addr, size_t len) = 0;

 protected:
  PersistentMemory(std::string name, uint8_t* base, size_t size, bool is_pmem)
      : name_(std::move(name)), base_(base), size_(size), is_pmem_(is_pmem) {}

 private:
  std::string name_;
  uint8_t* base_;
  size_t size_;
  bool is_pmem_;
};

// True when `path` names a character device (a device-DAX pool, `/dev/daxX.Y`).
bool IsCharDevice(const std::string& path);

// Maps the whole file or device-DAX device at `path` read-write with libpmem
// (pmem_map_file with length 0; unmapped by the destructor). Errors name the path:
// NotFound (no such file or device; for a /dev/dax path it says how to make one),
// NotSupported (neither a regular file nor a device-DAX device), IOError (libpmem's
// message and errno).
Result<std::unique_ptr<PersistentMemory>> MapPersistentMemory(const std::string& path);

}  // namespace dpmfs::pmem
