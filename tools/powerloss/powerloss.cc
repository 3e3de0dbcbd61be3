#include "tools/powerloss/powerloss.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "datapath/data_client.h"
#include "tools/powerloss/record.h"

namespace dpmfs::powerloss {
namespace {

using Clock = std::chrono::steady_clock;
using datapath::DataClient;
using datapath::DataClientOptions;
using datapath::PersistMethod;

constexpr int64_t kNotAcked = INT64_MIN;
// Bytes per verification READ: few round trips, well under the client's I/O limit.
constexpr uint32_t kVerifyChunk = 1u << 20;

int64_t NsSince(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// Fires SIGKILL at the server at `deadline` from its own thread, so the kill lands at
// an arbitrary point of the writer's pipeline (between a WRITE and its READ, mid-reap,
// mid-post), not only where the writer loop would check the clock.
class KillTimer {
 public:
  KillTimer(DaemonProcess* server, Clock::time_point t0, Clock::time_point deadline)
      : server_(server), t0_(t0), deadline_(deadline), thread_([this] { Run(); }) {}
  ~KillTimer() {
    Cancel();
    thread_.join();
  }

  // Stops a timer that has not fired yet (the trial failed for another reason).
  void Cancel() {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  bool fired() const { return fired_.load(std::memory_order_acquire); }
  // Nanoseconds after t0 the SIGKILL was sent (valid once fired()).
  int64_t kill_ns() const { return kill_ns_.load(std::memory_order_acquire); }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, deadline_, [this] { return cancelled_; })) return;
    // Announce before killing: the writer may see the connection drop before kill()
    // returns here, and must then already know the failure is the expected one.
    kill_ns_.store(NsSince(t0_), std::memory_order_release);
    fired_.store(true, std::memory_order_release);
    server_->SendKill();
  }

  DaemonProcess* server_;
  Clock::time_point t0_;
  Clock::time_point deadline_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
  std::atomic<bool> fired_{false};
  std::atomic<int64_t> kill_ns_{0};
  std::thread thread_;  // last: starts after the fields it uses exist
};

// The data client warns when its connection drops. After our own SIGKILL that is the
// expected outcome of every trial, so below debug level it is hidden while streaming; a
// failure before the kill still ends the trial with an error that carries the message.
class QuietClientWarnings {
 public:
  QuietClientWarnings() : saved_(spdlog::get_level()) {
    if (saved_ > spdlog::level::debug && saved_ < spdlog::level::err) {
      spdlog::set_level(spdlog::level::err);
    }
  }
  ~QuietClientWarnings() { spdlog::set_level(saved_); }
  QuietClientWarnings(const QuietClientWarnings&) = delete;
  QuietClientWarnings& operator=(const QuietClientWarnings&) = delete;

 private:
  spdlog::level::level_enum saved_;
};

}  // namespace

