#include "tools/bench/fs_bench.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "tools/bench/report.h"

namespace dpmfs::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// One fio job of the reference set (../shared/bench/fio), as command-line options.
struct FioJob {
  std::string name;    // also fio's --name, which names the files of numjobs > 1
  std::string title;   // for the table
  std::vector<std::string> args;
  uint32_t numjobs = 1;
  uint64_t size_mib = 256;  // per job
  std::string filename;     // empty: fio's default per-job files
  bool reads = false;       // measure the read side (else the write side)
  bool bandwidth = false;   // report MiB/s (else IOPS)
};

std::vector<FioJob> ReferenceJobs(bool quick) {
  const uint64_t j1 = quick ? 32 : 256;
  const uint64_t j4 = quick ? 16 : 64;
  return {
      {"randwrite4k_fdatasync_j1", "4k randwrite+fdatasync j1 (IOPS)",
       {"--rw=randwrite", "--bs=4k", "--fdatasync=1", "--overwrite=1"}, 1, j1, "peer-j1.dat"},
      {"randwrite4k_fdatasync_j4", "4k randwrite+fdatasync j4 (IOPS)",
       {"--rw=randwrite", "--bs=4k", "--fdatasync=1", "--overwrite=1"}, 4, j4, ""},
      {"randwrite4k_j1", "4k randwrite j1 (IOPS)", {"--rw=randwrite", "--bs=4k", "--overwrite=1"},
       1, j1, "peer-j1.dat"},
      {"randread4k_j1", "4k randread j1 (IOPS)", {"--rw=randread", "--bs=4k"}, 1, j1,
       "peer-j1.dat", true},
      {"seqwrite1m_j1", "1M seq write (MiB/s)", {"--rw=write", "--bs=1m", "--overwrite=1"}, 1, j1,
       "peer-seq.dat", false, true},
      {"seqread1m_j1", "1M seq read (MiB/s)", {"--rw=read", "--bs=1m"}, 1, j1, "peer-seq.dat",
       true, true},
  };
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

// Runs a command through the shell, capturing stdout+stderr. Non-zero exit is an error
// that carries the output's tail.
Result<std::string> Run(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + Quote(a);
  spdlog::debug("running: {}", cmd);
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return Status::FromErrno(errno, "popen " + argv[0]);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (rc != 0) {
    std::string tail = out.size() > 2000 ? "..." + out.substr(out.size() - 2000) : out;
    return Status::IOError("`" + cmd + "` failed (wait status " + std::to_string(rc) + "):\n" +
                           tail);
  }
  return out;
}

// What one measured run of a job yielded.
struct JobResult {
  double value = 0;   // IOPS or MiB/s
  double p50_us = 0;  // completion latency median
};

// Parses fio's terse v3 line (group_reporting: one line). Fields (0-based): read block
// at 5 (kb 5, bw KiB/s 6, iops 7, ..., clat percentiles from 17), write block at 46.
Result<JobResult> ParseTerse(const std::string& out, const FioJob& job) {
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("3;fio-", 0) != 0) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, ';')) f.push_back(field);
    if (f.size() < 100) break;
    const size_t base = job.reads ? 5 : 46;
    JobResult r;
    double bw_kib = std::atof(f[base + 1].c_str());
    double iops = std::atof(f[base + 2].c_str());
    r.value = job.bandwidth ? bw_kib / 1024.0 : iops;
    const std::string& p50 = f[base + 12];  // "50.000000%=26"
    size_t eq = p50.find('=');
    if (eq != std::string::npos) r.p50_us = std::atof(p50.c_str() + eq + 1);
    return r;
  }
  return Status::Corruption("no fio terse v3 result line in the output of " + job.name + ":\n" +
                            out.substr(0, 2000));
}

std::vector<std::string> FioBase(const FsBenchOptions& o, const FioJob& job,
                                 const std::string& dir) {
  std::vector<std::string> a = {o.fio,
                                "--name=" + job.name,
                                "--directory=" + dir,
                                "--ioengine=psync",
                                "--iodepth=1",
                                "--numjobs=" + std::to_string(job.numjobs),
                                "--size=" + std::to_string(job.size_mib) + "m",
                                "--group_reporting=1"};
  if (!job.filename.empty()) a.push_back("--filename=" + job.filename);
  return a;
}

