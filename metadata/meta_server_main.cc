// dpmfs-meta: the metadata server daemon. Opens the metadata pool, recovers the
// namespace (checkpoint + journal replay), serves the metadata RPCs until SIGTERM or
// SIGINT, then writes a checkpoint and exits 0.
#include <optional>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "common/metrics_http.h"
#include "common/cli.h"
#include "common/cluster_file.h"
#include "common/cluster_key.h"
#include "datapath/session_token.h"
#include "common/fd_limit.h"
#include "common/service_notify.h"
#include "metadata/meta_ops.h"
#include "transport/transport_flags.h"
#include "transport/transport.h"
#include "metadata/meta_service.h"
#include "metadata/meta_store.h"
#include "rpc/rpc_server.h"

using namespace dpmfs;

int main(int argc, char** argv) {
  CLI::App app{
      "dpmfs-meta: the dpmfs metadata server. Opens a metadata pool made by 'mkfs.dpmfs meta'\n"
      "(or 'mkfs.dpmfs cluster'), recovers the namespace from its checkpoint and journal, and\n"
      "serves the metadata RPCs (lookup, create, rename, readdir, allocate, commit, ...) over\n"
      "the chosen transport. Every mutation is durable in the pool before it is answered.\n"
      "Prints 'READY HOST:PORT' on stdout once it accepts clients; on SIGTERM or SIGINT it\n"
      "writes a checkpoint and exits 0.",
      "dpmfs-meta"};
  CommonFlags common;
  AddCommonFlags(app, &common);
  std::string pool_path, listen = "127.0.0.1:7000", transport_name = "soft", cluster_file;
  std::vector<std::string> data;
  meta::MetaServiceOptions opts;
  uint32_t workers = 4;
  bool inline_handlers = true;
  bool msync = false;
  transport::DeviceOptions dev;
  auto* pool_opt = app.add_option("--pool", pool_path,
                                  "Path of the metadata pool file (default with "
                                  "--cluster-file: the file's meta line)");
  auto* listen_opt =
      app.add_option("--listen", listen,
                     "Address to listen on, HOST:PORT (port 0: any free port; default with "
                     "--cluster-file: the file's meta line)")
          ->capture_default_str();
  auto* data_opt = app.add_option(
      "--data", data,
      "A data server's address HOST:PORT, handed to clients; repeat once per data pool, in "
      "pool index order");
  auto* file_opt = app.add_option("--cluster-file", cluster_file,
                                  "Take everything from this cluster file: the pool and "
                                  "listen address from its meta line (unless --pool/--listen "
                                  "are given), the data servers' addresses from its data "
                                  "lines (instead of --data), the cluster UUID to expect");
  data_opt->excludes(file_opt);
  std::string key_file;
  app.add_option("--key-file", key_file, kKeyFileHelp);
  app.add_option("--transport", transport_name,
                 "RDMA transport: soft (software NIC over TCP) or verbs (rdma-core)")
      ->capture_default_str();
  app.add_option("--verbs-device", dev.verbs_device, "verbs transport: RDMA device name");
  app.add_option("--workers", workers, "RPC worker threads")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--inline-handlers", inline_handlers,
                 "Run requests on each connection's receive thread (true: one wake-up less "
                 "per request, measured ~2x stat/s on 2 cores) or on the --workers pool (false: "
                 "a connection's requests run concurrently)")
      ->capture_default_str();
  app.add_option("--probe-ms", opts.probe_period_ms,
                 "How often each data server is probed (two failures in a row take it out "
                 "of the write set; docs/replication.md). 0: --lease-ms / 3");
  app.add_option("--lease-ms", opts.lease_ms,
                 "Client lease: a client silent this long loses its session and open files")
      ->check(CLI::Range(100u, 3600000u))
      ->capture_default_str();
  app.add_option("--free-quarantine-ms", opts.free_quarantine_ms,
                 "Freed data blocks are not reused for this long, and nothing is allocated "
                 "for this long after a start, because clients may still write them through "
                 "cached layouts (valid 1 s). Keep it above 1000 plus the write latency and "
                 "well below --lease-ms. 0: reuse at once (tests only)")
      ->check(CLI::Range(0u, 600000u))
      ->capture_default_str();
  bool no_scrub = false;
  app.add_flag("--no-scrub", no_scrub,
               "Only to test the metadata server without data servers: do not zero freed "
               "blocks (and cut file tails) on the data servers before reuse. Files then "
               "show old bytes of freed blocks, and two clients extending one file can "
               "lose each other's writes");
  meta::CallerPolicyOptions callers;
  std::vector<std::string> allow_uids;
  app.add_flag("--root-squash", callers.root_squash,
               "Map uid 0 of every client (and gid / group 0) to nobody (65534), as NFS's "
               "root_squash: root on a client host gets only what others get");
  app.add_option("--allow-uids", allow_uids,
                 "HOST=LO-HI[,LO-HI...]: the uids the client host HOST (its address as it "
                 "connects, e.g. 10.0.0.7) may act for; requests for any other uid get "
                 "EPERM. One option per host; hosts not named are not restricted; nobody "
                 "(65534) is always allowed. Applied after --root-squash");
  app.add_flag("--msync", msync,
               "On a pool that is not real PM: msync every journal append (survives an OS "
               "crash) instead of relying on the page cache (survives a process crash)");
  rpc::RpcServerOptions ro;
  transport::AddConnectionLimitFlags(app, &ro.max_connections, &ro.max_connections_per_peer);
  app.add_option("--max-buffer-bytes", ro.max_buffer_bytes,
                 "Receive and reply buffers of all connections together (each connection "
                 "holds 72 x 256 KiB, committed only as messages touch them); connects beyond "
                 "it are refused until others leave")
      ->check(CLI::Range(uint64_t{32} << 20, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--reply-cache-bytes", ro.reply_cache_bytes_per_session,
                 "Bytes of mutation replies kept per session for at-most-once (reads keep none)")
      ->check(CLI::Range(uint64_t{64} << 10, uint64_t{1} << 30))
      ->capture_default_str();
  uint32_t idle_timeout_ms = 0, linger_ms = 0;
  app.add_option("--idle-timeout-ms", idle_timeout_ms,
                 "Close a connection that sent no request (not even a heartbeat) this long; "
                 "0: 3 x --lease-ms")
      ->check(CLI::Range(0u, 86400000u));
  app.add_option("--session-linger-ms", linger_ms,
                 "Drop the reply cache of a session with no connection this long; 0: 2 x "
                 "--lease-ms")
      ->check(CLI::Range(0u, 86400000u));
  std::optional<Endpoint> metrics_ep;
  metrics::AddMetricsListenFlag(app, &metrics_ep);
  transport::AddSoftLimitFlags(app, &dev);
  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;
  ro.idle_timeout_ms = idle_timeout_ms != 0 ? idle_timeout_ms : 3 * opts.lease_ms;
  ro.session_linger_ms = linger_ms != 0 ? linger_ms : 2 * opts.lease_ms;
  // Reads and heartbeats are idempotent: re-sent, they run again, and keep no cache.
  ro.at_most_once = [](uint16_t op) {
    return meta::IsJournaled(static_cast<meta::Opcode>(op));
  };

  auto fail = [](const Status& st) {
    std::cerr << "dpmfs-meta: error: " << st.ToString() << "\n";
    return 1;
  };
  pool::OpenExpectations expect;
  expect.role = pool::Role::kMetadata;
  if (!cluster_file.empty()) {
    auto cf = ParseClusterFile(cluster_file);
    if (!cf.ok()) return fail(cf.status());
    for (const auto& d : cf->data) data.push_back(d.endpoint.ToString());
    if (pool_opt->count() == 0) pool_path = cf->meta.pool_path;
    if (listen_opt->count() == 0) listen = cf->meta.endpoint.ToString();
    if (cf->cluster) expect.cluster = *cf->cluster;
  } else if (pool_path.empty()) {
    std::cerr << "dpmfs-meta: --pool PATH (or --cluster-file FILE) is required\n"
              << "Run with --help for more information.\n";
    return 2;
  }
  auto ep = Endpoint::Parse(listen);
  if (!ep.ok()) return fail(ep.status());
  auto backend = transport::ParseBackend(transport_name);
  if (!backend.ok()) return fail(backend.status());
  dev.backend = *backend;
  auto key = LoadClusterKey(key_file, cluster_file);
  if (!key.ok()) return fail(key.status());
  dev.cluster_key = *key;
  if (data.empty()) {
    return fail(Status::InvalidArgument(
        "no data servers: pass --data HOST:PORT once per data pool, or --cluster-file"));
  }
  for (const std::string& d : data) {
    auto dep = Endpoint::Parse(d);
    if (!dep.ok()) return fail(dep.status().WithContext("--data " + d));
  }
  opts.data_endpoints = data;
  for (const std::string& spec : allow_uids) {
    auto parsed = meta::ParseAllowUids(spec);
    if (!parsed.ok()) return fail(parsed.status());
    callers.allow_uids.push_back(std::move(*parsed));
  }
  auto policy = meta::CallerPolicy::Create(std::move(callers));
  if (!policy.ok()) return fail(policy.status());
  opts.caller_policy = std::move(*policy);
  if (opts.free_quarantine_ms >= opts.lease_ms) {
    // An allocation waiting for quarantined space holds its connection (and with inline
    // handlers that client's heartbeats) for up to a quarantine.
    spdlog::warn(
        "--free-quarantine-ms {} is not below --lease-ms {}: a client waiting for "
        "quarantined space may lose its lease",
        opts.free_quarantine_ms, opts.lease_ms);
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto store = meta::MetaStore::Open(pool_path, expect, msync);
  if (!store.ok()) return fail(store.status().WithContext("opening " + pool_path));
  const uint64_t fds_needed = uint64_t{ro.max_connections} + dev.soft_max_pending_handshakes +
                              64 + 4 * data.size();
  auto nofile = RaiseOpenFileLimit(fds_needed);
  if (!nofile.ok()) return fail(nofile.status());
  if (*nofile < fds_needed) {
    spdlog::warn("open-file limit {} is below the {} that --max-connections {} needs (raise "
                 "ulimit -n)",
                 *nofile, fds_needed, ro.max_connections);
  }
  auto device = transport::OpenDevice(dev);
  if (!device.ok()) return fail(device.status());
  // Freed blocks are zeroed on their data servers before they are reused (and so are
  // truncated tails): clients never zero bytes they were not asked to write.
  std::vector<meta::DataServerZeroer::Server> zero_targets;
  const auto& pools = (*store)->superblock().data_pools;
  for (size_t i = 0; i < pools.size() && i < data.size(); ++i) {
    zero_targets.push_back(
        {*Endpoint::Parse(data[i]), pools[i].index, pools[i].block_size, pools[i].data_size});
  }
  opts.token_key = *key;
  // The metadata server's own connections to data servers (zeroer, probes, resync)
  // vouch for themselves with the key.
  auto own_token =
      datapath::SessionTokenSource::SelfIssued(*key, "dpmfs-meta", datapath::kSelfIssuedTokenLifetime);
  meta::DataServerZeroer zeroer(**device, (*store)->pool_info().cluster.bytes,
                                std::move(zero_targets), own_token);
  if (!no_scrub) opts.zeroer = &zeroer;
  // Health probes and resync (docs/replication.md), on connections of their own.
  std::vector<Endpoint> access_endpoints;
  std::vector<datapath::DataServerIdentity> access_expect;
  for (size_t i = 0; i < pools.size() && i < data.size(); ++i) {
    access_endpoints.push_back(*Endpoint::Parse(data[i]));
    access_expect.push_back({(*store)->pool_info().cluster.bytes, pools[i].index,
                             pools[i].block_size, pools[i].data_size});
  }
  meta::TransferDataServerAccess data_access(**device, std::move(access_endpoints),
                                             std::move(access_expect), own_token);
  if (!no_scrub) opts.data_access = &data_access;
  // Printed (PROGRESS lines) and told to systemd, so a long replay is waited for.
  opts.recovery_progress = [](std::string_view what) { ServiceProgress(what); };
  meta::RecoveryStats rs;
  auto service = meta::MetaService::Open(std::move(*store), opts, &rs);
  if (!service.ok()) return fail(service.status().WithContext("recovering " + pool_path));
  spdlog::info(
      "recovered {}: checkpoint {} bytes through LSN {}, {} journal records replayed{}, "
      "{:.3f} s",
      pool_path, rs.checkpoint_bytes, rs.checkpoint_lsn, rs.records_replayed,
      rs.dropped_torn_tail ? " (an unacknowledged torn record dropped)" : "", rs.seconds);

  ro.listen = *ep;
  ro.worker_threads = workers;
  ro.inline_handlers = inline_handlers;
  ro.max_message = meta::kMetaMaxMessage;
  auto server = rpc::RpcServer::Start(**device, ro, (*service)->Handlers());
  if (!server.ok()) return fail(server.status().WithContext("listening on " + listen));
  (*service)->AttachRpcServer(server->get());
  (*service)->Start();
  auto metrics_http =
      metrics::ServeMetricsIfAsked(metrics_ep, [s = service->get()] { return s->Report(); });
  if (!metrics_http.ok()) return fail(metrics_http.status());
  ServiceReady((*server)->endpoint().ToString());

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {} received; stopping", sig);
  ServiceStopping();
  if (*metrics_http) (*metrics_http)->Stop();
  (*server)->Stop();
  Status st = (*service)->Stop();
  auto ss = (*service)->stats();
  spdlog::info(
      "stopped: {} mutations, {} reads, {} retries answered from the durable reply "
      "cache, {} checkpoints, {} sessions expired",
      ss.mutations, ss.reads, ss.durable_cache_hits, ss.checkpoints, ss.expired_sessions);
  if (!st.ok()) return fail(st.WithContext("final checkpoint"));
  return 0;
}
