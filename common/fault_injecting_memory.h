// FaultInjectingMemory: the test double of the persistent-memory seam
// (persistent_memory.h), after LevelDB's FaultInjectionTestEnv. It holds two images of a
// region: the working one (what the program reads and writes, `base()`) and the durable
// one (what a restart would find). Only the persist calls copy working bytes into the
// durable image, so a "crash" — at a chosen persist point, or now — forgets every byte
// that was not persisted, and a test can reopen a fresh store on `durable()`.
//
// Persist points: every call of Persist, Drain, MemcpyPersist, MemsetPersist and Sync
// counts one (Flush only queues its range for the next Drain of any thread). At point
// N (CrashAt), before the call's range becomes durable, the power fails: the durable
// image is frozen and nothing persisted later reaches it. The program keeps running on
// the working image (a test stops it when `crashed()`); what it does then is lost.
//
// What reaches the durable image at the crash, of the bytes written but not persisted:
//   kDropUnpersisted  none of them (the last persisted image of every unpersisted range);
//   kTearUnpersisted  each 8-byte aligned word that differs from the durable image
//                     independently survives or not (seeded): a CPU may write any dirty
//                     cache line back early, and x86 stores of aligned 8-byte words are
//                     never torn, so this is every state real hardware can leave.
//
// Thread-safety: thread-safe (one internal mutex); writes into `base()` are the caller's
// to coordinate, as for real memory.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/persistent_memory.h"

namespace dpmfs::pmem {

class FaultInjectingMemory final : public PersistentMemory {
 public:
  enum class CrashMode { kDropUnpersisted, kTearUnpersisted };

  // A region whose working and durable images both start as `image` (e.g. a formatted
  // pool read from a file, or the durable image of a crashed one). `is_pmem` is what
  // is_pmem() reports.
  explicit FaultInjectingMemory(std::span<const uint8_t> image,
                                std::string name = "fault-injecting memory", bool is_pmem = true);
  ~FaultInjectingMemory() override;

  void Persist(const void* addr, size_t len) override;
  void Flush(const void* addr, size_t len) override;
  void Drain() override;
  void MemcpyPersist(void* dst, const void* src, size_t len) override;
  void MemsetPersist(void* dst, int c, size_t len) override;
  Status Sync(const void* addr, size_t len) override;

  // The power fails at persist point `point` (1-based, counted since construction; it
  // must lie in the future), before that call's bytes are durable.
  void CrashAt(uint64_t point, CrashMode mode = CrashMode::kDropUnpersisted, uint64_t seed = 0);
  // The power fails now.
  void Crash(CrashMode mode = CrashMode::kDropUnpersisted, uint64_t seed = 0);
  bool crashed() const;
  // Persist points so far.
  uint64_t persist_points() const;
  // Called at every persist point (with its number) before it takes effect and before a
  // CrashAt there; a test may look at the images from it (not call this object's
  // persist methods).
  void SetObserver(std::function<void(uint64_t point)> observer);

  // A copy of the durable image: what a restart after a crash now would find (after a
  // crash: what it left).
  std::vector<uint8_t> DurableImage() const;
  // What the durable image would be if the power failed now in `mode` (with `seed`),
  // into `*out` (resized to size(); no allocation when it already has that size). Does
  // not crash this memory: with an observer, a test takes every crash state of one run.
  void CrashImage(CrashMode mode, uint64_t seed, std::vector<uint8_t>* out) const;
  // The machine restarts with `image` (size() bytes) in its PM: both images become it,
  // the crash (or armed crash) and the point count are cleared. Reuses the buffers.
  void Restart(std::span<const uint8_t> image);
  // Bytes of the working image that differ from the durable one.
  size_t UnpersistedBytes() const;

 private:
  void PointLocked(std::unique_lock<std::mutex>& lock);
  void ApplyLocked(size_t off, size_t len);
  void CrashLocked(CrashMode mode, uint64_t seed);
  // Applies the unpersisted words `mode` keeps to `out`, which holds the durable image.
  void TearLocked(CrashMode mode, uint64_t seed, uint8_t* out) const;
  size_t OffsetOf(const void* addr, size_t len) const;

  mutable std::mutex mu_;
  uint8_t* durable_;                                // same size as the working image
  std::vector<std::pair<size_t, size_t>> flushed_;  // (offset, length) awaiting Drain
  uint64_t points_ = 0;
  uint64_t crash_at_ = 0;  // 0: none armed
  CrashMode crash_mode_ = CrashMode::kDropUnpersisted;
  uint64_t crash_seed_ = 0;
  bool crashed_ = false;
  std::function<void(uint64_t)> observer_;
};

}  // namespace dpmfs::pmem
