// What dpmfs-admin prints: the answers of a cluster's servers as JSON (nlohmann-json)
// or as a table, for `dpmfs stats` and `dpmfs status`.
//
// Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tools/admin/cluster_query.h"

namespace dpmfs::admin {

// {"version": 1, "servers": [{role, index, endpoint, ok, error, reports: [{role,
// instance, metrics: [{name, op, kind, value}], histograms: [{name, op, count, sum_ns,
// max_ns, mean_us, p50_us, p99_us, p999_us}]}]}]}
nlohmann::json StatsJson(const std::vector<ServerAnswer>& answers);
// One block per report: its counters and gauges on a line or a few, then a row per
// histogram (count, p50, p99, p999, max in µs).
std::string StatsTable(const std::vector<ServerAnswer>& answers);

// `dpmfs status`: one row per server (kept in its own function so that other columns,
// such as a data server's replication state, are added in one place).
// JSON: {role, index, endpoint, up, error, sessions, journal_used_pct,
// checkpoint_age_s, pool_used_pct, clients, connections}.
nlohmann::json StatusRowJson(const ServerAnswer& a);
std::string StatusRowText(const ServerAnswer& a);
std::string StatusHeader();

}  // namespace dpmfs::admin
