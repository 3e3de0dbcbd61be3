// Results of a benchmark run and their two outputs: the table on stdout (for people)
// and the JSON file (for scripts and for comparing runs).
//
// Thread-safety: values and functions over them; used by the benchmark's main thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "tools/bench/latency_histogram.h"

namespace dpmfs::bench {

// One cell of the matrix: a persist method (or a TCP baseline) at one size and depth.
struct CellResult {
  std::string method;  // persist method name, or "tcp-pingpong" / "tcp-stream"
  uint32_t size = 0;   // bytes per operation
  uint32_t qd = 0;     // operations in flight
  std::vector<Measurement> runs;  // one per --repeat
  // Median over runs of each field on its own (machines here are noisy).
  Measurement median;
};

// Sets cell->median from cell->runs.
void ComputeMedian(CellResult* cell);

// A target ratio of the issue, computed from measured cells.
struct TargetRatio {
  std::string name;         // JSON key
  std::string description;  // for the printout
  std::optional<double> value;  // empty when a cell it needs was not measured
  double target = 0;
  bool at_most = true;  // pass when value <= target (else when value >= target)

  // "PASS", "MISS" or "n/a".
  std::string Verdict() const;
};

struct MachineInfo {
  long nproc = 0;
  std::string sysname, kernel_release, kernel_version, machine, hostname, cpu_model;
};
MachineInfo CollectMachineInfo();

// What was run, against what.
struct RunConfig {
  std::string server;
  std::string transport;
  uint32_t drain_delay_us = 0;
  std::vector<std::string> methods;
  std::vector<uint32_t> sizes;
  std::vector<uint32_t> qds;
  double seconds = 0;
  double warmup_seconds = 0;
  uint32_t repeat = 1;
  uint64_t seed = 0;
  uint64_t window_bytes = 0;
  uint32_t tcp_depth = 0;
  // From the data server's handshake.
  uint32_t block_size = 0;
  uint64_t pool_data_bytes = 0;
  bool pool_is_pmem = false;
};

struct Report {
  std::string started_at;  // UTC, ISO 8601
  double wall_seconds = 0;
  RunConfig config;
  MachineInfo machine;
  std::vector<CellResult> cells;      // persist methods, medians computed
  std::vector<CellResult> baselines;  // tcp-pingpong (qd 1) and tcp-stream (qd tcp_depth)
  std::vector<TargetRatio> ratios;
  std::vector<std::string> notes;     // e.g. why a method was skipped
};

// The three target ratios of the issue, from report.cells and report.baselines.
std::vector<TargetRatio> ComputeTargetRatios(const Report& report);

void PrintTable(const Report& report, std::FILE* out);
Status WriteJson(const Report& report, const std::string& path);

}  // namespace dpmfs::bench
