// dpmfs-data: the data server daemon. Serves one data pool to clients over the chosen
// transport until SIGTERM/SIGINT, then stops cleanly.
#include <optional>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>

#include "common/metrics_http.h"
#include "common/cli.h"
#include "common/cluster_file.h"
#include "common/cluster_key.h"
#include "common/fd_limit.h"
#include "common/service_notify.h"
#include "datapath/data_server.h"
#include "datapath/persist_method.h"
#include "transport/transport_flags.h"

using namespace dpmfs;

int main(int argc, char** argv) {
  CLI::App app{
      "dpmfs-data: a dpmfs data server. Opens a data pool made by 'mkfs.dpmfs data', registers\n"
      "its data area for one-sided RDMA READ/WRITE, and serves the persist methods that need\n"
      "the server (imm, rpc; flush on devices with RDMA FLUSH). Prints 'READY HOST:PORT' on\n"
      "stdout once it accepts clients; stops cleanly on SIGTERM or SIGINT.",
      "dpmfs-data"};
  CommonFlags common;
  AddCommonFlags(app, &common);
  datapath::DataServerOptions opts;
  std::string listen = "127.0.0.1:7100", transport_name = "soft", cluster;
  uint32_t index = 0;
  transport::DeviceOptions dev;
  std::string cluster_file;
  auto* pool_opt = app.add_option("--pool", opts.pool_path,
                                  "Path of the data pool file (or --cluster-file and --index)");
  auto* listen_opt =
      app.add_option("--listen", listen,
                     "Address to listen on, HOST:PORT (port 0: any free port). With "
                     "--cluster-file: the data line's address unless given")
          ->capture_default_str();
  auto* file_opt = app.add_option(
      "--cluster-file", cluster_file,
      "Serve data pool --index of this cluster file (mkfs.dpmfs --help describes it): the "
      "pool path and listen address come from its data line, the expected cluster UUID "
      "from its cluster_uuid line");
  file_opt->excludes(pool_opt);
  app.add_option("--transport", transport_name, "RDMA transport: soft (software NIC over TCP) "
                 "or verbs (rdma-core)")->capture_default_str();
  app.add_option("--drain-delay-us", dev.soft_drain_delay_us,
                 "soft transport: microseconds a WRITE stays in the volatile NIC buffer before "
                 "it reaches the pool (a kill -9 loses what is still there)")
      ->capture_default_str();
  app.add_option("--verbs-device", dev.verbs_device, "verbs transport: RDMA device name");
  auto* cluster_opt = app.add_option("--cluster", cluster,
                                     "Refuse the pool unless it belongs to this cluster UUID");
  auto* index_opt = app.add_option("--index", index, "Refuse the pool unless it has this index (with --cluster-file: the data line to serve)");
  std::string key_file;
  app.add_option("--key-file", key_file, kKeyFileHelp);
  bool no_auth = false;
  app.add_flag("--no-auth", no_auth,
               "INSECURE: serve any peer without proof of the cluster key (anyone who can reach "
               "the port can read and write the whole pool). Only to measure what "
               "authentication costs (dpmfs-bench persist --no-auth)");
  app.add_flag("--msync", opts.msync,
               "imm/rpc on a pool that is not real PM: msync each write (survives an OS crash) "
               "instead of relying on the page cache (survives a process crash)");
  datapath::DataServerLimits& lim = opts.limits;
  transport::AddConnectionLimitFlags(app, &lim.max_connections, &lim.max_connections_per_peer);
  app.add_option("--max-connection-buffer-bytes", lim.max_connection_buffer_bytes,
                 "Receive/reply/ring buffers one connection may ask for (rpc: queue depth x "
                 "(32 + I/O size)); a connect asking for more is refused")
      ->check(CLI::Range(uint64_t{64} << 10, uint64_t{1} << 34))
      ->capture_default_str();
  app.add_option("--max-buffer-bytes", lim.max_buffer_bytes,
                 "The same over all connections; connects beyond it are refused until "
                 "others leave")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 40))
      ->capture_default_str();
  std::optional<Endpoint> metrics_ep;
  metrics::AddMetricsListenFlag(app, &metrics_ep);
  transport::AddSoftLimitFlags(app, &dev);
  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;

  auto fail = [](const Status& st) {
    std::cerr << "dpmfs-data: error: " << st.ToString() << "\n";
    return 1;
  };
  if (*file_opt) {
    if (!*index_opt) {
      std::cerr << "dpmfs-data: --cluster-file needs --index N: which data line to serve\n";
      return 2;
    }
    auto cf = ParseClusterFile(cluster_file);
    if (!cf.ok()) return fail(cf.status());
    if (index >= cf->data.size()) {
      return fail(Status::InvalidArgument(
          "--index " + std::to_string(index) + ": " + cluster_file + " has data lines for "
          "indexes 0 to " + std::to_string(cf->data.size() - 1)));
    }
    const ClusterFile::Daemon& d = cf->data[index];
    opts.pool_path = d.pool_path;
    if (listen_opt->count() == 0) listen = d.endpoint.ToString();
    if (cf->cluster && !*cluster_opt) opts.expect.cluster = *cf->cluster;
  } else if (opts.pool_path.empty()) {
    std::cerr << "dpmfs-data: --pool PATH (or --cluster-file FILE --index N) is required\n"
              << "Run with --help for more information.\n";
    return 2;
  }
  auto ep = Endpoint::Parse(listen);
  if (!ep.ok()) return fail(ep.status());
  opts.listen = *ep;
  auto backend = transport::ParseBackend(transport_name);
  if (!backend.ok()) return fail(backend.status());
  dev.backend = *backend;
  if (no_auth) {
    spdlog::warn("--no-auth: peers are NOT authenticated; anyone reaching {} can read and "
                 "write the whole pool", listen);
  } else {
    auto key = LoadClusterKey(key_file, cluster_file);
    if (!key.ok()) return fail(key.status());
    dev.cluster_key = *key;
    // Session tokens travel in the authenticated handshake, which verbs does not run yet
    // (transport/README.md, "Authentication"): there a connection could never present one.
    if (dev.backend == transport::Backend::kSoft) {
      opts.token_key = *key;
    } else {
      spdlog::warn("verbs: session tokens are not checked yet (no authenticated handshake to "
                   "carry them); every client shares one registration of the data area");
    }
  }
  if (*cluster_opt) {
    auto uuid = pool::ClusterUuid::Parse(cluster);
    if (!uuid.ok()) return fail(uuid.status());
    opts.expect.cluster = *uuid;
  }
  if (*index_opt) opts.expect.index = index;

  // Block the stop signals before any thread starts, then wait for them synchronously.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // A descriptor per connection and per pending handshake, plus the daemon's own.
  const uint64_t fds_needed =
      uint64_t{lim.max_connections} + dev.soft_max_pending_handshakes + 64;
  auto nofile = RaiseOpenFileLimit(fds_needed);
  if (!nofile.ok()) return fail(nofile.status());
  if (*nofile < fds_needed) {
    spdlog::warn("open-file limit {} is below the {} that --max-connections {} needs; "
                 "connections beyond ~{} will fail to be accepted (raise ulimit -n)",
                 *nofile, fds_needed, lim.max_connections, *nofile - 64);
  }
  auto device = transport::OpenDevice(dev);
  if (!device.ok()) return fail(device.status());
  auto server = datapath::DataServer::Start(**device, opts);
  if (!server.ok()) return fail(server.status());
  auto metrics_http =
      metrics::ServeMetricsIfAsked(metrics_ep, [s = server->get()] { return s->Report(); });
  if (!metrics_http.ok()) return fail(metrics_http.status());
  ServiceReady((*server)->endpoint().ToString());

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {} received; stopping", sig);
  ServiceStopping();
  if (*metrics_http) (*metrics_http)->Stop();
  (*server)->Stop();
  auto st = (*server)->stats();
  spdlog::info("stopped: {} connections, {} imm writes, {} rpc writes, {} refused, {} bytes "
               "scrubbed, {} revoked at token expiry, {} failed authentications, {} connections "
               "refused by the rate limit",
               st.connections, st.imm_writes, st.rpc_writes, st.refused, st.zeroed_bytes, st.revoked,
               (*device)->auth_failures(), (*device)->auth_refused());
  return 0;
}
