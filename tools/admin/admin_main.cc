// dpmfs-admin: asks a running cluster's servers, on their usual authenticated ports,
// for their live metrics (`stats`), their state (`status`), or to change their log
// level (`log-level`). tools/dpmfs runs it for `dpmfs stats`, `status` and `log-level`.
#include <iostream>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/cluster_file.h"
#include "common/cluster_key.h"
#include "common/logging.h"
#include "tools/admin/cluster_query.h"
#include "tools/admin/stats_render.h"
#include "transport/transport.h"

namespace {

constexpr const char* kProgram = "dpmfs-admin";

int Fail(const std::string& message) {
  std::cerr << kProgram << ": error: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dpmfs;
  CLI::App app{"Asks a running dpmfs cluster's servers for their live metrics (stats), their "
               "state (status) or to change their log level (log-level), on their usual "
               "ports, authenticated with the cluster key."};
  CommonFlags common;
  AddCommonFlags(app, &common);
  std::string cluster_file, meta, key_file, transport_name = "soft";
  std::vector<std::string> data;
  bool json = false;
  uint32_t timeout_ms = 5000;
  app.add_option("--cluster-file", cluster_file,
                 "The cluster file: the metadata server and data servers to ask");
  app.add_option("--meta", meta, "HOST:PORT of the metadata server (instead of --cluster-file)");
  app.add_option("--data", data, "HOST:PORT of a data server, in index order (repeat)");
  app.add_option("--key-file", key_file,
                 "Cluster key (default: $DPMFS_KEY_FILE, else beside the cluster file, else "
                 "/etc/dpmfs/cluster.key)");
  app.add_option("--transport", transport_name, "soft or verbs")->capture_default_str();
  app.add_option("--timeout-ms", timeout_ms, "How long to wait for each server")
      ->check(CLI::Range(100u, 600000u))
      ->capture_default_str();
  app.require_subcommand(1);
  CLI::App* stats = app.add_subcommand("stats", "Counters and latency histograms (p50/p99/p999) of "
                                                "every server and, through the metadata server, "
                                                "every mounted client");
  stats->add_flag("--json", json, "JSON instead of a table");
  CLI::App* status = app.add_subcommand("status", "Each server: up, sessions, journal use, "
                                                  "checkpoint age, pool use");
  status->add_flag("--json", json, "JSON instead of a table");
  std::string target, level;
  CLI::App* log_level = app.add_subcommand(
      "log-level", "Sets the log level of running servers at once (not kept across a restart)");
  log_level->add_option("TARGET", target, "meta, data, data:N or all")->required();
  log_level->add_option("LEVEL", level, std::string(kLogLevelNames))->required();
  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;

  admin::ClusterAddresses cluster;
  if (!cluster_file.empty()) {
    auto cf = ParseClusterFile(cluster_file);
    if (!cf.ok()) return Fail(cf.status().ToString());
    cluster.meta = cf->meta.endpoint;
    for (const auto& d : cf->data) cluster.data.push_back(d.endpoint);
  }
  if (!meta.empty()) {
    auto ep = Endpoint::Parse(meta);
    if (!ep.ok()) return Fail("--meta " + meta + ": " + ep.status().message());
    cluster.meta = *ep;
  } else if (cluster_file.empty()) {
    std::cerr << kProgram << ": --cluster-file FILE or --meta HOST:PORT is required\n";
    return 2;
  }
  if (!data.empty()) {
    cluster.data.clear();
    for (const std::string& d : data) {
      auto ep = Endpoint::Parse(d);
      if (!ep.ok()) return Fail("--data " + d + ": " + ep.status().message());
      cluster.data.push_back(*ep);
    }
  }
  if (log_level->parsed()) {
    // Checked here too, so that a typo is refused before any server is asked.
    const std::string names(kLogLevelNames);
    if (("|" + names + "|").find("|" + level + "|") == std::string::npos) {
      std::cerr << kProgram << ": unknown log level '" << level << "' (use one of " << names
                << ")\n";
      return 2;
    }
    const bool data_target = target.rfind("data:", 0) == 0;
    if (target != "meta" && target != "data" && target != "all" && !data_target) {
      std::cerr << kProgram << ": TARGET must be meta, data, data:N or all, not '" << target << "'\n";
      return 2;
    }
  }

  transport::DeviceOptions dev;
  auto backend = transport::ParseBackend(transport_name);
  if (!backend.ok()) return Fail(backend.status().ToString());
  dev.backend = *backend;
  auto key = LoadClusterKey(key_file, cluster_file);
  if (!key.ok()) return Fail(key.status().ToString());
  dev.cluster_key = *key;
  auto device = transport::OpenDevice(dev);
  if (!device.ok()) return Fail(device.status().ToString());
  const std::chrono::milliseconds timeout(timeout_ms);

  if (log_level->parsed()) {
    auto answers = admin::SetLogLevel(**device, cluster, target, level, timeout);
    if (answers.empty()) return Fail("no server matches '" + target + "'");
    int rc = 0;
    for (const auto& a : answers) {
      const std::string who = a.role == "data" ? "data:" + std::to_string(a.index) : a.role;
      if (a.error.ok()) {
        std::cout << who << " " << a.endpoint.ToString() << ": log level " << level << "\n";
      } else {
        std::cout << who << " " << a.endpoint.ToString() << ": " << a.error.ToString() << "\n";
        rc = 1;
      }
    }
    return rc;
  }

  auto answers = admin::AskStats(**device, cluster, timeout);
  int rc = 0;
  for (const auto& a : answers) rc |= a.error.ok() ? 0 : 1;
  if (stats->parsed()) {
    if (json) {
      std::cout << admin::StatsJson(answers).dump(2) << "\n";
    } else {
      std::cout << admin::StatsTable(answers);
    }
    return rc;
  }
  if (json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& a : answers) rows.push_back(admin::StatusRowJson(a));
    std::cout << nlohmann::json{{"version", 1}, {"servers", rows}}.dump(2) << "\n";
  } else {
    std::cout << admin::StatusHeader();
    for (const auto& a : answers) std::cout << admin::StatusRowText(a);
  }
  return rc;
}
