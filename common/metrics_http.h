// The optional /metrics endpoint of a daemon (`--metrics-listen ADDR:PORT`): an HTTP
// server (cpp-httplib, Debian's libcpp-httplib-dev) answering GET /metrics with the
// Prometheus text format of the daemon's live stats (stats_prometheus.h). Off unless
// asked for. It serves only that page, read-only; it is not authenticated, so bind it
// to an address only the monitoring network reaches (docs/monitoring.md).
//
// Thread-safety: Start/Stop from the owning thread; `render` is called on the HTTP
// server's threads, concurrently with everything else.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common/endpoint.h"
#include "common/stats_report.h"
#include "common/status.h"

namespace dpmfs::metrics {

class MetricsHttpServer {
 public:
  // Binds `listen` (port 0: any free one, see endpoint()) and serves in the background.
  // IOError naming the address when it cannot bind.
  static Result<std::unique_ptr<MetricsHttpServer>> Start(const Endpoint& listen,
                                                          std::function<std::string()> render);
  ~MetricsHttpServer();  // Stop()
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  Endpoint endpoint() const { return endpoint_; }
  void Stop();

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  Endpoint endpoint_;
};

// What a daemon does with that flag: nothing when it was not given (null), else serves
// `report`'s stats as Prometheus text on it and logs where. IOError when it cannot bind.
Result<std::unique_ptr<MetricsHttpServer>> ServeMetricsIfAsked(
    const std::optional<Endpoint>& listen, std::function<StatsReport()> report);

// The daemons' `--metrics-listen ADDR:PORT` flag (off unless given), one help text for all.
void AddMetricsListenFlag(CLI::App& app, std::optional<Endpoint>* listen);

}  // namespace dpmfs::metrics
