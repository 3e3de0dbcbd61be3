// libFuzzer target for the metadata message decoders (built with -DDPMFS_FUZZ=ON by
// clang; run it with tools/fuzz.sh). The first input byte picks a message type, the rest
// is its payload. Properties checked, beyond "no crash, no sanitizer report, no huge
// allocation" (ASan's allocation limit catches decoders trusting a forged count):
//   - a payload that decodes re-encodes to exactly the same bytes (the encoding is
//     canonical: decoders accept nothing an encoder would not produce);
//   - SplitReply accepts only [errno >= 0][body] with no body after a non-zero errno;
//   - CheckName agrees with a straightforward restatement of the rules.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "metadata/meta_protocol.h"

namespace {

using namespace dpmfs::meta;

void Fail(const char* what, const char* type) {
  std::fprintf(stderr, "meta_decode_fuzz: %s (%s)\n", what, type);
  std::abort();
}

template <class T>
void RoundTrip(std::span<const uint8_t> payload, const char* type) {
  T m;
  if (!Decode(payload, &m).ok()) return;
  std::vector<uint8_t> again = Encode(m);
  // Create, mkdir and mknod may end before their umask (kNewInodeUmask in
  // meta_protocol.h): re-encoded, they gain it as 0.
  constexpr bool kOptionalUmask = std::is_same_v<T, CreateRequest> ||
                                  std::is_same_v<T, MkdirRequest> ||
                                  std::is_same_v<T, MknodRequest>;
  size_t compared = again.size();
  if constexpr (kOptionalUmask) {
    if (again.size() == payload.size() + 4) {
      if (m.umask != 0) Fail("an absent umask decoded as non-zero", type);
      compared = payload.size();
    }
  }
  if (compared != payload.size() ||
      (compared != 0 && std::memcmp(again.data(), payload.data(), compared) != 0)) {
    Fail("decoded message re-encodes differently", type);
  }
  // Decoding the re-encoding into the same (non-empty) object gives the same bytes again.
  if (!Decode(again, &m).ok() || Encode(m) != again) Fail("second decode differs", type);
}

using RoundTripFn = void (*)(std::span<const uint8_t>, const char*);
struct Entry {
  RoundTripFn fn;
  const char* name;
};
constexpr Entry kMessages[] = {
#define X(T) {&RoundTrip<T>, #T},
    DPMFS_META_MESSAGES(X)
#undef X
};
constexpr size_t kNumMessages = sizeof(kMessages) / sizeof(kMessages[0]);

void CheckSplitReply(std::span<const uint8_t> payload) {
  int err = -1;
  std::span<const uint8_t> body;
  bool ok = SplitReply(payload, &err, &body).ok();
  bool expect = false;
  if (payload.size() >= 4) {
    int32_t e = static_cast<int32_t>(uint32_t{payload[0]} | uint32_t{payload[1]} << 8 |
                                     uint32_t{payload[2]} << 16 | uint32_t{payload[3]} << 24);
    expect = e >= 0 && e <= 4095 && (e == 0 || payload.size() == 4);
    if (ok && (err != e || body.size() != payload.size() - 4)) Fail("wrong split", "SplitReply");
  }
  if (ok != expect) Fail("accepts/refuses the wrong replies", "SplitReply");
}

void CheckCheckName(std::string_view name) {
  int want = 0;
  if (name.size() > kMaxNameLength) {
    want = ENAMETOOLONG;
  } else if (name.empty() || name == "." || name == "..") {
    want = EINVAL;
  } else {
    for (char ch : name) {
      if (ch == '/' || ch == '\0') want = EINVAL;
    }
  }
  if (CheckName(name) != want) Fail("wrong verdict", "CheckName");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> payload(data + 1, size - 1);
  const Entry& e = kMessages[data[0] % kNumMessages];
  e.fn(payload, e.name);
  CheckSplitReply(payload);
  CheckCheckName(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
  return 0;
}
