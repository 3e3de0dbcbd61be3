// libFuzzer target for the connection handshake's decoders (transport/connection_auth.h;
// built with -DDPMFS_FUZZ=ON by clang). The first input byte picks HELLO, CHALLENGE or
// AUTH, the rest is the message. Beyond "no crash, no sanitizer report": a message that
// decodes re-encodes to the same bytes up to the zero padding the decoders allow.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "transport/connection_auth.h"

namespace {

using namespace dpmfs::transport::auth;

void CheckPrefix(const std::vector<uint8_t>& encoded, std::span<const uint8_t> in,
                 const char* type) {
  if (encoded.size() > in.size()) {
    std::fprintf(stderr, "handshake_decode_fuzz: %s decoded from fewer bytes than it encodes to\n",
                 type);
    std::abort();
  }
  for (size_t i = 0; i < in.size(); ++i) {
    uint8_t want = i < encoded.size() ? encoded[i] : 0;
    if (in[i] != want) {
      std::fprintf(stderr, "handshake_decode_fuzz: %s does not re-encode to its bytes\n", type);
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      if (auto m = DecodeHello(in); m.ok()) CheckPrefix(EncodeHello(*m), in, "Hello");
      break;
    case 1:
      if (auto m = DecodeChallenge(in); m.ok()) CheckPrefix(EncodeChallenge(*m), in, "Challenge");
      break;
    case 2:
      if (auto m = DecodeAuthRequest(in); m.ok()) {
        CheckPrefix(EncodeAuthRequest(*m), in, "AuthRequest");
      }
      break;
  }
  return 0;
}
