// dpmfs-cluster-map: asks a metadata server for its cluster map (docs/replication.md)
// and prints it, one line per data server: its state (up, down, resyncing) and the
// bytes a resync has copied to it and has left. `tools/dpmfs status` runs it.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

#include "common/cli.h"
#include "common/cluster_key.h"
#include "common/endpoint.h"
#include "metadata/meta_client.h"
#include "transport/transport.h"

using namespace dpmfs;

int main(int argc, char** argv) {
  CLI::App app{
      "dpmfs-cluster-map: prints the cluster map of a dpmfs metadata server: its epoch and,\n"
      "per data server, 'data INDEX STATE dirty_bytes=D resync_done_bytes=C "
      "resync_total_bytes=T'\n(STATE: up, down or resyncing; D: bytes it is behind by).",
      "dpmfs-cluster-map"};
  CommonFlags common;
  AddCommonFlags(app, &common);
  std::string server, key_file, cluster_file, transport_name = "soft";
  app.add_option("SERVER", server, "The metadata server, HOST:PORT")->required();
  app.add_option("--key-file", key_file, kKeyFileHelp);
  app.add_option("--cluster-file", cluster_file, "The cluster file (its key is beside it)");
  app.add_option("--transport", transport_name, "soft or verbs")->capture_default_str();
  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;
  auto fail = [](const Status& st) {
    std::cerr << "dpmfs-cluster-map: error: " << st.ToString() << "\n";
    return 1;
  };
  auto ep = Endpoint::Parse(server);
  if (!ep.ok()) return fail(ep.status());
  transport::DeviceOptions dev;
  auto backend = transport::ParseBackend(transport_name);
  if (!backend.ok()) return fail(backend.status());
  dev.backend = *backend;
  auto key = LoadClusterKey(key_file, cluster_file);
  if (!key.ok()) return fail(key.status());
  dev.cluster_key = *key;
  auto device = transport::OpenDevice(dev);
  if (!device.ok()) return fail(device.status());
  meta::MetaClientOptions mo;
  mo.client_name = "dpmfs-cluster-map";
  mo.heartbeat = false;
  mo.reconnect_attempts = 1;
  auto client = meta::MetaClient::Connect(**device, *ep, mo);
  if (!client.ok()) return fail(client.status());
  meta::ClusterMapReply map;
  if (Status st = (*client)->GetClusterMap(&map); !st.ok()) return fail(st);
  std::cout << "epoch " << map.epoch << "\n";
  for (size_t i = 0; i < map.servers.size(); ++i) {
    const meta::DataServerStatus& s = map.servers[i];
    std::cout << "data " << i << " " << meta::DataServerStateName(s.state)
              << " dirty_bytes=" << s.dirty_bytes << " resync_done_bytes=" << s.resync_done_bytes
              << " resync_total_bytes=" << s.resync_total_bytes << "\n";
  }
  return 0;
}
