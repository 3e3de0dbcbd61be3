// CRC32C (Castagnoli), used for pool headers and power-loss test records.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise; both give
// identical results (tested). Thread-safe: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpmfs {

// Extends `crc` (0 to start) over `n` bytes of `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }

// The portable implementation, exposed so tests can compare it with the fast one.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);

}  // namespace dpmfs