Harness::Harness(DaemonOptions server_options, RunOptions options, transport::Device& device)
    : server_options_(std::move(server_options)),
      options_(options),
      device_(device),
      run_nonce_((uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      rng_(Mix64(options.seed)) {}

Harness::~Harness() = default;  // ~DaemonProcess kills and reaps a running server

Status Harness::WithServerStderr(const Status& st, const DaemonProcess* server) const {
  if (server == nullptr) return st;
  std::string tail = server->StderrTail();
  return Status(st.code(), st.message() + "\n  data server: " + server->command() +
                               "\n  its stderr:\n" + (tail.empty() ? "    (empty)" : tail));
}

Status Harness::EnsureServer() {
  if (int sig = InterruptSignal()) {
    return Status::Aborted("interrupted by signal " + std::to_string(sig));
  }
  if (server_ != nullptr) return Status::OK();
  DPMFS_ASSIGN_OR_RETURN(server_, DaemonProcess::Start(server_options_, ++generation_));
  spdlog::debug("data server pid {} ready at {}", server_->pid(), server_->endpoint().ToString());
  return Status::OK();
}

Status Harness::RunMethod(PersistMethod method, MethodStats* stats) {
  stats->method = method;
  const auto start = Clock::now();
  Status st;
  for (uint32_t t = 0; t < options_.trials && st.ok(); ++t) {
    st = RunTrial(method, t, stats);
    // The signal handler killed the server: whatever failed next is not the server's fault.
    if (int sig = InterruptSignal(); sig != 0 && !st.ok()) {
      st = Status::Aborted("interrupted by signal " + std::to_string(sig));
    }
  }
  stats->seconds += std::chrono::duration<double>(Clock::now() - start).count();
  return st;
}

Status Harness::RunTrial(PersistMethod method, uint32_t trial, MethodStats* stats) {
  const std::string name(datapath::PersistMethodName(method));
  const uint32_t rs = options_.record_size;
  const uint32_t qd = options_.queue_depth;
  DPMFS_RETURN_IF_ERROR(EnsureServer());

  // ---- Stream until the kill ----
  DataClientOptions co;
  co.method = method;
  co.queue_depth = qd;
  co.max_io_size = rs;
  co.timeout = options_.io_timeout;
  co.token = options_.token;
  auto connected = DataClient::Connect(device_, server_->endpoint(), co);
  if (!connected.ok()) {
    return WithServerStderr(
        connected.status().WithContext(name + " trial " + std::to_string(trial)), server_.get());
  }
  std::unique_ptr<DataClient> client = std::move(connected).value();
  const uint64_t capacity = client->data_size() / rs;  // records the pool holds
  if (capacity < 2ull * qd) {
    return Status::InvalidArgument("the pool's data area (" + std::to_string(client->data_size()) +
                                   " bytes) is too small for this record size and queue depth");
  }
  const uint64_t trial_id =
      std::max<uint64_t>(1, Mix64(options_.seed ^ run_nonce_ ^ Mix64(++trials_run_)));
  const uint64_t start_index = next_index_ % capacity;
  auto position_of = [&](uint64_t seq) { return ((start_index + seq) % capacity) * rs; };
  std::uniform_int_distribution<int64_t> kill_dist(options_.kill_min.count(),
                                                   options_.kill_max.count());
  const auto kill_after = std::chrono::microseconds(kill_dist(rng_));

  std::vector<int64_t> ack_ns;  // per seq: when the tool saw the acknowledgement
  std::vector<uint64_t> slot_seq(qd);
  std::vector<uint32_t> free_slots;
  for (uint32_t s = qd; s-- > 0;) free_slots.push_back(s);
  std::vector<datapath::SlotResult> done;
  uint64_t acked = 0, acked_after_kill = 0, unacked = 0;
  bool stalled = false, submitting = true;
  Status failure;  // why the stream ended before/without the expected kill
  int64_t kill_ns = 0;

  const auto t0 = Clock::now();
  {
    QuietClientWarnings quiet;
    KillTimer killer(server_.get(), t0, t0 + kill_after);
    while (true) {
      while (submitting && !free_slots.empty()) {
        const uint64_t seq = ack_ns.size();
        if (seq == capacity) {
          // Never overwrite within a trial: an unacknowledged write must not be able to
          // tear an acknowledged one. Wait for the kill instead (reported as stalled).
          stalled = true;
          submitting = false;
          break;
        }
        const uint32_t slot = free_slots.back();
        EncodeRecord(RecordId{options_.seed, trial_id, seq, position_of(seq), rs},
                     client->slot_buffer(slot));
        Status st = client->Submit(slot, position_of(seq), rs);
        if (!st.ok()) {
          if (!killer.fired()) failure = st.WithContext("submitting a write before the kill");
          submitting = false;
          break;
        }
        free_slots.pop_back();
        slot_seq[slot] = seq;
        ack_ns.push_back(kNotAcked);
      }
      if (!failure.ok()) break;
      if (client->in_flight() == 0) {
        if (killer.fired()) break;
        // Only reachable when stalled: nothing in flight, so the kill will not be noticed
        // through the connection; wait for it.
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      done.clear();
      Status st = client->Reap(&done);
      const int64_t now_ns = NsSince(t0);
      const bool after_kill = killer.fired();
      for (const auto& r : done) {
        free_slots.push_back(r.slot);
        if (r.status.ok()) {
          ack_ns[slot_seq[r.slot]] = now_ns;
          ++acked;
          acked_after_kill += after_kill;
        } else {
          ++unacked;
        }
      }
      if (st.ok()) continue;
      if (st.code() == StatusCode::kUnavailable && killer.fired()) break;  // the power loss
      if (st.code() == StatusCode::kTimedOut && killer.fired()) {
        failure = st.WithContext("the client did not notice the killed data server");
      } else {
        failure = st.WithContext(killer.fired() ? "reaping after the kill"
                                                : "reaping before the kill (the data server "
                                                  "failed on its own?)");
      }
      break;
    }
    killer.Cancel();  // no-op after it fired; stops it after a failure
    kill_ns = killer.kill_ns();
    client.reset();
  }
  // The kill timer was cancelled after a failure: kill here so that the restart below
  // finds the pool free. Either way the old server must be gone before the new one runs.
  server_->SendKill();
  auto ended = server_->Wait(options_.io_timeout);
  if (!ended.ok()) return WithServerStderr(ended.status(), server_.get());
  if (failure.ok() && !server_->KilledBySigkill()) {
    failure = Status::Internal("the data server " + *ended + " instead of being killed by us");
  }
  if (!failure.ok()) {
    return WithServerStderr(failure.WithContext(name + " trial " + std::to_string(trial)),
                            server_.get());
  }
  spdlog::debug(
      "{} trial {}: data server {} ({:.2f} ms after the first write; {} submitted, {} "
      "acknowledged, {} failed)",
      name, trial, *ended, kill_ns / 1e6, ack_ns.size(), acked, unacked);
  server_.reset();

  // ---- Power back on: restart on the same pool and read every record of the trial ----
  DPMFS_RETURN_IF_ERROR(EnsureServer());
  DataClientOptions vo;
  vo.method = PersistMethod::kRead;  // reads are one-sided READs whatever the method
  vo.queue_depth = 1;
  vo.max_io_size = kVerifyChunk;
  vo.timeout = options_.io_timeout;
  vo.token = options_.token;
  auto verifier = DataClient::Connect(device_, server_->endpoint(), vo);
  if (!verifier.ok()) {
    return WithServerStderr(verifier.status().WithContext("connecting to verify " + name +
                                                          " trial " + std::to_string(trial)),
                            server_.get());
  }
  const uint64_t submitted = ack_ns.size();
  const uint64_t per_read = kVerifyChunk / rs;
  std::vector<uint8_t> buf(per_read * rs);
  uint64_t lost = 0, unacked_present = 0;
  // Suffix counts of acknowledged records, to say how many later writes survived a loss.
  std::vector<uint64_t> acked_after(submitted + 1, 0);
  for (uint64_t seq = submitted; seq-- > 0;) {
    acked_after[seq] = acked_after[seq + 1] + (ack_ns[seq] != kNotAcked);
  }
  for (uint64_t seq = 0; seq < submitted;) {
    // A run of records contiguous in the pool (the trial may wrap around its end).
    const uint64_t index = (start_index + seq) % capacity;
    const uint64_t n = std::min({per_read, submitted - seq, capacity - index});
    Status st = (*verifier)->Read(index * rs, buf.data(), static_cast<uint32_t>(n * rs));
    if (!st.ok()) {
      return WithServerStderr(
          st.WithContext("reading back " + name + " trial " + std::to_string(trial)),
          server_.get());
    }
    for (uint64_t i = 0; i < n; ++i, ++seq) {
      const RecordId want{options_.seed, trial_id, seq, position_of(seq), rs};
      std::string detail;
      RecordCheck c = CheckRecord(want, buf.data() + i * rs, &detail);
      if (ack_ns[seq] == kNotAcked) {
        unacked_present += c == RecordCheck::kOk;
        continue;
      }
      if (c == RecordCheck::kOk) continue;
      ++lost;
      Loss loss{trial,
                trial_id,
                seq,
                want.position,
                (ack_ns[seq] - kill_ns) / 1000,
                acked,
                acked_after[seq + 1],
                RecordCheckName(c),
                detail};
      if (stats->losses.size() < options_.max_reported_losses) {
        // Expected for `none` (the baseline), a durability bug for every other method.
        auto level = datapath::IsDurable(method) ? spdlog::level::err : spdlog::level::debug;
        spdlog::log(level,
                    "{} trial {}: LOST acknowledged seq {} at data offset {}: found {} ({}); "
                    "acknowledged {} us {} the kill; {} of the trial's {} acknowledged writes "
                    "came later",
                    name, trial, seq, want.position, loss.found, detail,
                    std::abs(loss.ack_us_relative_to_kill),
                    loss.ack_us_relative_to_kill < 0 ? "before" : "after",
                    loss.acked_with_higher_seq, acked);
        stats->losses.push_back(std::move(loss));
      }
    }
  }
  verifier->reset();

  if (lost > 0) {
    spdlog::log(datapath::IsDurable(method) ? spdlog::level::err : spdlog::level::info,
                "{} trial {}: {} of {} acknowledged writes lost (kill {:.2f} ms after the first "
                "write, {} writes submitted)",
                name, trial, lost, acked, kill_ns / 1e6, submitted);
  }
  if (stalled) {
    spdlog::warn(
        "{} trial {}: the pool's {} record positions filled up before the kill; use "
        "a larger pool or shorter kill times",
        name, trial, capacity);
  }
  next_index_ = start_index + submitted;
  stats->trials += 1;
  stats->trials_with_loss += lost > 0;
  stats->stalled_trials += stalled;
  stats->submitted += submitted;
  stats->acked += acked;
  stats->acked_after_kill += acked_after_kill;
  stats->unacked += unacked;
  stats->unacked_present += unacked_present;
  stats->lost += lost;
  stats->kill_ms_sum += kill_ns / 1e6;
  return Status::OK();
}

}  // namespace dpmfs::powerloss
