// dpmfs-powerloss: the crash test of the persist methods. Streams numbered, checksummed
// writes to a dpmfs-data daemon (soft transport), kill -9s it at a random moment while
// writes stream (the power loss: what sat in the soft NIC's volatile buffer is gone),
// restarts it on the same pool and checks that every acknowledged write survived.
// See tools/powerloss/README.md.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/cluster_key.h"
#include "common/cli.h"
#include "common/pool.h"
#include "datapath/data_protocol.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"
#include "tools/powerloss/powerloss.h"
#include "tools/powerloss/record.h"

#ifndef DPMFS_DATA_BIN
#define DPMFS_DATA_BIN ""
#endif

namespace dpmfs::powerloss {
namespace {

// Exit statuses (README.md).
constexpr int kExitPass = 0;
constexpr int kExitFail = 1;  // the verdict: data lost (or, with --expect-loss, none lost)
constexpr int kExitUsage = 2;
constexpr int kExitError = 3;  // the experiment could not be carried out

struct Flags {
  std::string data_bin = DPMFS_DATA_BIN;
  std::string pool;
  std::string pool_size = "64M";
  std::string tmp_dir = "/dev/shm";
  std::vector<std::string> methods = {"read"};
  uint32_t queue_depth = 8;
  uint32_t record_size = 256;
  uint32_t trials = 50;
  uint64_t seed = 1;
  uint32_t kill_min_ms = 20;
  uint32_t kill_max_ms = 150;
  uint32_t drain_delay_us = 0;  // only passed on when given
  bool expect_loss = false;
  std::string json;
  uint32_t io_timeout_ms = 5000;
  uint32_t start_timeout_ms = 10000;
  bool keep = false;
};

// The run's scratch directory (pool unless --pool, daemon logs): removed on every exit
// path unless --keep.
class ScratchDir {
 public:
  static Result<ScratchDir> Create(const std::string& parent, bool keep) {
    std::string templ = parent + "/dpmfs-powerloss-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      return Status::FromErrno(errno, "creating a scratch directory under " + parent);
    }
    return ScratchDir(templ, keep);
  }
  ScratchDir(ScratchDir&& o) noexcept : path_(std::move(o.path_)), keep_(o.keep_) {
    o.path_.clear();
  }
  ScratchDir(const ScratchDir&) = delete;
  ~ScratchDir() {
    if (path_.empty()) return;
    if (keep_) {
      spdlog::info("kept {}", path_);
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (ec) spdlog::warn("could not remove {}: {}", path_, ec.message());
  }
  const std::string& path() const { return path_; }

 private:
  ScratchDir(std::string path, bool keep) : path_(std::move(path)), keep_(keep) {}
  std::string path_;
  bool keep_;
};

bool Passed(const MethodStats& s, uint32_t trials_wanted, bool expect_loss) {
  if (s.trials != trials_wanted) return false;
  if (expect_loss) return s.lost > 0;
  // At least one acknowledged write per trial on average: a run that acknowledged
  // nothing proves nothing.
  return s.lost == 0 && s.acked >= s.trials;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

void PrintSummary(const Flags& f, const std::optional<uint32_t>& drain,
                  const std::vector<MethodStats>& all, const std::vector<bool>& passed) {
  std::printf("dpmfs-powerloss: seed %" PRIu64
              ", queue depth %u, %u-byte records, kill %u-%u ms "
              "after the first write, drain delay %s, expecting %s\n",
              f.seed, f.queue_depth, f.record_size, f.kill_min_ms, f.kill_max_ms,
              drain ? (std::to_string(*drain) + " us").c_str() : "(server default)",
              f.expect_loss ? "loss" : "no loss");
  std::printf("%-7s %6s %10s %10s %9s %8s %9s %8s %10s %8s %7s  %s\n", "method", "trials",
              "submitted", "acked", "ack>kill", "unacked", "unack-ok", "lost", "loss-trials",
              "kill-ms", "time-s", "verdict");
  for (size_t i = 0; i < all.size(); ++i) {
    const MethodStats& s = all[i];
    std::printf("%-7s %6u %10" PRIu64 " %10" PRIu64 " %9" PRIu64 " %8" PRIu64 " %9" PRIu64
                " %8" PRIu64 " %10u %8.1f %7.1f  %s\n",
                std::string(datapath::PersistMethodName(s.method)).c_str(), s.trials, s.submitted,
                s.acked, s.acked_after_kill, s.unacked, s.unacked_present, s.lost,
                s.trials_with_loss, s.trials ? s.kill_ms_sum / s.trials : 0.0, s.seconds,
                passed[i] ? "PASS" : "FAIL");
  }
  std::fflush(stdout);
}

Status WriteJson(const std::string& path, const Flags& f, const std::optional<uint32_t>& drain,
                 const std::vector<MethodStats>& all, const std::vector<bool>& passed,
                 const Status& error, int exit_code) {
  std::ostringstream j;
  j << "{\n  \"tool\": \"dpmfs-powerloss\",\n  \"seed\": " << f.seed
    << ",\n  \"queue_depth\": " << f.queue_depth << ",\n  \"record_size\": " << f.record_size
    << ",\n  \"trials_per_method\": " << f.trials << ",\n  \"kill_min_ms\": " << f.kill_min_ms
    << ",\n  \"kill_max_ms\": " << f.kill_max_ms
    << ",\n  \"drain_delay_us\": " << (drain ? std::to_string(*drain) : "null")
    << ",\n  \"expect_loss\": " << (f.expect_loss ? "true" : "false") << ",\n  \"methods\": [";
  for (size_t i = 0; i < all.size(); ++i) {
    const MethodStats& s = all[i];
    j << (i ? "," : "")
      << "\n    {\"method\": " << JsonString(std::string(datapath::PersistMethodName(s.method)))
      << ", \"trials\": " << s.trials << ", \"submitted\": " << s.submitted
      << ", \"acked\": " << s.acked << ", \"acked_after_kill\": " << s.acked_after_kill
      << ", \"unacked\": " << s.unacked << ", \"unacked_present\": " << s.unacked_present
      << ", \"lost\": " << s.lost << ", \"trials_with_loss\": " << s.trials_with_loss
      << ", \"stalled_trials\": " << s.stalled_trials
      << ", \"avg_kill_ms\": " << (s.trials ? s.kill_ms_sum / s.trials : 0.0)
      << ", \"seconds\": " << s.seconds << ", \"verdict\": \"" << (passed[i] ? "pass" : "fail")
      << "\",\n     \"losses\": [";
    for (size_t k = 0; k < s.losses.size(); ++k) {
      const Loss& l = s.losses[k];
      j << (k ? "," : "") << "\n       {\"trial\": " << l.trial << ", \"trial_id\": " << l.trial_id
        << ", \"seq\": " << l.seq << ", \"position\": " << l.position
        << ", \"ack_us_relative_to_kill\": " << l.ack_us_relative_to_kill
        << ", \"acked_in_trial\": " << l.acked_in_trial
        << ", \"acked_with_higher_seq\": " << l.acked_with_higher_seq
        << ", \"found\": " << JsonString(l.found) << ", \"detail\": " << JsonString(l.detail)
        << "}";
    }
    j << (s.losses.empty() ? "]}" : "\n     ]}");
  }
  j << "\n  ],\n  \"error\": " << (error.ok() ? "null" : JsonString(error.ToString()))
    << ",\n  \"exit_code\": " << exit_code << "\n}\n";
  std::ofstream out(path, std::ios::trunc);
  out << j.str();
  out.close();
  if (!out) return Status::IOError("could not write " + path);
  return Status::OK();
}

int Run(int argc, char** argv) {
  CLI::App app{
      "dpmfs-powerloss: crash test of the persist methods. Streams numbered, CRC-checked\n"
      "writes to a dpmfs-data daemon (soft transport), kill -9s it at a random moment while\n"
      "writes stream -- the power loss: what sat in the soft NIC's volatile buffer is gone --\n"
      "restarts it on the same pool and reads every acknowledged write back.\n"
      "Exit status: 0 verdict passed (no acknowledged write lost and >= 1 acknowledged write\n"
      "per trial on average; with --expect-loss: some acknowledged write lost), 1 verdict\n"
      "failed, 2 usage error, 3 the experiment could not be carried out.",
      "dpmfs-powerloss"};
  CommonFlags common;
  AddCommonFlags(app, &common);
  Flags f;
  app.add_option("--data-bin", f.data_bin, "The dpmfs-data executable")->capture_default_str();
  app.add_option("--pool", f.pool,
                 "Use this existing data pool (default: format a fresh one in the scratch "
                 "directory, removed at the end)");
  app.add_option("--pool-size", f.pool_size, "Size of the fresh pool")->capture_default_str();
  app.add_option("--tmp-dir", f.tmp_dir,
                 "Where the scratch directory (fresh pool, daemon logs) is made")
      ->capture_default_str();
  app.add_option("--method", f.methods,
                 std::string("Persist method(s), a comma-separated list; each runs --trials "
                             "trials:\n") +
                     std::string(datapath::PersistMethodHelp()))
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--qd", f.queue_depth, "Writes in flight at once")
      ->check(CLI::Range(1u, datapath::kMaxQueueDepth))
      ->capture_default_str();
  app.add_option("--record-size", f.record_size, "Bytes per record (64..4096)")
      ->check(CLI::Range(kMinRecordSize, kMaxRecordSize))
      ->capture_default_str();
  app.add_option("--trials", f.trials, "Trials (power losses) per method")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  app.add_option("--seed", f.seed, "Seed of kill times, trial ids and payloads")
      ->capture_default_str();
  app.add_option("--kill-min-ms", f.kill_min_ms, "Earliest kill, in ms after a trial's first write")
      ->capture_default_str();
  app.add_option("--kill-max-ms", f.kill_max_ms, "Latest kill, in ms after a trial's first write")
      ->capture_default_str();
  auto* drain_opt = app.add_option(
      "--drain-delay-us", f.drain_delay_us,
      "Passed to dpmfs-data: microseconds a WRITE sits in the soft NIC's volatile buffer "
      "(default: the daemon's). Larger makes `none` lose data more surely");
  app.add_flag("--expect-loss", f.expect_loss,
               "Pass only if some acknowledged write was lost (for `none`: proves the test "
               "can fail)");
  app.add_option("--json", f.json, "Also write the results as JSON to this file");
  app.add_option("--io-timeout-ms", f.io_timeout_ms,
                 "Timeout of connecting, of each wait for completions and of each read")
      ->check(CLI::Range(1u, 3600000u))
      ->capture_default_str();
  app.add_option("--start-timeout-ms", f.start_timeout_ms,
                 "How long the daemon may take to print READY")
      ->check(CLI::Range(1u, 3600000u))
      ->capture_default_str();
  app.add_flag("--keep", f.keep, "Keep the scratch directory (pool, daemon logs)");
  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;

  auto usage = [](const std::string& msg) {
    std::cerr << "dpmfs-powerloss: " << msg << "\n";
    return kExitUsage;
  };
  std::vector<datapath::PersistMethod> methods;
  for (const auto& m : f.methods) {
    auto pm = datapath::ParsePersistMethod(m);
    if (!pm.ok()) return usage(pm.status().message());
    methods.push_back(*pm);
  }
  if (methods.empty()) return usage("--method needs at least one method");
  if (f.kill_min_ms == 0 || f.kill_min_ms > f.kill_max_ms) {
    return usage("need 0 < --kill-min-ms <= --kill-max-ms");
  }
  if (f.data_bin.empty()) return usage("--data-bin is required (this build knows no default)");
  if (::access(f.data_bin.c_str(), X_OK) != 0) {
    return usage("--data-bin " + f.data_bin +
                 " is not an executable file; build dpmfs-data "
                 "or name it with --data-bin");
  }
  auto pool_size = pool::ParseSize(f.pool_size);
  if (!pool_size.ok()) return usage("--pool-size: " + pool_size.status().message());
  std::optional<uint32_t> drain;
  if (*drain_opt) drain = f.drain_delay_us;

  // The tool kills its peer on purpose: a write to the dead connection must be an error
  // the transport reports, not a SIGPIPE that ends the tool.
  ::signal(SIGPIPE, SIG_IGN);
  InstallSignalCleanup();

  auto fail = [](const Status& st) {
    std::cerr << "dpmfs-powerloss: error: " << st.ToString() << "\n";
    return kExitError;
  };
  auto scratch = ScratchDir::Create(f.tmp_dir, f.keep);
  if (!scratch.ok()) return fail(scratch.status());
  DaemonOptions so;
  so.name = "data server";
  so.log_prefix = "server";
  so.log_dir = scratch->path();
  so.keep_logs = f.keep;
  so.start_timeout = std::chrono::milliseconds(f.start_timeout_ms);
  std::string pool_path;
  if (!f.pool.empty()) {
    auto info = pool::ReadPoolHeader(f.pool);
    if (!info.ok()) return fail(info.status());
    if (info->role != pool::Role::kData) {
      return fail(Status::InvalidArgument(f.pool + " is not a data pool"));
    }
    pool_path = f.pool;
  } else {
    pool_path = scratch->path() + "/pool";
    pool::FormatOptions fo;
    fo.geometry.role = pool::Role::kData;
    fo.geometry.cluster = pool::ClusterUuid::Generate();
    fo.geometry.pool_size = *pool_size;
    auto made = pool::FormatPool(pool_path, fo);
    if (!made.ok()) return fail(made.status());
    spdlog::debug("formatted {} ({} data bytes)", pool_path, made->data_size);
  }
  // A key of this run's own: the server and this process prove it to each other.
  const std::string key_file = scratch->path() + "/cluster.key";
  if (Status st = CreateKeyFile(key_file, /*replace=*/false); !st.ok()) return fail(st);
  so.argv = {f.data_bin, "--pool",      pool_path, "--listen", "127.0.0.1:0",
             "--transport", "soft",     "--key-file", key_file};
  if (drain) {
    so.argv.push_back("--drain-delay-us");
    so.argv.push_back(std::to_string(*drain));
  }

  transport::DeviceOptions dev;
  dev.backend = transport::Backend::kSoft;
  auto key = LoadClusterKey(key_file, "");
  if (!key.ok()) return fail(key.status());
  dev.cluster_key = *key;
  auto device = transport::OpenDevice(dev);
  if (!device.ok()) return fail(device.status());

  RunOptions ro;
  ro.seed = f.seed;
  ro.token = datapath::SessionTokenSource::SelfIssued(*key, "dpmfs-powerloss",
                                                      datapath::kSelfIssuedTokenLifetime);
  ro.queue_depth = f.queue_depth;
  ro.record_size = f.record_size;
  ro.trials = f.trials;
  ro.kill_min = std::chrono::milliseconds(f.kill_min_ms);
  ro.kill_max = std::chrono::milliseconds(f.kill_max_ms);
  ro.io_timeout = std::chrono::milliseconds(f.io_timeout_ms);

  std::vector<MethodStats> all;
  std::vector<bool> passed;
  Status error;
  {
    Harness harness(so, ro, **device);
    for (auto m : methods) {
      spdlog::info("{}: {} trials", datapath::PersistMethodName(m), f.trials);
      all.emplace_back();
      error = harness.RunMethod(m, &all.back());
      passed.push_back(error.ok() && Passed(all.back(), f.trials, f.expect_loss));
      if (!error.ok()) break;
    }
  }  // the harness kills and reaps the data server here, before the scratch dir goes

  int rc = kExitPass;
  for (bool p : passed) {
    if (!p) rc = kExitFail;
  }
  if (!error.ok()) rc = kExitError;
  if (!all.empty() && (all.size() > 1 || all[0].trials > 0)) PrintSummary(f, drain, all, passed);
  if (!error.ok()) std::cerr << "dpmfs-powerloss: error: " << error.ToString() << "\n";
  if (!f.json.empty()) {
    Status st = WriteJson(f.json, f, drain, all, passed, error, rc);
    if (!st.ok()) {
      std::cerr << "dpmfs-powerloss: error: " << st.ToString() << "\n";
      if (rc == kExitPass) rc = kExitError;
    }
  }
  if (rc == kExitFail) {
    std::cerr << "dpmfs-powerloss: FAIL: "
              << (f.expect_loss ? "expected some acknowledged write to be lost"
                                : "acknowledged writes were lost (or too few were acknowledged)")
              << "\n";
  }
  return rc;
}

}  // namespace
}  // namespace dpmfs::powerloss

int main(int argc, char** argv) {
  int rc = dpmfs::powerloss::Run(argc, argv);
  // Interrupted: everything is cleaned up by now; end the way the signal would have.
  if (int sig = dpmfs::InterruptSignal()) ::raise(sig);
  return rc;
}
