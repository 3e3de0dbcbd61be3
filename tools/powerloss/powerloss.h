// The power-loss experiment of dpmfs-powerloss (see README.md): per trial, stream
// numbered, checksummed records to a data server with one persist method, note which
// writes were acknowledged, SIGKILL the server at a random moment while writes stream,
// restart it on the same pool and read every acknowledged record back.
//
// Thread-safety: a Harness is used by one thread (it runs a kill timer thread of its own).
#pragma once

#include <memory>

#include "datapath/session_token.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"
#include "common/daemon_process.h"

namespace dpmfs::powerloss {

struct RunOptions {
  uint64_t seed = 1;
  uint32_t queue_depth = 8;
  uint32_t record_size = 256;
  uint32_t trials = 50;
  // The kill lands uniformly in [kill_min, kill_max] after the trial's first write.
  std::chrono::microseconds kill_min{20000};
  std::chrono::microseconds kill_max{150000};
  std::chrono::milliseconds io_timeout{5000};  // connect, each reap, each read
  size_t max_reported_losses = 20;             // per method, in logs and JSON
  // The session token its connections present (the tool holds the key: self-issued).
  std::shared_ptr<datapath::SessionTokenSource> token;
};

// One acknowledged record that did not read back intact.
struct Loss {
  uint32_t trial = 0;  // trial number within the method, from 0
  uint64_t trial_id = 0;
  uint64_t seq = 0;
  uint64_t position = 0;  // pool data offset
  // When the tool saw the acknowledgement, relative to the SIGKILL (negative: before).
  int64_t ack_us_relative_to_kill = 0;
  uint64_t acked_in_trial = 0;         // acknowledged records of the trial
  uint64_t acked_with_higher_seq = 0;  // of which were submitted after this one
  std::string found;                   // RecordCheckName
  std::string detail;                  // what was read instead
};

struct MethodStats {
  datapath::PersistMethod method = datapath::PersistMethod::kRead;
  uint32_t trials = 0;
  uint32_t trials_with_loss = 0;
  uint32_t stalled_trials = 0;    // the pool filled up before the kill (should be 0)
  uint64_t submitted = 0;         // writes posted
  uint64_t acked = 0;             // writes whose completion said OK
  uint64_t acked_after_kill = 0;  // of which the tool saw after sending SIGKILL
  uint64_t unacked = 0;           // writes that completed with an error
  uint64_t unacked_present = 0;   // unacknowledged writes that nevertheless read back intact
  uint64_t lost = 0;              // acknowledged writes that did not read back intact
  double kill_ms_sum = 0;         // actual kill times after each trial's first write
  double seconds = 0;             // wall time of the method's trials (restarts included)
  std::vector<Loss> losses;       // the first max_reported_losses
};

class Harness {
 public:
  Harness(DaemonOptions server_options, RunOptions options, transport::Device& device);
  ~Harness();

  // Runs options.trials trials of `method`, accumulating into *stats. An error means the
  // experiment could not be carried out (server start, unexpected failure, timeout), not
  // that data was lost; *stats then holds the trials done so far.
  Status RunMethod(datapath::PersistMethod method, MethodStats* stats);

 private:
  Status EnsureServer();
  Status RunTrial(datapath::PersistMethod method, uint32_t trial, MethodStats* stats);
  // Adds the data server's stderr tail to an error about it.
  Status WithServerStderr(const Status& st, const DaemonProcess* server) const;

  DaemonOptions server_options_;
  RunOptions options_;
  transport::Device& device_;
  std::unique_ptr<DaemonProcess> server_;
  uint64_t generation_ = 0;
  // Trial ids mix a per-run random nonce into (seed, trial counter): with a kept --pool,
  // a record left by an earlier run with the same seed must not pass for a lost write.
  // Kill times and control flow depend on the seed only.
  uint64_t run_nonce_;
  uint64_t trials_run_ = 0;  // over all methods: trial ids stay unique on the shared pool
  uint64_t next_index_ = 0;  // record index the next trial starts at (wraps around the pool)
  std::mt19937_64 rng_;
};

}  // namespace dpmfs::powerloss
