// dpmfs-mount: mounts a dpmfs file system with FUSE.
//
//   dpmfs-mount MDS_HOST:PORT MOUNTPOINT [-f] [-d] [-s] [-o opts]
//
// Order of events, so that failures are clear and nothing hangs:
//   1. parse the command line (usage errors: exit 2);
//   2. without -f, fork: the parent waits until the child reports the mount ready (exit
//      0) or failed (exit 1, the child printed why). The child does everything below,
//      so the threads the RPC and transport layers start live in the process that
//      serves the mount (threads do not survive a fork);
//   3. connect to the metadata server (fails within the connect timeout, naming the
//      address), learn the cluster, check the data servers;
//   4. create the FUSE session and mount; then detach (setsid, stdio to /dev/null
//      except a stderr redirected to a file, so `2>log` keeps the logs);
//   5. serve requests on the multithreaded loop until unmounted or signalled.
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/cluster_key.h"
#include "common/logging.h"
#include "common/stats_report.h"
#include "datapath/transfer.h"
#include "fs/file_io.h"
#include "fs/client_metrics.h"
#include "fs/fuse_ops.h"
#include "fs/mount_options.h"
#include "fs/session_loop.h"
#include "metadata/meta_client.h"

using namespace dpmfs;

namespace {

constexpr const char* kProgram = "dpmfs-mount";

int Fail(const std::string& message) {
  std::cerr << kProgram << ": error: " << message << "\n";
  return 1;
}

// The child's report to the waiting parent: one byte, 0 = mounted.
void Report(int fd, uint8_t status) {
  if (fd < 0) return;
  ssize_t n;
  do {
    n = ::write(fd, &status, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
}

// Runs in the parent of a backgrounded mount: exits with the child's verdict.
int WaitForChild(int fd) {
  uint8_t status = 1;
  ssize_t n;
  do {
    n = ::read(fd, &status, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    std::cerr << kProgram << ": error: the mount process exited before the mount was ready\n";
    return 1;
  }
  return status;
}

void Detach() {
  (void)::chdir("/");
  int null = ::open("/dev/null", O_RDWR);
  if (null < 0) return;
  ::dup2(null, STDIN_FILENO);
  ::dup2(null, STDOUT_FILENO);
  // Keep a stderr redirected to a file (`2>mount.log`). A terminal goes away with the
  // session, and a pipe would keep whoever reads it (a launcher capturing output)
  // waiting for an EOF that only comes at unmount.
  struct stat st;
  if (::fstat(STDERR_FILENO, &st) != 0 || !S_ISREG(st.st_mode)) ::dup2(null, STDERR_FILENO);
  if (null > STDERR_FILENO) ::close(null);
}

// Everything after the fork. `report_fd` is the pipe to the parent (-1 in foreground).
int Serve(const fs::MountOptions& opts, int report_fd) {
  auto fail = [&](const std::string& message) {
    int rc = Fail(message);
    Report(report_fd, 1);
    return rc;
  };
  if (!opts.log.empty() && opts.log[0] == '/') {
    if (Status st = LogToFile(kProgram, opts.log); !st.ok()) return fail(st.message());
  } else if (opts.log == "syslog" && report_fd < 0) {
    LogToSyslog(kProgram);
  }
  auto endpoint = Endpoint::Parse(opts.meta_server);
  if (!endpoint.ok()) {
    return fail("metadata server address '" + opts.meta_server +
                "': " + endpoint.status().message());
  }
  transport::DeviceOptions dev_opts;
  dev_opts.backend = opts.transport;
  auto key = LoadClusterKey(opts.key_file, /*cluster_file=*/"");
  if (!key.ok()) return fail(key.status().ToString());
  dev_opts.cluster_key = *key;
  auto device = transport::OpenDevice(dev_opts);
  if (!device.ok()) return fail(device.status().ToString());

  meta::MetaClientOptions mopts;
  char host[256] = {};
  (void)::gethostname(host, sizeof host - 1);
  mopts.client_name = std::string(host) + ":" + std::to_string(::getpid()) + " " + opts.mountpoint;
  // The session tokens the metadata server issues at each lease renewal, presented to
  // the data servers by every new connection (docs/security.md, "Tokens").
  auto data_token = std::make_shared<datapath::SessionTokenSource>();
  mopts.on_data_token = [data_token](std::vector<uint8_t> bytes) {
    Status st = data_token->Set(std::move(bytes));
    if (!st.ok()) spdlog::warn("ignoring a session token from the metadata server: {}", st.ToString());
  };
  // This mount's metrics reach `dpmfs stats` through the metadata server, with each
  // heartbeat (docs/monitoring.md): no port of its own to open, find or secure.
  mopts.stats_report = [name = mopts.client_name] {
    return metrics::EncodeStatsReport(fs::ClientMetrics::Get().Report(name));
  };
  auto meta_client = meta::MetaClient::Connect(**device, *endpoint, mopts);
  if (!meta_client.ok() && meta_client.status().code() == StatusCode::kResourceExhausted) {
    // A local limit (verbs: the connection's buffers cannot be pinned under
    // RLIMIT_MEMLOCK), not the server: asking whether dpmfs-meta runs would mislead.
    return fail("cannot set up the connection to the metadata server at " + opts.meta_server +
                " on this host: " + meta_client.status().message());
  }
  if (!meta_client.ok()) {
    return fail("cannot reach the metadata server at " + opts.meta_server + ": " +
                meta_client.status().message() +
                " (is dpmfs-meta running there? `dpmfs status` shows a local cluster)");
  }
  // Everything below holds the service's interface, not the concrete client: a router
  // over several metadata servers would be made here instead.
  meta::MetaApi& mc = **meta_client;
  const meta::ClusterInfo& cluster = mc.cluster();
  if (cluster.servers.empty() || cluster.block_size == 0 || cluster.stripe_unit == 0 ||
      cluster.stripe_unit % cluster.block_size != 0) {
    return fail("the metadata server at " + opts.meta_server + " described an unusable cluster (" +
                std::to_string(cluster.servers.size()) + " data servers, block size " +
                std::to_string(cluster.block_size) + ", stripe unit " +
                std::to_string(cluster.stripe_unit) + ")");
  }
  std::vector<Endpoint> data_endpoints;
  for (const auto& s : cluster.servers) {
    auto ep = Endpoint::Parse(s.endpoint);
    if (!ep.ok()) {
      return fail("data server " + std::to_string(s.index) + " has a bad address '" + s.endpoint +
                  "': " + ep.status().message());
    }
    data_endpoints.push_back(*ep);
  }
  datapath::DataTransferOptions popts;
  popts.client.method = opts.persist;
  popts.client.queue_depth = 2;
  popts.client.max_io_size = 1u << 20;
  popts.client.timeout = std::chrono::seconds(5);
  popts.client.token = data_token;
  popts.max_idle_per_server = opts.max_threads + 2;
  // Each data server must be the pool the metadata server's records name (issue 18).
  for (const auto& s : cluster.servers) {
    popts.expect.push_back({cluster.cluster_uuid, s.index, cluster.block_size, s.data_size});
  }
  auto pool = std::make_unique<datapath::DataTransfer>(**device, data_endpoints, popts);
  // Probe each data server once: a persist method the device cannot do is fatal now
  // rather than an EIO on every write; an unreachable server is only a warning (it
  // may be starting, and its files fail with EIO until it is up).
  for (uint32_t i = 0; i < data_endpoints.size(); ++i) {
    Status probe = pool->Probe(i);
    if (probe.ok()) continue;
    if (probe.message().find("flush persist method") != std::string::npos ||
        probe.code() == StatusCode::kInvalidArgument ||
        probe.code() == StatusCode::kFailedPrecondition) {  // another pool than recorded
      return fail(probe.message());
    }
    spdlog::warn("{} (its files will fail with EIO until it is reachable)", probe.message());
  }

  fs::MetaExtentService extents(mc);
  fs::FileIo io(extents, *pool, cluster);
  fs::Filesystem filesystem(mc, io, opts);

  std::vector<std::string> fuse_argv_storage = {kProgram};
  if (!opts.fuse_options.empty()) {
    std::string joined;
    for (const auto& o : opts.fuse_options) {
      if (!joined.empty()) joined += ',';
      for (char c : o) {
        if (c == ',' || c == '\\') joined += '\\';  // libfuse's option list escaping
        joined += c;
      }
    }
    fuse_argv_storage.push_back("-o");
    fuse_argv_storage.push_back(joined);
  }
  if (opts.debug) fuse_argv_storage.push_back("-d");
  std::vector<char*> fuse_argv;
  for (auto& a : fuse_argv_storage) fuse_argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fuse_argv.size()), fuse_argv.data());
  fuse_session* se =
      fuse_session_new(&args, &fs::Filesystem::Ops(), sizeof(fuse_lowlevel_ops), &filesystem);
  if (se == nullptr) {
    return fail("libfuse refused the mount options (see its message above): " +
                fuse_argv_storage.back());
  }
  filesystem.set_session(se);
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return fail("cannot install signal handlers");
  }
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return fail("cannot mount at " + opts.mountpoint +
                " (see libfuse's message above; is /dev/fuse there and the directory not "
                "already a mount point?)");
  }
  if (!datapath::IsDurable(opts.persist)) {
    spdlog::warn("persist=none: writes are acknowledged by the NIC, NOT made durable on the "
                 "data servers (for comparison only)");
  }
  spdlog::info(
      "mounted dpmfs from {} at {} ({} data servers, {} cop{} of each block, block {} B, "
      "stripe unit {} B, persist {}, transport {})",
      opts.meta_server, opts.mountpoint, cluster.servers.size(), cluster.replicas,
      cluster.replicas == 1 ? "y" : "ies", cluster.block_size, cluster.stripe_unit, datapath::PersistMethodName(opts.persist),
      transport::BackendName(opts.transport));
  if (report_fd >= 0) {
    // Whether stderr is a file decides the default log target: check before Detach
    // points it at /dev/null.
    struct stat err_st {};
    const bool stderr_is_file = ::fstat(STDERR_FILENO, &err_st) == 0 && S_ISREG(err_st.st_mode);
    Detach();
    // A detached mount (mount(8), fstab) has no terminal: its warnings and errors would be
    // lost, so they go to syslog unless told otherwise or stderr is a file.
    if (opts.log == "syslog" || (opts.log.empty() && !stderr_is_file)) {
      LogToSyslog(kProgram);
      spdlog::info("mounted dpmfs from {} at {}; logging to syslog", opts.meta_server,
                   opts.mountpoint);
    }
    Report(report_fd, 0);
  }

