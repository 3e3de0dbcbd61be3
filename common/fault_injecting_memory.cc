#include "common/fault_injecting_memory.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>
#include <random>

namespace dpmfs::pmem {
namespace {

constexpr std::align_val_t kAlign{64};

uint8_t* AllocateCopy(std::span<const uint8_t> image) {
  auto* p = static_cast<uint8_t*>(::operator new(std::max<size_t>(image.size(), 1), kAlign));
  if (!image.empty()) std::memcpy(p, image.data(), image.size());
  return p;
}

}  // namespace

FaultInjectingMemory::FaultInjectingMemory(std::span<const uint8_t> image, std::string name,
                                           bool is_pmem)
    : PersistentMemory(std::move(name), AllocateCopy(image), image.size(), is_pmem),
      durable_(AllocateCopy(image)) {}

FaultInjectingMemory::~FaultInjectingMemory() {
  ::operator delete(base(), kAlign);
  ::operator delete(durable_, kAlign);
}

size_t FaultInjectingMemory::OffsetOf(const void* addr, size_t len) const {
  assert(Contains(addr, len));
  (void)len;
  return static_cast<size_t>(static_cast<const uint8_t*>(addr) - base());
}

void FaultInjectingMemory::ApplyLocked(size_t off, size_t len) {
  if (!crashed_ && len != 0) std::memcpy(durable_ + off, base() + off, len);
}

// One persist point: the observer, then (if armed here) the crash, before the caller's
// range is applied. Called with `lock` held; the observer runs without it.
void FaultInjectingMemory::PointLocked(std::unique_lock<std::mutex>& lock) {
  const uint64_t point = ++points_;
  if (observer_) {
    auto observer = observer_;
    lock.unlock();
    observer(point);
    lock.lock();
  }
  if (!crashed_ && crash_at_ != 0 && point == crash_at_) CrashLocked(crash_mode_, crash_seed_);
}

void FaultInjectingMemory::TearLocked(CrashMode mode, uint64_t seed, uint8_t* out) const {
  if (mode != CrashMode::kTearUnpersisted) return;
  // Every dirty aligned 8-byte word survives or not, independently.
  std::mt19937_64 rng(seed);
  const uint8_t* w = base();
  const size_t n = size();
  for (size_t off = 0; off < n; off += 8) {
    const size_t len = std::min<size_t>(8, n - off);
    if (std::memcmp(w + off, durable_ + off, len) != 0 && (rng() & 1) != 0) {
      std::memcpy(out + off, w + off, len);
    }
  }
}

void FaultInjectingMemory::CrashLocked(CrashMode mode, uint64_t seed) {
  if (crashed_) return;
  TearLocked(mode, seed, durable_);
  flushed_.clear();
  crashed_ = true;
}

void FaultInjectingMemory::Persist(const void* addr, size_t len) {
  const size_t off = OffsetOf(addr, len);
  std::unique_lock lock(mu_);
  PointLocked(lock);
  ApplyLocked(off, len);
}

void FaultInjectingMemory::Flush(const void* addr, size_t len) {
  const size_t off = OffsetOf(addr, len);
  std::lock_guard lock(mu_);
  if (!crashed_ && len != 0) flushed_.emplace_back(off, len);
}

void FaultInjectingMemory::Drain() {
  std::unique_lock lock(mu_);
  PointLocked(lock);
  for (const auto& [off, len] : flushed_) ApplyLocked(off, len);
  flushed_.clear();
}

void FaultInjectingMemory::MemcpyPersist(void* dst, const void* src, size_t len) {
  if (len != 0) std::memcpy(dst, src, len);
  Persist(dst, len);
}

void FaultInjectingMemory::MemsetPersist(void* dst, int c, size_t len) {
  if (len != 0) std::memset(dst, c, len);
  Persist(dst, len);
}

Status FaultInjectingMemory::Sync(const void* addr, size_t len) {
  if (!Contains(addr, len)) {
    return Status::OutOfRange("persist range of " + std::to_string(len) + " bytes lies outside " +
                              name());
  }
  Persist(addr, len);
  return Status::OK();
}

void FaultInjectingMemory::CrashAt(uint64_t point, CrashMode mode, uint64_t seed) {
  std::lock_guard lock(mu_);
  assert(point > points_);
  crash_at_ = point;
  crash_mode_ = mode;
  crash_seed_ = seed;
}

void FaultInjectingMemory::Crash(CrashMode mode, uint64_t seed) {
  std::lock_guard lock(mu_);
  CrashLocked(mode, seed);
}

bool FaultInjectingMemory::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}

uint64_t FaultInjectingMemory::persist_points() const {
  std::lock_guard lock(mu_);
  return points_;
}

void FaultInjectingMemory::SetObserver(std::function<void(uint64_t point)> observer) {
  std::lock_guard lock(mu_);
  observer_ = std::move(observer);
}

std::vector<uint8_t> FaultInjectingMemory::DurableImage() const {
  std::lock_guard lock(mu_);
  return std::vector<uint8_t>(durable_, durable_ + size());
}

void FaultInjectingMemory::CrashImage(CrashMode mode, uint64_t seed,
                                      std::vector<uint8_t>* out) const {
  std::lock_guard lock(mu_);
  out->resize(size());
  std::memcpy(out->data(), durable_, size());
  if (!crashed_) TearLocked(mode, seed, out->data());
}

void FaultInjectingMemory::Restart(std::span<const uint8_t> image) {
  assert(image.size() == size());
  std::lock_guard lock(mu_);
  std::memcpy(base(), image.data(), size());
  std::memcpy(durable_, image.data(), size());
  flushed_.clear();
  points_ = 0;
  crash_at_ = 0;
  crashed_ = false;
}

size_t FaultInjectingMemory::UnpersistedBytes() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (size_t i = 0; i < size(); ++i) n += base()[i] != durable_[i] ? 1 : 0;
  return n;
}

}  // namespace dpmfs::pmem
