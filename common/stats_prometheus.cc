#include "common/stats_prometheus.h"

#include <map>
#include <string_view>

#include <spdlog/fmt/fmt.h>

namespace dpmfs::metrics {
namespace {

// A label value with \, " and newline escaped, as the format requires.
std::string Escape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// A metric name keeps [a-zA-Z0-9_:]; anything else (from a peer's report) becomes '_'.
std::string SafeName(std::string_view v) {
  std::string out = "dpmfs_";
  for (char c : v) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == ':';
    out += ok ? c : '_';
  }
  return out;
}

std::string Labels(const StatsReport& r, std::string_view op, std::string_view extra = {}) {
  std::string s = "{role=\"" + Escape(r.role) + "\",instance=\"" + Escape(r.instance) + "\"";
  if (!op.empty()) s += ",op=\"" + Escape(op) + "\"";
  if (!extra.empty()) {
    s += ",";
    s += extra;
  }
  return s + "}";
}

}  // namespace

std::string RenderPrometheus(const StatsReport& r) {
  // Samples of one family must follow its TYPE line together: group by family, in the
  // order families first appear.
  std::vector<std::string> order;
  std::map<std::string, std::string> body;
  std::map<std::string, std::string> type;
  auto family = [&](const std::string& name, const char* t) -> std::string& {
    if (!body.count(name)) {
      order.push_back(name);
      type[name] = t;
    }
    return body[name];
  };
  for (const MetricValue& m : r.metrics) {
    const bool counter = m.kind == MetricKind::kCounter;
    const std::string name = SafeName(m.name) + (counter ? "_total" : "");
    family(name, counter ? "counter" : "gauge") += name + Labels(r, m.op) + " " +
                                                   std::to_string(m.value) + "\n";
  }
  for (const HistogramValue& h : r.histograms) {
    const std::string name = SafeName(h.name) + "_seconds";
    std::string& out = family(name, "summary");
    for (const auto& [q, label] : {std::pair{0.5, "0.5"}, {0.99, "0.99"}, {0.999, "0.999"}}) {
      out += fmt::format("{}{} {:.9f}\n", name,
                         Labels(r, h.op, std::string("quantile=\"") + label + "\""),
                         h.snapshot.Quantile(q) / 1e9);
    }
    out += fmt::format("{}_sum{} {:.9f}\n", name, Labels(r, h.op), double(h.snapshot.sum_ns) / 1e9);
    out += fmt::format("{}_count{} {}\n", name, Labels(r, h.op), h.snapshot.count);
  }
  std::string text;
  for (const std::string& name : order) {
    text += "# TYPE " + name + " " + type[name] + "\n";
    text += body[name];
  }
  return text;
}

}  // namespace dpmfs::metrics