  fs::SessionLoopOptions loop;
  loop.max_threads = opts.single_thread ? 1 : opts.max_threads;
  loop.poll = std::chrono::microseconds(opts.poll_us);
  int rc = fs::RunSessionLoop(se, loop);
  filesystem.EndSession();
  // The handles closed last are still queued for a batched release, which goes through
  // the metadata client: sent now, while it exists (below it is destroyed before
  // `filesystem`, whose batcher would otherwise flush into a freed client at exit).
  filesystem.releases().Flush();
  if (uint64_t late = filesystem.invalidator().late_drops(); late > 0) {
    spdlog::info("{} page-cache drops after direct writes took longer than their wait", late);
  }
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  spdlog::info("unmounted {}", opts.mountpoint);
  // Connections first, then the session (unregisters), then the device.
  pool.reset();
  meta_client->reset();
  device->reset();
  return rc < 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = fs::ParseMountArgs(argc, argv);
  if (!parsed.ok()) {
    std::cerr << kProgram << ": " << parsed.status().message() << "\n"
              << "Try '" << kProgram << " --help'.\n";
    return 2;
  }
  const fs::MountOptions& opts = *parsed;
  if (opts.show_help) {
    std::cout << fs::MountUsage(kProgram);
    return 0;
  }
  if (opts.show_version) {
    std::cout << kProgram << ": " << VersionText() << " (libfuse " << fuse_pkgversion() << ")\n";
    return 0;
  }
  if (Status st = InitLogging(kProgram, opts.log_level); !st.ok()) {
    std::cerr << kProgram << ": " << st.message() << "\n";
    return 2;
  }
  struct stat st;
  if (::stat(opts.mountpoint.c_str(), &st) != 0) {
    return Fail("mount point " + opts.mountpoint + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return Fail("mount point " + opts.mountpoint + " is not a directory");
  if (auto ep = Endpoint::Parse(opts.meta_server); !ep.ok()) {
    std::cerr << kProgram << ": metadata server address '" << opts.meta_server
              << "': " << ep.status().message() << "\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  if (opts.foreground) return Serve(opts, -1);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Fail(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) return Fail(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) {
    ::close(fds[1]);
    return WaitForChild(fds[0]);
  }
  ::close(fds[0]);
  ::setsid();
  return Serve(opts, fds[1]);
}
