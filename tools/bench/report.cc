#include "tools/bench/report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>

#include <fmt/format.h>

namespace dpmfs::bench {
namespace {

double MedianOf(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

const CellResult* Find(const std::vector<CellResult>& cells, std::string_view method,
                       uint32_t size, std::optional<uint32_t> qd) {
  for (const CellResult& c : cells) {
    if (c.method == method && c.size == size && (!qd || c.qd == *qd) && !c.runs.empty()) {
      return &c;
    }
  }
  return nullptr;
}

std::string FormatBytes(uint32_t size) {
  if (size >= 1024 && size % 1024 == 0) return fmt::format("{}K", size / 1024);
  return std::to_string(size);
}

// A minimal JSON writer: objects, arrays, numbers, strings, booleans, null. Indents two
// spaces per level and puts the commas where they belong.
class JsonWriter {
 public:
  void BeginObject() { Open('{'); }
  void EndObject() { Close('}'); }
  void BeginArray() { Open('['); }
  void EndArray() { Close(']'); }
  void Key(std::string_view k) {
    Separate();
    String(k);
    out_ += ": ";
    after_key_ = true;
  }
  void Str(std::string_view s) {
    Separate();
    String(s);
  }
  void Num(double v, int decimals) {
    Separate();
    if (!std::isfinite(v)) {
      out_ += "null";
      return;
    }
    std::string s = fmt::format("{:.{}f}", v, decimals);
    if (s.find('.') != std::string::npos) {  // trim trailing zeros: 12.500 -> 12.5
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    if (s == "-0") s = "0";
    out_ += s;
  }
  void Int(uint64_t v) {
    Separate();
    out_ += std::to_string(v);
  }
  void Bool(bool b) {
    Separate();
    out_ += b ? "true" : "false";
  }
  void Null() {
    Separate();
    out_ += "null";
  }
  const std::string& str() const { return out_; }

 private:
  void Open(char c) {
    Separate();
    out_ += c;
    first_.push_back(true);
  }
  void Close(char c) {
    bool empty = first_.back();
    first_.pop_back();
    if (!empty) Newline();
    out_ += c;
  }
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) out_ += ',';
    first_.back() = false;
    Newline();
  }
  void Newline() {
    out_ += '\n';
    out_.append(2 * first_.size(), ' ');
  }
  void String(std::string_view s) {
    out_ += '"';
    for (char ch : s) {
      auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += ch;
      } else if (c < 0x20) {
        out_ += fmt::format("\\u{:04x}", c);
      } else {
        out_ += ch;
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

void WriteMeasurement(JsonWriter& j, const Measurement& m) {
  j.BeginObject();
  j.Key("ops");
  j.Int(m.ops);
  j.Key("seconds");
  j.Num(m.seconds, 6);
  j.Key("p50_us");
  j.Num(m.p50_us, 3);
  j.Key("p99_us");
  j.Num(m.p99_us, 3);
  j.Key("mean_us");
  j.Num(m.mean_us, 3);
  j.Key("max_us");
  j.Num(m.max_us, 3);
  j.Key("ops_per_sec");
  j.Num(m.ops_per_sec, 1);
  j.Key("mib_per_sec");
  j.Num(m.mib_per_sec, 3);
  j.EndObject();
}

void WriteCells(JsonWriter& j, const std::vector<CellResult>& cells) {
  j.BeginArray();
  for (const CellResult& c : cells) {
    if (c.runs.empty()) continue;
    j.BeginObject();
    j.Key("method");
    j.Str(c.method);
    j.Key("size");
    j.Int(c.size);
    j.Key("qd");
    j.Int(c.qd);
    // The medians, flat, so that scripts need not dig.
    j.Key("p50_us");
    j.Num(c.median.p50_us, 3);
    j.Key("p99_us");
    j.Num(c.median.p99_us, 3);
    j.Key("ops_per_sec");
    j.Num(c.median.ops_per_sec, 1);
    j.Key("mib_per_sec");
    j.Num(c.median.mib_per_sec, 3);
    j.Key("median");
    WriteMeasurement(j, c.median);
    j.Key("runs");
    j.BeginArray();
    for (const Measurement& m : c.runs) WriteMeasurement(j, m);
    j.EndArray();
    j.EndObject();
  }
  j.EndArray();
}

}  // namespace

void ComputeMedian(CellResult* cell) {
  auto med = [&](const std::function<double(const Measurement&)>& f) {
    std::vector<double> v;
    for (const Measurement& m : cell->runs) v.push_back(f(m));
    return MedianOf(std::move(v));
  };
  Measurement& m = cell->median;
  m.ops = static_cast<uint64_t>(std::llround(med([](const Measurement& x) {
    return static_cast<double>(x.ops);
  })));
  m.seconds = med([](const Measurement& x) { return x.seconds; });
  m.p50_us = med([](const Measurement& x) { return x.p50_us; });
  m.p99_us = med([](const Measurement& x) { return x.p99_us; });
  m.mean_us = med([](const Measurement& x) { return x.mean_us; });
  m.max_us = med([](const Measurement& x) { return x.max_us; });
  m.ops_per_sec = med([](const Measurement& x) { return x.ops_per_sec; });
  m.mib_per_sec = med([](const Measurement& x) { return x.mib_per_sec; });
  // The CPU fields are NaN where not measured: the median of the runs that have them.
  auto med_measured = [&](double Measurement::*field) {
    std::vector<double> v;
    for (const Measurement& x : cell->runs) {
      if (!std::isnan(x.*field)) v.push_back(x.*field);
    }
    return v.empty() ? std::numeric_limits<double>::quiet_NaN() : MedianOf(std::move(v));
  };
  m.server_cpu_us_per_op = med_measured(&Measurement::server_cpu_us_per_op);
  m.client_cpu_us_per_op = med_measured(&Measurement::client_cpu_us_per_op);
  m.cpu_window_seconds = med([](const Measurement& x) { return x.cpu_window_seconds; });
}

std::string TargetRatio::Verdict() const {
  if (!value) return "n/a";
  bool pass = at_most ? *value <= target : *value >= target;
  return pass ? "PASS" : "MISS";
}

MachineInfo CollectMachineInfo() {
  MachineInfo mi;
  mi.nproc = ::sysconf(_SC_NPROCESSORS_ONLN);
  utsname u{};
  if (::uname(&u) == 0) {
    mi.sysname = u.sysname;
    mi.kernel_release = u.release;
    mi.kernel_version = u.version;
    mi.machine = u.machine;
    mi.hostname = u.nodename;
  }
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        mi.cpu_model = line.substr(colon + 1);
        mi.cpu_model.erase(0, mi.cpu_model.find_first_not_of(' '));
      }
      break;
    }
  }
  return mi;
}

std::vector<TargetRatio> ComputeTargetRatios(const Report& report) {
  constexpr uint32_t k4K = 4096;
  const CellResult* read1 = Find(report.cells, "read", k4K, 1);
  const CellResult* read2 = Find(report.cells, "read2", k4K, 1);
  const CellResult* read16 = Find(report.cells, "read", k4K, 16);
  const CellResult* ping = Find(report.baselines, "tcp-pingpong", k4K, std::nullopt);
  const CellResult* stream = Find(report.baselines, "tcp-stream", k4K, std::nullopt);
  auto div = [](const CellResult* a, const CellResult* b,
                double Measurement::*field) -> std::optional<double> {
    if (a == nullptr || b == nullptr || b->median.*field <= 0) return std::nullopt;
    return a->median.*field / b->median.*field;
  };
  std::vector<TargetRatio> r;
  r.push_back({"read_vs_read2_p50_4k_qd1", "read p50 / read2 p50 @4KiB QD1",
               div(read1, read2, &Measurement::p50_us), 0.6, true});
  r.push_back({"read_vs_tcp_pingpong_p50_4k_qd1", "read p50 @4KiB QD1 / TCP ping-pong p50 @4KiB",
               div(read1, ping, &Measurement::p50_us), 1.3, true});
  r.push_back({"read_vs_tcp_stream_ops_4k_qd16",
               "read ops/s @4KiB QD16 / TCP stream ops/s @4KiB",
               div(read16, stream, &Measurement::ops_per_sec), 0.5, false});
  return r;
}

void PrintTable(const Report& report, std::FILE* out) {
  const RunConfig& c = report.config;
  fmt::print(out,
             "dpmfs-bench persist: server {} ({}), pool {} ({} B blocks), window {} MiB, "
             "{:.2f} s/cell, repeat {}{}\n",
             c.server, c.transport, c.pool_is_pmem ? "on real PM" : "not PM (page cache)",
             c.block_size, c.window_bytes >> 20, c.seconds, c.repeat,
             c.repeat > 1 ? " (medians)" : "");
  fmt::print(out, "machine: {} CPUs, {} {} {}\n\n", report.machine.nproc, report.machine.sysname,
             report.machine.kernel_release, report.machine.machine);
  fmt::print(out, "{:<13}{:>6}{:>4}{:>10}{:>10}{:>11}{:>10}{:>9}{:>9}\n", "method", "size", "qd",
             "p50 us", "p99 us", "ops/s", "MiB/s", "p50/tcp", "ops/tcp");
  auto row = [&](const CellResult& cell, std::optional<double> lat_ratio,
                 std::optional<double> ops_ratio) {
    auto ratio = [](std::optional<double> v) {
      return v ? fmt::format("{:.2f}", *v) : std::string("-");
    };
    const Measurement& m = cell.median;
    fmt::print(out, "{:<13}{:>6}{:>4}{:>10.1f}{:>10.1f}{:>11.0f}{:>10.1f}{:>9}{:>9}\n",
               cell.method, FormatBytes(cell.size), cell.qd, m.p50_us, m.p99_us, m.ops_per_sec,
               m.mib_per_sec, ratio(lat_ratio), ratio(ops_ratio));
  };
  for (const CellResult& b : report.baselines) {
    if (!b.runs.empty()) row(b, std::nullopt, std::nullopt);
  }
  std::string last_method;
  for (const CellResult& cell : report.cells) {
    if (cell.runs.empty()) continue;
    if (cell.method != last_method) fmt::print(out, "\n");
    last_method = cell.method;
    std::optional<double> lat, ops;
    if (cell.qd == 1) {
      const CellResult* ping = Find(report.baselines, "tcp-pingpong", cell.size, std::nullopt);
      if (ping != nullptr && ping->median.p50_us > 0) {
        lat = cell.median.p50_us / ping->median.p50_us;
      }
    } else {
      const CellResult* stream = Find(report.baselines, "tcp-stream", cell.size, std::nullopt);
      if (stream != nullptr && stream->median.ops_per_sec > 0) {
        ops = cell.median.ops_per_sec / stream->median.ops_per_sec;
      }
    }
    row(cell, lat, ops);
  }
  fmt::print(out, "\ntarget ratios:\n");
  for (const TargetRatio& r : report.ratios) {
    fmt::print(out, "  {:<48}{:>8}   target {} {:.1f}   {}\n", r.description,
               r.value ? fmt::format("{:.3f}", *r.value) : std::string("n/a"),
               r.at_most ? "<=" : ">=", r.target, r.Verdict());
  }
  for (const std::string& n : report.notes) fmt::print(out, "note: {}\n", n);
  std::fflush(out);
}

Status WriteJson(const Report& report, const std::string& path) {
  JsonWriter j;
  const RunConfig& c = report.config;
  j.BeginObject();
  j.Key("benchmark");
  j.Str("dpmfs-bench persist");
  j.Key("version");
  j.Str(DPMFS_VERSION);
  j.Key("started_at");
  j.Str(report.started_at);
  j.Key("wall_seconds");
  j.Num(report.wall_seconds, 3);

  j.Key("config");
  j.BeginObject();
  j.Key("server");
  j.Str(c.server);
  j.Key("transport");
  j.Str(c.transport);
  j.Key("drain_delay_us");
  j.Int(c.drain_delay_us);
  j.Key("methods");
  j.BeginArray();
  for (const std::string& m : c.methods) j.Str(m);
  j.EndArray();
  j.Key("sizes");
  j.BeginArray();
  for (uint32_t s : c.sizes) j.Int(s);
  j.EndArray();
  j.Key("qds");
  j.BeginArray();
  for (uint32_t q : c.qds) j.Int(q);
  j.EndArray();
  j.Key("seconds");
  j.Num(c.seconds, 6);
  j.Key("warmup_seconds");
  j.Num(c.warmup_seconds, 6);
  j.Key("repeat");
  j.Int(c.repeat);
  j.Key("seed");
  j.Int(c.seed);
  j.Key("window_bytes");
  j.Int(c.window_bytes);
  j.Key("tcp_depth");
  j.Int(c.tcp_depth);
  j.Key("block_size");
  j.Int(c.block_size);
  j.Key("pool_data_bytes");
  j.Int(c.pool_data_bytes);
  j.Key("pool_is_pmem");
  j.Bool(c.pool_is_pmem);
  j.EndObject();

  const MachineInfo& mi = report.machine;
  j.Key("machine");
  j.BeginObject();
  j.Key("nproc");
  j.Int(static_cast<uint64_t>(std::max<long>(mi.nproc, 0)));
  j.Key("sysname");
  j.Str(mi.sysname);
  j.Key("kernel");
  j.Str(mi.kernel_release);
  j.Key("kernel_version");
  j.Str(mi.kernel_version);
  j.Key("machine");
  j.Str(mi.machine);
  j.Key("hostname");
  j.Str(mi.hostname);
  j.Key("cpu_model");
  j.Str(mi.cpu_model);
  j.EndObject();

  j.Key("cells");
  WriteCells(j, report.cells);
  j.Key("baselines");
  WriteCells(j, report.baselines);

  j.Key("ratios");
  j.BeginObject();
  for (const TargetRatio& r : report.ratios) {
    j.Key(r.name);
    j.BeginObject();
    j.Key("description");
    j.Str(r.description);
    j.Key("value");
    if (r.value) {
      j.Num(*r.value, 4);
    } else {
      j.Null();
    }
    j.Key("target");
    j.Num(r.target, 3);
    j.Key("comparison");
    j.Str(r.at_most ? "<=" : ">=");
    j.Key("verdict");
    j.Str(r.Verdict());
    j.EndObject();
  }
  j.EndObject();

  j.Key("notes");
  j.BeginArray();
  for (const std::string& n : report.notes) j.Str(n);
  j.EndArray();
  j.EndObject();

  std::string text = j.str() + "\n";
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return Status::FromErrno(errno, "creating JSON report " + tmp);
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return Status::IOError("writing JSON report " + tmp + " failed");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::FromErrno(errno, "renaming " + tmp + " to " + path);
  }
  return Status::OK();
}

}  // namespace dpmfs::bench
