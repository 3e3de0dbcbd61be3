// What every libFuzzer target of tests/fuzz checks besides "no crash, no sanitizer
// report": a failed property aborts with the file, line and what was expected, so
// libFuzzer saves the input as a crash.
//
// Thread-safety: functions on values; the targets are single-threaded.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "common/status.h"

// fuzz::CheckRoundTrip(x, y, valid, same, what), reporting the caller's line.
#define FUZZ_CHECK_ROUND_TRIP(...) ::dpmfs::fuzz::CheckRoundTrip(__FILE__, __LINE__, __VA_ARGS__)

#define FUZZ_CHECK(cond, what)                                                         \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s [%s]\n", __FILE__, __LINE__,   \
                   (what), #cond);                                                     \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

namespace dpmfs::fuzz {

// A refusal is a clean Status: not OK, with a message that says what is wrong, and never
// kInternal (which means "a bug: an invariant did not hold"): hostile bytes are a
// caller's problem, not dpmfs's.
inline void CheckRefusal(const Status& st, const char* decoder) {
  if (st.ok()) return;
  if (st.message().empty() || st.code() == StatusCode::kInternal) {
    std::fprintf(stderr, "%s refused with %s\n", decoder, st.ToString().c_str());
  }
  FUZZ_CHECK(!st.message().empty(), decoder);
  FUZZ_CHECK(st.code() != StatusCode::kInternal, decoder);
}

// The bytes in a heap buffer of exactly their size, so that ASan reports any read past
// the end (a decoder handed a sub-span of the fuzzer's input could otherwise read the
// bytes after it unnoticed).
inline std::vector<uint8_t> Exact(std::span<const uint8_t> bytes) {
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// The round trip every codec target checks: `y`, what decode(encode(x)) gave for a value
// `x` built from the input's bytes (or decoded from them), is accepted exactly when `x` is
// `valid` by the codec's rules, and an accepted one has every field of `x` (`same`).
// Called through FUZZ_CHECK_ROUND_TRIP, which passes the caller's file and line (the
// clang of Debian 12 has no std::source_location).
template <typename T, typename Same>
void CheckRoundTrip(const char* file, int line, const T& x, const Result<T>& y, bool valid,
                    Same same, const char* what) {
  const char* wrong = nullptr;
  if (y.ok() != valid) {
    wrong = valid ? "a valid value is refused" : "an invalid value is accepted";
  } else if (valid && !same(*y, x)) {
    wrong = "decode(encode(x)) differs from x";
  }
  if (wrong == nullptr) return;
  std::fprintf(stderr, "%s:%d: property failed: %s: %s\n", file, line, what, wrong);
  std::abort();
}

// Little-endian reads for restating a layout in a property (independent of the codec).
inline uint64_t Le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace dpmfs::fuzz
