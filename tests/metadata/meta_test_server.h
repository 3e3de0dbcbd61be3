// A dpmfs-meta process for tests: formats a small metadata pool (two fictitious 64 MiB
// data pools; the metadata server never talks to data servers), starts the daemon with
// DaemonProcess, and restarts it on the same pool and port after a kill.
//
// Thread-safety: one test thread owns it; server()->SendKill() may come from another.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/daemon_process.h"
#include "common/pool.h"
#include "metadata/meta_store.h"
#include "tests/metadata/meta_test_pool.h"

namespace dpmfs::meta {

inline constexpr uint32_t kTestBlock = 4096;

class MetaServerFixture {
 public:
  explicit MetaServerFixture(const std::string& dir, double journal_fraction = 0.1)
      : dir_(dir), journal_fraction_(journal_fraction) {}

  void Format() {
    TestMetaPool p;
    p.block_size = kTestBlock;
    // 6 MiB of data area, a 10% journal: a workload passes the checkpoint threshold
    // every ~1000 operations, so kills also land in and around checkpoints.
    p.pool_size = 8ull << 20;
    p.journal_fraction = journal_fraction_;
    pool_path_ = dir_ + "/meta.pool";
    FormatTestMetaPool(pool_path_, p);
  }

  Status Start() {
    DaemonOptions o;
    o.name = "metadata server";
    o.log_prefix = "meta";
    o.log_dir = dir_;
    o.keep_logs = true;
    o.argv = {DPMFS_META_BIN, "--pool",  pool_path_, "--listen",
              listen_,        "--data",  "127.0.0.1:1", "--data",
              "127.0.0.1:2",  "--lease-ms", std::to_string(lease_ms_), "--no-scrub"};  // no data servers
    // A short free quarantine: the quarantine and the restart hold stay in play (live
    // placement avoids held blocks, replay must still match) without stalling the first
    // allocation after each of many restarts for seconds.
    o.argv.insert(o.argv.end(), {"--free-quarantine-ms", "100"});
    auto started = DaemonProcess::Start(o, ++generation_);
    if (!started.ok()) return started.status();
    server_ = std::move(*started);
    listen_ = server_->endpoint().ToString();  // restarts reuse the port
    return Status::OK();
  }
  void Kill() {
    server_->SendKill();
    auto r = server_->Wait(std::chrono::seconds(10));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  // Before Start: a short lease, for tests of lapsed sessions and their tokens.
  void set_lease_ms(uint32_t ms) { lease_ms_ = ms; }
  Endpoint endpoint() const { return server_->endpoint(); }
  DaemonProcess* server() { return server_.get(); }
  uint64_t generation() const { return generation_; }

 private:
  std::string dir_;
  double journal_fraction_;
  std::string pool_path_;
  std::string listen_ = "127.0.0.1:0";
  uint32_t lease_ms_ = 60000;
  uint64_t generation_ = 0;
  std::unique_ptr<DaemonProcess> server_;
};


}  // namespace dpmfs::meta
