// MetaService's admin rows (meta_ops.h kind kAdmin) and its live metrics: the stats
// request, the clients' pushed reports, the log level at run time (docs/monitoring.md).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>

#include "common/logging.h"
#include "metadata/meta_service.h"

namespace dpmfs::meta {

namespace {
// The most client reports kept (one per session; each at most kMaxStatsReportBytes).
constexpr size_t kMaxPushedReports = 1024;
}  // namespace

metrics::StatsReport MetaService::Report() const {
  metrics::StatsReport r;
  r.role = "meta";
  r.instance = rpc_ != nullptr ? rpc_->endpoint().ToString() : "";
  const int64_t now = SteadyMs();
  r.Gauge("up", "", 1);
  r.Gauge("uptime_seconds", "", static_cast<uint64_t>((now - started_steady_ms_) / 1000));
  r.Counter("mutations", "", n_mutations_.load(std::memory_order_relaxed));
  r.Counter("reads", "", n_reads_.load(std::memory_order_relaxed));
  r.Counter("durable_cache_hits", "", n_cache_hits_.load(std::memory_order_relaxed));
  r.Counter("checkpoints", "", n_checkpoints_.load(std::memory_order_relaxed));
  r.Counter("expired_sessions", "", n_expired_.load(std::memory_order_relaxed));
  r.Counter("refused_callers", "", n_refused_callers_.load(std::memory_order_relaxed));
  for (size_t i = 0; i < kMetaOps.size(); ++i) {
    r.Histogram("op_latency", std::string(kMetaOps[i].name), op_latency_[i]);
  }
  // The request count per op is its histogram's count: one number, never two that drift.
  for (const metrics::HistogramValue& h : r.histograms) r.Counter("requests", h.op, h.snapshot.count);
  ReaderLock lock(mu_);
  r.Gauge("sessions", "", ns_->session_count());
  r.Gauge("inodes", "", ns_->inode_count());
  const uint64_t journal_capacity = store_->journal_capacity();
  r.Gauge("journal_capacity_bytes", "", journal_capacity);
  r.Gauge("journal_used_bytes", "",
          static_cast<uint64_t>(store_->journal_fill() * double(journal_capacity)));
  r.Gauge("last_checkpoint_bytes", "", last_checkpoint_bytes_);
  // Since the last checkpoint this process wrote, else since it started (recovery
  // wrote one, or found the journal empty).
  const int64_t since = last_checkpoint_steady_ms_ != 0 ? last_checkpoint_steady_ms_ : started_steady_ms_;
  r.Gauge("checkpoint_age_seconds", "", static_cast<uint64_t>((now - since) / 1000));
  r.Gauge("data_bytes_total", "", ns_->total_bytes());
  r.Gauge("data_bytes_free", "", ns_->free_bytes());
  return r;
}

std::vector<uint8_t> MetaService::StatsBundleBytes() {
  std::vector<std::vector<uint8_t>> reports;
  reports.push_back(metrics::EncodeStatsReport(Report()));
  size_t bytes = reports.back().size() + 64;
  const int64_t fresh_after = SteadyMs() - 3 * int64_t{options_.lease_ms};
  MutexLock lock(pushed_mu_);
  for (auto it = pushed_.begin(); it != pushed_.end();) {
    if (it->second.steady_ms < fresh_after) {
      it = pushed_.erase(it);  // that client stopped pushing: gone or partitioned
      continue;
    }
    // What does not fit one reply is left out (and said so in the log): a cluster of
    // many clients needs their own /metrics, not one bundle.
    if (bytes + it->second.bytes.size() + 4 > kMaxStatsBundleBytes) {
      spdlog::debug("stats: the reply is full; client reports left out");
      break;
    }
    bytes += it->second.bytes.size() + 4;
    reports.push_back(it->second.bytes);
    ++it;
  }
  return metrics::EncodeStatsBundle(reports);
}

Result<std::vector<uint8_t>> MetaService::HandleAdmin(const rpc::RpcRequest& req,
                                                      std::span<const uint8_t> body) {
  // Who asks what of a server, at debug (a push every few seconds per client is too
  // often for info).
  spdlog::debug("admin request {} from {}", OpcodeName(static_cast<Opcode>(req.opcode)), req.peer);
  switch (static_cast<Opcode>(req.opcode)) {
    case Opcode::kStats: {
      StatsRequest q;
      DPMFS_RETURN_IF_ERROR(Decode(body, &q));
      StatsReply reply;
      const std::vector<uint8_t> bundle = StatsBundleBytes();
      reply.bundle.assign(bundle.begin(), bundle.end());
      return EncodeReply(reply);
    }
    case Opcode::kPushStats: {
      PushStatsRequest q;
      DPMFS_RETURN_IF_ERROR(Decode(body, &q));
      // Checked once here, so a bundle never carries a report its reader would refuse.
      metrics::StatsReport r;
      const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(q.report.data()),
                                           q.report.size());
      Status st = metrics::DecodeStatsReport(bytes, &r);
      if (st.ok() && r.role != "client") {
        st = Status::InvalidArgument("a pushed report has role '" + r.role + "', not 'client'");
      }
      MutexLock lock(pushed_mu_);
      if (!st.ok()) {
        if (n_pushes_refused_++ == 0) {
          spdlog::warn("refused stats pushed by {} (session {:#x}): {} (logged once)", req.peer,
                       req.session, st.ToString());
        }
        return EncodeErrorReply(EINVAL);
      }
      if (pushed_.size() >= kMaxPushedReports && !pushed_.count(req.session)) {
        return EncodeErrorReply(ENOSPC);
      }
      pushed_[req.session] = PushedStats{{bytes.begin(), bytes.end()}, SteadyMs()};
      return EncodeReply(EmptyReply{});
    }
    case Opcode::kLogLevel: {
      LogLevelRequest q;
      DPMFS_RETURN_IF_ERROR(Decode(body, &q));
      Status st = SetLogLevel(q.level);
      if (!st.ok()) {
        spdlog::warn("log level request from {}: {}", req.peer, st.ToString());
        return EncodeErrorReply(EINVAL);
      }
      return EncodeReply(EmptyReply{});
    }
    default:
      return Status::InvalidArgument("opcode " + std::to_string(req.opcode) +
                                     " is no admin operation");
  }
}

}  // namespace dpmfs::meta
