#include "common/metrics_http.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "common/cli.h"
#include "common/stats_prometheus.h"

#include <thread>

namespace dpmfs::metrics {

struct MetricsHttpServer::Impl {
  httplib::Server server;
  std::thread thread;
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const Endpoint& listen, std::function<std::string()> render) {
  auto impl = std::make_unique<Impl>();
  // A scrape is one small page: two threads are plenty and bound what a flood costs.
  impl->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl->server.set_read_timeout(5, 0);
  impl->server.set_write_timeout(5, 0);
  impl->server.set_payload_max_length(4096);  // GETs only: no body worth reading
  impl->server.Get("/metrics", [render = std::move(render)](const httplib::Request&,
                                                           httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  int port = listen.port;
  if (port == 0) {
    port = impl->server.bind_to_any_port(listen.host);
    if (port < 0) port = 0;
  } else if (!impl->server.bind_to_port(listen.host, port)) {
    port = 0;
  }
  if (port == 0) {
    return Status::IOError("cannot listen for /metrics on " + listen.ToString() +
                           " (address in use or not this host's?)");
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer(std::move(impl)));
  s->endpoint_ = Endpoint{listen.host, static_cast<uint16_t>(port)};
  return s;
}

void MetricsHttpServer::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

Result<std::unique_ptr<MetricsHttpServer>> ServeMetricsIfAsked(
    const std::optional<Endpoint>& listen, std::function<StatsReport()> report) {
  if (!listen) return std::unique_ptr<MetricsHttpServer>();
  auto h = MetricsHttpServer::Start(
      *listen, [report = std::move(report)] { return RenderPrometheus(report()); });
  if (!h.ok()) return h.status();
  spdlog::info("serving /metrics on http://{}/metrics", (*h)->endpoint().ToString());
  return std::move(*h);
}

void AddMetricsListenFlag(CLI::App& app, std::optional<Endpoint>* listen) {
  AddEndpointOption(app, "--metrics-listen", listen,
                    "Serve GET /metrics there, the live stats in the Prometheus text "
                    "format (off by default). Not authenticated: bind it to loopback or "
                    "a monitoring network");
}

}  // namespace dpmfs::metrics
