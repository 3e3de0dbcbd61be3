// A MetaService in process whose data servers are a test's fake DataServerAccess: the
// setting of the tests of what the metadata server decides about data servers (fences,
// pool instances), without daemons. The data endpoints are placeholders (127.0.0.1:1..):
// nothing connects to them, every call goes to `access`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/cluster_key.h"
#include "common/pool.h"
#include "metadata/data_server_access.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"

namespace dpmfs::test_support {

// Opens the formatted metadata pool at `path` with `servers` data servers behind
// `access`, probed every 20 ms, a 3 s lease, tokens MACed with `key`. Not started.
inline void OpenServiceOverFakeServers(const std::string& path, uint32_t servers,
                                       meta::DataServerAccess* access,
                                       std::shared_ptr<const ClusterKey> key,
                                       std::unique_ptr<meta::MetaService>* out) {
  using namespace meta;
  pool::OpenExpectations ex;
  ex.role = pool::Role::kMetadata;
  auto store = MetaStore::Open(path, ex);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  MetaServiceOptions so;
  for (uint32_t i = 0; i < servers; ++i) so.data_endpoints.push_back("127.0.0.1:" + std::to_string(1 + i));
  so.lease_ms = 3000;
  so.probe_period_ms = 20;
  so.token_key = std::move(key);
  so.data_access = access;
  auto svc = MetaService::Open(std::move(*store), so, nullptr);
  ASSERT_TRUE(svc.ok()) << svc.status().ToString();
  *out = std::move(*svc);
}

}  // namespace dpmfs::test_support
