#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace dpmfs {
namespace {

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 B.4 check value and test vectors.
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(nullptr, 0), 0u);
}

TEST(Crc32cTest, FastPathMatchesPortableAndExtendsIncrementally) {
  std::mt19937 rng(42);
  std::vector<uint8_t> buf(4099);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t n : {0, 1, 7, 8, 9, 63, 64, 1000, 4099}) {
    EXPECT_EQ(Crc32c(buf.data(), n), Crc32cExtendPortable(0, buf.data(), n)) << n;
  }
  uint32_t split = Crc32cExtend(Crc32c(buf.data(), 1001), buf.data() + 1001, buf.size() - 1001);
  EXPECT_EQ(split, Crc32c(buf.data(), buf.size()));
}

}  // namespace
}  // namespace dpmfs
