// A data server that checks session tokens (DataServerOptions::token_key), in process,
// on a fresh 8 MiB pool in a scratch directory of its own, with a device for it and one
// for a client, both holding the same freshly generated cluster key: what the token and
// fence tests connect to.
//
// Usage: a fixture derives from TokenCheckingServerTest and calls
// ASSERT_NO_FATAL_FAILURE(StartServer("name")) first in its SetUp.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/cluster_key.h"
#include "common/pool.h"
#include "datapath/data_server.h"
#include "transport/transport.h"

namespace dpmfs::test_support {

class TokenCheckingServerTest : public ::testing::Test {
 protected:
  // `name` names the scratch directory (with the pid).
  void StartServer(const std::string& name) {
    dir_ = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string pool_path = (dir_ / "data0.pool").string();
    pool::FormatOptions fo;
    fo.geometry = {pool::Role::kData, pool::ClusterUuid::Generate(), 0, 4096, 8ull << 20};
    ASSERT_TRUE(pool::FormatPool(pool_path, fo).ok());
    key_ = std::make_shared<const ClusterKey>(ClusterKey::Generate());
    transport::DeviceOptions dev;
    dev.cluster_key = key_;
    server_device_ = std::move(transport::OpenDevice(dev)).value();
    client_device_ = std::move(transport::OpenDevice(dev)).value();
    datapath::DataServerOptions so;
    so.pool_path = pool_path;
    so.listen = Endpoint{"127.0.0.1", 0};
    so.token_key = key_;
    auto s = datapath::DataServer::Start(*server_device_, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::shared_ptr<const ClusterKey> key_;
  std::unique_ptr<transport::Device> server_device_, client_device_;
  std::unique_ptr<datapath::DataServer> server_;
};

}  // namespace dpmfs::test_support
