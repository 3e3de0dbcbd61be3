// A StatsReport in the Prometheus text exposition format (version 0.0.4), for the
// daemons' optional /metrics endpoint (common/metrics_http.h): counters as
// dpmfs_<name>_total, gauges as dpmfs_<name>, latency histograms as summaries
// dpmfs_<name>_seconds{quantile="0.5|0.99|0.999"} with _sum and _count. Every sample
// carries role, instance and (when it has one) op labels.
//
// Thread-safety: pure function.
#pragma once

#include <string>

#include "common/stats_report.h"

namespace dpmfs::metrics {

std::string RenderPrometheus(const StatsReport& report);

}  // namespace dpmfs::metrics
