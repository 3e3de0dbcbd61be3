#include "mkfs/check_command.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "common/cluster_file.h"
#include "mkfs/cluster_check.h"

namespace dpmfs::mkfs {
namespace {

constexpr char kProgram[] = "mkfs.dpmfs";
// As mkfs's formatting progress: shown when someone watches a terminal or when the
// metadata pool is large enough for the wait to matter.
constexpr uint64_t kProgressThreshold = 256ull << 20;

// A JSON string literal (RFC 8259: quote, backslash and control characters escaped).
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

void PrintJson(const std::string& file, const CheckReport& r) {
  std::cout << "{\"cluster_file\":" << JsonString(file)
            << ",\"clean\":" << (r.problems.empty() ? "true" : "false")
            << ",\"inodes\":" << r.inodes << ",\"extents\":" << r.extents
            << ",\"bytes_in_files\":" << r.bytes_in_files
            << ",\"checkpoint_lsn\":" << r.checkpoint_lsn
            << ",\"records_replayed\":" << r.records_replayed << ",\"problems\":[";
  for (size_t i = 0; i < r.problems.size(); ++i) {
    const CheckProblem& p = r.problems[i];
    std::cout << (i ? "," : "") << "{\"kind\":" << JsonString(p.kind)
              << ",\"message\":" << JsonString(p.message);
    if (p.pool == -1) std::cout << ",\"pool\":\"meta\"";
    if (p.pool >= 0) std::cout << ",\"pool\":" << p.pool;
    if (p.ino != 0) std::cout << ",\"inode\":" << p.ino;
    if (!p.path.empty()) std::cout << ",\"path\":" << JsonString(p.path);
    if (p.length != 0) std::cout << ",\"offset\":" << p.offset << ",\"length\":" << p.length;
    std::cout << "}";
  }
  std::cout << "],\"notes\":[";
  for (size_t i = 0; i < r.notes.size(); ++i) std::cout << (i ? "," : "") << JsonString(r.notes[i]);
  std::cout << "]}\n";
}

}  // namespace

void CheckCommand::Register(CLI::App& app) {
  cmd = app.add_subcommand("check",
                           "Check a stopped cluster offline: pool headers against the cluster "
                           "file, the namespace recovered from the metadata pool, every "
                           "extent and block. Read-only");
  cmd->add_option("CLUSTER_FILE", cluster_file, "The cluster file naming every pool")
      ->required();
  cmd->add_flag("--json", json, "One JSON object on stdout instead of lines");
  cmd->add_flag("--progress", progress,
                "Print progress on stderr (default: on a terminal, or for a metadata pool of "
                "256 MiB or more)");
}

int CheckCommand::Run() {
  Result<ClusterFile> cf = ParseClusterFile(cluster_file);
  if (!cf.ok()) {
    std::cerr << kProgram << ": error: " << cf.status().message() << "\n";
    return 2;
  }
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  const bool show = progress || tty || cf->meta.pool_size >= kProgressThreshold;
  bool shown = false;
  CheckOptions options;
  if (show) {
    options.progress = [tty, &shown](const std::string& what) {
      std::cerr << (tty ? "\r\033[K" : "") << kProgram << ": check: " << what
                << (tty ? "" : "\n") << std::flush;
      shown = true;
    };
  }
  Result<CheckReport> report = CheckCluster(*cf, options);
  if (tty && shown) std::cerr << "\r\033[K" << std::flush;
  if (!report.ok()) {
    std::cerr << kProgram << ": error: " << report.status().message() << "\n";
    return 2;
  }
  const CheckReport& r = *report;
  if (json) {
    PrintJson(cluster_file, r);
  } else {
    for (const CheckProblem& p : r.problems) std::cout << p.kind << ": " << p.message << "\n";
    for (const std::string& n : r.notes) std::cout << "note: " << n << "\n";
    std::cout << cluster_file << ": " << (r.problems.empty() ? "clean" : std::to_string(r.problems.size()) + " problems")
              << " (" << r.inodes << " inodes, " << r.extents << " extents, " << r.bytes_in_files
              << " bytes in files; checkpoint through LSN " << r.checkpoint_lsn << " + "
              << r.records_replayed << " journal records replayed)\n";
  }
  return r.problems.empty() ? 0 : 1;
}

}  // namespace dpmfs::mkfs
