#include "tools/admin/stats_render.h"

#include <spdlog/fmt/fmt.h>

namespace dpmfs::admin {
namespace {

using nlohmann::json;

uint64_t Value(const metrics::StatsReport& r, std::string_view name, uint64_t dflt = 0) {
  const metrics::MetricValue* m = r.Find(name);
  return m != nullptr ? m->value : dflt;
}

std::string Who(const ServerAnswer& a) {
  return a.role == "data" ? fmt::format("data:{}", a.index) : a.role;
}

}  // namespace

json StatsJson(const std::vector<ServerAnswer>& answers) {
  json servers = json::array();
  for (const ServerAnswer& a : answers) {
    json s = {{"role", a.role}, {"index", a.index}, {"endpoint", a.endpoint.ToString()},
              {"ok", a.error.ok()}, {"error", a.error.ok() ? "" : a.error.ToString()}};
    json reports = json::array();
    for (const metrics::StatsReport& r : a.reports) {
      json ms = json::array();
      for (const metrics::MetricValue& m : r.metrics) {
        ms.push_back({{"name", m.name}, {"op", m.op},
                      {"kind", m.kind == metrics::MetricKind::kCounter ? "counter" : "gauge"},
                      {"value", m.value}});
      }
      json hs = json::array();
      for (const metrics::HistogramValue& h : r.histograms) {
        const metrics::HistogramSnapshot& x = h.snapshot;
        hs.push_back({{"name", h.name}, {"op", h.op}, {"count", x.count}, {"sum_ns", x.sum_ns},
                      {"max_ns", x.max_ns}, {"mean_us", x.mean_ns() / 1e3},
                      {"p50_us", x.Quantile(0.5) / 1e3}, {"p99_us", x.Quantile(0.99) / 1e3},
                      {"p999_us", x.Quantile(0.999) / 1e3}});
      }
      reports.push_back({{"role", r.role}, {"instance", r.instance}, {"metrics", ms},
                         {"histograms", hs}});
    }
    s["reports"] = reports;
    servers.push_back(s);
  }
  return {{"version", 1}, {"servers", servers}};
}

std::string StatsTable(const std::vector<ServerAnswer>& answers) {
  std::string out;
  for (const ServerAnswer& a : answers) {
    if (!a.error.ok()) {
      out += fmt::format("{} {}: NOT ANSWERING: {}\n\n", Who(a), a.endpoint.ToString(),
                         a.error.ToString());
      continue;
    }
    for (const metrics::StatsReport& r : a.reports) {
      out += fmt::format("{} {}\n", r.role, r.instance);
      // Counters and gauges without an op, wrapped at ~100 columns. (Appended straight to
      // `out`: gcc 12 warns falsely, -Wrestrict, about a reassigned line buffer.)
      size_t column = 0;
      for (const metrics::MetricValue& m : r.metrics) {
        // Per-op counts are the histograms' rows below.
        if (!m.op.empty()) continue;
        const std::string item = fmt::format(" {}={}", m.name, m.value);
        if (column > 0 && column + item.size() > 100) {
          out.push_back('\n');
          column = 0;
        }
        if (column == 0) {
          out.push_back(' ');
          column = 1;
        }
        out.append(item);
        column += item.size();
      }
      if (column > 0) out.push_back('\n');
      if (!r.histograms.empty()) {
        out += fmt::format("  {:<16} {:<16} {:>10} {:>10} {:>10} {:>10} {:>10}\n", "latency", "op",
                           "count", "p50 us", "p99 us", "p999 us", "max us");
      }
      for (const metrics::HistogramValue& h : r.histograms) {
        const metrics::HistogramSnapshot& x = h.snapshot;
        out += fmt::format("  {:<16} {:<16} {:>10} {:>10.1f} {:>10.1f} {:>10.1f} {:>10.1f}\n", h.name,
                           h.op, x.count, x.Quantile(0.5) / 1e3, x.Quantile(0.99) / 1e3,
                           x.Quantile(0.999) / 1e3, double(x.max_ns) / 1e3);
      }
      out.append("\n");
    }
  }
  return out;
}

json StatusRowJson(const ServerAnswer& a) {
  json row = {{"role", a.role}, {"index", a.index}, {"endpoint", a.endpoint.ToString()},
              {"up", a.error.ok()}, {"error", a.error.ok() ? "" : a.error.ToString()}};
  if (!a.error.ok() || a.reports.empty()) return row;
  const metrics::StatsReport& r = a.reports.front();
  row["uptime_s"] = Value(r, "uptime_seconds");
  if (a.role == "meta") {
    row["sessions"] = Value(r, "sessions");
    row["clients_reporting"] = a.reports.size() - 1;
    const uint64_t cap = Value(r, "journal_capacity_bytes");
    row["journal_used_pct"] = cap == 0 ? 0.0 : 100.0 * double(Value(r, "journal_used_bytes")) / double(cap);
    row["checkpoint_age_s"] = Value(r, "checkpoint_age_seconds");
    const uint64_t total = Value(r, "data_bytes_total");
    row["pool_used_pct"] =
        total == 0 ? 0.0 : 100.0 * double(total - Value(r, "data_bytes_free")) / double(total);
    row["inodes"] = Value(r, "inodes");
  } else {
    row["connections"] = Value(r, "connections_open");
    row["pool_data_bytes"] = Value(r, "pool_data_bytes");
  }
  return row;
}

std::string StatusHeader() {
  return fmt::format("{:<8} {:<22} {:<5} {}\n", "server", "endpoint", "up", "details");
}

std::string StatusRowText(const ServerAnswer& a) {
  const json j = StatusRowJson(a);
  std::string details;
  if (!a.error.ok()) {
    details = a.error.ToString();
  } else if (a.role == "meta") {
    details = fmt::format("sessions {}, journal {:.1f}% used, checkpoint {} s ago, pools {:.1f}% used, "
                          "{} inodes, up {} s",
                          j.value("sessions", uint64_t{0}), j.value("journal_used_pct", 0.0),
                          j.value("checkpoint_age_s", uint64_t{0}), j.value("pool_used_pct", 0.0),
                          j.value("inodes", uint64_t{0}), j.value("uptime_s", uint64_t{0}));
  } else {
    details = fmt::format("{} connections, pool {} MiB, up {} s", j.value("connections", uint64_t{0}),
                          j.value("pool_data_bytes", uint64_t{0}) >> 20, j.value("uptime_s", uint64_t{0}));
  }
  return fmt::format("{:<8} {:<22} {:<5} {}\n", Who(a), a.endpoint.ToString(),
                     a.error.ok() ? "yes" : "NO", details);
}

}  // namespace dpmfs::admin
