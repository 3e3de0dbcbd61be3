// ParseClusterFile: the format of common/cluster_file.h, its defaults, and an error
// naming FILE:LINE for every kind of mistake.
#include "common/cluster_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace dpmfs {
namespace {

using ::testing::HasSubstr;

class ClusterFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string base = "/dev/shm";
    if (::access(base.c_str(), W_OK) != 0) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
    std::string tmpl = base + "/dpmfs-cluster-file-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    path_ = dir_ + "/cluster.conf";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<ClusterFile> Parse(const std::string& text) {
    std::ofstream(path_) << text;
    return ParseClusterFile(path_);
  }

  // Expects InvalidArgument whose message starts with "FILE:LINE: " and contains `what`.
  void ExpectError(const std::string& text, int line, const std::string& what) {
    Result<ClusterFile> r = Parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(path_ + ":" + std::to_string(line) + ": ")) << text;
    EXPECT_THAT(r.status().message(), HasSubstr(what)) << text;
  }

  std::string dir_;
  std::string path_;
};

constexpr char kMinimal[] =
    "meta 127.0.0.1:7000 /dev/shm/x/meta.pool 256M\n"
    "data 127.0.0.1:7001 /dev/shm/x/data0.pool 1G\n";

TEST_F(ClusterFileTest, ParsesTheDocumentedExample) {
  Result<ClusterFile> r = Parse(
      "# a cluster on one host\n"
      "\n"
      "cluster_uuid 1b4e28ba-2fa1-41d2-883f-0016d3cca427\n"
      "block_size 4K\n"
      "   stripe_unit\t2M   # two MiB per stripe unit\n"
      "meta  127.0.0.1:7000  /dev/shm/dpmfs/meta.pool   256M\n"
      "data  127.0.0.1:7001  /dev/shm/dpmfs/data0.pool  1G\n"
      "data  [::1]:7002      pools/data1.pool           512MiB\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->path, path_);
  ASSERT_TRUE(r->cluster.has_value());
  EXPECT_EQ(r->cluster->ToString(), "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
  EXPECT_EQ(r->block_size, 4096u);
  EXPECT_EQ(r->stripe_unit, 2u << 20);
  EXPECT_EQ(r->meta.endpoint.ToString(), "127.0.0.1:7000");
  EXPECT_EQ(r->meta.pool_path, "/dev/shm/dpmfs/meta.pool");
  EXPECT_EQ(r->meta.pool_size, 256u << 20);
  EXPECT_EQ(r->meta.line, 6);
  ASSERT_EQ(r->data.size(), 2u);
  EXPECT_EQ(r->data[0].endpoint.port, 7001);
  EXPECT_EQ(r->data[0].pool_size, 1ull << 30);
  EXPECT_EQ(r->data[1].endpoint.host, "::1");
  // Relative pool paths are relative to the cluster file's directory.
  EXPECT_EQ(r->data[1].pool_path, dir_ + "/pools/data1.pool");
  EXPECT_EQ(r->data[1].pool_size, 512u << 20);
  EXPECT_EQ(r->Where(r->data[1]), path_ + ":8");
}

TEST_F(ClusterFileTest, Defaults) {
  Result<ClusterFile> r = Parse(kMinimal);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->cluster.has_value());
  EXPECT_EQ(r->block_size, 4096u);
  EXPECT_EQ(r->stripe_unit, 1u << 20);
  EXPECT_EQ(r->data.size(), 1u);
}

TEST_F(ClusterFileTest, SettingsMayFollowThePools) {
  Result<ClusterFile> r = Parse(std::string(kMinimal) + "block_size 64K\nstripe_unit 128K\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->block_size, 64u << 10);
  EXPECT_EQ(r->stripe_unit, 128u << 10);
}

TEST_F(ClusterFileTest, Replicas) {
  Result<ClusterFile> r = Parse(std::string(kMinimal));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->replicas, 1u);  // the default: one copy
  const std::string two_data = std::string(kMinimal) +
                               "data 127.0.0.1:7002 /dev/shm/x/data1.pool 1G\n";
  r = Parse(two_data + "replicas 2\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->replicas, 2u);
  ExpectError(two_data + "replicas 3\n", 4, "replicas 3 needs at least 3 data servers");
  ExpectError(two_data + "replicas 0\n", 4, "not a number from 1 to 3");
  ExpectError(two_data + "replicas 4\n", 4, "not a number from 1 to 3");
  ExpectError(two_data + "replicas two\n", 4, "not a number from 1 to 3");
  ExpectError(two_data + "replicas 1\nreplicas 2\n", 5, "repeats line 4");
}

TEST_F(ClusterFileTest, MissingFile) {
  Result<ClusterFile> r = ParseClusterFile(dir_ + "/nope.conf");
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(dir_ + "/nope.conf"));
  r = ParseClusterFile(dir_);
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
}

TEST_F(ClusterFileTest, LineErrors) {
  ExpectError(std::string(kMinimal) + "\nstorage 1.2.3.4:5 /x 1G\n", 4,
              "unknown keyword 'storage'");
  ExpectError("meta 127.0.0.1 /dev/shm/m 256M\n", 1, "bad address '127.0.0.1'");
  ExpectError("meta 127.0.0.1:99999 /dev/shm/m 256M\n", 1, "port must be a number");
  ExpectError("meta 127.0.0.1:0 /dev/shm/m 256M\n", 1, "port 0");
  ExpectError("meta 127.0.0.1:7000 /dev/shm/m 256Q\n", 1, "bad pool size");
  ExpectError("meta 127.0.0.1:7000 /dev/shm/m\n", 1, "takes 3 values");
  ExpectError("meta 127.0.0.1:7000 /dev/shm/m 1G extra\n", 1, "found 4");
  ExpectError(std::string(kMinimal) + "meta 127.0.0.1:7009 /dev/shm/x/m2 256M\n", 3,
              "a second 'meta' line (the first is line 1)");
  ExpectError(std::string(kMinimal) + "data 127.0.0.2:7001 /dev/shm/x/data0.pool 1G\n", 3,
              "pool path /dev/shm/x/data0.pool is already used on line 2");
  ExpectError(std::string(kMinimal) + "data 127.0.0.1:7000 /dev/shm/x/data1.pool 1G\n", 3,
              "address 127.0.0.1:7000 is already used on line 1");
  // The same file spelled two ways is still the same file.
  ExpectError(std::string(kMinimal) + "data 127.0.0.1:7003 /dev/shm/x/../x/data0.pool 1G\n", 3,
              "already used on line 2");
  ExpectError("cluster_uuid not-a-uuid\n" + std::string(kMinimal), 1, "invalid cluster UUID");
  ExpectError("cluster_uuid 00000000-0000-0000-0000-000000000000\n" + std::string(kMinimal), 1,
              "nil UUID");
  ExpectError("block_size 3000\n" + std::string(kMinimal), 1, "not a power of two");
  ExpectError("block_size 4K\nblock_size 8K\n" + std::string(kMinimal), 2,
              "'block_size' repeats line 1");
  ExpectError("stripe_unit 6K\n" + std::string(kMinimal), 1,
              "stripe unit 6144 is not a multiple of the block size 4096");
  ExpectError("stripe_unit 0\n" + std::string(kMinimal), 1, "stripe unit 0");
  ExpectError(std::string(kMinimal) + "data 127.0.0.1:7005 /dev/shm/x/tiny 1M\n", 3,
              "data pool size 1048576 (1 MiB) is too small");
  ExpectError("block_size 1M\n" + std::string(kMinimal) + "data 127.0.0.1:7005 /dev/shm/x/d2 2M\n",
              4, "the minimum is 3145728 bytes");
}

TEST_F(ClusterFileTest, FileErrors) {
  Result<ClusterFile> r = Parse("data 127.0.0.1:7001 /dev/shm/x/data0.pool 1G\n");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(path_ + ": no 'meta"));
  r = Parse("# only a metadata server\nmeta 127.0.0.1:7000 /dev/shm/x/meta.pool 256M\n");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(path_ + ": no 'data"));
  r = Parse("");
  EXPECT_THAT(r.status().message(), HasSubstr("no 'meta"));
}

TEST_F(ClusterFileTest, AtMost256DataLines) {
  std::string text = "meta 10.0.0.1:7000 /pm/meta 256M\n";
  for (int i = 0; i < 256; ++i) {
    text += "data 10.0.1." + std::to_string(i) + ":7001 /pm/data" + std::to_string(i) + " 1G\n";
  }
  Result<ClusterFile> r = Parse(text);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->data.size(), kMaxClusterDataServers);
  ExpectError(text + "data 10.0.2.1:7001 /pm/data256 1G\n", 258, "more than 256 data lines");
}

}  // namespace
}  // namespace dpmfs