Result<JobResult> RunJob(const FsBenchOptions& o, const FioJob& job, const std::string& dir) {
  // Pre-write the job's files with 1 MiB writes so measured writes are overwrites and
  // reads find data (the reference procedure).
  auto pre = FioBase(o, job, dir);
  pre.insert(pre.end(), {"--rw=write", "--bs=1m", "--direct=" + std::string(o.direct ? "1" : "0"),
                         "--output-format=terse", "--terse-version=3"});
  auto prewritten = Run(pre);
  if (!prewritten.ok()) return prewritten.status();
  auto a = FioBase(o, job, dir);
  a.insert(a.end(), job.args.begin(), job.args.end());
  const double ramp = o.quick ? 1 : 2;
  a.insert(a.end(), {"--direct=" + std::string(o.direct ? "1" : "0"), "--time_based=1",
                     "--runtime=" + std::to_string(static_cast<int>(std::ceil(o.runtime_seconds))),
                     "--ramp_time=" + std::to_string(static_cast<int>(ramp)),
                     "--percentile_list=50:99:99.9", "--output-format=terse",
                     "--terse-version=3"});
  auto out = Run(a);
  if (!out.ok()) return out.status();
  return ParseTerse(*out, job);
}

// Progress on stderr: rewritten in place on a terminal, one line each otherwise (logs).
void Progress(const std::string& what) {
  static const bool tty = ::isatty(STDERR_FILENO);
  std::fprintf(stderr, tty ? "  %-68s\r" : "  %s\n", what.c_str());
}

struct MetaResult {
  double create = 0, stat = 0, unlink = 0;  // ops/s
};

Result<MetaResult> RunMetadataProfile(const FsBenchOptions& o, const std::string& dir) {
  std::string d = dir + "/meta-profile";
  if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir " + d);
  }
  std::vector<std::string> names;
  names.reserve(o.files);
  for (uint32_t i = 0; i < o.files; ++i) names.push_back(d + "/f" + std::to_string(i));
  auto rate = [&](Clock::time_point t0) {
    return o.files / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  MetaResult r;
  auto t0 = Clock::now();
  for (const auto& n : names) {
    int fd = ::open(n.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) return Status::FromErrno(errno, "create " + n);
    ::close(fd);
  }
  r.create = rate(t0);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.stat_wait_seconds));
  t0 = Clock::now();
  for (const auto& n : names) {
    struct stat st;
    if (::stat(n.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + n);
  }
  r.stat = rate(t0);
  t0 = Clock::now();
  for (const auto& n : names) {
    if (::unlink(n.c_str()) != 0) return Status::FromErrno(errno, "unlink " + n);
  }
  r.unlink = rate(t0);
  ::rmdir(d.c_str());
  return r;
}

// A place to measure: a directory, and how to clean it up afterwards.
struct Target {
  std::string name;
  std::string dir;
  std::string bindfs_mount;  // unmounted at the end when set
  std::vector<std::string> remove;  // scratch directories to delete
};

Result<std::string> MakeTemp(const std::string& what) {
  std::string tmpl = "/dev/shm/dpmfs-bench-" + what + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "mkdtemp " + tmpl);
  return tmpl;
}

