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

// A host is a name or an address, never arbitrary bytes: the cluster file writes it back
// without brackets, where '#' starts a comment and a space or NUL splits the line (the
// cluster file fuzzer found "[#e8=\0\0\0]:7001" accepted, then unreadable once written).
TEST(EndpointTest, RejectsHostsThatAreNotNamesOrAddresses) {
  using namespace std::string_literals;
  for (const std::string& bad :
       {"[#e8=]:7001"s, "#h:1"s, "h h:1"s, "h\0x:1"s, "[h\0]:1"s, "h\t:1"s, "h/x:1"s, "[]:1"s,
        "[host]:1"s, "h%eth0:1"s, "[::1]x:1"s}) {
    auto r = Endpoint::Parse(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  for (const char* good : {"data-1.example.com:7001", "10.0.0.1:1", "[fe80::1%eth0]:7001",
                           "[::ffff:10.0.0.1]:2", "localhost:80", "my_host:3"}) {
    auto r = Endpoint::Parse(good);
    ASSERT_TRUE(r.ok()) << good << ": " << r.status().ToString();
    auto again = Endpoint::Parse(r->ToString());
    ASSERT_TRUE(again.ok()) << r->ToString();
    EXPECT_EQ(again->host, r->host);
  }
}

}  // namespace
}  // namespace dpmfs
