// The cluster key file: made with mode 0600, read back; a missing, unreadable,
// wrong-size, non-hex or group/world-readable file is refused with a message naming it.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/cluster_key.h"

namespace dpmfs {
namespace {

namespace fs = std::filesystem;

class ClusterKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpmfs-key-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "cluster.key").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& text, mode_t mode = 0600) {
    { std::ofstream(path_, std::ios::trunc) << text; }
    ::chmod(path_.c_str(), mode);
  }
  fs::path dir_;
  std::string path_;
};

TEST_F(ClusterKeyTest, CreatedWithMode0600AndReadBack) {
  ::umask(022);
  ASSERT_TRUE(CreateKeyFile(path_, false).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 65);
  auto a = LoadKeyFile(path_);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  // Never overwritten by accident; rotated on purpose.
  EXPECT_EQ(CreateKeyFile(path_, false).code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(CreateKeyFile(path_, true).ok());
  auto b = LoadKeyFile(path_);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(a->bytes(), b->bytes());
  EXPECT_FALSE(fs::exists(path_ + ".new"));
}

TEST_F(ClusterKeyTest, BadFilesAreRefusedWithAMessageNamingThem) {
  auto missing = LoadKeyFile(path_);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path_), std::string::npos);
  EXPECT_NE(missing.status().message().find("mkfs.dpmfs key create"), std::string::npos);

  Write(std::string(64, 'a') + "\n", 0644);
  auto readable = LoadKeyFile(path_);
  EXPECT_EQ(readable.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(readable.status().message().find("chmod 600"), std::string::npos)
      << readable.status().ToString();

  Write(std::string(32, 'a') + "\n");
  auto short_file = LoadKeyFile(path_);
  EXPECT_EQ(short_file.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(short_file.status().message().find("holds 33 bytes"), std::string::npos)
      << short_file.status().ToString();

  Write(std::string(200, 'a'));
  EXPECT_EQ(LoadKeyFile(path_).status().code(), StatusCode::kInvalidArgument);

  Write(std::string(63, 'a') + "g\n");
  auto not_hex = LoadKeyFile(path_);
  EXPECT_EQ(not_hex.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(not_hex.status().message().find("hex"), std::string::npos);

  Write(std::string(64, 'a'));  // no newline: fine
  EXPECT_TRUE(LoadKeyFile(path_).ok());
}

TEST(ClusterKeyPath, DefaultsFollowFlagEnvironmentAndClusterFile) {
  ::unsetenv("DPMFS_KEY_FILE");
  EXPECT_EQ(ResolveKeyFile("/x/k", "/etc/c.conf"), "/x/k");
  EXPECT_EQ(ResolveKeyFile("", "/srv/dpmfs/cluster.conf"), "/srv/dpmfs/cluster.key");
  EXPECT_EQ(ResolveKeyFile("", "cluster.conf"), "./cluster.key");
  EXPECT_EQ(ResolveKeyFile("", ""), kDefaultKeyFile);
  ::setenv("DPMFS_KEY_FILE", "/env/key", 1);
  EXPECT_EQ(ResolveKeyFile("", "/srv/dpmfs/cluster.conf"), "/env/key");
  ::unsetenv("DPMFS_KEY_FILE");
}

}  // namespace
}  // namespace dpmfs
