#include "common/endpoint.h"

#include <gtest/gtest.h>

namespace dpmfs {
namespace {

TEST(EndpointTest, ParsesHostPortAndBracketedV6) {
  auto a = Endpoint::Parse("127.0.0.1:7000");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7000);
  EXPECT_EQ(a->ToString(), "127.0.0.1:7000");
  auto b = Endpoint::Parse("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->ToString(), "[::1]:0");
}

TEST(EndpointTest, RejectsMalformedWithReason) {
  for (const char* bad : {"", "host", "host:", ":80", "h:65536", "h:12x", "::1:80"}) {
    auto r = Endpoint::Parse(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("expected HOST:PORT"), std::string::npos);
  }
}

}  // namespace
}  // namespace dpmfs
