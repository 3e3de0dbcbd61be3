// The daemons the authentication and session-token tests attack and use: a metadata
// server (MetaServerFixture) and one dpmfs-data serving a fresh 8 MiB pool, both real
// processes, in a scratch directory of their own that TearDown removes.
//
// Usage: a fixture derives from MetaAndDataDaemons and calls
// ASSERT_NO_FATAL_FAILURE(StartDaemons("name")) first in its SetUp.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/daemon_process.h"
#include "common/pool.h"
#include "tests/metadata/meta_test_server.h"

namespace dpmfs::test_support {

class MetaAndDataDaemons : public ::testing::Test {
 protected:
  // `name` names the scratch directory (with the pid); `lease_ms` 0: the metadata
  // server's default lease.
  void StartDaemons(const std::string& name, uint32_t lease_ms = 0) {
    dir_ = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    meta_ = std::make_unique<meta::MetaServerFixture>(dir_.string());
    if (lease_ms != 0) meta_->set_lease_ms(lease_ms);
    ASSERT_NO_FATAL_FAILURE(meta_->Format());
    Status st = meta_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();

    const std::string pool = (dir_ / "data0.pool").string();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, pool::ClusterUuid::Generate(), 0, 4096, 8ull << 20};
    ASSERT_TRUE(pool::FormatPool(pool, fo).ok());
    DaemonOptions d;
    d.name = "data server";
    d.log_prefix = "data";
    d.log_dir = dir_.string();
    d.keep_logs = true;
    d.argv = {DPMFS_DATA_BIN, "--pool", pool, "--listen", "127.0.0.1:0"};
    auto data = DaemonProcess::Start(d, 1);
    ASSERT_TRUE(data.ok()) << data.status().ToString();
    data_ = std::move(*data);
  }
  // Derived fixtures drop their clients first, then call this.
  void TearDown() override {
    data_.reset();
    meta_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<meta::MetaServerFixture> meta_;
  std::unique_ptr<DaemonProcess> data_;
};

}  // namespace dpmfs::test_support