void Cleanup(const Target& t) {
  if (!t.bindfs_mount.empty()) {
    auto r = Run({"fusermount3", "-u", t.bindfs_mount});
    if (!r.ok()) (void)Run({"umount", "-l", t.bindfs_mount});
  }
  std::error_code ec;
  for (const auto& d : t.remove) fs::remove_all(d, ec);
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

CLI::App* AddFsCommand(CLI::App& app, FsBenchOptions* opts) {
  CLI::App* cmd = app.add_subcommand(
      "fs",
      "fio jobs and a metadata profile through a dpmfs mount, beside bindfs-over-tmpfs and "
      "tmpfs measured in the same run (see tools/bench/README.md).");
  cmd->fallthrough();
  cmd->add_option("--dir", opts->dpmfs_dir,
                  "A scratch directory inside a dpmfs mount (e.g. from `tools/dpmfs up`)")
      ->required();
  cmd->add_flag("!--no-reference", opts->reference,
                "Skip the bindfs-over-tmpfs and tmpfs columns");
  cmd->add_option("--fio", opts->fio, "fio executable")->capture_default_str();
  cmd->add_option("--bindfs", opts->bindfs, "bindfs executable")->capture_default_str();
  cmd->add_option("--runtime", opts->runtime_seconds, "Seconds per fio job (after the ramp)")
      ->capture_default_str();
  cmd->add_option("--files", opts->files, "Files of the metadata profile")
      ->check(CLI::Range(1u, 10000000u))
      ->capture_default_str();
  cmd->add_option("--stat-wait", opts->stat_wait_seconds,
                  "Seconds to wait between creating and stat-ing (attribute caches expire)")
      ->capture_default_str();
  cmd->add_option("--jobs", opts->jobs,
                  "Comma-separated fio job names (randwrite4k_fdatasync_j1, "
                  "randwrite4k_fdatasync_j4, randwrite4k_j1, randread4k_j1, seqwrite1m_j1, "
                  "seqread1m_j1, metadata), or all")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--repeat", opts->repeat, "Runs per cell; the table shows medians")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_flag("!--buffered", opts->direct, "Buffered I/O instead of O_DIRECT");
  cmd->add_option("--json", opts->json_path, "Where to write the JSON report")
      ->capture_default_str();
  cmd->add_flag("--quick", opts->quick,
                "Small files, 3 s jobs, 1000 files: a smoke run, not a measurement");
  cmd->callback([opts] {
    if (opts->quick) {
      opts->runtime_seconds = std::min(opts->runtime_seconds, 3.0);
      opts->files = std::min<uint32_t>(opts->files, 1000);
    }
  });
  return cmd;
}

Status RunFsBench(const FsBenchOptions& o) {
  const auto started = Clock::now();
  auto wanted = [&](const std::string& name) {
    return std::find(o.jobs.begin(), o.jobs.end(), "all") != o.jobs.end() ||
           std::find(o.jobs.begin(), o.jobs.end(), name) != o.jobs.end();
  };
  std::vector<FioJob> jobs;
  for (auto& j : ReferenceJobs(o.quick))
    if (wanted(j.name)) jobs.push_back(j);
  const bool meta = wanted("metadata");
  if (!jobs.empty()) {
    auto v = Run({o.fio, "--version"});
    if (!v.ok()) return Status::NotSupported("fio is needed (apt install fio): " + v.status().message());
  }

  // The targets, in column order.
  std::vector<Target> targets;
  auto cleanup_all = [&] {
    for (auto& t : targets) Cleanup(t);
  };
  {
    std::string d = o.dpmfs_dir + "/dpmfs-bench-fs." + std::to_string(::getpid());
    if (::mkdir(d.c_str(), 0755) != 0) return Status::FromErrno(errno, "mkdir " + d);
    targets.push_back({"dpmfs", d, "", {d}});
  }
  if (o.reference) {
    DPMFS_ASSIGN_OR_RETURN(std::string tmp, MakeTemp("tmpfs"));
    targets.insert(targets.begin(), Target{"tmpfs", tmp, "", {tmp}});
    auto src = MakeTemp("bindfs-src");
    auto mnt = MakeTemp("bindfs-mnt");
    if (!src.ok() || !mnt.ok()) {
      cleanup_all();
      return !src.ok() ? src.status() : mnt.status();
    }
    auto mounted = Run({o.bindfs, *src, *mnt});
    if (!mounted.ok()) {
      std::error_code ec;
      fs::remove_all(*src, ec);
      fs::remove_all(*mnt, ec);
      cleanup_all();
      return Status::NotSupported("bindfs is needed for the reference column (apt install "
                                  "bindfs), or pass --no-reference: " +
                                  mounted.status().message());
    }
    targets.insert(targets.begin() + 1, Target{"bindfs", *mnt, *mnt, {*mnt, *src}});
  }

  // results[row][target] = runs
  std::vector<std::string> rows;
  std::map<std::string, std::map<std::string, std::vector<double>>> values, p50s;
  Status failure;
  for (uint32_t rep = 0; rep < o.repeat && failure.ok(); ++rep) {
    for (const auto& job : jobs) {
      if (rep == 0) rows.push_back(job.title);
      for (const auto& t : targets) {
        Progress("[" + std::to_string(rep + 1) + "/" + std::to_string(o.repeat) + "] " +
                 job.name + " on " + t.name + " ...");
        auto r = RunJob(o, job, t.dir);
        if (!r.ok()) {
          failure = Status(r.status().code(), t.name + ": " + r.status().message());
          break;
        }
        values[job.title][t.name].push_back(r->value);
        p50s[job.title][t.name].push_back(r->p50_us);
        // Remove the job's files so the targets' space and caches start alike.
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(t.dir, ec)) fs::remove_all(e.path(), ec);
      }
      if (!failure.ok()) break;
    }
    if (meta && failure.ok()) {
      const std::string names[3] = {"create (ops/s)", "stat (ops/s)", "unlink (ops/s)"};
      if (rep == 0) rows.insert(rows.end(), std::begin(names), std::end(names));
      for (const auto& t : targets) {
        Progress("[" + std::to_string(rep + 1) + "/" + std::to_string(o.repeat) + "] metadata, " +
                 std::to_string(o.files) + " files on " + t.name + " ...");
        auto r = RunMetadataProfile(o, t.dir);
        if (!r.ok()) {
          failure = Status(r.status().code(), t.name + ": " + r.status().message());
          break;
        }
        values[names[0]][t.name].push_back(r->create);
        values[names[1]][t.name].push_back(r->stat);
        values[names[2]][t.name].push_back(r->unlink);
      }
    }
  }
  if (::isatty(STDERR_FILENO)) std::fprintf(stderr, "%-72s\r", "");
  cleanup_all();
  DPMFS_RETURN_IF_ERROR(failure);

  // The table: medians, and dpmfs against the local FUSE passthrough.
  std::printf("\n%-36s", "profile (median)");
  for (const auto& t : targets) std::printf(" %12s", t.name.c_str());
  if (o.reference) std::printf(" %13s %7s", "dpmfs/bindfs", "target");
  std::printf("\n");
  // The targets: fdatasync random write, random read and metadata >= 50% of bindfs.
  auto target_of = [](const std::string& row) -> std::optional<double> {
    if (row.rfind("4k randwrite+fdatasync", 0) == 0 || row.rfind("4k randread", 0) == 0 ||
        row.find("ops/s") != std::string::npos)
      return 0.5;
    return std::nullopt;
  };
  std::ostringstream json;
  json << "{\n  \"benchmark\": \"fs\",\n  \"runtime_seconds\": " << o.runtime_seconds
       << ",\n  \"repeat\": " << o.repeat << ",\n  \"direct\": " << (o.direct ? "true" : "false")
       << ",\n  \"files\": " << o.files << ",\n  \"rows\": [\n";
  bool first = true;
  for (const auto& row : rows) {
    std::printf("%-36s", row.c_str());
    json << (first ? "" : ",\n") << "    {\"profile\": \"" << row << "\"";
    first = false;
    for (const auto& t : targets) {
      double v = Median(values[row][t.name]);
      std::printf(" %12.0f", v);
      json << ", \"" << t.name << "\": " << v;
      if (!p50s[row][t.name].empty()) {
        json << ", \"" << t.name << "_p50_us\": " << Median(p50s[row][t.name]);
      }
    }
    if (o.reference) {
      double bind = Median(values[row]["bindfs"]);
      double ratio = bind > 0 ? Median(values[row]["dpmfs"]) / bind : 0;
      auto target = target_of(row);
      std::printf(" %13.2f %7s", ratio,
                  target ? (ratio >= *target ? "PASS" : "MISS") : "");
      json << ", \"dpmfs_over_bindfs\": " << ratio;
      if (target) json << ", \"target\": " << *target;
    }
    json << "}";
    std::printf("\n");
  }
  MachineInfo m = CollectMachineInfo();
  json << "\n  ],\n  \"machine\": {\"nproc\": " << m.nproc << ", \"kernel\": \""
       << m.kernel_release << "\", \"cpu\": \"" << m.cpu_model << "\"},\n  \"wall_seconds\": "
       << std::chrono::duration<double>(Clock::now() - started).count() << "\n}\n";
  std::ofstream out(o.json_path);
  out << json.str();
  if (!out) return Status::IOError("could not write " + o.json_path);
  std::printf("\nJSON: %s\n", o.json_path.c_str());
  return Status::OK();
}

}  // namespace dpmfs::bench
